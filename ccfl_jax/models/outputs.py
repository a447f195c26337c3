"""What a classifier's first output means, and P(covid) from it.

Every classifier here returns ``(outputs [B, 2], aux)``. Its class attribute ``output_kind`` says
whether ``outputs`` are capsule lengths (``'lengths'``, CapsNet: the probability of a class is
the length of its capsule) or unnormalized logits (``'logits'``, the CNN baselines).
"""

import jax
import jax.numpy as jnp

from ccfl_jax.errors import ModelConfigError
from ccfl_jax.typing import Array

COVID_CLASS = 1
OUTPUT_KINDS = ("lengths", "logits")


def check_output_kind(output_kind: str) -> None:
    """Raises :class:`ModelConfigError` unless ``output_kind`` is one of ``OUTPUT_KINDS``."""
    if output_kind not in OUTPUT_KINDS:
        raise ModelConfigError(
            f"output_kind={output_kind!r} is not one of {OUTPUT_KINDS}; set the model's "
            "class attribute output_kind to 'lengths' (capsules) or 'logits' (CNNs)."
        )


def covid_probability(outputs: Array, output_kind: str) -> Array:
    """P(covid) per example from a classifier's first output.

    Args:
      outputs: [B, 2], capsule lengths or logits; class index 1 is covid.
      output_kind: ``'lengths'`` (the covid capsule's length is the probability) or
        ``'logits'`` (softmax over the two classes).

    Returns:
      [B], values in [0, 1].

    Raises:
      ModelConfigError: for an unknown ``output_kind``.

    Examples:
      >>> import jax.numpy as jnp
      >>> covid_probability(jnp.array([[0.0, 0.0]]), 'logits').tolist()
      [0.5]
      >>> covid_probability(jnp.array([[0.2, 0.7]]), 'lengths').tolist()
      [0.699999988079071]
    """
    check_output_kind(output_kind)
    if output_kind == "logits":
        return jax.nn.softmax(outputs, axis=-1)[:, COVID_CLASS]
    return jnp.clip(outputs[:, COVID_CLASS], 0.0, 1.0)


def predicted_class(outputs: Array) -> Array:
    """[B] int32 argmax class; the same rule for lengths and logits."""
    return jnp.argmax(outputs, axis=-1).astype(jnp.int32)
