"""The DP aggregation kernel against an independent NumPy reading of Eq. 8-11."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax import errors
from ccfl_jax.federated import aggregate

SHAPES = {"conv": (3, 3, 1, 2), "bias": (2,), "dense": (4, 3)}


def random_deltas(num_hospitals, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    return {
        k: (scale * rng.normal(size=(num_hospitals,) + s)).astype(np.float32)
        for k, s in SHAPES.items()
    }


def zeros_params():
    return {k: np.zeros(s, np.float32) for k, s in SHAPES.items()}


def numpy_flat(deltas):
    """[H, P] in the tree's sorted-key leaf order."""
    return np.concatenate(
        [np.reshape(deltas[k], (deltas[k].shape[0], -1)) for k in sorted(deltas)], 1
    )


def numpy_eq8(deltas, mask, clip_norm, weights=None):
    """Eq. 8 with the noise off: mean over the mask of dw / max(1, ||dw|| / S)."""
    flat = numpy_flat(deltas).astype(np.float64)
    norms = np.sqrt((flat**2).sum(1))
    clipped = flat / np.maximum(1.0, norms / clip_norm)[:, None] if clip_norm else flat
    chosen = np.flatnonzero(mask)
    if weights is None:
        return clipped[chosen].sum(0) / max(len(chosen), 1), norms, clipped
    w = np.asarray(weights, np.float64)[chosen]
    return (clipped[chosen] * w[:, None]).sum(0) / w.sum(), norms, clipped


def numpy_vc_us(clipped, mask):
    chosen = clipped[np.flatnonzero(mask)]
    mu = chosen.mean(0)
    return ((chosen - mu) ** 2).mean(0).mean(), (mu**2).mean()


