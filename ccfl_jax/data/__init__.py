"""CT ingest, normalization and hospital datasets.

Readers return one record type, :class:`Scan` (array, spacing, metadata): ``read_scan`` picks
the reader from the content (DICOM file or series folder, NIfTI, PNG, JPEG). ``normalize`` holds
the paper's spatial (Lanczos resampling to a standard lung volume) and signal (Eq. 1 window)
normalization; ``load_federated_dataset`` turns a manifest CSV into per-hospital padded arrays.
"""

from ccfl_jax.data.hospitals import (
    FederatedDataset,
    HospitalArrays,
    load_federated_dataset,
    pool_hospitals,
    summary_table,
)
from ccfl_jax.data.image import read_image
from ccfl_jax.data.load import read_dicom, read_scan
from ccfl_jax.data.manifest import ManifestRow, read_manifest
from ccfl_jax.data.nifti import read_nifti
from ccfl_jax.data.normalize import (
    WINDOW_PRESETS,
    display_to_unit,
    resample_slice,
    resample_volume,
    scanner_window,
    window,
)
from ccfl_jax.data.scan import Scan, ScanMetadata

__all__ = [
    "FederatedDataset",
    "HospitalArrays",
    "ManifestRow",
    "Scan",
    "ScanMetadata",
    "WINDOW_PRESETS",
    "display_to_unit",
    "load_federated_dataset",
    "pool_hospitals",
    "read_dicom",
    "read_image",
    "read_manifest",
    "read_nifti",
    "read_scan",
    "resample_slice",
    "resample_volume",
    "scanner_window",
    "summary_table",
    "window",
]
