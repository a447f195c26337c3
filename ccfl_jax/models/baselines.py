"""CNN baselines (the Table IV families of Kumar et al. 2020) with the CapsNet interface.

Every model maps ``images [B, Y, X, 1] -> (logits [B, 2], aux)`` with ``aux['features']`` the
pooled features, uses GroupNorm instead of BatchNorm (no running statistics to federate) and
has a ``width`` multiplier so that it trains on a small CPU. ImageNet weights cannot be
downloaded here: everything trains from scratch.
"""

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ccfl_jax.models.capsnet import check_images
from ccfl_jax.typing import Array


def _norm(name: str, channels: int) -> nn.Module:
    """GroupNorm with at most 32 groups of at least 4 channels each (never instance norm)."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and channels // g >= 4)
    return nn.GroupNorm(num_groups=groups, name=name)


def _scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded to a multiple of 4, at least 4."""
    return max(4, int(round(channels * width / 4)) * 4)


class _Head(nn.Module):
    """Global average pool, optional dropout, dense logits."""

    num_classes: int
    dropout: float = 0.0

    @nn.compact
    def __call__(self, x: Array, train: bool) -> tuple[Array, dict]:
        features = jnp.mean(x, axis=(1, 2))
        dropped = nn.Dropout(self.dropout, deterministic=not train)(features)
        return nn.Dense(self.num_classes, name="logits")(dropped), {"features": features}


class CnnSmall(nn.Module):
    """A tiny CNN (two convs) for fast tests of everything around a model.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = CnnSmall()
      >>> variables = model.init(jax.random.key(0), jnp.zeros((1, 16, 16, 1)))
      >>> model.apply(variables, jnp.zeros((3, 16, 16, 1)))[0].shape
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
            x = nn.relu(_norm(f"norm_{index}", features)(x))
        return _Head(self.num_classes, name="head")(x, train)
