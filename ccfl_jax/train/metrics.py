"""Honest binary-classification and segmentation metrics, in NumPy (not jitted).

Labels are 1 for covid (positive) and 0 otherwise; a score is P(covid) and an example is
predicted positive when ``score >= threshold``. A ratio whose denominator is zero (precision with
no predicted positive, AUC with one class only) is NaN, never an exception: reports carry a flag
that says so.

Kumar et al. (Sec. III-B, Table IV) report precision, sensitivity, specificity and accuracy at
one threshold, and their figures sit at chance (precision = positive rate, sensitivity +
specificity ~ 1). ``classification_report`` therefore always adds ROC AUC and balanced accuracy,
each with a 95% bootstrap interval (resampling patients when ``groups`` is given).
"""

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ccfl_jax.errors import MetricInputError


def _labels(y_true) -> np.ndarray:
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise MetricInputError(f"labels have shape {labels.shape}; pass a 1-D array [N] of 0/1.")
    if labels.size and not np.all(np.isin(labels, (0, 1))):
        raise MetricInputError(
            f"labels hold {sorted(set(np.unique(labels).tolist()) - {0, 1})[:5]}; "
            "binary metrics need 0 (non-covid) and 1 (covid) only."
        )
    return labels.astype(bool)


def _paired(y_true, values, name: str) -> tuple[np.ndarray, np.ndarray]:
    labels = _labels(y_true)
    values = np.asarray(values)
    if values.shape != labels.shape:
        raise MetricInputError(
            f"{name} has shape {values.shape} but labels have {labels.shape}; give one per example."
        )
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise MetricInputError(
            f"{name} holds {int(np.isnan(values).sum())} NaN; fix the model output."
        )
    return labels, values


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else float("nan")


def confusion_matrix(y_true, y_pred) -> np.ndarray:
    """``[[TN, FP], [FN, TP]]`` counts (rows: truth, columns: prediction).

    Examples:
      >>> confusion_matrix([0, 0, 1, 1], [0, 1, 1, 1]).tolist()
      [[1, 1], [0, 2]]
    """
    labels, predicted = _paired(y_true, y_pred, "y_pred")
    predicted = predicted.astype(bool)
    counts = [
        [np.sum(~labels & ~predicted), np.sum(~labels & predicted)],
        [np.sum(labels & ~predicted), np.sum(labels & predicted)],
    ]
    return np.asarray(counts, np.int64)


def precision(y_true, y_pred) -> float:
    """TP / (TP + FP); NaN when nothing is predicted positive."""
    (_, fp), (_, tp) = confusion_matrix(y_true, y_pred)
    return _ratio(tp, tp + fp)


def sensitivity(y_true, y_pred) -> float:
    """TP / (TP + FN) (recall); NaN without positives."""
    (_, _), (fn, tp) = confusion_matrix(y_true, y_pred)
    return _ratio(tp, tp + fn)


def specificity(y_true, y_pred) -> float:
    """TN / (TN + FP); NaN without negatives."""
    (tn, fp), _ = confusion_matrix(y_true, y_pred)
    return _ratio(tn, tn + fp)


def accuracy(y_true, y_pred) -> float:
    """(TP + TN) / N; NaN for no examples."""
    (tn, fp), (fn, tp) = confusion_matrix(y_true, y_pred)
    return _ratio(tp + tn, tn + fp + fn + tp)


def balanced_accuracy(y_true, y_pred) -> float:
    """(sensitivity + specificity) / 2: 0.5 for any chance-level predictor.

    Examples:
      >>> balanced_accuracy([0, 0, 0, 1], [1, 1, 1, 1])
      0.5
    """
    return 0.5 * (sensitivity(y_true, y_pred) + specificity(y_true, y_pred))


