"""A DICOM series folder: pick the slices, sort them along the slice normal, check the geometry.

Slices are sorted by ImagePositionPatient projected on the normal of ImageOrientationPatient
(row x column), largest first, i.e. most cranial first for axial CT; file names never matter.
The step between neighbouring positions gives the slice spacing. A stack is refused when its
slices differ in orientation or size, share a position, step unevenly (a missing slice) or step
off the normal (gantry tilt): each of those would otherwise become a volume with wrong geometry.
"""

import os
import pathlib

import numpy as np

from ccfl_jax import errors
from ccfl_jax.data import dicom
from ccfl_jax.data import scan as scan_lib

_POSITION_TOL_MM = 1e-3  # positions closer than this are the same position
_STEP_REL_TOL = 0.01  # steps may differ by 1 % (rounding in headers)
_IGNORED_NAMES = frozenset({"case.json"})


def _orientation(ds, path: str) -> np.ndarray:
    value = ds.get("ImageOrientationPatient")
    if value is None or len(value) != 6:
        raise errors.MissingTagError(
            f"{path}: ImageOrientationPatient is {value!r}; six direction cosines are needed to "
            "order the slices of a series. Fix the header, or read the file on its own."
        )
    return np.asarray([float(v) for v in value], np.float64).reshape(2, 3)


def _position(ds, path: str) -> np.ndarray:
    value = ds.get("ImagePositionPatient")
    if value is None or len(value) != 3:
        raise errors.MissingTagError(
            f"{path}: no ImagePositionPatient, so the slice cannot be placed in the series. "
            "Fix the header or remove the file; slices are never placed by file name or "
            "InstanceNumber."
        )
    return np.asarray([float(v) for v in value], np.float64)


def _collect(folder: pathlib.Path):
    """Splits a folder into CT image data sets, localizers and ignored files."""
    images, excluded, ignored = [], [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.name in _IGNORED_NAMES or not dicom.looks_like_dicom(path):
            ignored.append(path.name)
            continue
        ds = dicom.read_dataset(path)
        if dicom.is_directory_record(ds):
            ignored.append(path.name)
        elif dicom.is_localizer(ds):
            excluded.append(path.name)
        else:
            images.append((str(path), ds))
    if not images:
        raise errors.UnsupportedFormatError(
            f"{folder}: no DICOM image slice found (ignored: {ignored or 'nothing'}, localizers: "
            f"{excluded or 'none'}). Point at the folder that holds the series' .dcm files."
        )
    return images, excluded, ignored


def _check_same(images, key, what: str) -> None:
    values = {}
    for path, ds in images:
        values.setdefault(key(ds, path), []).append(os.path.basename(path))
    if len(values) > 1:
        detail = "; ".join(f"{k}: {v[:3]}" for k, v in values.items())
        raise errors.InconsistentSeriesError(
            f"{os.path.dirname(images[0][0])}: slices differ in {what} ({detail}). Put each "
            "series in its own folder and read them one by one."
        )


def sort_slices(images) -> tuple[list, float]:
    """Sorts ``[(path, ds), ...]`` most cranial first and returns them with the slice spacing.

    Raises:
      MissingTagError, InconsistentSeriesError, DuplicateSlicePositionError,
      NonUniformSpacingError.
    """
    _check_same(
        images, lambda ds, p: tuple(np.round(_orientation(ds, p), 4).ravel()), "orientation"
    )
    rows, cols = _orientation(*images[0][::-1])
    normal = np.cross(rows, cols)
    positions = np.stack([_position(ds, p) for p, ds in images])
    along = positions @ normal
    order = np.argsort(-along, kind="stable")
    images = [images[i] for i in order]
    positions, along = positions[order], along[order]
    if len(images) == 1:
        thickness = images[0][1].get("SliceThickness")
        if thickness in (None, ""):
            raise errors.MissingTagError(
                f"{images[0][0]}: a lone slice without SliceThickness has no slice spacing."
            )
        return images, float(thickness)
    names = [os.path.basename(p) for p, _ in images]
    steps = -np.diff(along)
    for k in np.flatnonzero(steps < _POSITION_TOL_MM):
        raise errors.DuplicateSlicePositionError(
            f"{names[k]} and {names[k + 1]} lie at the same position ({along[k]:.3f} mm along "
            "the slice normal). The folder holds a repeated slice or two series; remove the "
            "duplicate or split the series."
        )
    spacing = float(np.median(steps))
    for k in np.flatnonzero(np.abs(steps - spacing) > _STEP_REL_TOL * spacing):
        raise errors.NonUniformSpacingError(
            f"uneven slice spacing: positions step {spacing:.4g} mm except {steps[k]:.4g} mm "
            f"between {names[k]} and {names[k + 1]} (a missing slice?). The slices cannot form a "
            "regular grid; supply the complete series."
        )
    shear = positions[1:] - positions[:-1] + steps[:, None] * normal[None, :]
    off_normal = np.linalg.norm(shear, axis=1)
    if np.max(off_normal) > _STEP_REL_TOL * spacing + _POSITION_TOL_MM:
        tilt = np.degrees(np.arctan2(np.max(off_normal), spacing))
        raise errors.InconsistentSeriesError(
            f"{os.path.dirname(images[0][0])}: sheared stack (gantry tilt about {tilt:.1f} deg): "
            f"slice positions step {np.max(off_normal):.4g} mm off the slice normal. Resample the "
            "series onto an orthogonal grid first (e.g. dcm2niix, which corrects gantry tilt)."
        )
    return images, spacing


def read_dicom_series(folder: str | os.PathLike) -> scan_lib.Scan:
    """Reads a DICOM CT series folder as a volume in HU.

    Non-DICOM files and DICOMDIR are ignored and localizers excluded (both listed in the
    metadata); every other file must be a slice of one regular, orthogonal stack.

    Args:
      folder: the series folder.

    Returns:
      A :class:`Scan` with ``array`` float32 ``[Z, Y, X]`` (most cranial first) in HU and
      ``spacing_mm`` ``(z, y, x)``.

    Raises:
      UnsupportedFormatError, InconsistentSeriesError, DuplicateSlicePositionError,
      NonUniformSpacingError, and any error of :func:`ccfl_jax.data.dicom.read_dicom_file`.
    """
    folder = pathlib.Path(folder)
    images, excluded, ignored = _collect(folder)
    for path, ds in images:
        dicom.check_ct(ds, path)
    _check_same(images, lambda ds, p: str(ds.get("SeriesInstanceUID")), "SeriesInstanceUID")
    _check_same(images, lambda ds, p: (int(ds.Rows), int(ds.Columns)), "matrix size")
    _check_same(images, lambda ds, p: dicom.pixel_spacing(ds, p), "PixelSpacing")
    images, z_spacing = sort_slices(images)
    slices, n_pad = [], 0
    for path, ds in images:
        hu, pad = dicom.slice_hu(ds, path)
        slices.append(hu)
        n_pad += pad
    first_path, first = images[0]
    meta = scan_lib.ScanMetadata(
        source_paths=tuple(p for p, _ in images),
        slice_files=tuple(os.path.basename(p) for p, _ in images),
        padding_pixels=n_pad,
        excluded_files=tuple(excluded),
        ignored_files=tuple(ignored),
        **dicom.scanner_metadata(first),
    )
    spacing = (z_spacing, *dicom.pixel_spacing(first, first_path))
    return scan_lib.Scan(np.stack(slices), spacing, meta)
