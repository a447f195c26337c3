"""Losses against NumPy formulas; padded rows contribute exactly nothing."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax.train import losses


def numpy_margin(lengths, labels, m_plus=0.9, m_minus=0.1, lam=0.5):
    total = np.zeros(len(labels))
    for n, label in enumerate(labels):
        for k, length in enumerate(lengths[n]):
            if k == label:
                total[n] += max(0.0, m_plus - length) ** 2
            else:
                total[n] += lam * max(0.0, length - m_minus) ** 2
    return total


class LossesTest(parameterized.TestCase):
    def test_margin_loss_matches_numpy(self):
        rng = np.random.default_rng(0)
        lengths = rng.uniform(size=(20, 2)).astype(np.float32)
        labels = rng.integers(0, 2, size=20)
        np.testing.assert_allclose(
            losses.margin_loss(lengths, labels), numpy_margin(lengths, labels), rtol=1e-5, atol=1e-7
        )

    def test_cross_entropy_matches_numpy(self):
        rng = np.random.default_rng(1)
        logits = rng.normal(size=(10, 2)).astype(np.float32)
        labels = rng.integers(0, 2, size=10)
        log_softmax = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        want = -log_softmax[np.arange(10), labels]
        np.testing.assert_allclose(losses.cross_entropy(logits, labels), want, rtol=1e-5)

    def test_reconstruction_is_sum_of_squares(self):
        rng = np.random.default_rng(2)
        a, b = rng.normal(size=(2, 3, 4, 4, 1)).astype(np.float32)
        want = ((a - b) ** 2).reshape(3, -1).sum(-1)
        np.testing.assert_allclose(losses.reconstruction_loss(a, b), want, rtol=1e-5)

    @parameterized.parameters(1.0, 3.5)
    def test_weighted_bce_matches_numpy(self, weight):
        rng = np.random.default_rng(3)
        logits = rng.normal(size=(2, 4, 4, 1)).astype(np.float32)
        targets = (rng.uniform(size=(2, 4, 4, 1)) > 0.7).astype(np.float32)
        p = 1 / (1 + np.exp(-logits.astype(np.float64)))
        per_pixel = -(weight * targets * np.log(p) + (1 - targets) * np.log(1 - p))
        want = per_pixel.reshape(2, -1).mean(-1)
        got = losses.weighted_binary_cross_entropy(logits, targets, weight)
        np.testing.assert_allclose(got, want, rtol=1e-5)

    def test_masked_mean_ignores_padding_even_nan(self):
        values = jnp.array([1.0, 2.0, jnp.nan, jnp.inf])
        mask = jnp.array([True, True, False, False])
        self.assertEqual(float(losses.masked_mean(values, mask)), 1.5)

    def test_all_padding_is_zero_with_zero_gradient(self):
        mask = jnp.zeros(3, bool)
        value, grad = jax.value_and_grad(lambda v: losses.masked_mean(v**2, mask))(jnp.ones(3))
        self.assertEqual(float(value), 0.0)
        np.testing.assert_array_equal(grad, np.zeros(3))


if __name__ == "__main__":
    absltest.main()
