"""Local training at each hospital, and running it over all hospitals as replicas.

``make_local_update`` builds the per-hospital function: K local optimizer steps (``lax.scan``)
on batches drawn from that hospital's padded data, honouring its example mask, returning the
delta (local params minus global params). It never sees the hospital axis.

``hospital_runner`` maps it over the leading hospital axis with one of three strategies:

* ``'vmap'``: all replicas batched in one program (the fast one on GPU/TPU);
* ``'loop'``: one compiled K-step local update called per hospital from Python. On a 2-core
  CPU, vmap over replicas of a small conv net is slower than this loop, because vmapped
  convolutions with per-replica weights become grouped convolutions (benchmarks/federated_bench,
  ``cnn_small``, 32x32, K = 4, two quick runs on a heavily shared 2-core machine: loop ran 0.9x
  to 2.7x the hospital-steps/s of vmap at H = 4, 8, 16, ahead in 5 of 6; the figures are noisy);
* ``'shard'``: the hospital axis split over devices with ``jax.shard_map`` (each device vmaps
  its own block); hospitals are padded to a multiple of the device count and the padding dropped.
  Multi-host (a TPU pod slice): call ``jax.distributed.initialize()`` in every process first;
  the mesh then spans every device of every process, each process passes the same host arrays
  and computes only its own devices' hospitals (tests/federated/multihost_test.py runs two CPU
  processes with gloo collectives and gets the single-process round). Data that lives only on
  its own host would instead be assembled with ``jax.make_array_from_process_local_data``.

All three give the same result to float tolerance. ``'auto'`` (see :func:`pick_strategy`)
chooses from the backend and device count, and the runner reports what it picked.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, PartitionSpec

from ccfl_jax.errors import FederatedConfigError, HospitalDataError
from ccfl_jax.typing import Params, PRNGKey

STRATEGIES = ("auto", "vmap", "loop", "shard")
DATA_KEYS = ("images", "labels", "mask")

LossFn = Callable[[Params, dict, PRNGKey], tuple[Any, dict]]
LocalUpdate = Callable[[Params, dict, PRNGKey], tuple[Params, dict]]


class HospitalRunner(NamedTuple):
    """Runs a local update over every hospital.

    Attributes:
      run: ``run(global_params, data, rngs [H], active=None) -> (deltas [H, ...], metrics [H])``.
        With ``active`` ([H] bool, concrete), inactive hospitals output zeros; the ``'loop'``
        strategy does not train them at all, the others train and then zero them.
      strategy: the strategy actually used (``'auto'`` resolved).
    """

    run: Callable[[Params, dict, Any], tuple[Params, dict]]
    strategy: str


def make_local_update(
    loss_fn: LossFn,
    hospital_optimizer: optax.GradientTransformation,
    *,
    local_steps: int,
    batch_size: int,
    proximal_mu: float = 0.0,
    unroll: int | bool = True,
) -> LocalUpdate:
    """Builds ``local_update(global_params, hospital_data, rng) -> (delta, metrics)``.

    Each of the K steps draws ``batch_size`` rows without replacement from the hospital's real
    rows (rows with mask False are never drawn unless the hospital has fewer real rows than the
    batch, in which case they fill the batch with mask False and weigh nothing in a
    mask-weighted loss). With ``proximal_mu`` > 0 the loss gets FedProx's term
    mu / 2 * ||w - w_global||^2.

    Args:
      loss_fn: ``loss_fn(params, batch, rng) -> (loss, aux)`` with ``batch = {'images':
        [B, ...], 'labels': [B], 'mask': [B] bool}``, loss a mask-weighted mean, aux a dict of
        scalars.
      hospital_optimizer: the hospitals' optax optimizer (fresh state every round).
      local_steps: K >= 1.
      batch_size: B >= 1.
      proximal_mu: FedProx coefficient mu >= 0.
      unroll: ``lax.scan``'s unroll of the K steps; True (all) is much faster on CPU, an
        integer bounds compile time for large K.

    Returns:
      ``local_update``: for one hospital, ``hospital_data = {'images': [N, ...], 'labels': [N],
      'mask': [N]}``; returns the delta (params structure) and metrics: ``loss_first``,
      ``loss_last``, ``num_examples`` and the step-mean of every aux entry.
    """
    if local_steps < 1 or batch_size < 1:
        raise FederatedConfigError(
            f"local_steps={local_steps}, batch_size={batch_size}: both must be >= 1."
        )
    if proximal_mu < 0:
        raise FederatedConfigError(f"proximal_mu={proximal_mu} must be >= 0 (0 = FedAvg).")

    def objective(params, global_params, batch, rng):
        loss, aux = loss_fn(params, batch, rng)
        if proximal_mu > 0:
            sq = sum(
                jnp.sum((p - g) ** 2)
                for p, g in zip(jax.tree.leaves(params), jax.tree.leaves(global_params))
            )
            loss = loss + 0.5 * proximal_mu * sq
        return loss, aux

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def local_update(global_params, hospital_data, rng):
        mask = hospital_data["mask"]
        num_rows = mask.shape[0]
        take = min(batch_size, num_rows)

        def step(carry, key):
            params, opt_state = carry
            draw_key, loss_key = jax.random.split(key)
            scores = jnp.where(mask, jax.random.uniform(draw_key, (num_rows,)), -1.0)
            _, rows = jax.lax.top_k(scores, take)
            batch = {k: jnp.take(hospital_data[k], rows, axis=0) for k in DATA_KEYS}
            # Padding rows drawn into a short hospital's batch hold zeros, whatever was stored.
            batch = {k: _zero_padding(v, batch["mask"]) for k, v in batch.items()}
            (loss, aux), grads = grad_fn(params, global_params, batch, loss_key)
            updates, opt_state = hospital_optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), (loss, aux)

        init = (global_params, hospital_optimizer.init(global_params))
        keys = jax.random.split(rng, local_steps)
        (params, _), (losses, aux) = _scan(step, init, keys, unroll)
        delta = jax.tree.map(jnp.subtract, params, global_params)
        metrics = {k: jnp.mean(v) for k, v in aux.items()}
        metrics.update(
            loss_first=losses[0],
            loss_last=losses[-1],
            num_examples=jnp.sum(mask.astype(jnp.int32)),
        )
        return delta, metrics

    return local_update


def pick_strategy(backend: str | None = None, num_devices: int | None = None) -> str:
    """The strategy ``'auto'`` resolves to: measured fastest for the backend.

    CPU: ``'loop'`` (vmapped per-replica convolutions become slow grouped convolutions there);
    one GPU/TPU: ``'vmap'``; several GPU/TPU devices: ``'shard'``.

    Examples:
      >>> pick_strategy('cpu', 1), pick_strategy('gpu', 1), pick_strategy('tpu', 8)
      ('loop', 'vmap', 'shard')
    """
    backend = backend or jax.default_backend()
    num_devices = num_devices or jax.device_count()
    if backend == "cpu":
        return "loop"
    return "shard" if num_devices > 1 else "vmap"


def hospital_runner(local_update: LocalUpdate, *, strategy: str = "auto") -> HospitalRunner:
    """Compiles ``local_update`` once for the hospital axis with the given strategy.

    Build it once and reuse ``run`` every round (each call of ``hospital_runner`` compiles anew).

    Args:
      local_update: from :func:`make_local_update`.
      strategy: one of ``'auto'``, ``'vmap'``, ``'loop'``, ``'shard'``.

    Returns:
      A :class:`HospitalRunner`; ``run`` validates the data, then maps ``local_update``.
    """
    if strategy not in STRATEGIES:
        raise FederatedConfigError(f"strategy={strategy!r}: pick one of {', '.join(STRATEGIES)}.")
    chosen = pick_strategy() if strategy == "auto" else strategy
    vmapped = jax.vmap(local_update, in_axes=(None, 0, 0))
    if chosen == "vmap":
        mapped = jax.jit(vmapped)
    elif chosen == "loop":
        mapped = _loop(jax.jit(local_update))
    else:
        mapped = _shard(vmapped)

    def run(global_params, data, rngs, active=None):
        check_hospital_data(data, num_hospitals=len(rngs))
        data = {k: data[k] for k in DATA_KEYS}
        if active is None:
            return mapped(global_params, data, rngs)
        active = np.asarray(active, bool)
        if active.shape != (len(rngs),):
            raise HospitalDataError(
                f"active has shape {active.shape}; expected [{len(rngs)}] (one per hospital)."
            )
        if chosen == "loop":
            out = mapped(global_params, data, rngs, active)
        else:
            out = mapped(global_params, data, rngs)
        keep = jnp.asarray(active)
        return jax.tree.map(
            lambda x: jnp.where(jnp.reshape(keep, (-1,) + (1,) * (x.ndim - 1)), x, 0), out
        )

    return HospitalRunner(run=run, strategy=chosen)


def run_hospitals(
    local_update: LocalUpdate,
    global_params: Params,
    data: dict,
    rngs: Any,
    *,
    strategy: str = "auto",
) -> tuple[Params, dict]:
    """One-off: ``hospital_runner(local_update, strategy=strategy).run(...)``.

    Returns:
      (deltas [H, ...], metrics: dict of [H]).
    """
    return hospital_runner(local_update, strategy=strategy).run(global_params, data, rngs)


def check_hospital_data(data: dict, num_hospitals: int | None = None) -> int:
    """Checks stacked hospital data: images [H, N, ...], labels [H, N], mask [H, N] bool.

    Returns:
      H.

    Raises:
      HospitalDataError: naming the key and shape that is wrong.
    """
    missing = [k for k in DATA_KEYS if k not in data]
    if missing:
        raise HospitalDataError(
            f"hospital data lacks {missing}: pass a dict with 'images' [H, N, ...], 'labels' "
            "[H, N] and 'mask' [H, N] (e.g. FederatedDataset.train as a dict)."
        )
    mask_shape = tuple(np.shape(data["mask"]))
    if len(mask_shape) != 2:
        raise HospitalDataError(f"mask has shape {mask_shape}; expected [H, N].")
    if np.asarray(data["mask"]).dtype != np.bool_:
        raise HospitalDataError(
            f"mask has dtype {np.asarray(data['mask']).dtype}; expected bool (True = real row)."
        )
    for key in ("images", "labels"):
        shape = tuple(np.shape(data[key]))
        if shape[:2] != mask_shape:
            raise HospitalDataError(
                f"{key} has shape {shape} but mask is {mask_shape}: {key} must be [H, N, ...] "
                "with the mask's H and N."
            )
    if num_hospitals is not None and mask_shape[0] != num_hospitals:
        raise HospitalDataError(
            f"data has H={mask_shape[0]} hospitals but {num_hospitals} rngs were given: "
            "pass one key per hospital."
        )
    return mask_shape[0]


def _scan(step, init, keys, unroll: int | bool):
    """``lax.scan(step, init, keys)``; ``unroll=True`` traces the steps one after another.

    XLA:CPU runs convolutions inside a while loop about 20x slower than outside one (measured:
    5 CapsNet steps at 64 x 64, 14.5 s rolled vs 0.7 s unrolled, 2 cores), and ``lax.scan``
    keeps a loop even for ``unroll=True`` when there is a single step.
    """
    if unroll is not True:
        return jax.lax.scan(step, init, keys, unroll=unroll)
    carry, outputs = init, []
    for key in keys:
        carry, out = step(carry, key)
        outputs.append(out)
    return carry, jax.tree.map(lambda *xs: jnp.stack(xs), *outputs)


def _zero_padding(values, mask):
    if values.dtype == jnp.bool_:
        return values
    keep = jnp.reshape(mask, mask.shape + (1,) * (values.ndim - 1))
    return jnp.where(keep, values, jnp.zeros((), values.dtype))


def _loop(step: LocalUpdate):
    def mapped(global_params, data, rngs, active=None):
        outs = {}
        for h in range(len(rngs)):
            if active is None or active[h]:  # a host-side decision on concrete data
                outs[h] = step(global_params, jax.tree.map(lambda x, h=h: x[h], data), rngs[h])
        if len(outs) < len(rngs):  # skipped hospitals: zeros of the output's shapes
            first = jax.tree.map(lambda x: x[0], data)
            shapes = jax.eval_shape(step, global_params, first, rngs[0])
            zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
            outs = {h: outs.get(h, zeros) for h in range(len(rngs))}
        return jax.tree.map(lambda *xs: jnp.stack(xs), *[outs[h] for h in range(len(rngs))])

    return mapped


def _shard(vmapped: LocalUpdate):
    devices = np.array(jax.devices())
    num_devices = len(devices)
    mesh = Mesh(devices, ("hospitals",))

    def block(global_params, data, rngs):
        # Mark the replicated params as device-varying: each device trains its own hospitals,
        # and without the cast the gradient of a replicated input is summed over all devices.
        global_params = jax.tree.map(
            lambda x: jax.lax.pcast(x, "hospitals", to="varying"), global_params
        )
        return vmapped(global_params, data, rngs)

    per_device = jax.shard_map(
        block,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec("hospitals"), PartitionSpec("hospitals")),
        out_specs=PartitionSpec("hospitals"),
    )
    compiled = jax.jit(per_device)

    def mapped(global_params, data, rngs):
        num_hospitals = len(rngs)
        pad = -num_hospitals % num_devices

        def padded(x):
            x = jnp.asarray(x)
            return jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)]) if pad else x

        out = compiled(global_params, jax.tree.map(padded, data), padded(rngs))
        return jax.tree.map(lambda x: x[:num_hospitals], out)

    return mapped
