"""One manifest row -> one normalized ``[S, S]`` slice in ``[-0.5, 0.5]``, and the npz cache.

A CT row (HU) is resampled (Lanczos, air outside) and then windowed (Eq. 1) with the scanner's
preset, the header's default window, or a fixed ``(level, width)``; a display row (PNG/JPG) is
resampled (black outside) and mapped by :func:`display_to_unit`. A series folder or a volume
contributes its middle slice. Inputs are padded up to a multiple of 128 pixels per side before
the jitted resampler runs, so a few compilations serve images of every size.
"""

import hashlib
import json
import os
import pathlib

import numpy as np

from ccfl_jax import errors
from ccfl_jax.data import load, normalize
from ccfl_jax.data import scan as scan_lib
from ccfl_jax.data.manifest import ManifestRow

_BUCKET = 128
_CACHE_VERSION = 2


def check_window(window) -> None:
    """``None`` (scanner preset), ``'header'``, or ``(level, width)`` with width > 0.

    Raises:
      InvalidSplitError: anything else.
    """
    if window is None or window == "header":
        return
    try:
        level, width = (float(v) for v in window)
    except (TypeError, ValueError) as exc:
        raise errors.InvalidSplitError(
            f"window={window!r}: use None (per-scanner preset), 'header' or (level, width)."
        ) from exc
    if not width > 0:
        raise errors.InvalidSplitError(f"window={window!r}: the width must be > 0 HU.")


def choose_window(meta: scan_lib.ScanMetadata, window) -> tuple[float, float]:
    """The ``(level, width)`` used for a CT scan under the ``window`` setting."""
    if window is None or (window == "header" and not meta.windows):
        return normalize.scanner_window(meta.manufacturer, meta.model)
    if window == "header":
        return meta.windows[0]
    level, width = window
    return float(level), float(width)


def _pad_to_bucket(image: np.ndarray, pad_value: float) -> np.ndarray:
    shape = [-(-n // _BUCKET) * _BUCKET for n in image.shape]
    out = np.full(shape, pad_value, np.float32)
    out[: image.shape[0], : image.shape[1]] = image
    return out


def normalized_slice(
    scan: scan_lib.Scan,
    *,
    image_size: int,
    window=None,
    extent_mm: float | None = normalize.PAPER_LUNG_EXTENT_MM[1],
) -> tuple[np.ndarray, tuple[float, float] | None]:
    """Normalizes a 2D scan (or a volume's middle slice) to ``[image_size, image_size]``.

    A scan with known spacing is resampled to ``extent_mm / image_size`` mm per pixel (the
    paper's 334 mm lung field of view by default, centred); ``extent_mm=None`` or an unknown
    spacing (PNG/JPG) fits the longer side of the image instead.

    Returns:
      ``(image, window_used)``: image float32 ``[S, S]`` in ``[-0.5, 0.5]``; the ``(level,
      width)`` applied, or ``None`` for display images.
    """
    scan = scan.middle_slice()
    hu = scan.metadata.units == "HU"
    pad_value = scan_lib.AIR_HU if hu else 0.0
    spacing = scan.spacing_mm if scan.spacing_known else None
    target = None if spacing is None or extent_mm is None else extent_mm / image_size
    scale, translation = normalize.slice_transform(scan.array.shape, spacing, image_size, target)
    resampled = normalize.apply_transform(
        _pad_to_bucket(scan.array, pad_value),
        scale,
        translation,
        pad_value,
        shape=(image_size, image_size),
    )
    if not hu:
        return np.asarray(normalize.display_to_unit(resampled)), None
    level, width = choose_window(scan.metadata, window)
    return np.asarray(normalize.window(resampled, level, width)), (level, width)


def row_slice(row: ManifestRow, *, image_size: int, window=None, extent_mm=None):
    """Reads and normalizes one manifest row: ``(image [S, S], scanner, window_used)``."""
    scan = load.read_scan(row.path)
    image, used = normalized_slice(scan, image_size=image_size, window=window, extent_mm=extent_mm)
    return image, scan.metadata.scanner, used


def cache_key(manifest_path: str | os.PathLike, rows, settings: dict) -> str:
    """sha256 over the manifest's bytes, the selected rows and the settings."""
    digest = hashlib.sha256(pathlib.Path(manifest_path).read_bytes())
    digest.update(json.dumps([str(r.path) for r in rows]).encode())
    digest.update(json.dumps({**settings, "version": _CACHE_VERSION}, sort_keys=True).encode())
    return digest.hexdigest()[:24]


def save_cache(path: pathlib.Path, images: np.ndarray, info: list) -> None:
    """Writes images ``[R, S, S]`` and per-row info (JSON) to ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, images=images, info=np.asarray(json.dumps(info)))
    os.replace(tmp, path)


def load_cache(path: pathlib.Path):
    """``(images, info)`` from :func:`save_cache`, or ``None`` when absent."""
    if not path.is_file():
        return None
    with np.load(path) as data:
        return data["images"], json.loads(str(data["info"]))
