"""Capsule primitives: the squash non-linearity, dynamic routing and local routing.

Axes: B batch, I input capsules, J output capsules, D pose dimensions; for convolutional capsules
Y, X grid positions, Ci input capsule types and Co output capsule types.

References:
  Sabour, Frosst & Hinton 2017, "Dynamic Routing Between Capsules" (Algorithm 1).
  Kumar et al. 2020, arXiv 2007.06537, Eq. 4-7 (the same routing, as the paper writes it).
  LaLonde & Bagci 2018, "Capsules for Object Segmentation" (locally-constrained routing).
"""

import jax
import jax.numpy as jnp

from ccfl_jax.errors import ModelConfigError
from ccfl_jax.typing import Array

SQUASH_EPSILON = 1e-7


def squash(vectors: Array, axis: int = -1, epsilon: float = SQUASH_EPSILON) -> Array:
    """Shrinks each vector to a length in [0, 1) and keeps its direction (Eq. 7).

    ``v = |s|^2 / (1 + |s|^2) * s / |s|``, computed with ``sqrt(|s|^2 + epsilon)`` in the
    denominator so that both the value and the gradient are finite (zero) at ``s = 0``.

    Args:
      vectors: [..., D] (or D on ``axis``), the capsule pre-activations ``s``.
      axis: the pose axis.
      epsilon: added under the square root; keeps the zero vector differentiable.

    Returns:
      [..., D], the squashed vectors ``v``.

    Examples:
      >>> import jax.numpy as jnp
      >>> v = squash(jnp.array([[3.0, 4.0], [0.0, 0.0]]))
      >>> [round(float(x), 4) for x in jnp.linalg.norm(v, axis=-1)]
      [0.9615, 0.0]
    """
    norm_sq = jnp.sum(jnp.square(vectors), axis=axis, keepdims=True)
    scale = norm_sq / (1.0 + norm_sq) / jnp.sqrt(norm_sq + epsilon)  # Eq. 7
    return scale * vectors


def capsule_length(vectors: Array, axis: int = -1, epsilon: float = SQUASH_EPSILON) -> Array:
    """The length of each capsule, differentiable at zero.

    Args:
      vectors: [..., D].
      axis: the pose axis.
      epsilon: added under the square root (the length of the zero vector is ``sqrt(epsilon)``).

    Returns:
      [...], the lengths.
    """
    return jnp.sqrt(jnp.sum(jnp.square(vectors), axis=axis) + epsilon)


def dynamic_routing(
    predictions: Array, num_iterations: int = 3, bias: Array | None = None
) -> tuple[Array, Array]:
    """Routing by agreement (Algorithm 1) from I input capsules to J output capsules.

    Starts from logits ``b = 0``; each iteration takes coupling coefficients
    ``c = softmax_J(b)``, the weighted sums ``s_j = sum_i c_ij u_hat_{j|i}`` (plus ``bias``),
    the outputs ``v_j = squash(s_j)`` and, except after the last iteration, adds the agreement
    ``u_hat_{j|i} . v_j`` to ``b``. The loop is unrolled (``num_iterations`` is static), the
    function is pure and jittable, and ``jax.vmap`` maps it over a leading replica axis.

    Args:
      predictions: [B, I, J, D], the prediction vectors ``u_hat_{j|i} = W_ij u_i`` (Eq. 4).
      num_iterations: static number of routing iterations r >= 1.
      bias: optional [J, D], added to ``s_j`` before the squash (SegCaps does this).

    Returns:
      ``(outputs [B, J, D], couplings [B, I, J])``: the output capsules ``v`` and the final
      coupling coefficients ``c``.

    Raises:
      ModelConfigError: if ``num_iterations < 1`` or ``predictions`` is not 4-D (at trace time).

    Examples:
      >>> import jax.numpy as jnp
      >>> v, c = dynamic_routing(jnp.ones((2, 5, 3, 4)), num_iterations=3)
      >>> v.shape, c.shape
      ((2, 3, 4), (2, 5, 3))
    """
    if num_iterations < 1:
        raise ModelConfigError(
            f"num_iterations={num_iterations}: routing needs at least one iteration; pass 1 or more."
        )
    if predictions.ndim != 4:
        raise ModelConfigError(
            f"predictions has shape {predictions.shape}; dynamic routing needs [B, I, J, D]: "
            "add the batch axis or vmap over extra leading axes."
        )
    # Output-major layout [B, J, I, D]: both einsums become batched matrix products over (b, j),
    # about 10x faster on CPU than contracting the I axis in the [B, I, J, D] layout.
    by_output = jnp.swapaxes(predictions, 1, 2)
    num_outputs = by_output.shape[1]
    # With b = 0 the first couplings are uniform, 1 / J (Eq. 6); summing directly keeps XLA from
    # constant-folding a softmax of zeros, which is slow to compile for SegCaps-sized inputs.
    couplings = jnp.full(by_output.shape[:3], 1.0 / num_outputs, predictions.dtype)
    weighted = jnp.sum(by_output, axis=2) / num_outputs  # Eq. 5 with c = 1 / J
    logits = None
    for iteration in range(num_iterations):
        if iteration > 0:
            couplings = jax.nn.softmax(logits, axis=1)  # Eq. 6: softmax over output capsules j
            weighted = jnp.einsum("bji,bjid->bjd", couplings, by_output)  # Eq. 5
        if bias is not None:
            weighted = weighted + bias
        outputs = squash(weighted)  # Eq. 7
        if iteration < num_iterations - 1:
            agreement = jnp.einsum("bjid,bjd->bji", by_output, outputs)  # Alg. 1, line 7
            logits = agreement if logits is None else logits + agreement
    couplings = jnp.swapaxes(couplings, 1, 2)
    return outputs, couplings


def local_routing(votes: Array, num_iterations: int = 3, bias: Array | None = None) -> Array:
    """Locally-constrained routing for convolutional capsules (SegCaps).

    Each output position routes only from the capsules inside its kernel window: the window has
    already been folded into ``votes`` by the convolution that made them, so routing here runs
    independently at every (Y, X) position over the Ci input capsule types.

    Args:
      votes: [B, Y, X, Ci, Co, D], the votes of each input capsule type for each output type at
        each output position.
      num_iterations: static number of routing iterations.
      bias: optional [Co, D], added before the squash.

    Returns:
      [B, Y, X, Co, D], the output capsules.

    Examples:
      >>> import jax.numpy as jnp
      >>> local_routing(jnp.ones((1, 4, 4, 2, 3, 8)), 3).shape
      (1, 4, 4, 3, 8)
    """
    if votes.ndim != 6:
        raise ModelConfigError(
            f"votes has shape {votes.shape}; local routing needs [B, Y, X, Ci, Co, D]."
        )
    batch, rows, cols, types_in, types_out, dims = votes.shape
    flat = votes.reshape(batch * rows * cols, types_in, types_out, dims)
    outputs, _ = dynamic_routing(flat, num_iterations, bias)
    return outputs.reshape(batch, rows, cols, types_out, dims)
