"""Training: per-example losses, pure train/eval steps, and NumPy metrics."""

from ccfl_jax.train import metrics
from ccfl_jax.train.losses import (
    classification_loss,
    cross_entropy,
    margin_loss,
    masked_mean,
    reconstruction_loss,
    weighted_binary_cross_entropy,
)
from ccfl_jax.train.metrics import bootstrap_ci, classification_report
from ccfl_jax.train.steps import (
    init_params,
    make_eval_step,
    make_loss_fn,
    make_predict_fn,
    make_train_step,
    predict,
    train_centrally,
)

__all__ = [
    "bootstrap_ci",
    "classification_report",
    "metrics",
    "classification_loss",
    "cross_entropy",
    "init_params",
    "make_eval_step",
    "make_loss_fn",
    "make_predict_fn",
    "make_train_step",
    "margin_loss",
    "masked_mean",
    "predict",
    "reconstruction_loss",
    "train_centrally",
    "weighted_binary_cross_entropy",
]
