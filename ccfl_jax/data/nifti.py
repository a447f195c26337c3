"""NIfTI volumes through nibabel, turned into the ``[Z, Y, X]`` cranial-first order.

nibabel's ``affine`` is the sform when ``sform_code > 0`` and the qform otherwise, so a stale
sform with code 0 is ignored. The volume is reoriented to the closest canonical (RAS+) axes and
then flipped into the DICOM-like order used by every reader here: Z head to feet, Y anterior to
posterior (rows), X patient right to left (columns). Spacing is the length of the affine's columns.
"""

import os
import pathlib

import nibabel as nib
import numpy as np

from ccfl_jax import errors
from ccfl_jax.data import scan as scan_lib


def read_nifti(path: str | os.PathLike) -> scan_lib.Scan:
    """Reads a 3D NIfTI volume (``.nii`` or ``.nii.gz``), assumed to hold CT in HU.

    Args:
      path: the NIfTI file.

    Returns:
      A :class:`Scan` with ``array`` float32 ``[Z, Y, X]`` (most cranial first), ``spacing_mm``
      ``(z, y, x)``, and the applied affine and the file's axis codes in the metadata.

    Raises:
      ScanNotFoundError: no such file.
      UnsupportedFormatError: nibabel cannot read it, or it is not 3D.
      NonFinitePixelsError: the volume holds NaN or infinite values.
    """
    path = str(path)
    if not pathlib.Path(path).is_file():
        raise errors.ScanNotFoundError(f"{path}: no such file. Check the path.")
    try:
        image = nib.load(path)
    except Exception as exc:
        raise errors.UnsupportedFormatError(
            f"{path}: nibabel cannot read it as NIfTI ({type(exc).__name__}: {exc}). Check that "
            "the file is complete (gzip files must not be truncated)."
        ) from exc
    data = np.squeeze(np.asarray(image.dataobj, dtype=np.float32))
    if data.ndim != 3:
        raise errors.UnsupportedFormatError(
            f"{path}: the image has shape {image.shape}; only single 3D volumes are read. Split "
            "4D series into 3D volumes first."
        )
    bad = int(np.size(data) - np.isfinite(data).sum())
    if bad:
        raise errors.NonFinitePixelsError(
            f"{path}: {bad} voxels are NaN or infinite. Fill or mask them before ingest "
            "(e.g. with the scanner's air value, -1024 HU)."
        )
    axcodes = tuple(nib.aff2axcodes(image.affine))
    canonical = nib.as_closest_canonical(nib.Nifti1Image(data, image.affine))
    ras = np.asarray(canonical.dataobj, dtype=np.float32)  # [i: to R, j: to A, k: to S]
    volume = np.ascontiguousarray(ras[::-1, ::-1, ::-1].transpose(2, 1, 0))  # [S->I, A->P, R->L]
    zooms = np.linalg.norm(canonical.affine[:3, :3], axis=0)
    meta = scan_lib.ScanMetadata(
        source_paths=(path,),
        file_format="nifti",
        units="HU",
        affine=tuple(tuple(float(v) for v in row) for row in image.affine),
        axcodes=axcodes,
    )
    return scan_lib.Scan(volume, tuple(float(z) for z in zooms[::-1]), meta)
