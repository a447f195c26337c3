"""Subprocess of checkpoint_test: a small DP FedAvg run that checkpoints after every round.

Usage: python tests/federated/resume_worker.py RUN_DIR ROUNDS SECONDS_PER_ROUND
Prints one JSON line per round and a last line with the final model hash.
"""

import json
import sys
import time


def main(run_dir: str, rounds: int, delay: float) -> None:
    import jax
    import optax

    from ccfl_jax import checkpoint
    from ccfl_jax import federated as fl
    from ccfl_jax.federated import testing

    local_update = fl.make_local_update(
        testing.linear_loss_fn, optax.adam(1e-2), local_steps=2, batch_size=4
    )
    aggregator = fl.dp_aggregate(
        0.5, 0.3, server_optimizer=fl.make_server_optimizer("fedadam", 0.05), denominator=3.0
    )
    algorithm = fl.federated_averaging(
        local_update, aggregator, fl.poisson_sampler(4, 0.75), strategy="loop"
    )
    initial = algorithm.init(testing.linear_params(6), jax.random.PRNGKey(7))

    def on_round(state, output, eps):
        del output
        print(json.dumps({"round": int(state.round), "epsilon": eps}), flush=True)
        time.sleep(delay)

    state, resumed_from = fl.train(
        algorithm,
        initial,
        testing.synthetic_hospitals(4, 8, 6),
        rounds=rounds,
        run_dir=run_dir,
        accountant=fl.accountant_init(0.3, 0.75, 1e-5),
        on_round=on_round,
    )
    final = {"resumed_from": resumed_from, "hash": checkpoint.model_hash(state.params)}
    print(json.dumps(final), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]))
