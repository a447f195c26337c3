"""One DICOM CT slice: header checks, pixel decoding and Hounsfield units.

HU = stored x RescaleSlope + RescaleIntercept, after the stored words are cut to BitsStored
(bits above it may carry overlays) and sign-extended when PixelRepresentation is 1. Padding
(PixelPaddingValue, optionally up to PixelPaddingRangeLimit, and the fill values <= -2000 HU that
scanners write outside the field of view, e.g. -3024 on GE and -2048 on Toshiba) is set to air.
"""

import os
import pathlib
import warnings

import numpy as np
import pydicom
import pydicom.errors
import pydicom.pixels
import pydicom.uid

from ccfl_jax import errors
from ccfl_jax.data import scan as scan_lib

FILL_HU_MAX = -2000.0  # HU at or below this is scanner fill outside the field of view
_DICOMDIR_SOP_CLASS = "1.2.840.10008.1.3.10"


def looks_like_dicom(path: str | os.PathLike) -> bool:
    """Whether a file starts like DICOM: ``DICM`` at byte 128, or a bare data set.

    A bare data set (no preamble, no file meta, as some scanners write) is recognized by its
    first element tag: group 0x0002 or 0x0008, little endian.
    """
    with open(path, "rb") as f:
        head = f.read(132)
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    return len(head) >= 8 and head[:2] in (b"\x02\x00", b"\x08\x00") and head[3:4] == b"\x00"


def read_dataset(path: str | os.PathLike) -> pydicom.Dataset:
    """Reads a DICOM header and pixel bytes; a file without preamble is read as Implicit VR LE.

    Raises:
      DicomReadError: the file cannot be parsed.
    """
    path = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Invalid value for VR UI" on UUID-style UIDs
            ds = pydicom.dcmread(path, force=not _has_preamble(path))
    except Exception as exc:  # pydicom raises many types (EOFError, struct.error, ...)
        raise errors.DicomReadError(
            f"{path}: cannot parse the DICOM header ({type(exc).__name__}: {exc}). The file is "
            "truncated or not DICOM; copy it again from the source or drop it from the input."
        ) from exc
    if len(ds) == 0:
        raise errors.DicomReadError(
            f"{path}: no data elements after the file meta; the file is truncated. Copy it "
            "again from the source or drop it from the input."
        )
    _set_missing_transfer_syntax(ds)
    return ds


def _set_missing_transfer_syntax(ds: pydicom.Dataset) -> None:
    """A bare data set has no file meta: record the encoding pydicom parsed it with."""
    if getattr(ds, "file_meta", None) is not None and "TransferSyntaxUID" in ds.file_meta:
        return
    implicit, little = ds.original_encoding
    if implicit is None:
        return
    syntax = {
        (True, True): pydicom.uid.ImplicitVRLittleEndian,
        (False, True): pydicom.uid.ExplicitVRLittleEndian,
        (False, False): pydicom.uid.ExplicitVRBigEndian,
    }.get((bool(implicit), bool(little)))
    if syntax is None:
        return
    if getattr(ds, "file_meta", None) is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax


def _has_preamble(path: str) -> bool:
    with open(path, "rb") as f:
        head = f.read(132)
    return head[128:132] == b"DICM"


def is_directory_record(ds: pydicom.Dataset) -> bool:
    """Whether a data set is a DICOMDIR (an index of files, not an image)."""
    sop = ds.get("MediaStorageSOPClassUID") or getattr(
        getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None
    )
    return str(sop) == _DICOMDIR_SOP_CLASS or "DirectoryRecordSequence" in ds


