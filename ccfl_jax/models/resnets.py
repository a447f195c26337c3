"""Residual and dense baselines: ResNet-50 v1 and v2, DenseNet-121 (GroupNorm, width multiplier).

Same interface as every classifier here: ``images [B, Y, X, 1] -> (logits [B, 2], aux)``.

References:
  He et al. 2016, "Deep Residual Learning" (v1) and "Identity Mappings in Deep Residual
  Networks" (v2, pre-activation). Huang et al. 2017, "Densely Connected Convolutional Networks".
"""

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ccfl_jax.models.baselines import ConvNorm, Head, group_norm, max_pool, scaled
from ccfl_jax.models.capsnet import check_images
from ccfl_jax.typing import Array

RESNET50_STAGES = ((64, 3), (128, 4), (256, 6), (512, 3))  # (bottleneck width, blocks)
EXPANSION = 4


class Bottleneck(nn.Module):
    """ResNet v1 bottleneck: 1x1 -> 3x3 (strided) -> 1x1 x4, projection shortcut when needed."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, Y, X, C] -> [B, Y / strides, X / strides, 4 features]``."""
        out = EXPANSION * self.features
        y = ConvNorm(self.features, 1)(x)
        y = ConvNorm(self.features, 3, self.strides)(y)
        y = ConvNorm(out, 1, activation=None)(y)
        if x.shape[-1] != out or self.strides != 1:
            x = ConvNorm(out, 1, self.strides, activation=None, name="projection")(x)
        return nn.relu(x + y)


class PreActBottleneck(nn.Module):
    """ResNet v2 bottleneck: norm-ReLU before each conv; the shortcut stays an identity."""

    features: int
    strides: int = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, Y, X, C] -> [B, Y / strides, X / strides, 4 features]``."""
        out = EXPANSION * self.features
        pre = nn.relu(group_norm(x.shape[-1])(x))
        shortcut = x
        if x.shape[-1] != out or self.strides != 1:
            shortcut = nn.Conv(out, (1, 1), (self.strides,) * 2, use_bias=False)(pre)
        y = nn.Conv(self.features, (1, 1), use_bias=False)(pre)
        y = nn.relu(group_norm(self.features)(y))
        y = nn.Conv(self.features, (3, 3), (self.strides,) * 2, use_bias=False)(y)
        y = nn.relu(group_norm(self.features)(y))
        return shortcut + nn.Conv(out, (1, 1), use_bias=False)(y)


class ResNet50(nn.Module):
    """ResNet-50: 7x7/2 stem, max pool, bottleneck stages of 3, 4, 6, 3 blocks.

    Attributes:
      num_classes: outputs.
      width: channel multiplier.
      preactivation: v2 (pre-activation blocks and a final norm-ReLU) instead of v1.
    """

    output_kind: ClassVar[str] = "logits"

    num_classes: int = 2
    width: float = 1.0
    preactivation: bool = False

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False) -> tuple[Array, dict]:
        """Classifies ``images [B, Y, X, 1]`` into ``(logits [B, num_classes], aux)``."""
        check_images(images)
        block = PreActBottleneck if self.preactivation else Bottleneck
        stem = scaled(64, self.width)
        if self.preactivation:
            x = nn.Conv(stem, (7, 7), (2, 2), use_bias=False)(images)
        else:
            x = ConvNorm(stem, 7, 2)(images)
        x = max_pool(x)
        for stage, (features, blocks) in enumerate(RESNET50_STAGES):
            for index in range(blocks):
                strides = 2 if stage > 0 and index == 0 else 1
                x = block(scaled(features, self.width), strides)(x)
        if self.preactivation:
            x = nn.relu(group_norm(x.shape[-1])(x))
        return Head(self.num_classes)(x, train)


class ResNet50V2(ResNet50):
    """ResNet-50 v2: :class:`ResNet50` with pre-activation blocks."""

    preactivation: bool = True


DENSENET121_BLOCKS = (6, 12, 24, 16)


class DenseLayer(nn.Module):
    """Norm-ReLU-1x1 (4 x growth) -> norm-ReLU-3x3 (growth), concatenated to the input."""

    growth: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, Y, X, C] -> [B, Y, X, C + growth]``."""
        y = nn.Conv(4 * self.growth, (1, 1), use_bias=False)(nn.relu(group_norm(x.shape[-1])(x)))
        y = nn.Conv(self.growth, (3, 3), use_bias=False)(nn.relu(group_norm(y.shape[-1])(y)))
        return jnp.concatenate([x, y], axis=-1)


class DenseNet121(nn.Module):
    """DenseNet-121: dense blocks of 6, 12, 24, 16 layers (growth 32), halving transitions."""

    output_kind: ClassVar[str] = "logits"

    num_classes: int = 2
    width: float = 1.0

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False) -> tuple[Array, dict]:
        """Classifies ``images [B, Y, X, 1]`` into ``(logits [B, num_classes], aux)``."""
        check_images(images)
        growth = scaled(32, self.width)
        x = max_pool(ConvNorm(2 * growth, 7, 2)(images))
        for index, layers in enumerate(DENSENET121_BLOCKS):
            for _ in range(layers):
                x = DenseLayer(growth)(x)
            if index < len(DENSENET121_BLOCKS) - 1:
                x = nn.relu(group_norm(x.shape[-1])(x))
                x = nn.Conv(scaled(x.shape[-1] // 2, 1.0), (1, 1), use_bias=False)(x)
                x = nn.avg_pool(x, (2, 2), (2, 2), padding="SAME")
        x = nn.relu(group_norm(x.shape[-1])(x))
        return Head(self.num_classes)(x, train)
