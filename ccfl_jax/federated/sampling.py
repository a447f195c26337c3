"""Hospital sub-sampling per round (Sec. II-C-1), expressed as a static-shape mask [H].

Two schemes: a fixed number m of H hospitals drawn without replacement, or Poisson sampling in
which every hospital joins independently with rate q. Either way the result is a boolean mask of
shape [H], so every jitted function downstream sees the same shapes whatever was drawn.

The privacy accountant (``privacy.py``) models a round as a Poisson-sampled Gaussian mechanism
with rate q; for fixed-size sampling it uses q = m / H, the usual approximation (Geyer et al.
2017), which is not a formal guarantee for sampling without replacement. ``Sampler.rate`` and
``Sampler.expected_count`` give the numbers the accountant and the aggregator need.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ccfl_jax.errors import FederatedConfigError
from ccfl_jax.typing import Mask, PRNGKey


class Sampler(NamedTuple):
    """A hospital sampling scheme.

    Attributes:
      sample: ``sample(rng) -> mask [H] bool``, jittable.
      num_hospitals: H.
      rate: the per-hospital inclusion probability q (m / H for fixed size).
      expected_count: the expected number of sampled hospitals, q * H.
      kind: ``'fixed'`` or ``'poisson'``.
    """

    sample: Callable[[PRNGKey], Mask]
    num_hospitals: int
    rate: float
    expected_count: float
    kind: str


def fixed_size_mask(rng: PRNGKey, num_hospitals: int, num_sampled: int) -> Mask:
    """Draws exactly ``num_sampled`` of ``num_hospitals`` hospitals without replacement.

    Args:
      rng: a PRNG key.
      num_hospitals: H.
      num_sampled: m, with 0 <= m <= H.

    Returns:
      mask: [H] bool with exactly m entries True.

    Examples:
      >>> import jax
      >>> int(fixed_size_mask(jax.random.PRNGKey(0), 5, 3).sum())
      3
    """
    _check_count(num_hospitals, num_sampled)
    scores = jax.random.uniform(rng, (num_hospitals,))
    # The m smallest scores win: rank < m. Ties have probability zero.
    ranks = jnp.argsort(jnp.argsort(scores))
    return ranks < num_sampled


def poisson_mask(rng: PRNGKey, num_hospitals: int, rate: float) -> Mask:
    """Includes each hospital independently with probability ``rate``.

    Args:
      rng: a PRNG key.
      num_hospitals: H.
      rate: q in [0, 1].

    Returns:
      mask: [H] bool; the number of True entries is Binomial(H, q).

    Examples:
      >>> import jax
      >>> poisson_mask(jax.random.PRNGKey(0), 4, 1.0).tolist()
      [True, True, True, True]
    """
    _check_rate(rate)
    return jax.random.uniform(rng, (num_hospitals,)) < rate


def fixed_size_sampler(num_hospitals: int, num_sampled: int) -> Sampler:
    """A :class:`Sampler` that draws exactly m of H hospitals each round.

    Examples:
      >>> s = fixed_size_sampler(5, 3)
      >>> s.rate, s.expected_count
      (0.6, 3.0)
    """
    _check_count(num_hospitals, num_sampled)

    def sample(rng):
        return fixed_size_mask(rng, num_hospitals, num_sampled)

    rate = num_sampled / num_hospitals
    return Sampler(sample, num_hospitals, rate, float(num_sampled), "fixed")


def poisson_sampler(num_hospitals: int, rate: float) -> Sampler:
    """A :class:`Sampler` that includes each hospital independently with rate q.

    Examples:
      >>> poisson_sampler(8, 0.25).expected_count
      2.0
    """
    _check_count(num_hospitals, 0)
    _check_rate(rate)

    def sample(rng):
        return poisson_mask(rng, num_hospitals, rate)

    return Sampler(sample, num_hospitals, float(rate), rate * num_hospitals, "poisson")


def _check_count(num_hospitals: int, num_sampled: int) -> None:
    if num_hospitals < 1:
        raise FederatedConfigError(
            f"num_hospitals={num_hospitals}: a federation needs at least one hospital."
        )
    if not 0 <= num_sampled <= num_hospitals:
        raise FederatedConfigError(
            f"num_sampled={num_sampled} is outside [0, num_hospitals={num_hospitals}]: "
            "pick how many hospitals train each round, at most all of them."
        )


def _check_rate(rate: float) -> None:
    if not 0.0 <= rate <= 1.0:
        raise FederatedConfigError(
            f"sampling rate q={rate} is not a probability: pass a value in [0, 1]."
        )
