"""Per-example losses and the mask-weighted mean that turns them into a batch loss.

Every loss here returns one value per example, ``[B]``; ``masked_mean`` then averages over the
real rows only, so padded rows contribute exactly nothing and an all-padding batch gives 0.

References:
  Sabour, Frosst & Hinton 2017, Eq. 4 (margin loss) and Sec. 4.1 (reconstruction, 0.0005).
  LaLonde & Bagci 2018, Sec. 3.3 (weighted BCE + 0.1 x masked reconstruction for SegCaps).
"""

import jax
import jax.numpy as jnp
import optax

from ccfl_jax.typing import Array

MARGIN_POSITIVE = 0.9
MARGIN_NEGATIVE = 0.1
MARGIN_DOWNWEIGHT = 0.5
RECONSTRUCTION_WEIGHT = 0.0005


def masked_mean(values: Array, mask: Array) -> Array:
    """Mean of ``values [B]`` over rows where ``mask [B]`` is true; 0 when none is.

    Examples:
      >>> import jax.numpy as jnp
      >>> float(masked_mean(jnp.array([1.0, 3.0, 100.0]), jnp.array([True, True, False])))
      2.0
      >>> float(masked_mean(jnp.array([jnp.nan]), jnp.array([False])))
      0.0
    """
    weights = mask.astype(jnp.float32)
    total = jnp.sum(jnp.where(mask, values, 0.0))
    return total / jnp.maximum(jnp.sum(weights), 1.0)


def margin_loss(
    lengths: Array,
    labels: Array,
    *,
    positive: float = MARGIN_POSITIVE,
    negative: float = MARGIN_NEGATIVE,
    downweight: float = MARGIN_DOWNWEIGHT,
) -> Array:
    """Capsule margin loss, summed over classes.

    ``L_k = T_k max(0, m+ - |v_k|)^2 + lambda (1 - T_k) max(0, |v_k| - m-)^2``.

    Args:
      lengths: [B, K] class capsule lengths.
      labels: [B] int class indices.
      positive: m+ (0.9).
      negative: m- (0.1).
      downweight: lambda (0.5), the weight of absent classes.

    Returns:
      [B] per-example losses.

    Examples:
      >>> import jax.numpy as jnp
      >>> margin_loss(jnp.array([[0.0, 1.0]]), jnp.array([1])).tolist()
      [0.0]
    """
    targets = jax.nn.one_hot(labels, lengths.shape[-1], dtype=lengths.dtype)
    present = targets * jnp.square(jnp.maximum(0.0, positive - lengths))
    absent = downweight * (1.0 - targets) * jnp.square(jnp.maximum(0.0, lengths - negative))
    return jnp.sum(present + absent, axis=-1)  # Sabour et al. Eq. 4


def reconstruction_loss(reconstruction: Array, images: Array) -> Array:
    """Sum of squared pixel errors per example (Sabour et al.), ``[B, Y, X, C] -> [B]``."""
    squared = jnp.square(reconstruction - images)
    return jnp.sum(squared.reshape(squared.shape[0], -1), axis=-1)


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Softmax cross-entropy with integer labels, ``[B, K], [B] -> [B]``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels)


def classification_loss(outputs: Array, labels: Array, output_kind: str) -> Array:
    """Margin loss for capsule lengths, cross-entropy for logits; ``[B, K], [B] -> [B]``."""
    if output_kind == "lengths":
        return margin_loss(outputs, labels)
    return cross_entropy(outputs, labels)


def weighted_binary_cross_entropy(
    logits: Array, targets: Array, positive_weight: float | Array = 1.0
) -> Array:
    """Per-example mean pixel BCE, positive pixels weighted by ``positive_weight``.

    Args:
      logits: [B, Y, X, 1] pre-sigmoid segmentation scores.
      targets: [B, Y, X, 1] masks in {0, 1}.
      positive_weight: weight of foreground pixels (e.g. background / foreground ratio).

    Returns:
      [B] per-example losses.
    """
    log_p = jax.nn.log_sigmoid(logits)
    log_not_p = jax.nn.log_sigmoid(-logits)
    per_pixel = -(positive_weight * targets * log_p + (1.0 - targets) * log_not_p)
    return jnp.mean(per_pixel.reshape(per_pixel.shape[0], -1), axis=-1)
