"""The ledger in the loop: one round's hashes, votes and accepted mask (paper Fig. 4-5).

Between a round's local training and its aggregation the main job:

1. opens round r on chain with the hash of the global model it started from;
2. has every sampled hospital submit the sha256 of its serialized delta, its example count and
   its local loss, each transaction signed with that hospital's own key;
3. has each of the round's validators (the k ids closest to the round seed, Eq. 13) score every
   other sampled hospital's update from the mean absolute error of the updated model
   ``theta + delta_h`` on the validator's own held-out scans (Eq. 17), and cast that score;
4. reads back which updates a quorum passed (Eq. 18): the accepted mask that goes into the
   aggregation kernel. The leader finalizes after aggregation, with the new model's hash.

Only hashes, counts and integer scores go on chain; scans and weights never do.

Which score. The paper scores a local model by its MAE and passes it under a threshold gamma.
Across hospitals that are not alike, that absolute rule mostly measures the validator: a site
that holds only non-COVID scans sees an MAE near 1 for any model leaning towards COVID, a
COVID-only site near 0, so whether an honest update passes depends on who was drawn to
validate (we saw exactly this on the bundled sample). The default score is therefore the
*increase* in the validator's MAE that the update causes, ``max(0, MAE_v(theta + delta_h) -
MAE_v(theta))``, which is near 0 for an honest update at any site and large for a scaled or
sign-flipped one; gamma is then the largest tolerated increase. ``score='mae'`` keeps the
paper's absolute rule. Either way the chain applies Eq. 18 to the integer score unchanged.
"""

import dataclasses
from collections.abc import Callable, Sequence

import jax
import numpy as np

from ccfl_jax import checkpoint
from ledger import consensus

SCORES = ("mae_increase", "mae")


@dataclasses.dataclass(frozen=True)
class RoundVotes:
    """What the chain decided about one round's updates.

    Attributes:
      round: 1-based round index.
      leader: the hospital that finalizes.
      validators: the round's validators, closest to the seed first.
      sampled: the sampled hospitals' names.
      scores: ``{(validator, hospital): score}`` of every vote cast (see ``score``).
      accepted: ``[H]`` bool, hospitals whose update a quorum passed.
      delta_hashes: ``{hospital: sha256 hex}`` as submitted.
    """

    round: int
    leader: str
    validators: tuple[str, ...]
    sampled: tuple[str, ...]
    scores: dict
    accepted: np.ndarray
    delta_hashes: dict


def hospital_delta(deltas, index: int):
    """Hospital ``index``'s delta out of the stacked ``deltas [H, ...]`` (a host-side pytree)."""
    return jax.tree.map(lambda leaf: np.asarray(leaf[index]), deltas)


def validator_mae(
    probabilities_fn: Callable,
    params,
    delta,
    held_out: tuple[np.ndarray, np.ndarray],
) -> float:
    """Eq. 17: MAE of the updated model ``params + delta`` on a validator's held-out scans.

    Args:
      probabilities_fn: ``probabilities_fn(params, images [N, S, S, 1]) -> [N]`` P(covid).
      params: the round's starting global params.
      delta: one hospital's delta (same structure).
      held_out: the validator's ``(images [N, S, S, 1], labels [N])``.

    Returns:
      ``mean |y - p|`` over the validator's scans.
    """
    updated = jax.tree.map(lambda p, d: p + d, params, delta)
    images, labels = held_out
    probabilities = np.asarray(probabilities_fn(updated, images), np.float64)
    return consensus.mean_absolute_error(labels.astype(float).tolist(), probabilities.tolist())


def run_round_votes(
    consortium,
    round_index: int,
    model_hash: str,
    hospitals: Sequence[str],
    sampled: np.ndarray,
    deltas,
    metrics: dict,
    params,
    probabilities_fn: Callable,
    held_out: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    score: str = "mae_increase",
) -> RoundVotes:
    """Steps 1-4 above for round ``round_index``; returns the chain's decision.

    Args:
      consortium: a :class:`ledger.Consortium`.
      round_index: r >= 1.
      model_hash: sha256 hex of the global model the round started from (checkpoint r - 1).
      hospitals: names in hospital order.
      sampled: ``[H]`` bool, this round's sampled hospitals.
      deltas: ``[H, ...]`` the hospitals' deltas as shared (after any local noise or attack).
      metrics: the local metrics, ``num_examples [H]`` and ``loss_last [H]``.
      params: the round's starting global params.
      probabilities_fn: see :func:`validator_mae`.
      held_out: per hospital, its held-out ``(images, labels)`` for scoring others.
      score: ``'mae_increase'`` (default) or ``'mae'`` (see the module docstring).
    """
    if score not in SCORES:
        raise ValueError(f"score={score!r}: pick one of {SCORES}.")
    names = [hospitals[h] for h in np.flatnonzero(sampled)]
    info = consortium.open_round(round_index, model_hash, names)
    delta_hashes = {}
    for name in names:
        index = hospitals.index(name)
        delta_hashes[name] = checkpoint.delta_hash(hospital_delta(deltas, index))
        consortium.submit_update(
            round_index,
            name,
            delta_hashes[name],
            int(metrics["num_examples"][index]),
            max(0.0, float(metrics["loss_last"][index])),
        )
    scores = {}
    for validator in info.validators:
        own_scans = held_out[hospitals.index(validator)]
        baseline = 0.0
        if score == "mae_increase":
            no_change = jax.tree.map(np.zeros_like, hospital_delta(deltas, 0))
            baseline = validator_mae(probabilities_fn, params, no_change, own_scans)
        for name in names:
            if name == validator:
                continue  # the contract forbids a vote on one's own update
            delta = hospital_delta(deltas, hospitals.index(name))
            mae = validator_mae(probabilities_fn, params, delta, own_scans)
            value = max(0.0, mae - baseline)
            consortium.vote(round_index, validator, name, value)
            scores[(validator, name)] = value
    accepted = np.array(consortium.accepted_mask(round_index), bool)  # hospital order
    return RoundVotes(
        round=round_index,
        leader=info.leader,
        validators=info.validators,
        sampled=tuple(names),
        scores=scores,
        accepted=accepted,
        delta_hashes=delta_hashes,
    )
