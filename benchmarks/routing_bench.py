"""Routing-kernel benchmark: dynamic routing on u_hat [32, 1152, 2, 16] with 3 iterations.

Three figures, measured in the same run:
1. ``jax_s``: the jitted ``ccfl_jax.models.dynamic_routing`` (median after one compile call).
2. ``numpy_s``: a straightforward NumPy implementation of Algorithm 1 (vectorized over the batch
   and capsules, one pass per step of the algorithm), on the same float32 array.
3. ``floor_s``: the memory-bound floor, the bytes the kernel must move (read u_hat once, write v
   and c) over this machine's copy bandwidth, measured here with ``np.copyto`` of a 256 MiB array
   (read + write bytes / time). u_hat (4.7 MB) may sit in cache, so the floor is a DRAM figure.

Ratios: ``numpy_over_jax`` (> 1: JAX is faster) and ``jax_over_floor`` (1 would be memory-bound).
"""

import time

import jax
import numpy as np

from benchmarks import timing
from ccfl_jax.models import dynamic_routing

SHAPE = (32, 1152, 2, 16)
ITERATIONS = 3


def numpy_routing(u_hat: np.ndarray, iterations: int) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1 in plain NumPy: softmax, weighted sum, squash, agreement."""
    logits = np.zeros(u_hat.shape[:3], u_hat.dtype)
    for iteration in range(iterations):
        exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
        couplings = exp / exp.sum(axis=-1, keepdims=True)
        weighted = np.einsum("bij,bijd->bjd", couplings, u_hat)
        norm_sq = np.sum(weighted**2, axis=-1, keepdims=True)
        outputs = norm_sq / (1 + norm_sq) * weighted / np.sqrt(norm_sq + 1e-7)
        if iteration < iterations - 1:
            logits = logits + np.einsum("bijd,bjd->bij", u_hat, outputs)
    return outputs, couplings


def copy_bandwidth(repeats: int, nbytes: int = 256 * 2**20) -> float:
    """Bytes per second of ``np.copyto`` (counting the read and the write)."""
    source = np.ones(nbytes // 4, np.float32)
    target = np.empty_like(source)
    seconds = timing.median_seconds(lambda: np.copyto(target, source), repeats)
    return 2 * nbytes / seconds


def run(quick: bool = False) -> dict:
    """Times the three routing figures; see the module docstring."""
    repeats = 3 if quick else 15
    u_hat = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    routed = jax.jit(lambda u: dynamic_routing(u, ITERATIONS))
    device_u = jax.device_put(u_hat)
    start = time.perf_counter()
    jax.block_until_ready(routed(device_u))
    compile_s = time.perf_counter() - start
    jax_s = timing.median_seconds(lambda: routed(device_u), repeats)
    numpy_s = timing.median_seconds(lambda: numpy_routing(u_hat, ITERATIONS), max(2, repeats // 3))
    want, _ = numpy_routing(u_hat, ITERATIONS)
    max_abs_diff = float(np.max(np.abs(np.asarray(routed(device_u)[0]) - want)))
    bandwidth = copy_bandwidth(max(3, repeats // 3))
    batch, num_in, num_out, dims = SHAPE
    must_move = 4 * (u_hat.size + batch * num_out * dims + batch * num_in * num_out)
    floor_s = must_move / bandwidth
    return {
        "shape": list(SHAPE),
        "iterations": ITERATIONS,
        "compile_s": compile_s,
        "jax_s": jax_s,
        "numpy_s": numpy_s,
        "floor_s": floor_s,
        "bytes_moved_min": must_move,
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "numpy_over_jax": numpy_s / jax_s,
        "jax_over_floor": jax_s / floor_s,
        "max_abs_diff_vs_numpy": max_abs_diff,
    }
