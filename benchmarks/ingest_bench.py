"""Ingest benchmark: slices per second to read and normalize the bundled DICOM slices.

Ours: ``ccfl_jax.data.read_scan`` (pydicom + pylibjpeg; HU, padding to air) then the jitted
Lanczos resample to 128 x 128 (anti-aliased) and the Eq. 1 lung window. Baseline, on the same
files in the same run: SimpleITK (GDCM) reading, then resampling the 2D slice to the same grid
with its windowed-sinc Lanczos interpolator (no anti-aliasing prefilter, so it does less work),
then the same window in NumPy. Reading alone is timed for both as well. The first pass (JIT compiles) is timed separately.
If SimpleITK is not importable the baseline is recorded as skipped.
"""

import pathlib
import time

import numpy as np

from ccfl_jax import data
from ccfl_jax.data import preprocess

ROOT = pathlib.Path(__file__).parents[1]
SIZE = 128
LEVEL, WIDTH = -600.0, 1500.0


def dicom_files(quick: bool) -> list[pathlib.Path]:
    """The bundled DICOM slices (every 5th one when ``quick``)."""
    files = [
        r.path for r in data.read_manifest(ROOT / "data/labels.csv") if str(r.path).endswith(".dcm")
    ]
    return files[::5] if quick else files


def ours_read(paths) -> None:
    for path in paths:
        data.read_scan(path)


def ours(paths) -> None:
    for path in paths:
        preprocess.normalized_slice(data.read_scan(path), image_size=SIZE, window=(LEVEL, WIDTH))


def simpleitk_read(paths) -> None:
    import SimpleITK as sitk

    for path in paths:
        sitk.GetArrayViewFromImage(sitk.ReadImage(str(path), sitk.sitkFloat32))


def simpleitk(paths) -> None:
    import SimpleITK as sitk

    for path in paths:
        image = sitk.ReadImage(str(path), sitk.sitkFloat32)[:, :, 0]  # 2D, so a 2D kernel
        size, spacing = image.GetSize(), image.GetSpacing()  # (x, y)
        step = max(size[0] * spacing[0], size[1] * spacing[1]) / SIZE
        centre = image.TransformContinuousIndexToPhysicalPoint([(n - 1) / 2 for n in size])
        origin = [c - (SIZE - 1) / 2 * step for c in centre]
        resampled = sitk.Resample(
            image,
            (SIZE, SIZE),
            sitk.Transform(),
            sitk.sitkLanczosWindowedSinc,
            origin,
            (step, step),
            image.GetDirection(),
            -1024.0,
        )
        hu = sitk.GetArrayViewFromImage(resampled)
        np.clip((hu - LEVEL) / WIDTH, -0.5, 0.5)  # Eq. 1


def _rate(fn, paths, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(paths)
        best = min(best, time.perf_counter() - start)
    return len(paths) / best


def run(quick: bool = False) -> dict:
    """Slices/s of ours and of SimpleITK on the same files, and their ratio."""
    paths = dicom_files(quick)
    repeats = 1 if quick else 3
    start = time.perf_counter()
    ours(paths)  # first pass: includes the JIT compiles
    figures = {
        "n_slices": len(paths),
        "ours_first_pass_s": time.perf_counter() - start,
        "ours_read_slices_per_s": _rate(ours_read, paths, repeats),
        "ours_slices_per_s": _rate(ours, paths, repeats),
    }
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        figures["simpleitk"] = "skipped: SimpleITK is not installed (make bench installs it)"
        return figures
    figures["simpleitk_read_slices_per_s"] = _rate(simpleitk_read, paths, repeats)
    figures["simpleitk_slices_per_s"] = _rate(simpleitk, paths, repeats)
    figures["read_ours_over_simpleitk"] = (
        figures["ours_read_slices_per_s"] / figures["simpleitk_read_slices_per_s"]
    )
    figures["ours_over_simpleitk"] = (
        figures["ours_slices_per_s"] / figures["simpleitk_slices_per_s"]
    )
    return figures


if __name__ == "__main__":
    print(run(quick=True))
