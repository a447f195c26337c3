"""squash, dynamic routing and local routing against a plain NumPy loop of Algorithm 1."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax.errors import ModelConfigError
from ccfl_jax.models import capsules


def numpy_squash(s):
    norm = np.linalg.norm(s, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = norm**2 / (1 + norm**2) * s / norm
    return np.nan_to_num(out)


def numpy_routing(u_hat, iterations, bias=None):
    """Algorithm 1 of Sabour et al., one example and one output capsule at a time."""
    batch, num_in, num_out, dims = u_hat.shape
    v = np.zeros((batch, num_out, dims))
    c = np.zeros((batch, num_in, num_out))
    for n in range(batch):
        b = np.zeros((num_in, num_out))
        for r in range(iterations):
            for i in range(num_in):
                c[n, i] = np.exp(b[i]) / np.exp(b[i]).sum()
            for j in range(num_out):
                s = sum(c[n, i, j] * u_hat[n, i, j] for i in range(num_in))
                if bias is not None:
                    s = s + bias[j]
                v[n, j] = numpy_squash(s)
            if r < iterations - 1:
                for i in range(num_in):
                    for j in range(num_out):
                        b[i, j] += u_hat[n, i, j] @ v[n, j]
    return v, c


class SquashTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_numpy(self):
        s = np.random.default_rng(0).normal(size=(5, 7, 16)).astype(np.float32)
        got = self.variant(capsules.squash)(s)
        np.testing.assert_allclose(got, numpy_squash(s.astype(np.float64)), rtol=1e-5, atol=1e-6)

    def test_lengths_below_one_and_direction_kept(self):
        s = np.random.default_rng(1).normal(scale=5.0, size=(100, 8)).astype(np.float32)
        v = np.asarray(capsules.squash(s))
        lengths = np.linalg.norm(v, axis=-1)
        self.assertTrue(np.all(lengths < 1.0))
        cosine = np.sum(v * s, -1) / (lengths * np.linalg.norm(s, axis=-1))
        np.testing.assert_allclose(cosine, 1.0, rtol=1e-5)

    def test_zero_vector_value_and_gradient_finite(self):
        zero = jnp.zeros((3, 16))
        self.assertEqual(float(jnp.abs(capsules.squash(zero)).max()), 0.0)
        grad = jax.grad(lambda s: jnp.sum(capsules.squash(s)))(zero)
        chex.assert_tree_all_finite(grad)
        grad_length = jax.grad(lambda s: jnp.sum(capsules.capsule_length(capsules.squash(s))))(zero)
        chex.assert_tree_all_finite(grad_length)


class DynamicRoutingTest(chex.TestCase, parameterized.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(1, 2, 3)
    def test_matches_numpy_algorithm_1(self, iterations):
        u_hat = np.random.default_rng(iterations).normal(size=(3, 10, 4, 8)).astype(np.float32)
        route = self.variant(lambda u: capsules.dynamic_routing(u, iterations))
        v, c = route(u_hat)
        want_v, want_c = numpy_routing(u_hat.astype(np.float64), iterations)
        np.testing.assert_allclose(v, want_v, atol=1e-5)
        np.testing.assert_allclose(c, want_c, atol=1e-5)

    def test_bias_matches_numpy(self):
        rng = np.random.default_rng(7)
        u_hat = rng.normal(size=(2, 6, 3, 4)).astype(np.float32)
        bias = rng.normal(size=(3, 4)).astype(np.float32)
        v, _ = jax.jit(lambda u, b: capsules.dynamic_routing(u, 3, b))(u_hat, bias)
        want, _ = numpy_routing(u_hat.astype(np.float64), 3, bias.astype(np.float64))
        np.testing.assert_allclose(v, want, atol=1e-5)

    def test_vmaps_over_replicas(self):
        u_hat = np.random.default_rng(3).normal(size=(4, 2, 10, 2, 16)).astype(np.float32)
        v, c = jax.jit(jax.vmap(lambda u: capsules.dynamic_routing(u, 3)))(u_hat)
        chex.assert_shape((v, c), [(4, 2, 2, 16), (4, 2, 10, 2)])
        for replica in range(4):
            want, _ = numpy_routing(u_hat[replica].astype(np.float64), 3)
            np.testing.assert_allclose(v[replica], want, atol=1e-5)

    def test_gradient_finite_at_zero_predictions(self):
        grad = jax.grad(lambda u: jnp.sum(capsules.dynamic_routing(u, 3)[0]))(
            jnp.zeros((2, 5, 2, 4))
        )
        chex.assert_tree_all_finite(grad)

    def test_bad_config_raises(self):
        with self.assertRaises(ModelConfigError):
            capsules.dynamic_routing(jnp.zeros((2, 5, 2, 4)), 0)
        with self.assertRaises(ModelConfigError):
            capsules.dynamic_routing(jnp.zeros((5, 2, 4)), 3)


class LocalRoutingTest(absltest.TestCase):
    def test_each_position_routes_independently(self):
        rng = np.random.default_rng(5)
        votes = rng.normal(size=(2, 3, 4, 5, 2, 6)).astype(np.float32)
        bias = rng.normal(size=(2, 6)).astype(np.float32)
        got = np.asarray(jax.jit(lambda x: capsules.local_routing(x, 3, bias))(votes))
        self.assertEqual(got.shape, (2, 3, 4, 2, 6))
        for y, x in [(0, 0), (2, 3), (1, 2)]:
            want, _ = numpy_routing(votes[:, y, x].astype(np.float64), 3, bias.astype(np.float64))
            np.testing.assert_allclose(got[:, y, x], want, atol=1e-5)

    def test_bad_shape_raises(self):
        with self.assertRaises(ModelConfigError):
            capsules.local_routing(jnp.zeros((2, 3, 4, 5, 6)), 3)


if __name__ == "__main__":
    absltest.main()
