"""Federated engine benchmarks: hospital strategies, the aggregation kernel, peak memory.

1. Hospital-steps per second (H hospitals x K local steps / wall time of one round's local
   training of the ``cnn_small`` baseline) at H = 4, 8, 16 for each strategy ('vmap', 'loop', 'shard'), side by side with
   fedjax's default approach measured in the same run: a Python loop over hospitals, each calling
   one jitted optimizer step per batch (batches gathered on the host).
2. The DP aggregation kernel (clip, masked sum, noise, server update) on [H, P] deltas, against a
   NumPy single pass over the same array (``deltas.sum(0)``), the memory-bound floor.
3. Peak resident memory of the process (``ru_maxrss``).

Times are medians over repetitions after one compile call; compile time is reported apart.
"""

import functools
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import timing
from ccfl_jax import federated as fl
from ccfl_jax import models, train
from ccfl_jax.federated import testing


def _fedjax_style(loss_fn, optimizer, params, data, keys, local_steps, batch_size):
    """fedjax's default: Python loop over clients, one jitted step per batch."""

    @jax.jit
    def step(params, opt_state, batch, rng):
        grads, _ = jax.grad(loss_fn, has_aux=True)(params, batch, rng)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    host = {k: np.asarray(v) for k, v in data.items()}
    sampler = np.random.default_rng(0)

    def run():
        deltas = []
        for h in range(len(keys)):
            local, opt_state = params, optimizer.init(params)
            real = np.flatnonzero(host["mask"][h])
            for k in range(local_steps):
                rows = sampler.choice(real, min(batch_size, real.size), replace=False)
                batch = {key: host[key][h, rows] for key in host}
                local, opt_state = step(local, opt_state, batch, jax.random.fold_in(keys[h], k))
            deltas.append(jax.tree.map(jnp.subtract, local, params))
        return deltas

    return run


def strategy_figures(quick: bool) -> dict:
    image_size, rows, local_steps, batch_size = (32, 16, 4, 8) if quick else (64, 32, 8, 8)
    repeats = 3 if quick else 5
    model = models.get_model("cnn_small")  # the project's small conv baseline (GroupNorm)
    loss_fn = train.make_loss_fn(model)
    optimizer = optax.adam(1e-3)
    params = train.init_params(model, jax.random.PRNGKey(0), image_size)
    local_update = fl.make_local_update(
        loss_fn, optimizer, local_steps=local_steps, batch_size=batch_size
    )
    figures = {
        "model": "cnn_small",
        "num_params": sum(x.size for x in jax.tree.leaves(params)),
        "image_size": image_size,
        "local_steps": local_steps,
        "batch_size": batch_size,
    }
    for num_hospitals in (4, 8, 16):
        data = testing.synthetic_hospitals(num_hospitals, rows, image_size)
        keys = jax.random.split(jax.random.PRNGKey(0), num_hospitals)
        work = num_hospitals * local_steps
        row = {}
        for strategy in ("vmap", "loop", "shard"):
            runner = fl.hospital_runner(local_update, strategy=strategy)
            start = time.perf_counter()
            jax.block_until_ready(runner.run(params, data, keys))
            row[f"{strategy}_compile_s"] = time.perf_counter() - start
            seconds = timing.median_seconds(
                functools.partial(runner.run, params, data, keys), repeats
            )
            row[f"{strategy}_steps_per_s"] = work / seconds
        baseline = _fedjax_style(loss_fn, optimizer, params, data, keys, local_steps, batch_size)
        jax.block_until_ready(baseline())
        row["fedjax_loop_steps_per_s"] = work / timing.median_seconds(baseline, repeats)
        for strategy in ("vmap", "loop", "shard"):
            row[f"{strategy}_vs_fedjax"] = (
                row[f"{strategy}_steps_per_s"] / row["fedjax_loop_steps_per_s"]
            )
        figures[f"H{num_hospitals}"] = row
    figures["auto_picks"] = fl.pick_strategy()
    return figures


def kernel_figures(quick: bool) -> dict:
    num_hospitals = 8
    sizes = (250_000, 1_000_000) if quick else (1_000_000, 4_000_000)
    repeats = 5 if quick else 10
    figures = {}
    for size in sizes:
        rng = np.random.default_rng(0)
        deltas_np = rng.normal(size=(num_hospitals, size)).astype(np.float32)
        params = {"w": jnp.zeros((size,), jnp.float32)}
        deltas = {"w": jnp.asarray(deltas_np)}
        mask = jnp.arange(num_hospitals) % 4 != 3
        key = jax.random.PRNGKey(0)
        row = {}
        for label, sigma in (("kernel_no_noise", 0.0), ("kernel", 1.0)):
            aggregator = fl.dp_aggregate(1.0, sigma)
            state = aggregator.init(params)
            kernel = jax.jit(aggregator.update)
            jax.block_until_ready(kernel(deltas, mask, state, params, key))
            call = functools.partial(kernel, deltas, mask, state, params, key)
            row[f"{label}_s"] = timing.median_seconds(call, repeats)
        row["numpy_single_pass_s"] = timing.median_seconds(
            functools.partial(np.sum, deltas_np, axis=0), repeats
        )
        for label in ("kernel_no_noise", "kernel"):
            row[f"{label}_over_numpy"] = row[f"{label}_s"] / row["numpy_single_pass_s"]
        row["kernel_gb_per_s"] = deltas_np.nbytes / row["kernel_s"] / 1e9
        figures[f"H{num_hospitals}_P{size}"] = row
    return figures


def run(quick: bool = False) -> dict:
    """Measures the figures described in the module docstring."""
    figures = {
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "strategies": strategy_figures(quick),
        "aggregation": kernel_figures(quick),
    }
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return figures


if __name__ == "__main__":
    import json

    print(json.dumps(run(quick=True), indent=2))
