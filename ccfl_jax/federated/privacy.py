"""Hospital-level (epsilon, delta) of a federated run, from dp-accounting.

A round is a Poisson-sampled Gaussian mechanism: each hospital takes part with rate q, its clipped
delta (norm <= S) is summed with the others, and N(0, sigma^2 S^2) is added to the sum (Eq. 8).
Neighbouring runs differ by one whole hospital (add/remove), so epsilon here protects a hospital's
entire dataset, not one patient. T rounds compose; the RDP accountant gives epsilon, the PLD
accountant is a tighter cross-check. Fixed-size sampling of m of H hospitals is accounted as
Poisson with q = m / H, the usual approximation (Geyer et al. 2017; not a formal bound).

How weak this is with a handful of hospitals (delta = 1e-5, RDP; see docs/privacy.md):

  ======================  =====  =====  ========  ===========================
  H, q                    sigma  T      epsilon   sigma for eps = 8 / eps = 1
  ======================  =====  =====  ========  ===========================
  5 hospitals, q = 3/5    1.0    20     19.4      1.90 / 11.0
  5 hospitals, q = 5/5    1.0    20     30.1      2.85 / 18.1
  10 hospitals, q = 3/10  1.0    20     10.8      1.20 / 5.76
  100 hospitals, q = 0.1  1.0    20     4.26      0.74 / 2.30
  ======================  =====  =====  ========  ===========================

Epsilon depends on q, sigma and T only, but the noise on the AVERAGE is sigma * S / m_t: with
m_t = 3 of 5 hospitals, epsilon = 1 needs sigma = 11, noise of std 3.7 S on every parameter of
an average of updates each of norm <= S, which drowns the signal; with 1000 hospitals at q = 0.1
the same epsilon costs std 0.023 S. Client-level DP across a handful of hospitals is weak.

References:
  Mironov 2017 (RDP); Mironov, Talwar, Zhang 2019 (sampled Gaussian); Geyer et al. 2017;
  McMahan et al. 2018, "Learning differentially private recurrent language models".
"""

import math
from typing import NamedTuple

import dp_accounting
from dp_accounting import pld, rdp

from ccfl_jax.errors import FederatedConfigError, PrivacyBudgetExceededError

# RDP orders: fractional ones below 2 fail to converge for large q (dp-accounting then drops
# them with a warning), so start at 2.
RDP_ORDERS = (2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5) + tuple(range(5, 64)) + (128, 256, 512)


class PrivacyState(NamedTuple):
    """What the accountant needs to know about a run.

    Attributes:
      noise_multiplier: sigma.
      sampling_rate: q, the per-round hospital inclusion probability.
      delta: the target delta.
      rounds: rounds completed (and accounted) so far.
      target_epsilon: the budget; None for no budget.
    """

    noise_multiplier: float
    sampling_rate: float
    delta: float
    rounds: int
    target_epsilon: float | None


def round_event(noise_multiplier: float, sampling_rate: float, rounds: int):
    """The dp-accounting event of ``rounds`` Poisson-sampled Gaussian rounds."""
    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    return dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian), rounds
    )


def epsilon(
    noise_multiplier: float,
    sampling_rate: float,
    rounds: int,
    delta: float,
    *,
    method: str = "rdp",
) -> float:
    """Epsilon after ``rounds`` rounds of the sampled Gaussian mechanism.

    Args:
      noise_multiplier: sigma >= 0 (0 means no privacy: epsilon is infinite).
      sampling_rate: q in [0, 1].
      rounds: T >= 0.
      delta: in (0, 1).
      method: ``'rdp'`` (Renyi DP accountant) or ``'pld'`` (privacy loss distributions).

    Returns:
      epsilon, a float (``math.inf`` without noise).

    Examples:
      >>> round(epsilon(1.0, 0.6, 20, 1e-5), 1)
      19.4
    """
    _check(noise_multiplier, sampling_rate, rounds, delta)
    if rounds == 0 or sampling_rate == 0.0:
        return 0.0
    if noise_multiplier == 0.0:
        return math.inf
    if method == "rdp":
        accountant = rdp.RdpAccountant(orders=list(RDP_ORDERS))
    elif method == "pld":
        accountant = pld.PLDAccountant()
    else:
        raise FederatedConfigError(f"accounting method {method!r}: pick 'rdp' or 'pld'.")
    accountant.compose(round_event(noise_multiplier, sampling_rate, rounds))
    return float(accountant.get_epsilon(delta))


