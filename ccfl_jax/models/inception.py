"""Multi-branch and separable baselines: Inception-v3 and Xception (GroupNorm, width multiplier).

Same interface as every classifier here: ``images [B, Y, X, 1] -> (logits [B, 2], aux)``. All
convolutions are SAME-padded (the originals use VALID ones sized for 299 x 299 inputs), so any
input divisible by 32 works.

References:
  Szegedy et al. 2016, "Rethinking the Inception Architecture" (modules of Fig. 5, 6, 7 and the
  grid reductions). Chollet 2017, "Xception" (entry, middle x8 and exit flows of Fig. 5).
"""

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ccfl_jax.models.baselines import ConvNorm, Head, group_norm, max_pool, scaled
from ccfl_jax.models.capsnet import check_images
from ccfl_jax.typing import Array

# A branch is a sequence of (channels, (kernel rows, kernel cols), stride) convolutions; a module
# concatenates its branches, plus a pooled branch. Channels as in Szegedy et al., before `width`.
Branch = Sequence[tuple[int, tuple[int, int], int]]
MODULE_A = (((64, (1, 1), 1),), ((48, (1, 1), 1), (64, (5, 5), 1)))
MODULE_A += (((64, (1, 1), 1), (96, (3, 3), 1), (96, (3, 3), 1)),)
REDUCTION_A = (((384, (3, 3), 2),), ((64, (1, 1), 1), (96, (3, 3), 1), (96, (3, 3), 2)))


def module_c(c: int) -> tuple[Branch, ...]:
    """Fig. 6 module (7x7 factorized into 1x7 and 7x1) with ``c`` inner channels."""
    single = ((c, (1, 1), 1), (c, (1, 7), 1), (192, (7, 1), 1))
    double = ((c, (1, 1), 1), (c, (7, 1), 1), (c, (1, 7), 1), (c, (7, 1), 1), (192, (1, 7), 1))
    return (((192, (1, 1), 1),), single, double)


REDUCTION_C = (((192, (1, 1), 1), (320, (3, 3), 2)),)
REDUCTION_C += (((192, (1, 1), 1), (192, (1, 7), 1), (192, (7, 1), 1), (192, (3, 3), 2)),)


class InceptionModule(nn.Module):
    """Concatenates conv branches and a pooled branch (avg + 1x1 conv, or max pool if strided).

    Attributes:
      branches: the conv branches (see ``Branch``).
      pool_features: channels of the 1x1 conv after average pooling; 0 for a strided max pool.
      width: channel multiplier.
    """

    branches: Sequence[Branch]
    pool_features: int
    width: float

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, Y, X, C] -> [B, Y', X', sum of branch channels]``."""
        outputs = []
        for branch in self.branches:
            y = x
            for features, (rows, cols), strides in branch:
                y = _conv(y, scaled(features, self.width), (rows, cols), strides)
            outputs.append(y)
        if self.pool_features:
            pooled = nn.avg_pool(x, (3, 3), (1, 1), padding="SAME")
            outputs.append(_conv(pooled, scaled(self.pool_features, self.width), (1, 1), 1))
        else:
            outputs.append(max_pool(x))
        return jnp.concatenate(outputs, axis=-1)


def _conv(x: Array, features: int, kernel: tuple[int, int], strides: int) -> Array:
    """A rectangular-kernel convolution -> GroupNorm -> ReLU (inside a compact module)."""
    x = nn.Conv(features, kernel, (strides, strides), use_bias=False)(x)
    return nn.relu(group_norm(features)(x))


class ModuleE(nn.Module):
    """Fig. 7 module: 1x1 320; 1x1 384 split into 1x3 and 3x1; 1x1 448 -> 3x3 384 split the
    same way; average pool -> 1x1 192."""

    width: float

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, Y, X, C] -> [B, Y, X, 2048 width]``."""
        w = lambda c: scaled(c, self.width)  # noqa: E731
        outputs = [_conv(x, w(320), (1, 1), 1)]
        for stem in ([(384, (1, 1))], [(448, (1, 1)), (384, (3, 3))]):
            y = x
            for features, kernel in stem:
                y = _conv(y, w(features), kernel, 1)
            outputs += [_conv(y, w(384), (1, 3), 1), _conv(y, w(384), (3, 1), 1)]
        pooled = nn.avg_pool(x, (3, 3), (1, 1), padding="SAME")
        outputs.append(_conv(pooled, w(192), (1, 1), 1))
        return jnp.concatenate(outputs, axis=-1)


