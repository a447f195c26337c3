"""Named errors of ccfl_jax.

Every error subclasses :class:`CcflError` and the builtin it refines (``ValueError``, ...), so
``except ValueError`` still works. A message names the file or value, says what is wrong and
what to do about it. One section per subpackage; add new errors to your section only.
"""


class CcflError(Exception):
    """Base class of every error raised by ccfl_jax."""


# --- data: ingest, normalization, hospitals ------------------------------------------------


class ScanNotFoundError(CcflError, FileNotFoundError):
    """A scan file or folder (given directly or by a manifest row) does not exist."""


class UnsupportedFormatError(CcflError, ValueError):
    """A file is not DICOM, NIfTI, PNG or JPEG, or a folder holds no readable slice."""


class DicomReadError(CcflError, ValueError):
    """A DICOM file is unreadable or truncated (header or pixel data)."""


class MissingPixelDataError(CcflError, ValueError):
    """A DICOM file has no PixelData element, so it holds no image."""


class MissingTagError(CcflError, ValueError):
    """A tag needed for HU or geometry (rescale, spacing, position, orientation) is absent."""


class UnsupportedModalityError(CcflError, ValueError):
    """A DICOM file is not CT (e.g. MR, CR), so its pixels are not Hounsfield units."""


class MissingDecoderError(CcflError, RuntimeError):
    """Pixel data use a compressed transfer syntax that no installed plugin decodes."""


class InconsistentSeriesError(CcflError, ValueError):
    """Slices of one series differ in orientation, size or series, or the stack is sheared."""


class DuplicateSlicePositionError(CcflError, ValueError):
    """Two slices of a series lie at the same position along the slice normal."""


class NonUniformSpacingError(CcflError, ValueError):
    """The steps between slice positions differ (a missing slice or a mixed series)."""


class NonFinitePixelsError(CcflError, ValueError):
    """An image holds NaN or infinite values."""


class ManifestError(CcflError, ValueError):
    """A manifest CSV lacks a column or holds a value that cannot be parsed."""


class EmptyHospitalError(CcflError, ValueError):
    """A hospital has no rows (or none left after filtering), so it cannot take part."""


class InvalidSplitError(CcflError, ValueError):
    """Split fractions or a window setting for the hospital datasets are not valid."""


# --- models -------------------------------------------------------------------------------


class UnknownModelError(CcflError, KeyError):
    """A model name is not in ``ccfl_jax.models.MODELS``."""

    def __init__(self, name: str, choices):
        self.name = name
        self.choices = sorted(choices)
        super().__init__(
            f"Unknown model {name!r}: pick one of {', '.join(self.choices)} "
            "(the names of ccfl_jax.models.MODELS)."
        )

    def __str__(self) -> str:
        return self.args[0]


class ModelConfigError(CcflError, ValueError):
    """A model or capsule layer got an impossible configuration or input shape."""


# --- train and metrics --------------------------------------------------------------------


class BatchError(CcflError, ValueError):
    """A training or evaluation batch is malformed (missing key, wrong shape or dtype)."""


class MetricInputError(CcflError, ValueError):
    """Labels, scores or masks given to a metric are malformed (shape, values, NaN)."""


# --- federated: rounds, aggregation, privacy, checkpoints ---------------------------------


class FederatedConfigError(CcflError, ValueError):
    """A federated hyperparameter is impossible (sample size, clip norm, strategy, weighting)."""


class HospitalDataError(CcflError, ValueError):
    """Stacked hospital data is malformed: missing key, no leading hospital axis, bad mask."""


class DeltaStructureError(CcflError, ValueError):
    """Hospital deltas do not match the global params' tree structure or leaf shapes [H, ...]."""


class PrivacyBudgetExceededError(CcflError, RuntimeError):
    """Running one more round would spend more than the target epsilon of the run."""


class CheckpointNotFoundError(CcflError, FileNotFoundError):
    """No complete checkpoint exists where one was asked for."""


class CheckpointIntegrityError(CcflError, ValueError):
    """A checkpoint's bytes do not hash to the content hash in its name or meta.json."""
