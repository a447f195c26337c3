"""Pure train and eval steps over ``(params, opt_state, batch, rng)`` for any classifier here.

A batch is ``{'images': [B, Y, X, 1] float32, 'labels': [B] int32, 'mask': [B] bool}``; rows with
``mask`` false are padding and change nothing. The steps are not jitted here: the caller jits
them (or vmaps them over hospitals first, as ``ccfl_jax.federated`` does).
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import tqdm

from ccfl_jax.errors import BatchError
from ccfl_jax.models.outputs import check_output_kind, covid_probability, predicted_class
from ccfl_jax.train.losses import (
    RECONSTRUCTION_WEIGHT,
    classification_loss,
    masked_mean,
    reconstruction_loss,
)
from ccfl_jax.typing import Params, PRNGKey

BATCH_KEYS = ("images", "labels", "mask")


def init_params(model, rng: PRNGKey, image_size: int | tuple[int, int]) -> Params:
    """Initial parameters (the ``'params'`` collection) for ``[1, Y, X, 1]`` inputs.

    Examples:
      >>> import jax
      >>> from ccfl_jax.models import get_model
      >>> params = init_params(get_model('cnn_small'), jax.random.key(0), 32)
      >>> sorted(params)[:2]
      ['conv_0', 'conv_1']
    """
    rows, cols = (image_size, image_size) if isinstance(image_size, int) else image_size
    dummy = jnp.zeros((1, rows, cols, 1), jnp.float32)
    return model.init({"params": rng, "dropout": rng}, dummy, train=False)["params"]


def _forward(model, params, images, labels, *, train: bool, rng=None):
    """Applies a classifier; CapsNet's decoder sees the true class's pose when labels are given."""
    kwargs = {"labels": labels} if model.output_kind == "lengths" else {}
    rngs = {"dropout": rng} if rng is not None else {}
    return model.apply({"params": params}, images, train=train, rngs=rngs, **kwargs)


def make_loss_fn(model, *, reconstruction_weight: float = RECONSTRUCTION_WEIGHT) -> Callable:
    """Builds ``loss_fn(params, batch, rng) -> (loss, aux)`` for a classifier.

    The loss is the mask-weighted mean over real rows of the margin loss (capsule lengths) or the
    softmax cross-entropy (logits), plus ``reconstruction_weight`` x the per-example sum of squared
    pixel errors when the model returns ``aux['reconstruction']`` (CapsNet with its decoder).

    Args:
      model: a classifier with ``output_kind`` and ``__call__(images, *, train)``.
      reconstruction_weight: weight of the reconstruction term (0.0005, Sabour et al.); 0 drops it.

    Returns:
      ``loss_fn``; its aux is ``{'loss': [], 'accuracy': [], 'num_examples': []}``, accuracy
      over real rows only.
    """
    check_output_kind(model.output_kind)

    def loss_fn(params: Params, batch: dict, rng: PRNGKey):
        images, labels, mask = batch["images"], batch["labels"], batch["mask"]
        outputs, model_aux = _forward(model, params, images, labels, train=True, rng=rng)
        per_example = classification_loss(outputs, labels, model.output_kind)
        if reconstruction_weight and "reconstruction" in model_aux:
            pixels = reconstruction_loss(model_aux["reconstruction"], images)
            per_example = per_example + reconstruction_weight * pixels
        loss = masked_mean(per_example, mask)
        correct = (predicted_class(outputs) == labels).astype(jnp.float32)
        aux = {
            "loss": loss,
            "accuracy": masked_mean(correct, mask),
            "num_examples": jnp.sum(mask.astype(jnp.int32)),
        }
        return loss, aux

    return loss_fn


def make_train_step(loss_fn: Callable, optimizer: optax.GradientTransformation) -> Callable:
    """Builds the pure ``train_step(params, opt_state, batch, rng) -> (params, opt_state, aux)``.

    Examples:
      >>> import jax, optax
      >>> from ccfl_jax.models import get_model
      >>> model = get_model('cnn_small')
      >>> params = init_params(model, jax.random.key(0), 16)
      >>> optimizer = optax.sgd(0.1)
      >>> step = jax.jit(make_train_step(make_loss_fn(model), optimizer))
      >>> batch = {'images': jax.numpy.zeros((4, 16, 16, 1)),
      ...          'labels': jax.numpy.array([0, 1, 0, 1]), 'mask': jax.numpy.ones(4, bool)}
      >>> params, opt_state, aux = step(params, optimizer.init(params), batch, jax.random.key(1))
      >>> int(aux['num_examples'])
      4
    """

    def train_step(params: Params, opt_state, batch: dict, rng: PRNGKey):
        grads, aux = jax.grad(loss_fn, has_aux=True)(params, batch, rng)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, aux

    return train_step


def make_eval_step(model) -> Callable:
    """Builds ``eval_step(params, batch) -> dict`` (no dropout, no reconstruction term).

    The dict holds ``'probability' [B]`` (P(covid)), ``'correct' [B]``, ``'loss'`` (mask-weighted
    mean classification loss) and ``'num_examples'``.
    """
    check_output_kind(model.output_kind)

    def eval_step(params: Params, batch: dict) -> dict:
        images, labels, mask = batch["images"], batch["labels"], batch["mask"]
        outputs, _ = _forward(model, params, images, None, train=False)
        per_example = classification_loss(outputs, labels, model.output_kind)
        return {
            "probability": covid_probability(outputs, model.output_kind),
            "correct": predicted_class(outputs) == labels,
            "loss": masked_mean(per_example, mask),
            "num_examples": jnp.sum(mask.astype(jnp.int32)),
        }

    return eval_step


def check_batch(batch: dict) -> None:
    """Raises :class:`BatchError` unless ``batch`` has images [B, Y, X, 1], labels [B], mask [B]."""
    missing = [key for key in BATCH_KEYS if key not in batch]
    if missing:
        raise BatchError(f"batch lacks {missing}; give images [B, Y, X, 1], labels [B], mask [B].")
    images, labels, mask = (np.shape(batch[key]) for key in BATCH_KEYS)
    if len(images) != 4 or images[-1] != 1 or labels != images[:1] or mask != images[:1]:
        raise BatchError(
            f"batch shapes images {images}, labels {labels}, mask {mask} disagree; "
            "need images [B, Y, X, 1], labels [B] and mask [B] with the same B."
        )


def batch_indices(num_examples: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """[steps, batch_size] example indices: shuffled epochs laid end to end."""
    rng = np.random.default_rng(seed)
    epochs = -(-steps * batch_size // num_examples)
    order = np.concatenate([rng.permutation(num_examples) for _ in range(epochs)])
    return order[: steps * batch_size].reshape(steps, batch_size)


def iterate_batches(images: np.ndarray, labels: np.ndarray, batch_size: int):
    """Yields padded ``(batch, count)`` pairs covering every example once, in order."""
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        pad = batch_size - (stop - start)
        take = np.concatenate([np.arange(start, stop), np.zeros(pad, np.int64)])
        mask = np.arange(batch_size) < stop - start
        yield {"images": images[take], "labels": labels[take], "mask": mask}, stop - start


def train_centrally(
    model,
    params: Params,
    train: tuple[np.ndarray, np.ndarray],
    *,
    steps: int,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    rng: PRNGKey,
    reconstruction_weight: float = RECONSTRUCTION_WEIGHT,
    progress: bool = True,
) -> tuple[Params, dict]:
    """Trains on pooled ``(images [M, Y, X, 1], labels [M])`` with one jitted step.

    Returns:
      ``(params, history)``; history has per-step lists ``'loss'`` and ``'accuracy'``.
    """
    images, labels = np.asarray(train[0], np.float32), np.asarray(train[1], np.int32)
    check_batch({"images": images, "labels": labels, "mask": labels})
    step = jax.jit(
        make_train_step(make_loss_fn(model, reconstruction_weight=reconstruction_weight), optimizer)
    )
    opt_state = optimizer.init(params)
    seed = int(jax.random.randint(rng, (), 0, 2**31 - 1))
    order = batch_indices(len(images), batch_size, steps, seed)
    history = {"loss": [], "accuracy": []}
    mask = np.ones(batch_size, bool)
    for index in tqdm.trange(steps, disable=not progress, desc="train"):
        take = order[index]
        batch = {"images": images[take], "labels": labels[take], "mask": mask}
        params, opt_state, aux = step(params, opt_state, batch, jax.random.fold_in(rng, index))
        history["loss"].append(float(aux["loss"]))
        history["accuracy"].append(float(aux["accuracy"]))
    return params, history


def make_predict_fn(model, *, batch_size: int = 64) -> Callable:
    """Builds ``predict_fn(params, images [M, Y, X, 1]) -> [M]`` P(covid), compiled once.

    Batches are padded to ``batch_size``, so calls with any M reuse one compiled step.
    """
    step = jax.jit(make_eval_step(model))

    def predict_fn(params: Params, images: np.ndarray) -> np.ndarray:
        labels = np.zeros(len(images), np.int32)
        scores = [
            np.asarray(step(params, batch)["probability"])[:count]
            for batch, count in iterate_batches(np.asarray(images, np.float32), labels, batch_size)
        ]
        return np.concatenate(scores) if scores else np.zeros(0, np.float32)

    return predict_fn


def predict(model, params: Params, images: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
    """P(covid) for ``images [M, Y, X, 1]`` as a NumPy ``[M]`` array, batch by batch.

    Compiles on every call; use :func:`make_predict_fn` to predict repeatedly.
    """
    return make_predict_fn(model, batch_size=batch_size)(params, images)
