"""Small models and synthetic hospitals for the federated tests and benchmarks.

Nothing here is a paper model: a linear classifier and a two-layer conv net, each with a
mask-weighted softmax cross-entropy loss of the ``loss_fn(params, batch, rng) -> (loss, aux)``
form that ``make_local_update`` takes, so the engine can be tested without the CapsNet.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ccfl_jax.typing import Params


class TinyConvNet(nn.Module):
    """Conv(features, 3x3) -> ReLU -> mean pool -> Dense(classes).

    Attributes:
      features: conv channels.
      num_classes: output classes.
    """

    features: int = 8
    num_classes: int = 2

    @nn.compact
    def __call__(self, x, *, train=False):
        del train
        x = nn.relu(nn.Conv(self.features, (3, 3), name="conv")(x))
        x = jnp.mean(x, axis=(1, 2))
        return nn.Dense(self.num_classes, name="head")(x)


def masked_cross_entropy(logits, labels, mask):
    """Mask-weighted mean softmax cross-entropy and accuracy; 0 when the mask is empty.

    Args:
      logits: [B, C]; labels: [B] int; mask: [B] bool.

    Returns:
      (loss, accuracy) scalars.
    """
    weights = mask.astype(jnp.float32)
    count = jnp.maximum(weights.sum(), 1.0)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
    return jnp.sum(ce * weights) / count, jnp.sum(correct * weights) / count


def linear_loss_fn(params: Params, batch: dict, rng) -> tuple:
    """Loss of a linear classifier ``{'w': [D, C], 'b': [C]}`` on flattened images."""
    del rng
    x = jnp.reshape(batch["images"], (batch["images"].shape[0], -1))
    loss, accuracy = masked_cross_entropy(
        x @ params["w"] + params["b"], batch["labels"], batch["mask"]
    )
    return loss, {"loss": loss, "accuracy": accuracy}


def linear_params(image_size: int, num_classes: int = 2) -> Params:
    """Zero params of the linear classifier for [S, S, 1] images."""
    return {
        "w": jnp.zeros((image_size * image_size, num_classes)),
        "b": jnp.zeros((num_classes,)),
    }


def conv_loss_fn(model: nn.Module):
    """``loss_fn(params, batch, rng)`` of a flax classifier such as :class:`TinyConvNet`."""

    def loss_fn(params, batch, rng):
        del rng
        logits = model.apply({"params": params}, batch["images"])
        loss, accuracy = masked_cross_entropy(logits, batch["labels"], batch["mask"])
        return loss, {"loss": loss, "accuracy": accuracy}

    return loss_fn


def conv_params(model: nn.Module, image_size: int, seed: int = 0) -> Params:
    """Initial params of ``model`` for [S, S, 1] images."""
    x = jnp.zeros((1, image_size, image_size, 1))
    return model.init(jax.random.PRNGKey(seed), x)["params"]


def synthetic_hospitals(
    num_hospitals: int, num_rows: int, image_size: int, *, seed: int = 0, pad_value=0.0
) -> dict:
    """Learnable synthetic hospitals: the class shifts the image mean; ragged row counts.

    Hospital h has ``num_rows - h % 3`` real rows (at least 1); padded rows hold
    ``pad_value`` (pass NaN to prove they are never read) and label 0.

    Returns:
      ``{'images': [H, N, S, S, 1] float32, 'labels': [H, N] int32, 'mask': [H, N] bool}``.
    """
    rng = np.random.default_rng(seed)
    shape = (num_hospitals, num_rows, image_size, image_size, 1)
    labels = rng.integers(0, 2, (num_hospitals, num_rows)).astype(np.int32)
    images = rng.normal(size=shape).astype(np.float32) + labels[..., None, None, None]
    counts = np.maximum(num_rows - np.arange(num_hospitals) % 3, 1)
    mask = np.arange(num_rows)[None, :] < counts[:, None]
    images[~mask] = pad_value
    labels[~mask] = 0
    return {"images": images, "labels": labels, "mask": mask}
