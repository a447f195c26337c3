"""Hospitals: group a manifest by hospital, split by patient, stack into padded arrays.

Every array has the hospital axis first: ``images [H, N, S, S, 1]``, ``labels [H, N]`` and
``mask [H, N]`` (True for real rows; padded rows are zeros). ``rows`` keeps, per split and
hospital, the manifest rows of the real examples in order, so any result traces back to files.
"""

import collections
import dataclasses
import pathlib
import zlib
from collections.abc import Sequence

import flax.struct
import jax
import numpy as np
import tqdm

from ccfl_jax import errors
from ccfl_jax.data import manifest as manifest_lib
from ccfl_jax.data import preprocess, split


@flax.struct.dataclass
class HospitalArrays:
    """One split of every hospital, padded to a common length N.

    Attributes:
      images: ``[H, N, S, S, 1]`` float32 in ``[-0.5, 0.5]``.
      labels: ``[H, N]`` int32, 1 = covid.
      mask: ``[H, N]`` bool, True for real rows.
    """

    images: jax.Array
    labels: jax.Array
    mask: jax.Array


@dataclasses.dataclass(frozen=True)
class FederatedDataset:
    """A federated dataset on the bundled sample or any manifest.

    Attributes:
      hospitals: hospital names, in the order of the leading array axis.
      train: the training split.
      val: the validation split.
      test: the test split.
      rows: ``{'train'|'val'|'test': ((ManifestRow, ...) per hospital)}``, real rows in order.
      split_unit: per hospital ``'patient'``, ``'image'`` or ``'patient+image'``.
      scanners: per hospital, the sorted scanner names seen (``'unknown'`` for PNG/JPG).
      failures: ``((path, message), ...)`` rows left out under ``on_error='collect'``.
    """

    hospitals: tuple[str, ...]
    train: HospitalArrays
    val: HospitalArrays
    test: HospitalArrays
    rows: dict
    split_unit: tuple[str, ...]
    scanners: tuple[tuple[str, ...], ...]
    failures: tuple[tuple[str, str], ...] = ()


def _select(rows, hospitals, max_per_hospital, seed):
    by_hospital = collections.defaultdict(list)
    for row in rows:
        by_hospital[row.hospital].append(row)
    names = tuple(hospitals) if hospitals is not None else tuple(sorted(by_hospital))
    for name in names:
        if not by_hospital.get(name):
            raise errors.EmptyHospitalError(
                f"hospital {name!r} has no rows in the manifest (hospitals present: "
                f"{sorted(by_hospital)}). Fix the hospitals argument or the manifest."
            )
    selected = {}
    for name in names:
        group = by_hospital[name]
        if max_per_hospital is not None and len(group) > max_per_hospital:
            rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
            keep = rng.permutation(len(group))[:max_per_hospital]
            group = [group[i] for i in sorted(keep)]
        selected[name] = group
    return names, selected


def _stack(per_hospital: list[list[tuple[np.ndarray, int]]], image_size: int) -> HospitalArrays:
    n = max(1, max(len(examples) for examples in per_hospital))
    h = len(per_hospital)
    images = np.zeros((h, n, image_size, image_size, 1), np.float32)
    labels = np.zeros((h, n), np.int32)
    mask = np.zeros((h, n), bool)
    for i, examples in enumerate(per_hospital):
        for j, (image, label) in enumerate(examples):
            images[i, j, ..., 0] = image
            labels[i, j] = label
            mask[i, j] = True
    return HospitalArrays(images=images, labels=labels, mask=mask)


def _preprocess_rows(rows, *, image_size, window, extent_mm, on_error, progress, cache_path):
    cached = preprocess.load_cache(cache_path) if cache_path is not None else None
    if cached is not None:
        return cached
    images = np.zeros((len(rows), image_size, image_size), np.float32)
    info = []
    for i, row in enumerate(tqdm.tqdm(rows, desc="ingest", disable=not progress)):
        try:
            images[i], scanner, _ = preprocess.row_slice(
                row, image_size=image_size, window=window, extent_mm=extent_mm
            )
            info.append({"scanner": scanner, "error": None})
        except errors.CcflError as exc:
            if on_error == "raise":
                raise
            info.append({"scanner": None, "error": f"{type(exc).__name__}: {exc}"})
    if cache_path is not None:
        preprocess.save_cache(cache_path, images, info)
    return images, info


