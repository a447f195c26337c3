"""Local Laplace noise (Eq. 15): scale, independence, bad parameters."""

import jax
import numpy as np
from absl.testing import absltest

from ccfl_jax import errors
from ccfl_jax.federated import local_dp


class LocalDpTest(absltest.TestCase):
    def test_laplace_noise_scale_is_sensitivity_over_epsilon(self):
        # Laplace(b) has mean |x| = b; 20000 samples give a relative standard error ~0.7 %.
        delta = {"w": np.zeros((20000,), np.float32)}
        out = local_dp.laplace_perturb(delta, jax.random.PRNGKey(3), sensitivity=0.2, epsilon=0.5)
        self.assertAlmostEqual(float(np.abs(out["w"]).mean()) / 0.4, 1.0, delta=0.03)

    def test_leaves_get_independent_noise(self):
        delta = {"a": np.zeros((1000,), np.float32), "b": np.zeros((1000,), np.float32)}
        out = local_dp.laplace_perturb(delta, jax.random.PRNGKey(1), sensitivity=1.0, epsilon=1.0)
        # Independent leaves: |corr| of 1000 pairs has standard error ~0.03.
        self.assertLess(abs(np.corrcoef(out["a"], out["b"])[0, 1]), 0.15)

    def test_bad_parameters_are_named_errors(self):
        for sensitivity, epsilon in ((0.0, 1.0), (1.0, 0.0), (-1.0, 1.0)):
            with (
                self.subTest((sensitivity, epsilon)),
                self.assertRaises(errors.FederatedConfigError),
            ):
                local_dp.laplace_perturb(
                    {"w": np.zeros(2)},
                    jax.random.PRNGKey(0),
                    sensitivity=sensitivity,
                    epsilon=epsilon,
                )


if __name__ == "__main__":
    absltest.main()
