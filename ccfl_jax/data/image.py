"""PNG and JPEG slices: display intensities (already windowed by someone else), not HU.

Colour files with grey content (R = G = B, as most exported CT slices are) give that grey channel
exactly; real colour is turned to grey with ITU-R 601 luma (Pillow's ``convert('L')``). Alpha is
dropped. Spacing is unknown (NaN).
"""

import os
import pathlib

import numpy as np
import PIL.Image

from ccfl_jax import errors
from ccfl_jax.data import scan as scan_lib

_FORMATS = {"PNG": "png", "JPEG": "jpg", "MPO": "jpg"}


def _grey(image: PIL.Image.Image) -> np.ndarray:
    if image.mode in ("L", "I", "I;16", "F"):
        return np.asarray(image, dtype=np.float32)
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    return np.asarray(image.convert("RGB").convert("L"), dtype=np.float32)


def read_image(path: str | os.PathLike) -> scan_lib.Scan:
    """Reads a PNG or JPEG slice as one grey channel of display intensities.

    Args:
      path: the image file.

    Returns:
      A :class:`Scan` with ``array`` float32 ``[Y, X]`` (0..255 for 8-bit files), ``spacing_mm``
      ``(nan, nan)`` and ``metadata.units == 'display'``.

    Raises:
      ScanNotFoundError, UnsupportedFormatError.
    """
    path = str(path)
    if not pathlib.Path(path).is_file():
        raise errors.ScanNotFoundError(f"{path}: no such file. Check the path.")
    try:
        with PIL.Image.open(path) as image:
            image.load()
            file_format = _FORMATS.get(image.format)
            channels = len(image.getbands())
            grey = _grey(image)
    except (OSError, SyntaxError, ValueError) as exc:
        raise errors.UnsupportedFormatError(
            f"{path}: Pillow cannot decode it ({type(exc).__name__}: {exc}). The file is "
            "truncated or not an image; copy it again or drop it."
        ) from exc
    if file_format is None:
        raise errors.UnsupportedFormatError(
            f"{path}: image format {image.format!r} is not PNG or JPEG. Convert it to PNG."
        )
    meta = scan_lib.ScanMetadata(
        source_paths=(path,), file_format=file_format, units="display", channels_in_file=channels
    )
    return scan_lib.Scan(grey, (float("nan"), float("nan")), meta)
