"""Local differential privacy: Laplace noise a hospital adds to its own delta (Eq. 14-16).

Unlike the server's Gaussian mechanism (``aggregate.py``), this noise is added before the delta
leaves the hospital, so it also protects against the server. Its epsilon is a per-release local
guarantee and is not composed into the run's reported (epsilon, delta).

References:
  Kumar et al. 2020, arXiv 2007.06537, Eq. 14-16; Dwork and Roth 2014, Sec. 3.3.
"""

import jax

from ccfl_jax.errors import FederatedConfigError
from ccfl_jax.typing import Params, PRNGKey


def laplace_perturb(delta: Params, rng: PRNGKey, *, sensitivity: float, epsilon: float) -> Params:
    """Local DP: adds Laplace(0, b) noise with b = sensitivity / epsilon to every entry (Eq. 15).

    A hospital calls this on its own delta before sharing it; one key per leaf.

    Args:
      delta: one hospital's delta pytree (no hospital axis).
      rng: a PRNG key.
      sensitivity: the L1 sensitivity Delta f of the shared quantity (Eq. 14).
      epsilon: the local privacy parameter, > 0.

    Returns:
      the perturbed delta, same structure.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> out = laplace_perturb({'w': jnp.zeros(3)}, jax.random.PRNGKey(0),
      ...                       sensitivity=1.0, epsilon=2.0)
      >>> out['w'].shape
      (3,)
    """
    if sensitivity <= 0 or epsilon <= 0:
        raise FederatedConfigError(
            f"local Laplace noise needs sensitivity > 0 and epsilon > 0, got "
            f"sensitivity={sensitivity}, epsilon={epsilon}."
        )
    scale = sensitivity / epsilon  # Eq. 15
    leaves, treedef = jax.tree.flatten(delta)
    keys = jax.random.split(rng, len(leaves))
    noisy = [x + scale * jax.random.laplace(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)
