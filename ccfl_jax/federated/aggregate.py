"""The jittable DP aggregation kernel (Eq. 8) and its diagnostics (Eq. 9-11).

Each hospital's delta (local params minus global params) is clipped to global L2 norm S, the
clipped deltas of the sampled-and-accepted hospitals are summed, Gaussian noise N(0, sigma^2 S^2)
is added to the SUM, and the result is divided by m_t. A server optimizer then applies the
averaged delta (plain averaging, FedAvgM, FedAdam).

The denominator m_t. With fixed-size sampling m_t = m is public and fixed, and the count of
contributing hospitals (``mask.sum()``) is the natural choice. With Poisson sampling the realized
count itself depends on who took part, so dividing by it would make the released average depend
on one hospital's participation beyond the Gaussian-on-sum analysis of the accountant; pass
``denominator=q * H`` (the expected count, :attr:`Sampler.expected_count`) so that the sum's
sensitivity S is scaled by a public constant and the RDP accountant's epsilon holds as computed.

Local Laplace noise (Eq. 14-16) lives in ``local_dp.py``.

References:
  Kumar et al. 2020, arXiv 2007.06537, Eq. 8-11; Geyer, Klein and Nabi 2017,
  "Differentially private federated learning: a client level perspective" (Vc, Us);
  Reddi et al. 2021, "Adaptive federated optimization" (FedAdam).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ccfl_jax.errors import DeltaStructureError, FederatedConfigError
from ccfl_jax.typing import Array, Deltas, Mask, Params, PRNGKey


class AggregatorState(NamedTuple):
    """State of an :class:`Aggregator`.

    Attributes:
      server_opt_state: the server optimizer's state (optax).
    """

    server_opt_state: optax.OptState


class AggregateDiagnostics(NamedTuple):
    """What one aggregation saw and did.

    Attributes:
      norms: [H] global L2 norm of each hospital's delta before clipping.
      clipped: [H] bool, whether the delta's norm exceeded S (False where S is None).
      clipped_fraction: scalar, fraction of contributing hospitals that were clipped.
      num_contributing: scalar, the number of hospitals in the mask.
      denominator: scalar, m_t, what the noisy sum was divided by.
      noise_std: scalar, sigma * S / m_t, the std of the noise on each averaged parameter.
      vc: scalar, between-hospital variance of the clipped deltas (Eq. 9-10).
      us: scalar, update scale of the clipped deltas (Eq. 11).
    """

    norms: Array
    clipped: Array
    clipped_fraction: Array
    num_contributing: Array
    denominator: Array
    noise_std: Array
    vc: Array
    us: Array


class Aggregator(NamedTuple):
    """A server-side aggregation rule as a pair of pure functions (optax style).

    Attributes:
      init: ``init(params) -> AggregatorState``.
      update: ``update(deltas [H, ...], mask [H], state, params, rng, *, num_examples=None)
        -> (new_params, state, AggregateDiagnostics)``.
    """

    init: Callable[[Params], AggregatorState]
    update: Callable[..., tuple[Params, AggregatorState, AggregateDiagnostics]]


def hospital_norms(deltas: Deltas) -> Array:
    """Global L2 norm of each hospital's delta pytree.

    Args:
      deltas: a pytree whose leaves are [H, ...].

    Returns:
      norms: [H].

    Examples:
      >>> import jax.numpy as jnp
      >>> hospital_norms({'w': jnp.array([[3.0, 4.0], [0.0, 1.0]])}).tolist()
      [5.0, 1.0]
    """
    leaves = jax.tree.leaves(deltas)
    squares = [jnp.sum(jnp.reshape(x, (x.shape[0], -1)) ** 2, axis=1) for x in leaves]
    return jnp.sqrt(sum(squares))


def clip_deltas(deltas: Deltas, clip_norm: float) -> tuple[Deltas, Array]:
    """Scales each hospital's delta by 1 / max(1, norm / S) (Eq. 8).

    Args:
      deltas: pytree of [H, ...].
      clip_norm: S > 0.

    Returns:
      (clipped [H, ...], norms [H]) where every clipped delta has norm <= S.
    """
    norms = hospital_norms(deltas)
    scale = 1.0 / jnp.maximum(1.0, norms / clip_norm)  # Eq. 8
    clipped = jax.tree.map(lambda x: x * _per_hospital(scale, x), deltas)
    return clipped, norms


def variance_and_scale(
    deltas: Deltas, mask: Mask, scale: Array | None = None, means: Params | None = None
) -> tuple[Array, Array]:
    """Between-hospital variance Vc and update scale Us over the masked hospitals.

    With mu_k the mean of parameter k over the m contributing hospitals and P parameters:
    Vc = 1/P sum_k 1/m sum_i (dw_ik - mu_k)^2 and Us = 1/P sum_k mu_k^2.

    Args:
      deltas: pytree of [H, ...]; rows outside the mask are never read into the result.
      mask: [H] bool or {0, 1}.
      scale: optional [H] factors applied to each delta first (the clip factors), so that the
        clipped deltas need not be materialized.
      means: optional, the masked mean of the scaled deltas (params structure) if the caller
        has it already; saves one pass over the deltas.

    Returns:
      (vc, us) scalars; both 0 when no hospital is in the mask.
    """
    included = mask.astype(bool)
    weights = mask.astype(jnp.float32)
    count = jnp.maximum(weights.sum(), 1.0)
    scale = jnp.ones_like(weights) if scale is None else scale
    leaves = [jnp.asarray(x) for x in jax.tree.leaves(deltas)]
    if means is None:
        means = [hospital_sum(weights * scale / count, x, included) for x in leaves]  # Eq. 10
    else:
        means = jax.tree.leaves(means)
    sq_dev, sq_mean, size = 0.0, 0.0, 0
    for x, mean in zip(leaves, means):

        def add_deviation(h, total, x=x, mean=mean):
            deviation = jnp.sum((scale[h] * x[h] - mean) ** 2)
            return total + jnp.where(included[h], deviation, 0.0)

        sq_dev = sq_dev + jax.lax.fori_loop(0, x.shape[0], add_deviation, 0.0) / count  # Eq. 9
        sq_mean = sq_mean + jnp.sum(mean**2)  # Eq. 11
        size += mean.size
    return sq_dev / size, sq_mean / size


def hospital_sum(coefficients: Array, x: Array, included: Mask) -> Array:
    """sum_h c_h x_h over the included hospitals; excluded rows are never read into the sum.

    A loop over the hospital axis, so no [H, ...] temporary is built: on CPU this is ~100x
    faster than ``jnp.sum(c[:, None] * x, axis=0)``, whose temporaries and leading-axis
    reduction dominate the kernel.

    Args:
      coefficients: [H].
      x: [H, ...].
      included: [H] bool; a row with False adds exactly 0, even if it holds NaN or inf.

    Returns:
      [...], the weighted sum.

    Examples:
      >>> import jax.numpy as jnp
      >>> x = jnp.array([[1.0, 2.0], [jnp.nan, jnp.inf], [3.0, 4.0]])
      >>> hospital_sum(jnp.array([1.0, 1.0, 0.5]), x, jnp.array([True, False, True])).tolist()
      [2.5, 4.0]
    """
    x = jnp.asarray(x)
    coefficients = coefficients.astype(x.dtype)

    def add(h, total):
        return total + coefficients[h] * jnp.where(included[h], x[h], jnp.zeros((), x.dtype))

    return jax.lax.fori_loop(0, x.shape[0], add, jnp.zeros(x.shape[1:], x.dtype))


def check_deltas(deltas: Deltas, params: Params, num_hospitals: int | None = None) -> int:
    """Checks that ``deltas`` is ``params``' structure with a leading hospital axis.

    Runs in Python on static shapes, so it works before jit and while tracing.

    Args:
      deltas: pytree of [H, ...].
      params: the global params pytree.
      num_hospitals: H if known.

    Returns:
      H.

    Raises:
      DeltaStructureError: if the structure, a leaf shape or H does not match.
    """
    p_leaves, p_def = jax.tree.flatten(params)
    d_leaves, d_def = jax.tree.flatten(deltas)
    if p_def != d_def:
        raise DeltaStructureError(
            f"deltas have tree structure {d_def} but the global params have {p_def}: every "
            "hospital must send a delta of the global model's own structure."
        )
    sizes = {d.shape[0] if d.ndim else None for d in d_leaves}
    if num_hospitals is not None:
        sizes.add(num_hospitals)
    if len(sizes) != 1 or None in sizes:
        raise DeltaStructureError(
            f"deltas' leading (hospital) axis sizes {sorted(map(str, sizes))} differ: stack every "
            "hospital's delta along one leading axis [H, ...]."
        )
    (h,) = sizes
    paths = [jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]]
    for path, p, d in zip(paths, p_leaves, d_leaves):
        if tuple(d.shape[1:]) != tuple(jnp.shape(p)):
            raise DeltaStructureError(
                f"delta leaf {path} has shape {tuple(d.shape)} but the param is "
                f"{tuple(jnp.shape(p))}: expected [{h}, *{tuple(jnp.shape(p))}]."
            )
    return h


def make_server_optimizer(name: str, learning_rate: float = 1.0, **kwargs: Any):
    """A named server optimizer: ``'fedavg'`` (SGD), ``'fedavgm'`` (momentum), ``'fedadam'``.

    The server optimizer receives the pseudo-gradient -average_delta, so ``'fedavg'`` with
    learning rate 1 is plain averaging.

    Examples:
      >>> make_server_optimizer('fedavgm', 1.0, momentum=0.9) is not None
      True
    """
    if name == "fedavg":
        return optax.sgd(learning_rate)
    if name == "fedavgm":
        return optax.sgd(learning_rate, momentum=kwargs.get("momentum", 0.9))
    if name == "fedadam":
        return optax.adam(
            learning_rate, b1=kwargs.get("b1", 0.9), b2=kwargs.get("b2", 0.99), eps=1e-3
        )
    raise FederatedConfigError(
        f"unknown server optimizer {name!r}: pick 'fedavg', 'fedavgm' or 'fedadam'."
    )


def dp_aggregate(
    clip_norm: float | None = None,
    noise_multiplier: float = 0.0,
    *,
    server_optimizer: optax.GradientTransformation | None = None,
    weighting: str = "uniform",
    denominator: float | None = None,
) -> Aggregator:
    """The aggregation kernel: clip, masked sum, Gaussian noise / m_t, server update (Eq. 8).

    Args:
      clip_norm: S; None disables clipping (then ``noise_multiplier`` must be 0).
      noise_multiplier: sigma; the noise on the sum has std sigma * S.
      server_optimizer: an optax transformation fed the pseudo-gradient -average_delta;
        None means plain averaging (new = params + average).
      weighting: ``'uniform'`` (Eq. 8) or ``'examples'`` (FedAvg weighted by each hospital's
        number of examples, without DP noise).
      denominator: m_t as a fixed public number (use the expected count q * H with Poisson
        sampling); None divides by the number of contributing hospitals (at least 1).

    Returns:
      An :class:`Aggregator`. Its ``update`` is pure and jittable; hospitals with mask 0
      (unsampled, or rejected by the ledger vote) contribute exactly nothing.

    Raises:
      FederatedConfigError: on an impossible combination of the above.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> agg = dp_aggregate(clip_norm=1.0)
      >>> params = {'w': jnp.zeros(2)}
      >>> deltas = {'w': jnp.array([[3.0, 4.0], [0.0, 0.5]])}
      >>> new, _, diag = agg.update(deltas, jnp.array([True, True]), agg.init(params),
      ...                           params, jax.random.PRNGKey(0))
      >>> [round(float(v), 3) for v in new['w']], diag.clipped.tolist()
      ([0.3, 0.65], [True, False])
    """
    _check_config(clip_norm, noise_multiplier, weighting, denominator)
    optimizer = optax.sgd(1.0) if server_optimizer is None else server_optimizer

    def init_fn(params):
        return AggregatorState(server_opt_state=optimizer.init(params))

    def update_fn(deltas, mask, state, params, rng, *, num_examples=None):
        num_hospitals = check_deltas(deltas, params)
        if jnp.shape(mask) != (num_hospitals,):
            raise DeltaStructureError(
                f"mask has shape {jnp.shape(mask)}, expected [{num_hospitals}] (one per hospital)."
            )
        if weighting == "examples" and num_examples is None:
            raise FederatedConfigError(
                "weighting='examples' needs num_examples [H]: pass each hospital's example count."
            )
        included = mask.astype(bool)
        weights = mask.astype(jnp.float32)
        count = weights.sum()
        norms = hospital_norms(deltas)
        if clip_norm is None:
            scale = jnp.ones_like(norms)
            was_clipped = jnp.zeros_like(included)
        else:
            scale = 1.0 / jnp.maximum(1.0, norms / clip_norm)  # Eq. 8
            was_clipped = norms > clip_norm
        if weighting == "examples":
            weights = weights * jnp.asarray(num_examples, jnp.float32)
        total = jnp.maximum(weights.sum(), 1e-12) if weighting == "examples" else None
        m_t = jnp.asarray(denominator if denominator is not None else jnp.maximum(count, 1.0))
        # where, not multiply: a rejected hospital's NaN or inf must not leak in as 0 * inf.
        scale = jnp.where(included, scale, 0.0)
        coefficients = weights * scale  # the clipped sum, without materializing clipped deltas
        summed = jax.tree.map(lambda x: hospital_sum(coefficients, x, included), deltas)
        noise_std = noise_multiplier * (clip_norm or 0.0)
        noisy = summed
        if noise_multiplier > 0:
            noisy = _add_gaussian(summed, rng, noise_std)  # Eq. 8: N(0, sigma^2 S^2)
        divisor = total if weighting == "examples" else m_t
        average = jax.tree.map(lambda s: s / divisor, noisy)  # Eq. 8: 1 / m_t
        pseudo_grad = jax.tree.map(jnp.negative, average)
        updates, opt_state = optimizer.update(pseudo_grad, state.server_opt_state, params)
        new_params = optax.apply_updates(params, updates)
        # With uniform weights the clipped sum / count is the masked mean Vc needs (Eq. 10).
        means = jax.tree.map(lambda x: x / jnp.maximum(count, 1.0), summed)
        vc, us = variance_and_scale(deltas, mask, scale, means if weighting == "uniform" else None)
        diagnostics = AggregateDiagnostics(
            norms=norms,
            clipped=was_clipped,
            clipped_fraction=jnp.sum(was_clipped & included) / jnp.maximum(count, 1.0),
            num_contributing=count,
            denominator=m_t,
            noise_std=noise_std / m_t,
            vc=vc,
            us=us,
        )
        return new_params, AggregatorState(server_opt_state=opt_state), diagnostics

    return Aggregator(init_fn, update_fn)


def _per_hospital(values: Array, like: Array) -> Array:
    """Reshapes [H] to broadcast against a leaf [H, ...]."""
    return jnp.reshape(values, (-1,) + (1,) * (like.ndim - 1)).astype(like.dtype)


def _add_gaussian(tree: Params, rng: PRNGKey, std: float) -> Params:
    """Adds independent N(0, std^2) noise to every entry, one key per leaf."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(rng, len(leaves))
    noisy = [x + std * jax.random.normal(k, x.shape, x.dtype) for x, k in zip(leaves, keys)]
    return jax.tree.unflatten(treedef, noisy)


def _check_config(clip_norm, noise_multiplier, weighting, denominator) -> None:
    if clip_norm is not None and clip_norm <= 0:
        raise FederatedConfigError(f"clip_norm S={clip_norm} must be > 0 (or None for no clip).")
    if noise_multiplier < 0:
        raise FederatedConfigError(f"noise_multiplier sigma={noise_multiplier} must be >= 0.")
    if noise_multiplier > 0 and clip_norm is None:
        raise FederatedConfigError(
            f"noise_multiplier={noise_multiplier} without clip_norm: Gaussian DP noise is "
            "calibrated to the clip norm S; set clip_norm."
        )
    if weighting not in ("uniform", "examples"):
        raise FederatedConfigError(
            f"weighting={weighting!r}: pick 'uniform' (Eq. 8) or 'examples' (weighted FedAvg)."
        )
    if weighting == "examples" and noise_multiplier > 0:
        raise FederatedConfigError(
            "weighting='examples' with DP noise: example weights break the sensitivity bound "
            "S / m_t the accountant assumes; use weighting='uniform' with noise."
        )
    if denominator is not None and denominator <= 0:
        raise FederatedConfigError(f"denominator m_t={denominator} must be > 0.")
