"""The one record type every reader returns: an array, its spacing and its metadata.

Axis conventions (all readers):
  volumes are ``[Z, Y, X]``: Z runs from the most cranial slice to the most caudal one, Y along the
  image rows (DICOM ``PixelSpacing[0]``) and X along the columns (``PixelSpacing[1]``);
  2D images are ``[Y, X]``. ``spacing_mm`` follows the same order.
"""

import dataclasses
import math

import numpy as np

AIR_HU = -1024.0  # value given to padding / outside-field-of-view pixels


@dataclasses.dataclass(frozen=True)
class ScanMetadata:
    """What a reader learnt about a scan besides its pixels.

    Attributes:
      source_paths: the file(s) read, in slice order for a series (most cranial first).
      file_format: ``'dicom'``, ``'nifti'``, ``'png'`` or ``'jpg'``.
      units: ``'HU'`` (Hounsfield units) or ``'display'`` (8-bit display intensities, 0..255).
      modality: DICOM Modality (``'CT'``), or ``None`` when the format has none.
      manufacturer: scanner manufacturer, ``None`` when unknown.
      model: scanner model name, ``None`` when unknown.
      windows: ``((center, width), ...)`` VOI windows from the header, the default first.
      slice_files: file names of the slices of a series, most cranial first (empty otherwise).
      padding_pixels: how many pixels were padding / outside the field of view (set to air).
      excluded_files: DICOM files of the folder left out of the volume (localizer images).
      ignored_files: files of the folder that are not images (DICOMDIR, text, ``case.json``).
      slice_thickness_mm: DICOM SliceThickness, ``None`` when absent.
      affine: NIfTI voxel-to-RAS+ matrix that was applied (4 x 4 nested tuples), else ``None``.
      axcodes: NIfTI axis codes of the file's array order (e.g. ``('L', 'P', 'S')``), else ``None``.
      channels_in_file: PNG/JPG channels in the file (1, 2, 3 or 4), else ``None``.
    """

    source_paths: tuple[str, ...]
    file_format: str
    units: str
    modality: str | None = None
    manufacturer: str | None = None
    model: str | None = None
    windows: tuple[tuple[float, float], ...] = ()
    slice_files: tuple[str, ...] = ()
    padding_pixels: int = 0
    excluded_files: tuple[str, ...] = ()
    ignored_files: tuple[str, ...] = ()
    slice_thickness_mm: float | None = None
    affine: tuple[tuple[float, ...], ...] | None = None
    axcodes: tuple[str, ...] | None = None
    channels_in_file: int | None = None

    @property
    def source_path(self) -> str:
        """The first (or only) file read."""
        return self.source_paths[0]

    @property
    def scanner(self) -> str:
        """``'<manufacturer> <model>'``, or ``'unknown'`` when neither is known."""
        name = " ".join(p for p in (self.manufacturer, self.model) if p)
        return name or "unknown"


@dataclasses.dataclass(frozen=True)
class Scan:
    """A CT volume or slice, or a display image, with its geometry.

    Attributes:
      array: float32 ``[Z, Y, X]`` for volumes or ``[Y, X]`` for 2D images; HU for CT and
        display intensities 0..255 for PNG/JPG (see ``metadata.units``).
      spacing_mm: ``(z, y, x)`` or ``(y, x)`` in mm; NaN where the format stores none (PNG/JPG).
      metadata: a :class:`ScanMetadata`.
    """

    array: np.ndarray
    spacing_mm: tuple[float, ...]
    metadata: ScanMetadata

    @property
    def spacing_known(self) -> bool:
        """Whether every entry of ``spacing_mm`` is a real number (False for PNG/JPG)."""
        return not any(math.isnan(s) for s in self.spacing_mm)

    def middle_slice(self) -> "Scan":
        """The middle Z slice of a volume as a 2D scan (a 2D scan is returned unchanged).

        Examples:
          >>> vol = Scan(np.zeros((5, 4, 3), np.float32), (2.0, 1.0, 1.0),
          ...            ScanMetadata(('x.nii',), 'nifti', 'HU'))
          >>> vol.middle_slice().array.shape, vol.middle_slice().spacing_mm
          ((4, 3), (1.0, 1.0))
        """
        if self.array.ndim == 2:
            return self
        mid = self.array.shape[0] // 2
        meta = self.metadata
        if meta.slice_files:
            meta = dataclasses.replace(meta, source_paths=(meta.source_paths[mid],))
        return Scan(self.array[mid], tuple(self.spacing_mm[1:]), meta)
