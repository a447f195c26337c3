"""Train-step time of CapsNet and SegCaps at 128 x 128, beside the tiny CNN as a same-run baseline.

For each model: one jitted ``train_step`` (Adam) on a random batch, ``compile_s`` for the first
call, then the median ``step_s`` over repetitions, ``images_per_s`` and ``ratio_to_cnn_small``
(step time over the cnn_small step time at the same size and batch size). SegCaps runs a smaller
batch (it is ~100x the FLOPs of CapsNet per image); its ratio uses a cnn_small step at its batch.
Quick mode: 64 x 64 and fewer repetitions.
"""

import statistics
import time

import jax
import numpy as np
import optax

from ccfl_jax.models import get_model
from ccfl_jax.train import init_params, make_loss_fn, make_train_step
from ccfl_jax.train.segmentation import make_segmentation_loss_fn


def _time_step(model, size: int, batch_size: int, repeats: int, segmentation: bool) -> dict:
    rng = np.random.default_rng(0)
    batch = {
        "images": rng.uniform(-0.5, 0.5, (batch_size, size, size, 1)).astype(np.float32),
        "labels": rng.integers(0, 2, batch_size).astype(np.int32),
        "masks": (rng.uniform(size=(batch_size, size, size, 1)) > 0.8).astype(np.float32),
        "mask": np.ones(batch_size, bool),
    }
    if segmentation:
        params = jax.jit(model.init)(jax.random.key(0), batch["images"][:1])["params"]
        loss_fn = make_segmentation_loss_fn(model, positive_weight=4.0)
    else:
        params = init_params(model, jax.random.key(0), size)
        loss_fn = make_loss_fn(model)
    optimizer = optax.adam(1e-3)
    step = jax.jit(make_train_step(loss_fn, optimizer))
    state = [params, optimizer.init(params)]

    def once():
        state[0], state[1], aux = step(state[0], state[1], batch, jax.random.key(1))
        return aux["loss"]

    start = time.perf_counter()
    jax.block_until_ready(once())
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(once())
        times.append(time.perf_counter() - start)
    step_s = statistics.median(times)
    return {
        "batch_size": batch_size,
        "compile_s": compile_s,
        "step_s": step_s,
        "images_per_s": batch_size / step_s,
        "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
    }


def run(quick: bool = False) -> dict:
    """Times the train steps; see the module docstring."""
    size, repeats = (64, 3) if quick else (128, 10)
    capsnet_batch, segcaps_batch = 16, 2
    figures = {"image_size": size}
    figures["cnn_small"] = _time_step(get_model("cnn_small"), size, capsnet_batch, repeats, False)
    figures["capsnet"] = _time_step(get_model("capsnet"), size, capsnet_batch, repeats, False)
    small_seg = _time_step(get_model("cnn_small"), size, segcaps_batch, repeats, False)
    figures["segcaps"] = _time_step(
        get_model("segcaps"), size, segcaps_batch, max(2, repeats // 3), True
    )
    figures["capsnet"]["ratio_to_cnn_small"] = (
        figures["capsnet"]["step_s"] / figures["cnn_small"]["step_s"]
    )
    figures["segcaps"]["ratio_to_cnn_small"] = figures["segcaps"]["step_s"] / small_seg["step_s"]
    figures["cnn_small_batch_2_step_s"] = small_seg["step_s"]
    return figures