def noise_for_epsilon(
    target_epsilon: float, sampling_rate: float, rounds: int, delta: float
) -> float:
    """The smallest sigma whose RDP epsilon after ``rounds`` rounds is at most the target.

    Examples:
      >>> sigma = noise_for_epsilon(8.0, 0.6, 20, 1e-5)
      >>> epsilon(sigma, 0.6, 20, 1e-5) <= 8.0
      True
    """
    _check(1.0, sampling_rate, rounds, delta)
    if target_epsilon <= 0:
        raise FederatedConfigError(f"target_epsilon={target_epsilon} must be > 0.")
    return float(
        dp_accounting.calibrate_dp_mechanism(
            lambda: rdp.RdpAccountant(orders=list(RDP_ORDERS)),
            lambda sigma: round_event(sigma, sampling_rate, rounds),
            target_epsilon,
            delta,
            bracket_interval=dp_accounting.LowerEndpointAndGuess(1e-2, 1.0),
            tol=1e-4,
        )
    )


def accountant_init(
    noise_multiplier: float,
    sampling_rate: float,
    delta: float,
    *,
    target_epsilon: float | None = None,
    rounds: int = 0,
) -> PrivacyState:
    """Starts (or, with ``rounds``, resumes) the per-round accountant of a run."""
    _check(noise_multiplier, sampling_rate, rounds, delta)
    return PrivacyState(noise_multiplier, sampling_rate, delta, rounds, target_epsilon)


def spent(state: PrivacyState) -> float:
    """Epsilon spent by the rounds accounted so far."""
    return epsilon(state.noise_multiplier, state.sampling_rate, state.rounds, state.delta)


def account_round(state: PrivacyState) -> tuple[PrivacyState, float]:
    """Accounts one more round, refusing it if it would pass the budget.

    Call it BEFORE running the round: a run that would pass ``--target_epsilon`` stops with the
    error instead of releasing a model it is not allowed to release.

    Returns:
      (state with rounds + 1, epsilon after that round).

    Raises:
      PrivacyBudgetExceededError: if the epsilon after the round exceeds ``target_epsilon``.

    Examples:
      >>> state = accountant_init(1.0, 0.6, 1e-5, target_epsilon=5.0)
      >>> state, eps = account_round(state)
      >>> state.rounds, eps < 5.0
      (1, True)
    """
    after = state._replace(rounds=state.rounds + 1)
    eps = spent(after)
    if state.target_epsilon is not None and eps > state.target_epsilon:
        raise PrivacyBudgetExceededError(
            f"round {after.rounds} would bring epsilon to {eps:.3f} > target_epsilon="
            f"{state.target_epsilon} (sigma={state.noise_multiplier}, q={state.sampling_rate}, "
            f"delta={state.delta}); the run stops after {state.rounds} rounds. Raise "
            "noise_multiplier (see noise_for_epsilon) or lower the number of rounds."
        )
    return after, eps


def _check(noise_multiplier, sampling_rate, rounds, delta) -> None:
    if noise_multiplier < 0:
        raise FederatedConfigError(f"noise_multiplier={noise_multiplier} must be >= 0.")
    if not 0.0 <= sampling_rate <= 1.0:
        raise FederatedConfigError(f"sampling_rate q={sampling_rate} must be in [0, 1].")
    if rounds < 0:
        raise FederatedConfigError(f"rounds={rounds} must be >= 0.")
    if not 0.0 < delta < 1.0:
        raise FederatedConfigError(f"delta={delta} must be in (0, 1), e.g. 1e-5.")