def load_federated_dataset(
    manifest_path,
    *,
    image_size: int = 128,
    seed: int = 0,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    window=None,
    extent_mm: float | None = 334.0,
    hospitals: Sequence[str] | None = None,
    max_per_hospital: int | None = None,
    cache_dir=None,
    progress: bool = True,
    on_error: str = "raise",
) -> FederatedDataset:
    """Reads a manifest into per-hospital train/val/test arrays.

    Each row becomes one normalized 2D slice (a series folder or volume gives its middle
    slice): HU windowed with Eq. 1, display images mapped to the same range, all resampled to
    ``image_size x image_size``. Rows are split within each hospital by patient (stratified by
    label, seeded), so that no patient is in two splits; rows without a patient id are split by
    image, and ``split_unit`` says so.

    Args:
      manifest_path: a manifest CSV (see :func:`ccfl_jax.data.read_manifest`).
      image_size: output side S in pixels.
      seed: seed of the split (and of the ``max_per_hospital`` subsample).
      fractions: ``(train, val, test)`` fractions of units per label stratum.
      window: ``None`` (per-scanner preset), ``'header'`` (the DICOM default window) or
        ``(level, width)`` in HU.
      extent_mm: in-plane field of view (mm) of CT slices after resampling, centred; default
        the paper's 334 mm lung width (Sec. II-A-1). ``None`` fits each slice's longer side.
        Display images (no spacing) always fit their longer side.
      hospitals: the hospitals to keep, in this order (default: all, sorted by name).
      max_per_hospital: keep at most this many rows per hospital (a seeded subsample).
      cache_dir: folder for an npz cache keyed by the manifest content and these settings.
      progress: show a tqdm progress bar.
      on_error: ``'raise'`` at the first bad row, or ``'collect'`` bad rows into ``failures``.

    Returns:
      A :class:`FederatedDataset`.

    Raises:
      EmptyHospitalError: a hospital has no rows, or none readable under ``'collect'``.
      InvalidSplitError: bad ``fractions``, ``window`` or ``on_error``.
      And the reader errors of :func:`ccfl_jax.data.read_scan` under ``on_error='raise'``.
    """
    fractions = split.check_fractions(fractions)
    preprocess.check_window(window)
    if on_error not in ("raise", "collect"):
        raise errors.InvalidSplitError(f"on_error={on_error!r}: use 'raise' or 'collect'.")
    all_rows = manifest_lib.read_manifest(manifest_path, check_files=on_error == "raise")
    names, selected = _select(all_rows, hospitals, max_per_hospital, seed)
    rows = [row for name in names for row in selected[name]]
    cache_path = None
    if cache_dir is not None:
        key = preprocess.cache_key(
            manifest_path,
            rows,
            {
                "image_size": image_size,
                "window": window,
                "extent_mm": extent_mm,
                "on_error": on_error,
            },
        )
        cache_path = pathlib.Path(cache_dir) / f"ingest_{key}.npz"
    images, info = _preprocess_rows(
        rows,
        image_size=image_size,
        window=window,
        extent_mm=extent_mm,
        on_error=on_error,
        progress=progress,
        cache_path=cache_path,
    )
    failures = tuple(
        (str(row.path), note["error"])
        for row, note in zip(rows, info, strict=True)
        if note["error"]
    )
    per_split = {s: [] for s in split.SPLITS}
    split_rows = {s: [] for s in split.SPLITS}
    units, scanners, start = [], [], 0
    for name in names:
        members = range(start, start + len(selected[name]))
        start += len(selected[name])
        good = [k for k in members if info[k]["error"] is None]
        if not good:
            raise errors.EmptyHospitalError(
                f"hospital {name!r}: none of its {len(members)} rows could be read (first "
                f"failure: {info[members[0]]['error']}). Fix those files or drop the hospital."
            )
        assignment = split.split_hospital([rows[k] for k in good], fractions, seed)
        for index, s in enumerate(split.SPLITS):
            chosen = [k for k, a in zip(good, assignment, strict=True) if a == index]
            per_split[s].append([(images[k], rows[k].label) for k in chosen])
            split_rows[s].append(tuple(rows[k] for k in chosen))
        units.append(split.split_unit_name([rows[k] for k in good]))
        scanners.append(tuple(sorted({info[k]["scanner"] for k in good})))
    arrays = {s: _stack(per_split[s], image_size) for s in split.SPLITS}
    return FederatedDataset(
        hospitals=names,
        rows={s: tuple(split_rows[s]) for s in split.SPLITS},
        split_unit=tuple(units),
        scanners=tuple(scanners),
        failures=failures,
        **arrays,
    )


def pool_hospitals(arrays: HospitalArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pools the real rows of every hospital (for centralized baselines).

    Args:
      arrays: ``images [H, N, S, S, 1]``, ``labels [H, N]``, ``mask [H, N]``.

    Returns:
      ``(images [M, S, S, 1], labels [M], hospital_index [M])`` with M = ``mask.sum()``.

    Examples:
      >>> a = HospitalArrays(images=np.zeros((2, 3, 4, 4, 1)), labels=np.array([[1, 0, 0], [0, 1, 0]]),
      ...                    mask=np.array([[True, True, False], [True, False, False]]))
      >>> [x.tolist() for x in pool_hospitals(a)[1:]]
      [[1, 0, 0], [0, 0, 1]]
    """
    mask = np.asarray(arrays.mask, bool)
    hospital_index = np.broadcast_to(np.arange(mask.shape[0])[:, None], mask.shape)
    return np.asarray(arrays.images)[mask], np.asarray(arrays.labels)[mask], hospital_index[mask]


def summary_table(dataset: FederatedDataset) -> str:
    """A plain-text table per hospital: scanners, patients, images per class per split, unit."""
    header = ("hospital", "scanners", "patients", "train c/n", "val c/n", "test c/n", "split by")
    lines = [header]
    for h, name in enumerate(dataset.hospitals):
        all_rows = [r for s in split.SPLITS for r in dataset.rows[s][h]]
        patients = len({r.patient_id for r in all_rows if r.patient_id is not None})
        counts = []
        for s in split.SPLITS:
            labels = [r.label for r in dataset.rows[s][h]]
            counts.append(f"{sum(labels)}/{len(labels) - sum(labels)}")
        unit = dataset.split_unit[h]
        note = (
            unit
            if unit == "patient"
            else f"{unit} (no patient ids: slices of one patient may be in two splits)"
        )
        lines.append((name, ", ".join(dataset.scanners[h]), str(patients or "-"), *counts, note))
    widths = [max(len(line[k]) for line in lines) for k in range(len(header))]
    text = [
        "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.append("c/n = covid / non-covid images.")
    if dataset.failures:
        text.append(f"{len(dataset.failures)} rows left out (on_error='collect'):")
        text.extend(f"  {path}: {message}" for path, message in dataset.failures)
    return "\n".join(text)
