"""CNN baselines (the Table IV families of Kumar et al. 2020) with the CapsNet interface.

Every model maps ``images [B, Y, X, 1] -> (logits [B, 2], aux)`` with ``aux['features']`` the
globally pooled features, uses GroupNorm instead of BatchNorm (no running statistics to
federate or leak) and has a ``width`` multiplier on every channel count so that it trains on a
small CPU. The classifier head is global average pooling + one dense layer for every family (VGG
and AlexNet lose their 4096-wide fully connected layers). ImageNet weights cannot be downloaded
here: everything trains from scratch, on one grey channel.

This module holds the shared blocks and the plain and depthwise families (CnnSmall, VGG-16,
AlexNet, MobileNet v1 and v2); ``resnets.py`` and ``inception.py`` hold the others.
"""

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ccfl_jax.models.capsnet import check_images
from ccfl_jax.typing import Array


def group_norm(channels: int, name: str | None = None) -> nn.Module:
    """GroupNorm with at most 32 groups of at least 4 channels each (never instance norm)."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and channels // g >= 4)
    return nn.GroupNorm(num_groups=groups, name=name)


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 4, at least 4.

    Examples:
      >>> scaled(64, 0.25), scaled(3, 1.0)
      (16, 4)
    """
    return max(4, int(round(channels * width / 4)) * 4)


