"""Subprocess of multihost_test: one of two JAX processes (2 CPU devices each, gloo collectives).

Usage: multihost_worker.py PROCESS_ID PORT. Runs one round with the hospital axis sharded over
all 4 devices of both processes (jax.distributed), and the same round unsharded in this process
alone; prints one JSON line.
"""

import json
import sys


def main(process_id: int, port: int) -> None:
    import jax

    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id
    )
    import numpy as np
    import optax

    from ccfl_jax import federated as fl
    from ccfl_jax.federated import testing

    num_hospitals = 6  # not a multiple of the 4 global devices: exercises the padding
    local_update = fl.make_local_update(
        testing.linear_loss_fn, optax.adam(1e-2), local_steps=2, batch_size=4
    )
    data = testing.synthetic_hospitals(num_hospitals, 6, 8)
    params = testing.linear_params(8)
    results, spans_processes = {}, None
    for strategy in ("shard", "vmap"):
        algorithm = fl.federated_averaging(
            local_update,
            fl.dp_aggregate(1.0, 0.5),
            fl.fixed_size_sampler(num_hospitals, 4),
            strategy=strategy,
        )
        state = algorithm.init(params, jax.random.PRNGKey(0))
        deltas, _ = algorithm.compute_deltas(state, data)
        if strategy == "shard":
            spans_processes = not all(x.is_fully_addressable for x in jax.tree.leaves(deltas))
        state, _ = algorithm.aggregate(state, deltas, algorithm.sample(state))
        leaves = [np.asarray(x.addressable_data(0), np.float64) for x in jax.tree.leaves(state)]
        results[strategy] = np.concatenate([np.ravel(x) for x in leaves])
    print(
        json.dumps(
            {
                "process": process_id,
                "devices": jax.device_count(),
                "local_devices": jax.local_device_count(),
                "deltas_span_processes": spans_processes,
                "max_abs_diff": float(np.max(np.abs(results["shard"] - results["vmap"]))),
                "max_abs": float(np.max(np.abs(results["vmap"]))),
            }
        )
    )


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