def f1(y_true, y_pred) -> float:
    """2 TP / (2 TP + FP + FN); NaN when there is neither a positive nor a positive prediction."""
    (_, fp), (fn, tp) = confusion_matrix(y_true, y_pred)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def roc_curve(y_true, y_score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC points at every distinct score, from (0, 0) at threshold +inf to (1, 1).

    Returns:
      ``(fpr [T], tpr [T], thresholds [T])``, thresholds decreasing; the point at threshold t
      predicts positive for ``score >= t``. With one class only the missing rate is NaN.
    """
    labels, scores = _paired(y_true, y_score, "y_score")
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    last_of_tie = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1] if scores.size else []
    tps = np.r_[0, np.cumsum(labels)[last_of_tie]]
    fps = np.r_[0, np.cumsum(~labels)[last_of_tie]]
    thresholds = np.r_[np.inf, scores[last_of_tie]]
    positives, negatives = tps[-1], fps[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr = tps / positives if positives else np.full(tps.shape, np.nan)
        fpr = fps / negatives if negatives else np.full(fps.shape, np.nan)
    return fpr, tpr, thresholds


def roc_auc(y_true, y_score) -> float:
    """Area under the ROC curve (trapezoids, ties counted half); NaN with one class only.

    Examples:
      >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
      0.75
    """
    fpr, tpr, _ = roc_curve(y_true, y_score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0))


def youden_threshold(y_true, y_score) -> tuple[float, float]:
    """The threshold maximizing Youden's J = sensitivity + specificity - 1, and that J.

    Ties go to the highest threshold. NaN, NaN with one class only.
    """
    fpr, tpr, thresholds = roc_curve(y_true, y_score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan"), float("nan")
    j = tpr - fpr
    best = int(np.argmax(j))
    return float(thresholds[best]), float(j[best])


def sensitivity_at_specificity(y_true, y_score, target: float = 0.95) -> float:
    """The best sensitivity among thresholds whose specificity is at least ``target``."""
    if not 0.0 <= target <= 1.0:
        raise MetricInputError(f"target specificity {target} is outside [0, 1].")
    fpr, tpr, _ = roc_curve(y_true, y_score)
    if np.isnan(fpr).any() or np.isnan(tpr).any():
        return float("nan")
    allowed = 1.0 - fpr >= target - 1e-12
    return float(np.max(tpr[allowed]))


def _masks(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
    truth, predicted = np.asarray(y_true), np.asarray(y_pred)
    if truth.shape != predicted.shape:
        raise MetricInputError(
            f"masks have shapes {truth.shape} and {predicted.shape}; they must match."
        )
    return truth.astype(bool), predicted.astype(bool)


def dice(y_true, y_pred, axis=None) -> np.ndarray | float:
    """Dice = 2|A n B| / (|A| + |B|) over ``axis`` (all by default); 1 when both are empty.

    Examples:
      >>> dice([[1, 1], [0, 0]], [[1, 0], [0, 0]])
      0.6666666666666666
    """
    truth, predicted = _masks(y_true, y_pred)
    overlap = np.sum(truth & predicted, axis=axis)
    total = np.sum(truth, axis=axis) + np.sum(predicted, axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = np.where(total == 0, 1.0, 2.0 * overlap / np.maximum(total, 1))
    return float(value) if np.ndim(value) == 0 else value


def iou(y_true, y_pred, axis=None) -> np.ndarray | float:
    """Intersection over union over ``axis`` (all by default); 1 when both are empty."""
    truth, predicted = _masks(y_true, y_pred)
    overlap = np.sum(truth & predicted, axis=axis)
    union = np.sum(truth | predicted, axis=axis)
    value = np.where(union == 0, 1.0, overlap / np.maximum(union, 1))
    return float(value) if np.ndim(value) == 0 else value


class ConfidenceInterval(NamedTuple):
    """A point estimate and its percentile-bootstrap interval.

    Attributes:
      value: the metric on the full data.
      low: lower bound (alpha / 2 percentile of the resampled metrics).
      high: upper bound (1 - alpha / 2 percentile).
      n_valid: resamples whose metric was defined (not NaN); the bounds use only those.
    """

    value: float
    low: float
    high: float
    n_valid: int


def _group_rows(groups: np.ndarray) -> list[np.ndarray]:
    _, inverse = np.unique(groups, return_inverse=True)
    return [np.nonzero(inverse == index)[0] for index in range(inverse.max() + 1)]


def bootstrap_ci(
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    y_true,
    y_score,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    groups=None,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of ``metric_fn(y_true, y_score)``.

    Args:
      metric_fn: maps ``(labels [N], scores [N])`` to a float (NaN when undefined).
      y_true: [N] 0/1 labels.
      y_score: [N] scores (or 0/1 predictions, for thresholded metrics).
      n_boot: number of resamples.
      seed: NumPy seed of the resampling.
      alpha: 1 - coverage (0.05 for a 95% interval).
      groups: optional [N] patient (or hospital) ids; then whole groups are resampled, as
        slices of one patient are not independent.

    Returns:
      :class:`ConfidenceInterval`; low and high are NaN if no resample gave a defined metric.
    """
    labels, scores = _paired(y_true, y_score, "y_score")
    if not 0.0 < alpha < 1.0 or n_boot < 1:
        raise MetricInputError(f"alpha={alpha} must be in (0, 1) and n_boot={n_boot} >= 1.")
    rng = np.random.default_rng(seed)
    if groups is None:
        units = [np.array([row]) for row in range(labels.size)]
    else:
        groups = np.asarray(groups)
        if groups.shape != labels.shape:
            raise MetricInputError(f"groups has shape {groups.shape}, labels {labels.shape}.")
        units = _group_rows(groups)
    estimates = np.empty(n_boot)
    for index in range(n_boot):
        rows = np.concatenate([units[u] for u in rng.integers(0, len(units), len(units))])
        estimates[index] = metric_fn(labels[rows].astype(np.int64), scores[rows])
    valid = estimates[~np.isnan(estimates)]
    value = float(metric_fn(labels.astype(np.int64), scores))
    if valid.size == 0:
        return ConfidenceInterval(value, float("nan"), float("nan"), 0)
    low, high = np.quantile(valid, [alpha / 2.0, 1.0 - alpha / 2.0])
    return ConfidenceInterval(value, float(low), float(high), int(valid.size))


def _thresholded(metric: Callable, threshold: float) -> Callable:
    return lambda labels, scores: metric(labels, scores >= threshold)


THRESHOLDED = {
    "precision": precision,
    "sensitivity": sensitivity,
    "specificity": specificity,
    "accuracy": accuracy,
    "balanced_accuracy": balanced_accuracy,
    "f1": f1,
}


def classification_report(
    y_true,
    y_score,
    *,
    threshold: float = 0.5,
    groups=None,
    specificity_target: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Every metric with its 95% bootstrap interval, plus chance-level flags.

    Args:
      y_true: [N] 0/1 labels (1 = covid).
      y_score: [N] P(covid).
      threshold: predicted positive when ``score >= threshold``.
      groups: optional [N] patient ids: intervals then resample patients.
      specificity_target: for ``sensitivity_at_specificity``.
      n_boot: bootstrap resamples.
      seed: bootstrap seed.

    Returns:
      A JSON-ready dict: ``'metrics'`` maps each name (precision, sensitivity, specificity,
      accuracy, balanced_accuracy, f1, roc_auc, sensitivity_at_specificity) to
      ``{'value', 'low', 'high', 'n_valid'}``; ``'confusion_matrix'``, ``'n'``, ``'n_positive'``,
      ``'positive_rate'``, ``'threshold'``, ``'youden_threshold'``, ``'youden_j'``, and
      ``'flags'``: ``one_class`` (AUC undefined), ``auc_ci_includes_chance`` (the AUC interval
      contains 0.5) and ``precision_at_positive_rate`` (precision within 0.02 of the positive
      rate, the mark of Table IV).
    """
    labels, scores = _paired(y_true, y_score, "y_score")
    metric_fns = {name: _thresholded(fn, threshold) for name, fn in THRESHOLDED.items()}
    metric_fns["roc_auc"] = roc_auc
    metric_fns["sensitivity_at_specificity"] = lambda t, s: sensitivity_at_specificity(
        t, s, specificity_target
    )
    metrics = {
        name: bootstrap_ci(fn, labels, scores, n_boot=n_boot, seed=seed, groups=groups)._asdict()
        for name, fn in metric_fns.items()
    }
    youden, j = youden_threshold(labels, scores)
    positive_rate = _ratio(labels.sum(), labels.size)
    auc = metrics["roc_auc"]
    return {
        "metrics": metrics,
        "confusion_matrix": confusion_matrix(labels, scores >= threshold).tolist(),
        "n": int(labels.size),
        "n_positive": int(labels.sum()),
        "positive_rate": positive_rate,
        "threshold": float(threshold),
        "specificity_target": float(specificity_target),
        "youden_threshold": youden,
        "youden_j": j,
        "flags": {
            "one_class": bool(np.isnan(auc["value"])),
            "auc_ci_includes_chance": not (auc["low"] > 0.5 or auc["high"] < 0.5),
            "precision_at_positive_rate": bool(
                abs(metrics["precision"]["value"] - positive_rate) < 0.02
            ),
        },
    }
