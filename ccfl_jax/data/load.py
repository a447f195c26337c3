"""``read_scan``: one entry point that picks the reader from the content, not the extension."""

import os
import pathlib

from ccfl_jax import errors
from ccfl_jax.data import dicom, image, nifti, series
from ccfl_jax.data import scan as scan_lib

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
_GZIP_MAGIC = b"\x1f\x8b"


def sniff_format(path: str | os.PathLike) -> str:
    """The format of a file from its first bytes: 'dicom', 'nifti', 'png' or 'jpg'.

    Raises:
      UnsupportedFormatError: none of these.
    """
    with open(path, "rb") as f:
        head = f.read(352)
    if head.startswith(_PNG_MAGIC):
        return "png"
    if head.startswith(_JPEG_MAGIC):
        return "jpg"
    if head.startswith(_GZIP_MAGIC) and str(path).endswith(".nii.gz"):
        return "nifti"
    if len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00"):
        return "nifti"
    if dicom.looks_like_dicom(path):
        return "dicom"
    raise errors.UnsupportedFormatError(
        f"{path}: not DICOM, NIfTI (.nii/.nii.gz), PNG or JPEG by its content. Convert it to one "
        "of these or remove it from the input."
    )


def read_dicom(path: str | os.PathLike) -> scan_lib.Scan:
    """Reads a DICOM CT file (2D ``[Y, X]``) or a series folder (3D ``[Z, Y, X]``) in HU.

    See :func:`ccfl_jax.data.dicom.read_dicom_file` and
    :func:`ccfl_jax.data.series.read_dicom_series` for the rules and errors.
    """
    if pathlib.Path(path).is_dir():
        return series.read_dicom_series(path)
    return dicom.read_dicom_file(path)


_READERS = {
    "dicom": dicom.read_dicom_file,
    "nifti": nifti.read_nifti,
    "png": image.read_image,
    "jpg": image.read_image,
}


def read_scan(path: str | os.PathLike) -> scan_lib.Scan:
    """Reads any supported scan: a DICOM series folder, or a DICOM, NIfTI, PNG or JPEG file.

    Args:
      path: a file or a DICOM series folder.

    Returns:
      A :class:`ccfl_jax.data.Scan`.

    Raises:
      ScanNotFoundError: the path does not exist.
      UnsupportedFormatError: the content is none of the supported formats.
      And the errors of the matching reader.

    Examples:
      >>> import pydicom.data
      >>> scan = read_scan(pydicom.data.get_testdata_file("CT_small.dcm"))
      >>> scan.array.shape, scan.metadata.units, scan.metadata.file_format
      ((128, 128), 'HU', 'dicom')
    """
    path = pathlib.Path(path)
    if path.is_dir():
        return series.read_dicom_series(path)
    if not path.is_file():
        raise errors.ScanNotFoundError(
            f"{path}: no such file or folder. Check the path (manifest paths are relative to "
            "the manifest's folder)."
        )
    return _READERS[sniff_format(path)](path)