class ConvNorm(nn.Module):
    """Convolution (no bias) -> GroupNorm -> optional activation.

    Attributes:
      features: output channels.
      kernel: kernel size (square).
      strides: stride (square).
      depthwise: one filter per input channel (``features`` must equal the input channels).
      activation: applied after the norm, or None.
    """

    features: int
    kernel: int = 3
    strides: int = 1
    depthwise: bool = False
    activation: object = nn.relu

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, Y, X, C] -> [B, Y / strides, X / strides, features]``."""
        groups = x.shape[-1] if self.depthwise else 1
        x = nn.Conv(
            self.features,
            (self.kernel, self.kernel),
            (self.strides, self.strides),
            feature_group_count=groups,
            use_bias=False,
        )(x)
        x = group_norm(self.features)(x)
        return x if self.activation is None else self.activation(x)


def max_pool(x: Array, window: int = 3, strides: int = 2) -> Array:
    """SAME-padded max pooling."""
    return nn.max_pool(x, (window, window), (strides, strides), padding="SAME")


class Head(nn.Module):
    """Global average pool -> dropout -> dense logits; returns ``(logits, {'features'})``."""

    num_classes: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, train: bool) -> tuple[Array, dict]:
        """``[B, Y, X, C] -> ([B, num_classes], {'features': [B, C]})``."""
        features = jnp.mean(x, axis=(1, 2))
        dropped = nn.Dropout(self.dropout, deterministic=not train)(features)
        return nn.Dense(self.num_classes, name="logits")(dropped), {"features": features}


class CnnSmall(nn.Module):
    """A tiny CNN (two convs) for fast tests of everything around a model.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = CnnSmall()
      >>> outputs, variables = jax.eval_shape(
      ...     model.init_with_output, jax.random.key(0), jnp.zeros((3, 16, 16, 1)))
      >>> outputs[0].shape
      (3, 2)
    """

    output_kind: ClassVar[str] = "logits"

    num_classes: int = 2
    features: Sequence[int] = (8, 16)

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False) -> tuple[Array, dict]:
        """Classifies ``images [B, Y, X, 1]`` into ``(logits [B, num_classes], aux)``."""
        check_images(images)
        x = images
        for index, features in enumerate(self.features):
            x = nn.Conv(features, (3, 3), (2, 2), name=f"conv_{index}")(x)
            x = nn.relu(group_norm(features, name=f"norm_{index}")(x))
        return Head(self.num_classes, name="head")(x, train)


VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


class VGG16(nn.Module):
    """VGG-16 (Simonyan & Zisserman 2015): 13 3x3 convs in 5 stages, each closed by a max pool."""

    output_kind: ClassVar[str] = "logits"

    num_classes: int = 2
    width: float = 1.0
    dropout: float = 0.5

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False) -> tuple[Array, dict]:
        """Classifies ``images [B, Y, X, 1]`` into ``(logits [B, num_classes], aux)``."""
        check_images(images)
        x = images
        for stage in VGG16_STAGES:
            for features in stage:
                x = ConvNorm(scaled(features, self.width))(x)
            x = max_pool(x, 2, 2)
        return Head(self.num_classes, self.dropout)(x, train)


class AlexNet(nn.Module):
    """AlexNet (Krizhevsky et al. 2012): 11x11/4, 5x5, three 3x3 convs, three max pools."""

    output_kind: ClassVar[str] = "logits"

    num_classes: int = 2
    width: float = 1.0
    dropout: float = 0.5

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False) -> tuple[Array, dict]:
        """Classifies ``images [B, Y, X, 1]`` into ``(logits [B, num_classes], aux)``."""
        check_images(images)
        x = max_pool(ConvNorm(scaled(64, self.width), 11, 4)(images))
        x = max_pool(ConvNorm(scaled(192, self.width), 5)(x))
        for features in (384, 256, 256):
            x = ConvNorm(scaled(features, self.width))(x)
        return Head(self.num_classes, self.dropout)(max_pool(x), train)


MOBILENET_V1 = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))
MOBILENET_V1 += ((512, 1),) * 5 + ((1024, 2), (1024, 1))


class MobileNet(nn.Module):
    """MobileNet v1 (Howard et al. 2017): 13 depthwise-separable blocks after a 3x3/2 conv."""

    output_kind: ClassVar[str] = "logits"

    num_classes: int = 2
    width: float = 1.0

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False) -> tuple[Array, dict]:
        """Classifies ``images [B, Y, X, 1]`` into ``(logits [B, num_classes], aux)``."""
        check_images(images)
        x = ConvNorm(scaled(32, self.width), 3, 2)(images)
        for features, strides in MOBILENET_V1:
            x = ConvNorm(x.shape[-1], 3, strides, depthwise=True)(x)
            x = ConvNorm(scaled(features, self.width), 1)(x)
        return Head(self.num_classes)(x, train)


# (expansion t, channels c, repeats n, first stride s), Table 2 of Sandler et al. 2018.
MOBILENET_V2 = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1))
MOBILENET_V2 += ((6, 160, 3, 2), (6, 320, 1, 1))


class InvertedResidual(nn.Module):
    """MobileNet v2 block: 1x1 expand -> 3x3 depthwise -> 1x1 linear projection (+ identity)."""

    features: int
    expansion: int
    strides: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, Y, X, C] -> [B, Y / strides, X / strides, features]``."""
        hidden = x.shape[-1] * self.expansion
        y = ConvNorm(hidden, 1, activation=nn.relu6)(x) if self.expansion != 1 else x
        y = ConvNorm(hidden, 3, self.strides, depthwise=True, activation=nn.relu6)(y)
        y = ConvNorm(self.features, 1, activation=None)(y)
        same_shape = self.strides == 1 and x.shape[-1] == self.features
        return x + y if same_shape else y


class MobileNetV2(nn.Module):
    """MobileNet v2 (Sandler et al. 2018): inverted residuals with linear bottlenecks."""

    output_kind: ClassVar[str] = "logits"

    num_classes: int = 2
    width: float = 1.0

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False) -> tuple[Array, dict]:
        """Classifies ``images [B, Y, X, 1]`` into ``(logits [B, num_classes], aux)``."""
        check_images(images)
        x = ConvNorm(scaled(32, self.width), 3, 2, activation=nn.relu6)(images)
        for expansion, features, repeats, strides in MOBILENET_V2:
            for index in range(repeats):
                x = InvertedResidual(
                    scaled(features, self.width), expansion, strides if index == 0 else 1
                )(x)
        x = ConvNorm(scaled(1280, self.width), 1, activation=nn.relu6)(x)
        return Head(self.num_classes)(x, train)
