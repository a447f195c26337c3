"""Multi-plane aggregation (Eq. 2-3) against NumPy loops over every slice of every plane."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax.errors import ModelConfigError
from ccfl_jax.models import multiplane


def jax_predictor(slices):
    """A 2D function that depends on its in-plane neighbours: sigmoid of a horizontal 3-tap sum."""
    padded = jnp.pad(slices, ((0, 0), (0, 0), (1, 1), (0, 0)))
    return jax.nn.sigmoid(padded[:, :, :-2] + 2 * padded[:, :, 1:-1] - padded[:, :, 2:])


def numpy_predictor(image):
    padded = np.pad(image, ((0, 0), (1, 1)))
    return 1 / (1 + np.exp(-(padded[:, :-2] + 2 * padded[:, 1:-1] - padded[:, 2:])))


def numpy_planes(volume):
    depth, rows, cols = volume.shape
    axial, coronal, sagittal = (np.zeros(volume.shape) for _ in range(3))
    for z in range(depth):
        axial[z] = numpy_predictor(volume[z])  # the (y, x) slice
    for y in range(rows):
        coronal[:, y, :] = numpy_predictor(volume[:, y, :])  # the (z, x) slice
    for x in range(cols):
        sagittal[:, :, x] = numpy_predictor(volume[:, :, x])  # the (z, y) slice
    return np.stack([axial, coronal, sagittal])


class MultiplaneTest(chex.TestCase, parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.volume = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
        self.want = numpy_planes(self.volume.astype(np.float64))

    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.parameters(None, 2)
    def test_planes_match_numpy(self, batch_size):
        run = self.variant(
            lambda v: multiplane.plane_probabilities(jax_predictor, v, batch_size=batch_size)
        )
        np.testing.assert_allclose(run(self.volume), self.want, atol=1e-6)

    def test_aggregations_match_numpy(self):
        weights = np.array([0.3, -1.0, 2.0], np.float32)
        convex = np.exp(weights) / np.exp(weights).sum()
        cases = {
            "mean": (None, self.want.mean(0)),
            "max": (None, self.want.max(0)),
            "weighted": (weights, np.tensordot(convex, self.want, axes=1)),
        }
        for method, (w, want) in cases.items():
            with self.subTest(method):
                got = jax.jit(
                    lambda v, w, m=method: multiplane.multiplane_probability(
                        jax_predictor, v, method=m, weights=w
                    )
                )(self.volume, w)
                np.testing.assert_allclose(got, want, atol=1e-6)

    def test_learned_weights_get_gradients(self):
        def loss(weights):
            per_plane = jnp.asarray(self.want, jnp.float32)
            return jnp.sum(multiplane.aggregate(per_plane, "weighted", weights))

        grad = jax.grad(loss)(jnp.zeros(3))
        chex.assert_tree_all_finite(grad)
        self.assertGreater(float(jnp.abs(grad).max()), 0.0)

    def test_bad_input_raises(self):
        with self.assertRaises(ModelConfigError):
            multiplane.plane_probabilities(jax_predictor, jnp.zeros((4, 4)))
        with self.assertRaises(ModelConfigError):
            multiplane.aggregate(jnp.zeros((3, 2)), "median")
        with self.assertRaises(ModelConfigError):
            multiplane.aggregate(jnp.zeros((3, 2)), "weighted")


if __name__ == "__main__":
    absltest.main()
