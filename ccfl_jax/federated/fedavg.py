"""Federated averaging with client-level DP as a pair of pure functions (fedjax style).

``federated_averaging(...) -> FederatedAlgorithm(init, apply, sample, compute_deltas,
aggregate)``. ``apply`` is one whole round. The main job, which puts hashes on a ledger and takes
an accepted mask from its vote, calls the halves instead:

    sampled = algorithm.sample(state)                         # [H] bool
    deltas, metrics = algorithm.compute_deltas(state, data)   # [H, ...], hospitals train
    ... hash deltas, vote -> accepted [H] bool ...
    state, out = algorithm.aggregate(state, deltas, sampled & accepted, metrics['num_examples'])

Randomness: ``ServerState.rng`` is a base key that never changes; round r uses
``fold_in(rng, r)`` split into independent streams (sampling, hospitals, local noise, server
noise), so a run resumed from a checkpoint draws exactly what the uninterrupted run drew.

References:
  McMahan et al. 2017 (FedAvg); Geyer et al. 2017 (DP-FedAvg, client level); Li et al. 2020
  (FedProx); Kumar et al. 2020, Fig. 2 and Eq. 8.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from ccfl_jax import checkpoint
from ccfl_jax.federated import aggregate as aggregate_lib
from ccfl_jax.federated import local_dp, rounds, sampling
from ccfl_jax.typing import Array, Params, PRNGKey

# Independent random streams of one round, folded into the round key.
_SAMPLE, _HOSPITALS, _LOCAL_NOISE, _SERVER_NOISE = range(4)


@flax.struct.dataclass
class ServerState:
    """The server's state between rounds.

    Attributes:
      params: the global model params.
      aggregator_state: the aggregation kernel's state (server optimizer).
      round: int32 scalar, rounds completed.
      rng: the run's base PRNG key (constant; rounds fold their index into it).
    """

    params: Params
    aggregator_state: aggregate_lib.AggregatorState
    round: Array
    rng: PRNGKey


class RoundOutput(NamedTuple):
    """What one round reports.

    Attributes:
      sampled: [H] bool, hospitals drawn this round.
      mask: [H] bool, hospitals whose delta was aggregated (sampled and accepted).
      metrics: dict of [H], the hospitals' local training metrics.
      diagnostics: :class:`AggregateDiagnostics` of the aggregation.
    """

    sampled: Array
    mask: Array
    metrics: dict
    diagnostics: aggregate_lib.AggregateDiagnostics


class LocalLaplace(NamedTuple):
    """Local DP with Laplace noise each hospital adds to its delta before sharing (Eq. 15).

    Attributes:
      sensitivity: the L1 sensitivity of the shared delta.
      epsilon: the local epsilon of one release.
    """

    sensitivity: float
    epsilon: float


class FederatedAlgorithm(NamedTuple):
    """A federated algorithm as pure functions over :class:`ServerState`.

    Attributes:
      init: ``init(params, rng) -> ServerState``.
      apply: ``apply(state, data, accepted=None) -> (state, RoundOutput)``, one round.
      sample: ``sample(state) -> [H] bool``, this round's sampled hospitals.
      compute_deltas: ``compute_deltas(state, data) -> (deltas [H, ...], metrics [H])``.
      aggregate: ``aggregate(state, deltas, mask, num_examples=None) -> (state,
        AggregateDiagnostics)``; advances the round.
      strategy: the hospital-axis strategy in use.
    """

    init: Callable[[Params, PRNGKey], ServerState]
    apply: Callable[..., tuple[ServerState, RoundOutput]]
    sample: Callable[[ServerState], Array]
    compute_deltas: Callable[[ServerState, dict], tuple[Params, dict]]
    aggregate: Callable[..., tuple[ServerState, aggregate_lib.AggregateDiagnostics]]
    strategy: str


def round_keys(state: ServerState) -> list[PRNGKey]:
    """The round's independent keys: sampling, hospitals, local noise, server noise."""
    return list(jax.random.split(jax.random.fold_in(state.rng, state.round), 4))


