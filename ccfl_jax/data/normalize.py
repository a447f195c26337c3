"""Spatial and signal normalization of CT (paper Sec. II-A), jittable.

Spatial: every volume is resampled onto one standard physical grid, by default the paper's lung
volume of 512 mm (cranio-caudal) x 334 mm x 334 mm, at a chosen voxel count, with Lanczos
interpolation (``jax.image.scale_and_translate``, anti-aliased when shrinking). The scan is
centred in that box; what lies outside is cropped and missing space is filled with air.
2D slices go to a fixed size (and, optionally, a fixed in-plane spacing).

Signal (Eq. 1): ``I_norm = (I - WL) / WW`` clipped to ``[-0.5, 0.5]``, with the window level WL and
width WW per scanner (:data:`WINDOW_PRESETS`), from the DICOM header, or given by the user.
Display images (PNG/JPG, 0..255) are mapped linearly onto the same range.

References:
  Kumar et al., "Blockchain-Federated-Learning and Deep Learning Models for COVID-19 detection
  using CT Imaging", arXiv 2007.06537 (IEEE Sensors Journal 21(14), 2021), Sec. II-A, Eq. 1.
"""

import functools
import types
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ccfl_jax.data import scan as scan_lib

LUNG_WINDOW = (-600.0, 1500.0)  # (level WL, width WW) in HU: the standard lung window
PAPER_LUNG_EXTENT_MM = (512.0, 334.0, 334.0)  # (z, y, x): the paper's standard lung volume

# Per-scanner (level, width) presets, keyed by lower-case "<manufacturer> <model>".
# The paper's Table II lists its scanners, but we could not retrieve its exact WL/WW numbers
# offline, so every preset uses the standard lung window WL = -600 HU, WW = 1500 HU. Entries
# cover the scanners of the bundled sample; override with `window=` where a site differs.
WINDOW_PRESETS = types.MappingProxyType(
    {
        "default": LUNG_WINDOW,
        "siemens somatom scope": LUNG_WINDOW,
        "siemens sensation 10": LUNG_WINDOW,
        "philips brilliance16": LUNG_WINDOW,
        "ge medical systems lightspeed vct": LUNG_WINDOW,
        "toshiba aquilion one": LUNG_WINDOW,
    }
)


def scanner_window(manufacturer: str | None, model: str | None) -> tuple[float, float]:
    """The ``(level, width)`` preset of a scanner, or the default lung window.

    Examples:
      >>> scanner_window("SIEMENS", "SOMATOM Scope")
      (-600.0, 1500.0)
      >>> scanner_window(None, None) == WINDOW_PRESETS["default"]
      True
    """
    key = " ".join(p for p in (manufacturer, model) if p).lower()
    return WINDOW_PRESETS.get(key, WINDOW_PRESETS["default"])


def window(image: jax.Array, level, width) -> jax.Array:
    """Windows HU into ``[-0.5, 0.5]`` (Eq. 1).

    Args:
      image: ``[...]`` in HU.
      level: window level WL in HU (scalar or broadcastable to ``image``).
      width: window width WW in HU, > 0.

    Returns:
      ``[...]`` float32 in ``[-0.5, 0.5]``.

    Examples:
      >>> window(jnp.array([-2000.0, -600.0, 150.0, 900.0]), -600.0, 1500.0)
      Array([-0.5,  0. ,  0.5,  0.5], dtype=float32)
    """
    image = jnp.asarray(image, jnp.float32)
    return jnp.clip((image - level) / width, -0.5, 0.5)  # Eq. 1


def display_to_unit(image: jax.Array, max_value: float = 255.0) -> jax.Array:
    """Maps display intensities ``0..max_value`` linearly onto ``[-0.5, 0.5]`` (clipped).

    Examples:
      >>> display_to_unit(jnp.array([0.0, 127.5, 255.0]))
      Array([-0.5,  0. ,  0.5], dtype=float32)
    """
    image = jnp.asarray(image, jnp.float32)
    return jnp.clip(image / max_value - 0.5, -0.5, 0.5)


def grid_transform(in_shape, in_spacing, out_shape, out_spacing):
    """Per-axis ``(scale, translation)`` that centres an input grid on an output grid.

    ``scale_and_translate`` maps input coordinate ``u`` to ``u * scale + translation`` (pixel
    units, centres at ``i + 0.5``); the centre of the input lands on the centre of the output.
    """
    in_shape = jnp.asarray(in_shape, jnp.float32)
    out_shape = jnp.asarray(out_shape, jnp.float32)
    scale = jnp.asarray(in_spacing, jnp.float32) / jnp.asarray(out_spacing, jnp.float32)
    translation = out_shape / 2 - in_shape / 2 * scale
    return scale, translation


