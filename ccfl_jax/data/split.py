"""Train/val/test split within one hospital: by patient, stratified by label, seeded.

A unit is a patient (all of a patient's images go to one split) or, for rows without a
patient id, a single image. Units are stratified by their (majority) label and each stratum is
shuffled with a generator seeded by ``(seed, crc32(hospital))`` and cut by ``fractions``.
"""

import collections
import zlib
from collections.abc import Sequence

import numpy as np

from ccfl_jax import errors
from ccfl_jax.data.manifest import ManifestRow

SPLITS = ("train", "val", "test")


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """Validates ``(train, val, test)`` fractions: three numbers >= 0 that sum to 1.

    Raises:
      InvalidSplitError: otherwise.
    """
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise errors.InvalidSplitError(
            f"fractions={fractions}: need three non-negative (train, val, test) fractions that "
            "sum to 1, e.g. (0.6, 0.2, 0.2)."
        )
    return fractions


def allocate(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """How many of ``n`` units go to train, val and test.

    Largest-remainder rounding of ``n * fractions``; then, where the fractions allow it, test
    gets at least one unit once ``n >= 2`` and val once ``n >= 3``.

    Examples:
      >>> allocate(10, (0.6, 0.2, 0.2)), allocate(2, (0.6, 0.2, 0.2)), allocate(1, (0.6, 0.2, 0.2))
      ((6, 2, 2), (1, 0, 1), (1, 0, 0))
    """
    exact = np.asarray(fractions, np.float64) * n
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[k] += 1
    for split, need in ((2, 2), (1, 3)):
        if n >= need and counts[split] == 0 and fractions[split] > 0:
            # the largest other split gives one; on a tie train keeps its units
            score = counts - 0.5 * (np.arange(3) == 0)
            donor = int(np.argmax(np.where(np.arange(3) == split, -np.inf, score)))
            counts[donor] -= 1
            counts[split] += 1
    return tuple(int(c) for c in counts)


def split_unit_name(rows: Sequence[ManifestRow]) -> str:
    """``'patient'``, ``'image'`` (no ids) or ``'patient+image'`` (some rows lack an id)."""
    with_id = sum(r.patient_id is not None for r in rows)
    if with_id == len(rows):
        return "patient"
    return "image" if with_id == 0 else "patient+image"


def split_hospital(rows: Sequence[ManifestRow], fractions: Sequence[float], seed: int) -> list[int]:
    """Assigns each row of one hospital to a split (0 train, 1 val, 2 test).

    Args:
      rows: the rows of one hospital.
      fractions: ``(train, val, test)``.
      seed: split seed.

    Returns:
      One split index per row, in row order. No patient is in two splits.
    """
    units: dict[tuple, list[int]] = collections.defaultdict(list)
    for i, row in enumerate(rows):
        key = ("patient", row.patient_id) if row.patient_id is not None else ("image", str(i))
        units[key].append(i)
    strata: dict[int, list[tuple]] = collections.defaultdict(list)
    for key, members in sorted(units.items()):
        labels = [rows[i].label for i in members]
        strata[int(np.mean(labels) >= 0.5)].append(key)
    hospital = rows[0].hospital if rows else ""
    rng = np.random.default_rng([seed, zlib.crc32(hospital.encode())])
    assignment = [0] * len(rows)
    for label in sorted(strata):
        keys = strata[label]
        order = rng.permutation(len(keys))
        bounds = np.cumsum(allocate(len(keys), fractions))
        for rank, k in enumerate(order):
            split = int(np.searchsorted(bounds, rank, side="right"))
            for i in units[keys[k]]:
                assignment[i] = split
    return assignment