class InceptionV3(nn.Module):
    """Inception-v3: stem, 3 x module A, reduction, 4 x module C (7x7 factorized), reduction,
    2 x module E (expanded filter banks)."""

    output_kind: ClassVar[str] = "logits"

    num_classes: int = 2
    width: float = 1.0
    dropout: float = 0.2

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False) -> tuple[Array, dict]:
        """Classifies ``images [B, Y, X, 1]`` into ``(logits [B, num_classes], aux)``."""
        check_images(images)
        w = self.width
        x = ConvNorm(scaled(32, w), 3, 2)(images)
        x = ConvNorm(scaled(64, w), 3)(ConvNorm(scaled(32, w), 3)(x))
        x = ConvNorm(scaled(192, w), 3)(ConvNorm(scaled(80, w), 1)(max_pool(x)))
        x = max_pool(x)
        for pool_features in (32, 64, 64):
            x = InceptionModule(MODULE_A, pool_features, w)(x)
        x = InceptionModule(REDUCTION_A, 0, w)(x)
        for inner in (128, 160, 160, 192):
            x = InceptionModule(module_c(inner), 192, w)(x)
        x = InceptionModule(REDUCTION_C, 0, w)(x)
        for _ in range(2):
            x = ModuleE(w)(x)
        return Head(self.num_classes, self.dropout)(x, train)


class SeparableConv(nn.Module):
    """Depthwise 3x3 then pointwise 1x1 convolution, then GroupNorm (no activation)."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, Y, X, C] -> [B, Y, X, features]``."""
        x = nn.Conv(x.shape[-1], (3, 3), feature_group_count=x.shape[-1], use_bias=False)(x)
        return ConvNorm(self.features, 1, activation=None)(x)


class XceptionBlock(nn.Module):
    """ReLU-separable conv stack with a residual; strided blocks end in a max pool and project."""

    features: Sequence[int]
    strides: int = 1
    relu_first: bool = True

    @nn.compact
    def __call__(self, x: Array) -> Array:
        """``[B, Y, X, C] -> [B, Y / strides, X / strides, features[-1]]``."""
        y = x
        for index, features in enumerate(self.features):
            if index > 0 or self.relu_first:
                y = nn.relu(y)
            y = SeparableConv(features)(y)
        if self.strides == 1 and x.shape[-1] == self.features[-1]:
            return x + y
        y = max_pool(y, 3, self.strides)
        return y + ConvNorm(self.features[-1], 1, self.strides, activation=None)(x)


class Xception(nn.Module):
    """Xception: entry flow (3 strided blocks), middle flow (8 blocks of 728), exit flow."""

    output_kind: ClassVar[str] = "logits"

    num_classes: int = 2
    width: float = 1.0

    @nn.compact
    def __call__(self, images: Array, *, train: bool = False) -> tuple[Array, dict]:
        """Classifies ``images [B, Y, X, 1]`` into ``(logits [B, num_classes], aux)``."""
        check_images(images)
        w = lambda c: scaled(c, self.width)  # noqa: E731
        x = ConvNorm(w(64), 3)(ConvNorm(w(32), 3, 2)(images))
        x = XceptionBlock((w(128), w(128)), 2, relu_first=False)(x)
        for features in (256, 728):
            x = XceptionBlock((w(features), w(features)), 2)(x)
        for _ in range(8):
            x = XceptionBlock((w(728),) * 3)(x)
        x = XceptionBlock((w(728), w(1024)), 2)(x)
        x = nn.relu(SeparableConv(w(2048))(nn.relu(SeparableConv(w(1536))(x))))
        return Head(self.num_classes)(x, train)