@functools.partial(jax.jit, static_argnames=("shape", "method"))
def apply_transform(image, scale, translation, pad_value, *, shape, method="lanczos3"):
    """Resamples ``image`` with ``scale_and_translate`` (anti-aliased); outside is ``pad_value``."""
    image = jnp.asarray(image, jnp.float32)
    dims = tuple(range(image.ndim))
    shifted = jax.image.scale_and_translate(
        image - pad_value, shape, dims, scale, translation, method=method, antialias=True
    )
    return shifted + pad_value


def resample_volume(
    volume: jax.Array,
    spacing_mm: Sequence[float],
    *,
    extent_mm: Sequence[float] = PAPER_LUNG_EXTENT_MM,
    shape: tuple[int, int, int] = (128, 128, 128),
    method: str = "lanczos3",
    pad_value: float = scan_lib.AIR_HU,
) -> jax.Array:
    """Resamples a volume onto the standard physical grid (paper Sec. II-A-1).

    Args:
      volume: ``[Z, Y, X]`` (HU or normalized values).
      spacing_mm: ``(z, y, x)`` voxel spacing of ``volume``.
      extent_mm: physical size ``(z, y, x)`` of the output box; default 512 x 334 x 334 mm.
      shape: output voxel count ``(Z', Y', X')``; the output spacing is ``extent_mm / shape``.
      method: ``'lanczos3'``, ``'lanczos5'``, ``'linear'`` or ``'cubic'``.
      pad_value: value of the box outside the scan (air, -1024 HU, by default).

    Returns:
      ``[Z', Y', X']`` float32, the scan centred in the box.

    Examples:
      >>> v = jnp.full((10, 20, 20), 40.0)
      >>> out = resample_volume(v, (5.0, 2.0, 2.0), extent_mm=(100.0, 80.0, 80.0), shape=(10, 16, 16))
      >>> out.shape, round(float(out[5, 8, 8]), 2), round(float(out[0, 0, 0]), 2)
      ((10, 16, 16), 40.0, -1024.0)
    """
    out_spacing = jnp.asarray(extent_mm, jnp.float32) / jnp.asarray(shape, jnp.float32)
    scale, translation = grid_transform(volume.shape, spacing_mm, shape, out_spacing)
    return apply_transform(volume, scale, translation, pad_value, shape=tuple(shape), method=method)


def slice_transform(in_shape, spacing_mm, size: int, spacing_mm_target=None):
    """``(scale, translation)`` taking a ``[Y, X]`` slice to ``[size, size]``.

    Without a target spacing, the longer physical side fills the output (aspect kept); without
    a known spacing, pixels are taken as square.
    """
    spacing = (1.0, 1.0) if spacing_mm is None else spacing_mm
    if spacing_mm_target is None:
        extent = jnp.asarray(in_shape, jnp.float32) * jnp.asarray(spacing, jnp.float32)
        spacing_mm_target = jnp.max(extent) / size
    target = jnp.broadcast_to(jnp.asarray(spacing_mm_target, jnp.float32), (2,))
    return grid_transform(in_shape, spacing, (size, size), target)


def resample_slice(
    image: jax.Array,
    spacing_mm: Sequence[float] | None,
    *,
    size: int = 128,
    spacing_mm_target: float | Sequence[float] | None = None,
    method: str = "lanczos3",
    pad_value: float = scan_lib.AIR_HU,
) -> jax.Array:
    """Resamples a 2D slice to ``[size, size]``, centred.

    Args:
      image: ``[Y, X]``.
      spacing_mm: ``(y, x)`` pixel spacing, or ``None`` (PNG/JPG: square pixels assumed).
      size: output side in pixels.
      spacing_mm_target: output pixel spacing in mm (scalar or ``(y, x)``). ``None``: the
        longer side of the slice fills the output, keeping the aspect ratio.
      method: interpolation, as in :func:`resample_volume`.
      pad_value: value where the output lies outside the slice (-1024 HU; use 0 for display).

    Returns:
      ``[size, size]`` float32.

    Examples:
      >>> out = resample_slice(jnp.zeros((512, 256)), (0.7, 0.7), size=64, pad_value=-1.0)
      >>> [round(float(v), 3) for v in out[32, ::16]]  # the narrow side is padded
      [-1.0, 0.0, 0.0, -1.0]
    """
    scale, translation = slice_transform(image.shape, spacing_mm, size, spacing_mm_target)
    return apply_transform(image, scale, translation, pad_value, shape=(size, size), method=method)