def federated_averaging(
    local_update: rounds.LocalUpdate,
    aggregator: aggregate_lib.Aggregator,
    sampler: sampling.Sampler,
    *,
    strategy: str = "auto",
    local_laplace: LocalLaplace | None = None,
    skip_unsampled: bool = False,
) -> FederatedAlgorithm:
    """Builds DP federated averaging from a local update, an aggregator and a sampler.

    Args:
      local_update: from :func:`ccfl_jax.federated.make_local_update`.
      aggregator: from :func:`ccfl_jax.federated.dp_aggregate`.
      sampler: from :mod:`ccfl_jax.federated.sampling`; its H must match the data.
      strategy: hospital-axis strategy (``'auto'``, ``'vmap'``, ``'loop'``, ``'shard'``).
      local_laplace: optional local Laplace noise each hospital adds to its delta (Eq. 15).
      skip_unsampled: if True, ``compute_deltas`` returns zero deltas and metrics for the
        hospitals this round did not sample, and the ``'loop'`` strategy does not train them
        (saving (H - m) / H of the local compute). If False, every hospital trains every round
        (static shapes) and the unsampled deltas are masked out in aggregation.

    Returns:
      A :class:`FederatedAlgorithm`.
    """
    runner = rounds.hospital_runner(local_update, strategy=strategy)
    aggregate_step = jax.jit(aggregator.update)

    def perturb(deltas, key):
        keys = jax.random.split(key, sampler.num_hospitals)
        return jax.vmap(
            lambda d, k: local_dp.laplace_perturb(
                d, k, sensitivity=local_laplace.sensitivity, epsilon=local_laplace.epsilon
            )
        )(deltas, keys)

    perturb = jax.jit(perturb) if local_laplace is not None else None

    def init_fn(params, rng):
        return ServerState(
            params=params,
            aggregator_state=aggregator.init(params),
            round=jnp.asarray(0, jnp.int32),
            rng=rng,
        )

    def sample_fn(state):
        return sampler.sample(round_keys(state)[_SAMPLE])

    def compute_deltas_fn(state, data):
        keys = round_keys(state)
        hospital_keys = jax.random.split(keys[_HOSPITALS], sampler.num_hospitals)
        active = np.asarray(sample_fn(state)) if skip_unsampled else None
        deltas, metrics = runner.run(state.params, data, hospital_keys, active)
        if perturb is not None:
            deltas = perturb(deltas, keys[_LOCAL_NOISE])
            if active is not None:  # skipped hospitals share nothing, not noise
                deltas = jax.tree.map(
                    lambda x: jnp.where(np.reshape(active, (-1,) + (1,) * (x.ndim - 1)), x, 0),
                    deltas,
                )
        return deltas, metrics

    def aggregate_fn(state, deltas, mask, num_examples=None):
        aggregate_lib.check_deltas(deltas, state.params, sampler.num_hospitals)
        noise_key = round_keys(state)[_SERVER_NOISE]
        params, agg_state, diagnostics = aggregate_step(
            deltas,
            jnp.asarray(mask),
            state.aggregator_state,
            state.params,
            noise_key,
            num_examples=num_examples,
        )
        new_state = state.replace(params=params, aggregator_state=agg_state, round=state.round + 1)
        return new_state, diagnostics

    def apply_fn(state, data, accepted=None):
        sampled = sample_fn(state)
        deltas, metrics = compute_deltas_fn(state, data)
        mask = sampled if accepted is None else sampled & jnp.asarray(accepted, bool)
        new_state, diagnostics = aggregate_fn(state, deltas, mask, metrics["num_examples"])
        return new_state, RoundOutput(sampled, mask, metrics, diagnostics)

    return FederatedAlgorithm(
        init=init_fn,
        apply=apply_fn,
        sample=sample_fn,
        compute_deltas=compute_deltas_fn,
        aggregate=aggregate_fn,
        strategy=runner.strategy,
    )


def stack_hospital_data(images: Any, labels: Any, mask: Any) -> dict:
    """The dict ``{'images', 'labels', 'mask'}`` the runner takes, e.g. from HospitalArrays."""
    return {"images": images, "labels": labels, "mask": mask}


def save_server_state(
    run_dir: str, state: ServerState, *, flags: dict | None = None, extra: Any = None
):
    """Checkpoints ``state`` (params hashed apart, the rest with orbax); see ccfl_jax.checkpoint.

    Args:
      run_dir: the run's folder.
      state: the server state after ``state.round`` rounds.
      flags: JSON-able run settings for meta.json.
      extra: an optional pytree of arrays saved alongside (e.g. accountant inputs).

    Returns:
      The written :class:`ccfl_jax.checkpoint.CheckpointInfo`.
    """
    rest = {
        "aggregator_state": state.aggregator_state,
        "round": state.round,
        "rng": _key_data(state.rng),
    }
    if extra is not None:
        rest["extra"] = extra
    return checkpoint.save(run_dir, int(state.round), state.params, rest, flags=flags)


def restore_server_state(run_dir: str, template: ServerState, *, extra: Any = None):
    """Restores the latest verified checkpoint into ``template``'s structure.

    Args:
      run_dir: the run's folder.
      template: a state of the right structure, e.g. ``algorithm.init(params, rng)``.
      extra: the structure of the ``extra`` pytree given to :func:`save_server_state`, if any.

    Returns:
      (state, extra, info); raises ``CheckpointNotFoundError`` when there is none.
    """
    rest = {"aggregator_state": template.aggregator_state, "round": template.round}
    rest["rng"] = _key_data(template.rng)
    if extra is not None:
        rest["extra"] = extra
    params, rest, info = checkpoint.restore(run_dir, template.params, rest)
    state = ServerState(
        params=jax.tree.map(jnp.asarray, params),
        aggregator_state=jax.tree.map(jnp.asarray, rest["aggregator_state"]),
        round=jnp.asarray(rest["round"], jnp.int32),
        rng=_like_key(jnp.asarray(rest["rng"]), template.rng),
    )
    return state, rest.get("extra"), info


def _is_typed_key(key) -> bool:
    return jnp.issubdtype(jnp.asarray(key).dtype, jax.dtypes.prng_key)


def _key_data(key):
    """Raw uint32 data of a key (typed keys cannot be written by orbax as arrays)."""
    return jax.random.key_data(key) if _is_typed_key(key) else key


def _like_key(data, template):
    return jax.random.wrap_key_data(data) if _is_typed_key(template) else data
