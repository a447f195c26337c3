"""Subprocess of sharding_test: runs one round sharded over 8 fake CPU devices and on one device.

Must start with XLA_FLAGS=--xla_force_host_platform_device_count=8. Prints one JSON line.
"""

import json


def main() -> None:
    import jax
    import numpy as np
    import optax

    from ccfl_jax import federated as fl
    from ccfl_jax.federated import testing

    num_hospitals = 6  # not a multiple of 8: exercises the padding of the hospital axis
    local_update = fl.make_local_update(
        testing.linear_loss_fn, optax.adam(1e-2), local_steps=2, batch_size=4
    )
    data = testing.synthetic_hospitals(num_hospitals, 6, 8)
    params = testing.linear_params(8)
    results = {}
    for strategy in ("shard", "vmap"):
        algorithm = fl.federated_averaging(
            local_update,
            fl.dp_aggregate(1.0, 0.5),
            fl.fixed_size_sampler(num_hospitals, 4),
            strategy=strategy,
        )
        state = algorithm.init(params, jax.random.PRNGKey(0))
        deltas, metrics = algorithm.compute_deltas(state, data)
        state, _ = algorithm.aggregate(state, deltas, algorithm.sample(state))
        leaves = jax.tree.leaves((state.params, deltas, metrics))
        results[strategy] = np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in leaves])
    print(
        json.dumps(
            {
                "devices": jax.device_count(),
                "max_abs_diff": float(np.max(np.abs(results["shard"] - results["vmap"]))),
                "max_abs": float(np.max(np.abs(results["vmap"]))),
                "size": int(results["vmap"].size),
            }
        )
    )


if __name__ == "__main__":
    main()