def is_localizer(ds: pydicom.Dataset) -> bool:
    """Whether an image is a scout / localizer (ImageType value 3 says LOCALIZER)."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "LOCALIZER" in image_type


def check_ct(ds: pydicom.Dataset, path: str) -> None:
    """Checks that a data set is a CT image with pixels and rescale tags.

    Raises:
      MissingPixelDataError: no PixelData.
      UnsupportedModalityError: Modality is not CT.
      MissingTagError: RescaleSlope or RescaleIntercept is absent.
    """
    if "PixelData" not in ds:
        raise errors.MissingPixelDataError(
            f"{path}: no PixelData element, so there is no image (a structured report, a "
            "DICOMDIR or a file cut short). Leave it out of the input or copy it again."
        )
    modality = ds.get("Modality")
    if modality != "CT":
        raise errors.UnsupportedModalityError(
            f"{path}: Modality is {modality!r}, not 'CT', so its pixels are not Hounsfield "
            "units. Give only CT series to the CT reader (or convert the images to PNG and "
            "read them as display intensities)."
        )
    missing = [t for t in ("RescaleSlope", "RescaleIntercept") if t not in ds]
    if missing:
        raise errors.MissingTagError(
            f"{path}: CT image without {' and '.join(missing)} (Type 1 in the CT Image module), "
            "so Hounsfield units cannot be derived. Fix the header at the source; this reader "
            "does not guess an intercept."
        )


def pixel_spacing(ds: pydicom.Dataset, path: str) -> tuple[float, float]:
    """``(row spacing, column spacing)`` in mm from PixelSpacing.

    Raises:
      MissingTagError: PixelSpacing is absent or not two positive numbers.
    """
    value = ds.get("PixelSpacing")
    try:
        row, col = (float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise errors.MissingTagError(
            f"{path}: PixelSpacing is {value!r}; two positive numbers (mm) are needed to place "
            "the image on a physical grid. Fix the header or convert the file with its spacing."
        ) from exc
    if not (row > 0 and col > 0):
        raise errors.MissingTagError(f"{path}: PixelSpacing {value!r} is not positive.")
    return row, col


def header_windows(ds: pydicom.Dataset) -> tuple[tuple[float, float], ...]:
    """VOI windows ``((center, width), ...)`` from WindowCenter/WindowWidth, the default first."""
    centers, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centers is None or widths is None:
        return ()

    def as_list(v) -> list[float]:
        return [float(x) for x in (v if isinstance(v, pydicom.multival.MultiValue) else [v])]

    return tuple(zip(as_list(centers), as_list(widths), strict=False))


def _decode(ds: pydicom.Dataset, path: str) -> np.ndarray:
    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if syntax is not None and syntax.is_compressed:
        decoder = pydicom.pixels.get_decoder(syntax)
        if decoder is None or not decoder.is_available:
            raise errors.MissingDecoderError(
                f"{path}: pixel data are compressed ({syntax.name}, {syntax}) and no installed "
                "plugin decodes them. Install one, e.g. `pip install pylibjpeg pylibjpeg-libjpeg "
                "pylibjpeg-openjpeg` (or python-gdcm)."
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(ds.pixel_array)
    except Exception as exc:
        raise errors.DicomReadError(
            f"{path}: the pixel data cannot be decoded ({type(exc).__name__}: {exc}); the file "
            "is probably truncated. Copy it again from the source or drop it from the input."
        ) from exc


def stored_values(ds: pydicom.Dataset, raw: np.ndarray) -> np.ndarray:
    """Stored pixel values as int64: bits above BitsStored cleared, then sign-extended."""
    bits = int(ds.get("BitsStored") or ds.get("BitsAllocated") or 16)
    high = int(ds.get("HighBit", bits - 1))
    words = raw.astype(np.int64) & 0xFFFFFFFF
    words = (words >> (high + 1 - bits)) & ((1 << bits) - 1)
    if int(ds.get("PixelRepresentation", 0)) == 1:
        sign = 1 << (bits - 1)
        words = (words ^ sign) - sign
    return words


def _padding_value(ds: pydicom.Dataset, tag: str) -> int | None:
    value = ds.get(tag)
    if value is None:
        return None
    value = int(value)
    if int(ds.get("PixelRepresentation", 0)) == 1 and value >= 1 << 15:
        value -= 1 << 16  # US-or-SS read as unsigned in Implicit VR
    return value


def padding_mask(ds: pydicom.Dataset, stored: np.ndarray, hu: np.ndarray) -> np.ndarray:
    """Pixels that are padding: PixelPaddingValue (range) or scanner fill <= -2000 HU."""
    mask = hu <= FILL_HU_MAX
    pad = _padding_value(ds, "PixelPaddingValue")
    if pad is not None:
        limit = _padding_value(ds, "PixelPaddingRangeLimit")
        lo, hi = (pad, pad) if limit is None else (min(pad, limit), max(pad, limit))
        mask |= (stored >= lo) & (stored <= hi)
    return mask


def slice_hu(ds: pydicom.Dataset, path: str) -> tuple[np.ndarray, int]:
    """Hounsfield units of one CT slice, padding set to air.

    Args:
      ds: a data set that passed :func:`check_ct`.
      path: its file, for error messages.

    Returns:
      ``(hu, n_padding)``: hu float32 ``[Y, X]`` and how many pixels were padding.

    Raises:
      MissingDecoderError, DicomReadError, NonFinitePixelsError.
    """
    raw = _decode(ds, path)
    if raw.ndim != 2:
        raise errors.UnsupportedFormatError(
            f"{path}: pixel array has shape {raw.shape}; only single-frame grey CT slices are "
            "read. Split multi-frame or colour images into single slices first."
        )
    stored = stored_values(ds, raw)
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    hu = stored * slope + intercept  # HU = stored x slope + intercept
    if not np.all(np.isfinite(hu)):
        raise errors.NonFinitePixelsError(
            f"{path}: {np.size(hu) - np.isfinite(hu).sum()} pixels are NaN or infinite after "
            f"rescale (slope {slope}, intercept {intercept}). Fix the rescale tags at the source."
        )
    pad = padding_mask(ds, stored, hu)
    hu = np.where(pad, scan_lib.AIR_HU, hu).astype(np.float32)
    return hu, int(pad.sum())


def scanner_metadata(ds: pydicom.Dataset) -> dict:
    """ScanMetadata fields common to every slice of a series."""
    thickness = ds.get("SliceThickness")
    return {
        "file_format": "dicom",
        "units": "HU",
        "modality": ds.get("Modality"),
        "manufacturer": str(ds.get("Manufacturer") or "") or None,
        "model": str(ds.get("ManufacturerModelName") or "") or None,
        "windows": header_windows(ds),
        "slice_thickness_mm": float(thickness) if thickness not in (None, "") else None,
    }


def read_dicom_file(path: str | os.PathLike) -> scan_lib.Scan:
    """Reads one DICOM CT slice as a 2D scan in HU.

    Args:
      path: a DICOM file (with or without the 128-byte preamble).

    Returns:
      A :class:`Scan` with ``array`` float32 ``[Y, X]`` in HU and ``spacing_mm`` ``(y, x)``.

    Raises:
      ScanNotFoundError, DicomReadError, MissingPixelDataError, UnsupportedModalityError,
      MissingTagError, MissingDecoderError, NonFinitePixelsError.
    """
    path = str(path)
    if not pathlib.Path(path).is_file():
        raise errors.ScanNotFoundError(f"{path}: no such file. Check the path.")
    ds = read_dataset(path)
    check_ct(ds, path)
    spacing = pixel_spacing(ds, path)
    hu, n_pad = slice_hu(ds, path)
    meta = scan_lib.ScanMetadata(source_paths=(path,), padding_pixels=n_pad, **scanner_metadata(ds))
    return scan_lib.Scan(hu, spacing, meta)
