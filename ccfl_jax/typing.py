"""Type aliases shared across ccfl_jax. Shapes use named axes: H hospitals, N examples."""

from typing import Any

import chex

Array = chex.Array
ArrayTree = chex.ArrayTree
PRNGKey = chex.PRNGKey
Params = Any  # a pytree of arrays (Flax params dict)
Deltas = Any  # a pytree of arrays with a leading hospital axis [H, ...]
Mask = chex.Array  # bool or {0, 1} mask, e.g. [H] or [H, N]

__all__ = ["Array", "ArrayTree", "PRNGKey", "Params", "Deltas", "Mask"]
