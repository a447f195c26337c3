"""A resumable training loop: rounds of an algorithm, a checkpoint after each, a privacy budget.

The main job (which adds the ledger between ``compute_deltas`` and ``aggregate``) follows the same
pattern; this loop is the ledger-free version and the one the resume test kills.
"""

from collections.abc import Callable
from typing import Any

from ccfl_jax import checkpoint
from ccfl_jax.federated import fedavg, privacy


def train(
    algorithm: fedavg.FederatedAlgorithm,
    initial_state: fedavg.ServerState,
    data: dict,
    *,
    rounds: int,
    run_dir: str,
    accountant: privacy.PrivacyState | None = None,
    on_round: Callable[[fedavg.ServerState, fedavg.RoundOutput, float | None], Any] | None = None,
    flags: dict | None = None,
) -> tuple[fedavg.ServerState, int]:
    """Runs ``rounds`` rounds in total, resuming from the latest checkpoint in ``run_dir``.

    The initial state is checkpointed as round 0. Before each round the accountant (if any)
    accounts it and raises ``PrivacyBudgetExceededError`` when it would pass the budget, so the
    run stops with its last allowed model checkpointed.

    Args:
      algorithm: from :func:`federated_averaging`.
      initial_state: ``algorithm.init(params, rng)``; also the structure to restore into.
      data: stacked hospital data (see :func:`check_hospital_data`).
      rounds: total rounds of the run (not of this call).
      run_dir: where checkpoints live.
      accountant: the privacy state at round 0; its rounds are set from the checkpoint.
      on_round: called as ``on_round(state, output, epsilon)`` after each round's checkpoint.
      flags: JSON-able run settings written into each meta.json.

    Returns:
      (final state, the round the run resumed from; 0 for a fresh start).
    """
    if checkpoint.latest_checkpoint(run_dir) is None:
        fedavg.save_server_state(run_dir, initial_state, flags=flags)
    state, _, info = fedavg.restore_server_state(run_dir, initial_state)
    resumed_from = info.round
    if accountant is not None:
        accountant = accountant._replace(rounds=resumed_from)
    while int(state.round) < rounds:
        eps = None
        if accountant is not None:
            accountant, eps = privacy.account_round(accountant)
        state, output = algorithm.apply(state, data)
        fedavg.save_server_state(run_dir, state, flags=flags)
        if on_round is not None:
            on_round(state, output, eps)
    return state, resumed_from
