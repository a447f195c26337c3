"""Federated learning: local rounds, hospital sampling, the DP aggregation kernel, privacy.

The public face of ``ccfl_jax.federated``; see each module for details.
"""

from ccfl_jax.federated.aggregate import (
    AggregateDiagnostics,
    Aggregator,
    AggregatorState,
    check_deltas,
    clip_deltas,
    dp_aggregate,
    hospital_norms,
    hospital_sum,
    make_server_optimizer,
    variance_and_scale,
)
from ccfl_jax.federated.fedavg import (
    FederatedAlgorithm,
    LocalLaplace,
    RoundOutput,
    ServerState,
    federated_averaging,
    restore_server_state,
    round_keys,
    save_server_state,
    stack_hospital_data,
)
from ccfl_jax.federated.local_dp import laplace_perturb
from ccfl_jax.federated.loop import train
from ccfl_jax.federated.privacy import (
    PrivacyState,
    account_round,
    accountant_init,
    epsilon,
    noise_for_epsilon,
    spent,
)
from ccfl_jax.federated.rounds import (
    HospitalRunner,
    check_hospital_data,
    hospital_runner,
    make_local_update,
    pick_strategy,
    run_hospitals,
)
from ccfl_jax.federated.sampling import (
    Sampler,
    fixed_size_mask,
    fixed_size_sampler,
    poisson_mask,
    poisson_sampler,
)

__all__ = [
    "AggregateDiagnostics",
    "Aggregator",
    "AggregatorState",
    "FederatedAlgorithm",
    "HospitalRunner",
    "LocalLaplace",
    "PrivacyState",
    "RoundOutput",
    "Sampler",
    "ServerState",
    "account_round",
    "accountant_init",
    "check_deltas",
    "check_hospital_data",
    "clip_deltas",
    "dp_aggregate",
    "epsilon",
    "federated_averaging",
    "fixed_size_mask",
    "fixed_size_sampler",
    "hospital_norms",
    "hospital_runner",
    "hospital_sum",
    "laplace_perturb",
    "make_local_update",
    "make_server_optimizer",
    "noise_for_epsilon",
    "pick_strategy",
    "poisson_mask",
    "poisson_sampler",
    "restore_server_state",
    "round_keys",
    "run_hospitals",
    "save_server_state",
    "spent",
    "stack_hospital_data",
    "train",
    "variance_and_scale",
]