class AggregateTest(chex.TestCase, parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        ("all_in_clip_small", 5, (1, 1, 1, 1, 1), 0.5),
        ("some_out_clip_large", 6, (1, 0, 1, 1, 0, 1), 100.0),
        ("one_in", 4, (0, 0, 1, 0), 1.0),
    )
    def test_matches_numpy_eq8_without_noise(self, num_hospitals, mask, clip_norm):
        deltas = random_deltas(num_hospitals)
        mask = np.array(mask, bool)
        agg = aggregate.dp_aggregate(clip_norm, 0.0)
        params = zeros_params()
        update = self.variant(agg.update)
        new, _, diag = update(
            deltas, jnp.asarray(mask), agg.init(params), params, jax.random.PRNGKey(0)
        )
        expected, norms, clipped = numpy_eq8(deltas, mask, clip_norm)
        np.testing.assert_allclose(
            numpy_flat({k: v[None] for k, v in new.items()})[0], expected, rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(diag.norms, norms, rtol=1e-5)
        np.testing.assert_array_equal(diag.clipped, norms > clip_norm)
        vc, us = numpy_vc_us(clipped, mask)
        np.testing.assert_allclose(diag.vc, vc, rtol=1e-4, atol=1e-9)
        np.testing.assert_allclose(diag.us, us, rtol=1e-4, atol=1e-9)
        self.assertEqual(float(diag.num_contributing), mask.sum())
        self.assertAlmostEqual(
            float(diag.clipped_fraction), float((norms > clip_norm)[mask].mean()), places=6
        )

    @parameterized.parameters(0.1, 1.0, 3.0)
    def test_clipping_bound_holds_for_every_hospital(self, clip_norm):
        deltas = random_deltas(7, seed=3, scale=2.0)
        clipped, norms = jax.jit(aggregate.clip_deltas, static_argnums=1)(deltas, clip_norm)
        after = np.sqrt((numpy_flat(jax.device_get(clipped)).astype(np.float64) ** 2).sum(1))
        self.assertTrue(np.all(after <= clip_norm * (1 + 1e-5)), (after, clip_norm))
        # Deltas already inside the ball are untouched.
        inside = np.asarray(norms) <= clip_norm
        np.testing.assert_allclose(after[inside], np.asarray(norms)[inside], rtol=1e-6)

    def test_noise_std_is_sigma_s_over_m(self):
        # Zero deltas isolate the noise: every parameter of the average is N(0, (sigma S / m)^2).
        # 400 draws x 23 parameters = 9200 samples; the sample std of a Gaussian has relative
        # standard error 1 / sqrt(2 n) ~ 0.74 %, so a 4 % tolerance is over 5 standard errors.
        sigma, clip_norm, num_hospitals = 1.3, 0.7, 5
        mask = jnp.array([1, 1, 0, 1, 0], bool)  # m_t = 3
        agg = aggregate.dp_aggregate(clip_norm, sigma)
        params = zeros_params()
        deltas = {k: np.zeros((num_hospitals,) + s, np.float32) for k, s in SHAPES.items()}
        state = agg.init(params)

        def draw(key):
            new = agg.update(deltas, mask, state, params, key)[0]
            return jnp.concatenate([jnp.ravel(new[k]) for k in sorted(new)])

        keys = jax.random.split(jax.random.PRNGKey(42), 400)
        samples = np.asarray(jax.jit(jax.vmap(draw))(keys)).ravel()
        expected = sigma * clip_norm / 3
        self.assertAlmostEqual(samples.std() / expected, 1.0, delta=0.04)
        self.assertLess(abs(samples.mean()), 4 * expected / np.sqrt(samples.size))

    def test_leaves_get_independent_noise(self):
        agg = aggregate.dp_aggregate(1.0, 1.0)
        params = {"a": np.zeros((50,), np.float32), "b": np.zeros((50,), np.float32)}
        deltas = {k: np.zeros((2, 50), np.float32) for k in params}
        new, _, _ = agg.update(
            deltas, jnp.ones(2, bool), agg.init(params), params, jax.random.PRNGKey(0)
        )
        self.assertGreater(np.abs(new["a"] - new["b"]).min(), 0.0)
        self.assertLess(abs(np.corrcoef(new["a"], new["b"])[0, 1]), 0.5)

    @parameterized.named_parameters(("no_noise", 0.0), ("noise", 1.0))
    def test_unsampled_or_rejected_contribute_exactly_nothing(self, sigma):
        deltas = random_deltas(4, seed=5)
        mask = jnp.array([True, False, True, False])
        wild = {k: v.copy() for k, v in deltas.items()}
        for k in wild:
            wild[k][1] = np.nan  # a rejected hospital sent NaN
            wild[k][3] = 1e30  # an unsampled one is huge
        agg = aggregate.dp_aggregate(1.0, sigma)
        params = zeros_params()
        update = jax.jit(agg.update)
        key = jax.random.PRNGKey(7)
        clean, _, diag_clean = update(deltas, mask, agg.init(params), params, key)
        dirty, _, diag_dirty = update(wild, mask, agg.init(params), params, key)
        chex.assert_trees_all_equal(clean, dirty)
        self.assertEqual(float(diag_clean.vc), float(diag_dirty.vc))
        self.assertEqual(float(diag_clean.us), float(diag_dirty.us))

    def test_diagnostics_describe_the_clipped_deltas_not_the_noise(self):
        deltas = random_deltas(5, seed=13)
        mask = np.array([1, 1, 0, 1, 1], bool)
        params = zeros_params()
        _, clipped = numpy_eq8(deltas, mask, 0.8)[1:]
        vc, us = numpy_vc_us(clipped, mask)
        for sigma in (0.0, 3.0):
            agg = aggregate.dp_aggregate(0.8, sigma)
            _, _, diag = jax.jit(agg.update)(
                deltas, jnp.asarray(mask), agg.init(params), params, jax.random.PRNGKey(1)
            )
            with self.subTest(sigma=sigma):
                np.testing.assert_allclose(diag.vc, vc, rtol=1e-4)
                np.testing.assert_allclose(diag.us, us, rtol=1e-4)

    def test_example_weighted_fedavg_matches_numpy(self):
        deltas = random_deltas(4, seed=9)
        mask = np.array([1, 1, 0, 1], bool)
        counts = np.array([10, 3, 50, 7])
        agg = aggregate.dp_aggregate(None, weighting="examples")
        params = zeros_params()
        new, _, diag = jax.jit(agg.update)(
            deltas,
            jnp.asarray(mask),
            agg.init(params),
            params,
            jax.random.PRNGKey(0),
            num_examples=counts,
        )
        expected, _, unclipped = numpy_eq8(deltas, mask, None, weights=counts)
        np.testing.assert_allclose(numpy_like_flat(new), expected, rtol=1e-5, atol=1e-6)
        vc, us = numpy_vc_us(unclipped, mask)  # Vc, Us stay unweighted (Eq. 9-11)
        np.testing.assert_allclose(diag.vc, vc, rtol=1e-4)
        np.testing.assert_allclose(diag.us, us, rtol=1e-4)

    def test_server_momentum_matches_manual_fedavgm(self):
        deltas = random_deltas(3, seed=11)
        mask = jnp.ones(3, bool)
        lr, beta = 0.5, 0.9
        agg = aggregate.dp_aggregate(
            None, server_optimizer=aggregate.make_server_optimizer("fedavgm", lr, momentum=beta)
        )
        params = {k: np.ones(s, np.float32) for k, s in SHAPES.items()}
        state = agg.init(params)
        update = jax.jit(agg.update)
        expected = numpy_like_flat(params).astype(np.float64)
        velocity = np.zeros_like(expected)
        avg = numpy_eq8(deltas, np.ones(3, bool), None)[0]
        current = params
        for _ in range(3):
            current, state, _ = update(deltas, mask, state, current, jax.random.PRNGKey(0))
            velocity = beta * velocity + avg  # heavy ball on the pseudo-gradient -avg
            expected = expected + lr * velocity
        np.testing.assert_allclose(numpy_like_flat(current), expected, rtol=1e-5)

    def test_wrong_structure_or_shape_is_a_named_error(self):
        agg = aggregate.dp_aggregate(1.0)
        params = zeros_params()
        state = agg.init(params)
        key = jax.random.PRNGKey(0)
        good = random_deltas(3)
        cases = {
            "missing leaf": {k: v for k, v in good.items() if k != "bias"},
            "wrong leaf shape": {**good, "dense": np.zeros((3, 4, 4), np.float32)},
            "ragged hospital axis": {**good, "bias": np.zeros((2, 2), np.float32)},
        }
        for name, deltas in cases.items():
            with self.subTest(name), self.assertRaises(errors.DeltaStructureError):
                jax.jit(agg.update)(deltas, jnp.ones(3, bool), state, params, key)
        with self.subTest("mask length"), self.assertRaises(errors.DeltaStructureError):
            agg.update(good, jnp.ones(4, bool), state, params, key)

    def test_impossible_configurations_are_named_errors(self):
        for kwargs in (
            {"clip_norm": 0.0},
            {"clip_norm": None, "noise_multiplier": 1.0},
            {"clip_norm": 1.0, "noise_multiplier": -1.0},
            {"clip_norm": 1.0, "noise_multiplier": 1.0, "weighting": "examples"},
            {"clip_norm": 1.0, "weighting": "median"},
        ):
            with self.subTest(str(kwargs)), self.assertRaises(errors.FederatedConfigError):
                aggregate.dp_aggregate(**kwargs)


def numpy_like_flat(tree):
    return numpy_flat({k: jnp.asarray(v)[None] for k, v in tree.items()})[0]


if __name__ == "__main__":
    absltest.main()
