"""Loss and eval steps for SegCaps: weighted BCE on capsule lengths + 0.1 x masked reconstruction.

A batch is ``{'images': [B, Y, X, 1], 'masks': [B, Y, X, 1] in {0, 1}, 'mask': [B] bool}``
(``masks`` are lesion masks; ``mask`` marks real rows, as in every batch here).

References:
  LaLonde & Bagci 2018, Sec. 3.3: weighted binary cross-entropy on the seg capsule lengths, and a
  reconstruction of the input inside the target mask, weighted 0.1.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from ccfl_jax.train.losses import masked_mean, weighted_binary_cross_entropy
from ccfl_jax.train.steps import batch_indices, make_train_step
from ccfl_jax.typing import Array, Params, PRNGKey

SEGMENTATION_RECONSTRUCTION_WEIGHT = 0.1
PROBABILITY_EPSILON = 1e-6


def probability_logits(probability: Array) -> Array:
    """``log(p / (1 - p))`` with p clipped into (0, 1), so BCE can run on capsule lengths."""
    p = jnp.clip(probability, PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON)
    return jnp.log(p) - jnp.log1p(-p)


def positive_weight(masks: np.ndarray) -> float:
    """Background / foreground pixel ratio of training masks (1 if there is no foreground).

    Examples:
      >>> positive_weight(np.array([[1, 0, 0, 0]]))
      3.0
    """
    foreground = float(np.sum(masks))
    return float(np.size(masks) - foreground) / foreground if foreground else 1.0


def make_segmentation_loss_fn(
    model,
    *,
    positive_weight: float = 1.0,
    reconstruction_weight: float = SEGMENTATION_RECONSTRUCTION_WEIGHT,
) -> Callable:
    """Builds ``loss_fn(params, batch, rng) -> (loss, aux)`` for SegCaps.

    Args:
      model: a SegCaps-like module, ``__call__(images, *, train, masks) -> (probability, aux)``.
      positive_weight: weight of lesion pixels in the BCE (see :func:`positive_weight`).
      reconstruction_weight: weight of the per-pixel mean squared error between the decoder's
        output and ``images * masks`` (0.1); 0 drops it.

    Returns:
      ``loss_fn``; aux holds ``'loss'``, ``'bce'``, ``'dice'`` (soft Dice at 0.5 over real rows)
      and ``'num_examples'``.
    """

    def loss_fn(params: Params, batch: dict, rng: PRNGKey):
        del rng
        images, masks, mask = batch["images"], batch["masks"], batch["mask"]
        probability, aux = model.apply({"params": params}, images, train=True, masks=masks)
        bce = weighted_binary_cross_entropy(probability_logits(probability), masks, positive_weight)
        per_example = bce
        if reconstruction_weight and "reconstruction" in aux:
            squared = jnp.square(aux["reconstruction"] - images * masks)
            per_example = per_example + reconstruction_weight * jnp.mean(
                squared.reshape(squared.shape[0], -1), axis=-1
            )
        loss = masked_mean(per_example, mask)
        return loss, {
            "loss": loss,
            "bce": masked_mean(bce, mask),
            "dice": masked_mean(hard_dice(probability, masks), mask),
            "num_examples": jnp.sum(mask.astype(jnp.int32)),
        }

    return loss_fn


def hard_dice(probability: Array, masks: Array, threshold: float = 0.5) -> Array:
    """Per-example Dice of ``probability >= threshold`` against ``masks``; 1 when both are empty."""
    predicted = (probability >= threshold).astype(jnp.float32)
    truth = masks.astype(jnp.float32)
    axes = tuple(range(1, predicted.ndim))
    overlap = jnp.sum(predicted * truth, axis=axes)
    total = jnp.sum(predicted, axis=axes) + jnp.sum(truth, axis=axes)
    return jnp.where(total == 0, 1.0, 2.0 * overlap / jnp.maximum(total, 1.0))


def make_segmentation_eval_step(model) -> Callable:
    """Builds ``eval_step(params, images [B, Y, X, 1]) -> probability [B, Y, X, 1]``."""

    def eval_step(params: Params, images: Array) -> Array:
        return model.apply({"params": params}, images, train=False)[0]

    return eval_step


def train_segmentation(
    model,
    params: Params,
    images: np.ndarray,
    masks: np.ndarray,
    *,
    steps: int,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    rng: PRNGKey,
    reconstruction_weight: float = SEGMENTATION_RECONSTRUCTION_WEIGHT,
    progress: bool = True,
) -> tuple[Params, dict]:
    """Trains SegCaps on ``images [M, Y, X, 1]`` and lesion ``masks [M, Y, X, 1]``.

    The BCE's positive weight is the background / lesion pixel ratio of ``masks``.

    Returns:
      ``(params, history)`` with per-step lists ``'loss'``, ``'bce'`` and ``'dice'``.
    """
    loss_fn = make_segmentation_loss_fn(
        model,
        positive_weight=positive_weight(masks),
        reconstruction_weight=reconstruction_weight,
    )
    step = jax.jit(make_train_step(loss_fn, optimizer))
    opt_state = optimizer.init(params)
    seed = int(jax.random.randint(rng, (), 0, 2**31 - 1))
    order = batch_indices(len(images), batch_size, steps, seed)
    history = {"loss": [], "bce": [], "dice": []}
    rows = np.ones(batch_size, bool)
    for index in tqdm.trange(steps, disable=not progress, desc="train segcaps"):
        take = order[index]
        batch = {"images": images[take], "masks": masks[take], "mask": rows}
        params, opt_state, aux = step(params, opt_state, batch, jax.random.fold_in(rng, index))
        for key in history:
            history[key].append(float(aux[key]))
    return params, history


def predict_probabilities(
    model, params: Params, images: np.ndarray, *, batch_size: int = 8
) -> np.ndarray:
    """Per-pixel lesion probability ``[M, Y, X, 1]`` of ``images [M, Y, X, 1]``, batch by batch."""
    step = jax.jit(make_segmentation_eval_step(model))
    outputs = []
    for start in range(0, len(images), batch_size):
        chunk = np.asarray(images[start : start + batch_size], np.float32)
        pad = batch_size - len(chunk)
        padded = np.concatenate([chunk, np.zeros((pad, *chunk.shape[1:]), np.float32)])
        outputs.append(np.asarray(step(params, padded))[: len(chunk)])
    return np.concatenate(outputs) if outputs else np.zeros((0, *images.shape[1:]), np.float32)
