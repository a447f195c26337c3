"""The two reference rows of every detection table: what a shortcut alone can score.

A detector is worth reporting only if it beats predictors that cannot see a lesion:

* **intensity histogram**: a logistic regression on a 32-bin histogram of each normalized
  image's pixel values. It sees global brightness and contrast (scanner, window, file format),
  never where anything is.
* **hospital only**: the training positive rate of the hospital an image came from. On the
  bundled sample two sites hold one class each, so this predictor reaches a pooled AUC well
  above 0.5 while its AUC within any one hospital is exactly 0.5 (one score per hospital).

Both are plain NumPy, deterministic, and fitted on the training split only.
"""

import dataclasses
from collections.abc import Sequence

import numpy as np

from ccfl_jax.errors import MetricInputError

HISTOGRAM_BINS = 32
# Normalized slices lie in [-0.5, 0.5] (Eq. 1 clips to it; display images are mapped to it).
HISTOGRAM_RANGE = (-0.5, 0.5)


@dataclasses.dataclass(frozen=True)
class LogisticModel:
    """A fitted L2-regularized logistic regression on standardized features.

    Attributes:
      mean: ``[F]`` training feature means.
      scale: ``[F]`` training feature standard deviations (1 where a feature is constant).
      weights: ``[F]`` coefficients on the standardized features.
      bias: the intercept.
    """

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float


def intensity_histograms(images, bins: int = HISTOGRAM_BINS) -> np.ndarray:
    """Each image's pixel-value histogram over ``HISTOGRAM_RANGE``, as fractions of its pixels.

    Args:
      images: ``[N, Y, X, 1]`` (or ``[N, Y, X]``) normalized slices.
      bins: number of equal-width bins.

    Returns:
      ``[N, bins]`` float64, each row summing to 1 (values outside the range go to the end bins).

    Examples:
      >>> x = np.array([-0.5, -0.2, 0.1, 0.5]).reshape(1, 2, 2, 1)
      >>> intensity_histograms(x, bins=2).tolist()
      [[0.5, 0.5]]
    """
    flat = np.asarray(images, np.float64).reshape(len(images), -1)
    low, high = HISTOGRAM_RANGE
    index = np.clip(((flat - low) / (high - low) * bins).astype(np.int64), 0, bins - 1)
    counts = np.zeros((len(flat), bins))
    np.add.at(counts, (np.arange(len(flat))[:, None], index), 1.0)
    return counts / max(flat.shape[1], 1)


def _check_pairs(features: np.ndarray, labels: np.ndarray) -> None:
    if features.ndim != 2 or labels.shape != features.shape[:1]:
        raise MetricInputError(
            f"features {features.shape} and labels {labels.shape} disagree; give features "
            "[N, F] and labels [N] for the same N."
        )
    if not np.isin(labels, (0, 1)).all():
        raise MetricInputError(f"labels must be 0/1, got values {np.unique(labels)[:5]}.")


def fit_logistic_regression(
    features, labels, *, l2: float = 1.0, iterations: int = 50
) -> LogisticModel:
    """Fits ``P(covid) = sigmoid(w . z + b)``, z the standardized features, by Newton's method.

    Minimizes the summed binary cross-entropy plus ``l2 / 2 * |w|^2`` (the bias is not
    penalized), so the fit exists even when the classes are separable or one class is missing.

    Args:
      features: ``[N, F]`` training features.
      labels: ``[N]`` 0/1 labels.
      l2: ridge penalty on the weights.
      iterations: Newton steps (the objective is strictly convex; 50 is ample for F = 32).

    Raises:
      MetricInputError: shapes disagree, labels are not 0/1, or there are no rows.

    Examples:
      >>> x = np.array([[0.0], [1.0], [2.0], [3.0]])
      >>> model = fit_logistic_regression(x, np.array([0, 0, 1, 1]))
      >>> bool(logistic_scores(model, x)[3] > 0.5 > logistic_scores(model, x)[0])
      True
    """
    features, labels = np.asarray(features, np.float64), np.asarray(labels)
    _check_pairs(features, labels)
    if not len(labels):
        raise MetricInputError("no training rows for the logistic regression; give at least one.")
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    design = np.c_[(features - mean) / scale, np.ones(len(features))]
    penalty = np.r_[np.full(features.shape[1], l2), 0.0]
    theta = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-design @ theta))
        gradient = design.T @ (p - labels) + penalty * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty + 1e-9)
        theta = theta - np.linalg.solve(hessian, gradient)
    return LogisticModel(mean=mean, scale=scale, weights=theta[:-1], bias=float(theta[-1]))


def logistic_scores(model: LogisticModel, features) -> np.ndarray:
    """``[N]`` P(covid) of ``features [N, F]`` under a fitted :class:`LogisticModel`."""
    z = (np.asarray(features, np.float64) - model.mean) / model.scale
    return 1.0 / (1.0 + np.exp(-(z @ model.weights + model.bias)))


def hospital_positive_rates(train_labels: Sequence[np.ndarray]) -> np.ndarray:
    """``[H]`` fraction of covid images in each hospital's training split.

    A hospital with no training rows gets the pooled rate (it has nothing of its own to learn).

    Examples:
      >>> hospital_positive_rates([np.array([1, 1]), np.array([0, 1, 0, 0]), np.array([])]).tolist()
      [1.0, 0.25, 0.5]
    """
    pooled = np.concatenate([np.asarray(y, np.float64) for y in train_labels])
    if not len(pooled):
        raise MetricInputError("no training rows in any hospital; cannot estimate positive rates.")
    return np.array([np.mean(y) if len(y) else pooled.mean() for y in train_labels])


def hospital_only_scores(rates: np.ndarray, hospital_index) -> np.ndarray:
    """``[N]`` scores of the hospital-only predictor: each image's hospital's training rate.

    Args:
      rates: ``[H]`` from :func:`hospital_positive_rates`.
      hospital_index: ``[N]`` index of each image's hospital.
    """
    hospital_index = np.asarray(hospital_index, np.int64)
    if hospital_index.size and not 0 <= hospital_index.min() <= hospital_index.max() < len(rates):
        raise MetricInputError(
            f"hospital indices span [{hospital_index.min()}, {hospital_index.max()}] but there "
            f"are {len(rates)} hospitals; index the hospitals the rates were fitted on."
        )
    return np.asarray(rates, np.float64)[hospital_index]
