"""Per-voxel probabilities of a 3D volume from a 2D model run over its three planes (Eq. 2-3).

A volume ``[Z, Y, X]`` is cut into axial (XY, one slice per z), coronal (XZ, one per y) and
sagittal (YZ, one per x) slices; a 2D segmentation function gives each slice a probability map;
the three resulting volumes are combined voxel by voxel by an aggregation g: the mean (default),
the max, or a learned convex combination (softmax of three weights).

The 2D function must accept slices of each plane's shape: [N, Y, X, 1], [N, Z, X, 1] and
[N, Z, Y, 1] (for SegCaps, every side divisible by 8).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ccfl_jax.errors import ModelConfigError
from ccfl_jax.typing import Array

PLANES = ("xy", "xz", "yz")
AGGREGATIONS = ("mean", "max", "weighted")


def plane_probabilities(
    predict_slices: Callable[[Array], Array], volume: Array, *, batch_size: int | None = None
) -> Array:
    """Runs ``predict_slices`` over the XY, XZ and YZ slices of ``volume``.

    Args:
      predict_slices: maps slices ``[N, A, B, 1]`` to probabilities ``[N, A, B, 1]``; pure.
      volume: [Z, Y, X].
      batch_size: slices per call (``jax.lax.map`` batches); None runs all slices of a plane
        at once.

    Returns:
      [3, Z, Y, X]: the probability volumes from the XY, XZ and YZ planes, in ``PLANES`` order.

    Examples:
      >>> import jax.numpy as jnp
      >>> plane_probabilities(lambda s: s * 0 + 0.25, jnp.zeros((8, 16, 24))).shape
      (3, 8, 16, 24)
    """
    if volume.ndim != 3:
        raise ModelConfigError(f"volume has shape {volume.shape}; multiplane needs [Z, Y, X].")

    def run(slices: Array) -> Array:
        slices = slices[..., None]
        if batch_size is None:
            return predict_slices(slices)[..., 0]
        per_slice = lambda s: predict_slices(s[None])[0]  # noqa: E731
        return jax.lax.map(per_slice, slices, batch_size=batch_size)[..., 0]

    axial = run(volume)  # Eq. 2: P_xy over slices z
    coronal = run(volume.transpose(1, 0, 2)).transpose(1, 0, 2)  # Eq. 2: P_xz over slices y
    sagittal = run(volume.transpose(2, 0, 1)).transpose(1, 2, 0)  # Eq. 2: P_yz over slices x
    return jnp.stack([axial, coronal, sagittal])


def aggregate(per_plane: Array, method: str = "mean", weights: Array | None = None) -> Array:
    """Combines ``per_plane [3, ...]`` voxel by voxel into ``[...]`` (Eq. 3).

    Args:
      per_plane: [3, Z, Y, X] probabilities from the three planes.
      method: ``'mean'``, ``'max'`` or ``'weighted'`` (softmax(weights) convex combination).
      weights: [3] learnable logits for ``'weighted'``; zeros give the mean.

    Examples:
      >>> import jax.numpy as jnp
      >>> p = jnp.array([0.2, 0.4, 0.9])
      >>> float(aggregate(p, 'max')), round(float(aggregate(p, 'mean')), 4)
      (0.8999999761581421, 0.5)
    """
    if method not in AGGREGATIONS:
        raise ModelConfigError(f"aggregation {method!r} is not one of {AGGREGATIONS}.")
    if method == "mean":
        return jnp.mean(per_plane, axis=0)  # Eq. 3 with g = mean
    if method == "max":
        return jnp.max(per_plane, axis=0)
    if weights is None or jnp.shape(weights) != (3,):
        raise ModelConfigError(
            f"'weighted' aggregation needs weights of shape (3,), got {jnp.shape(weights)}; "
            "start from jnp.zeros(3) (the mean) and learn them."
        )
    convex = jax.nn.softmax(weights)
    return jnp.tensordot(convex, per_plane, axes=1)  # Eq. 3 with learned g


def multiplane_probability(
    predict_slices: Callable[[Array], Array],
    volume: Array,
    *,
    method: str = "mean",
    weights: Array | None = None,
    batch_size: int | None = None,
) -> Array:
    """Per-voxel probability ``[Z, Y, X]`` of ``volume [Z, Y, X]`` from three planes (Eq. 2-3).

    Jit it with ``predict_slices`` closed over (e.g. ``lambda s: segcaps.apply(v, s)[0]``) and
    ``method`` / ``batch_size`` static.
    """
    per_plane = plane_probabilities(predict_slices, volume, batch_size=batch_size)
    return aggregate(per_plane, method, weights)
