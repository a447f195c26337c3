"""Honest test figures of a trained classifier on held-out patients, per hospital and pooled.

The operating threshold is chosen on the validation split (Youden's J), never on the test split;
every figure carries a 95% bootstrap interval that resamples patients where the source has
patient ids (images otherwise); AUC and balanced accuracy always stand beside precision,
sensitivity and specificity, so a chance-level detector is visible at a glance.
"""

import csv
import math
import pathlib
from collections.abc import Callable, Sequence

import numpy as np

from ccfl_jax.train import metrics

PREDICTION_COLUMNS = ("path", "hospital", "patient_id", "label", "probability", "decision")


def split_scores(probabilities_fn: Callable, params, arrays) -> list[np.ndarray]:
    """P(covid) of every real row, per hospital: a list of H arrays ``[N_h]``.

    Args:
      probabilities_fn: ``probabilities_fn(params, images [N, S, S, 1]) -> [N]``.
      params: the model's params.
      arrays: a :class:`ccfl_jax.data.HospitalArrays` split.
    """
    images, mask = np.asarray(arrays.images), np.asarray(arrays.mask)
    return [
        np.asarray(probabilities_fn(params, images[h][mask[h]]), np.float64)
        for h in range(images.shape[0])
    ]


def split_labels(arrays) -> list[np.ndarray]:
    """Labels of every real row, per hospital: a list of H arrays ``[N_h]``."""
    labels, mask = np.asarray(arrays.labels), np.asarray(arrays.mask)
    return [labels[h][mask[h]] for h in range(labels.shape[0])]


def patient_groups(rows: Sequence) -> np.ndarray:
    """Bootstrap units: the patient id where known, else the image's own path."""
    return np.array([row.patient_id or str(row.path) for row in rows], dtype=object)


def operating_threshold(labels: np.ndarray, scores: np.ndarray) -> dict:
    """The decision threshold chosen on validation data: Youden's J, or 0.5 without both classes.

    Returns:
      ``{'threshold', 'youden_j', 'chosen_by'}``.
    """
    if len(np.unique(labels)) < 2:
        return {"threshold": 0.5, "youden_j": math.nan, "chosen_by": "default (one class)"}
    threshold, j = metrics.youden_threshold(labels, scores)
    return {"threshold": threshold, "youden_j": j, "chosen_by": "youden_j on validation"}


def test_report(
    hospitals: Sequence[str],
    labels: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    rows: Sequence[Sequence],
    *,
    threshold: float,
    n_boot: int,
) -> dict:
    """Pooled and per-hospital :func:`classification_report` on the test split.

    Returns:
      ``{'pooled': report, 'hospitals': {name: report}, 'within_hospital_auc': {name: auc}}``;
      the within-hospital AUCs cover the hospitals that hold both classes, where a model cannot
      score by recognizing the site.
    """

    def report(y, s, r):
        return metrics.classification_report(
            y, s, threshold=threshold, groups=patient_groups(r), n_boot=n_boot
        )

    per_hospital = {}
    within_auc = {}
    for name, y, s, r in zip(hospitals, labels, scores, rows, strict=True):
        if len(y) == 0:
            continue
        per_hospital[name] = report(y, s, r)
        if len(np.unique(y)) == 2:
            within_auc[name] = per_hospital[name]["metrics"]["roc_auc"]
    pooled_rows = [row for hospital_rows in rows for row in hospital_rows]
    pooled = report(np.concatenate(labels), np.concatenate(scores), pooled_rows)
    return {"pooled": pooled, "hospitals": per_hospital, "within_hospital_auc": within_auc}


def write_predictions(
    path: pathlib.Path,
    hospitals: Sequence[str],
    rows: Sequence[Sequence],
    scores: Sequence[np.ndarray],
    threshold: float,
) -> None:
    """Writes one CSV line per test image: its file, hospital, patient, label, P(covid), decision."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(PREDICTION_COLUMNS)
        for name, hospital_rows, hospital_scores in zip(hospitals, rows, scores, strict=True):
            for row, score in zip(hospital_rows, hospital_scores, strict=True):
                decision = int(score >= threshold)
                writer.writerow(
                    [row.path, name, row.patient_id or "", row.label, f"{score:.6f}", decision]
                )


def read_predictions(path: pathlib.Path) -> list[dict]:
    """The rows of a predictions CSV written by :func:`write_predictions`."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def headline(report: dict) -> str:
    """One line of the pooled figures: AUC, sensitivity, specificity, ... with 95% CIs."""
    parts = []
    for name in ("roc_auc", "balanced_accuracy", "sensitivity", "specificity", "precision"):
        m = report["metrics"][name]
        parts.append(f"{name}={m['value']:.3f} [{m['low']:.3f}, {m['high']:.3f}]")
    return ", ".join(parts)
