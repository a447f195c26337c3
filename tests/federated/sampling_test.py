"""Hospital sampling masks: exact size, rates, static shapes."""

import jax
import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax import errors
from ccfl_jax.federated import sampling


class SamplingTest(parameterized.TestCase):
    @parameterized.parameters((5, 3), (8, 8), (8, 0), (16, 1))
    def test_fixed_size_draws_exactly_m(self, num_hospitals, num_sampled):
        sampler = sampling.fixed_size_sampler(num_hospitals, num_sampled)
        keys = jax.random.split(jax.random.PRNGKey(0), 200)
        masks = np.asarray(jax.jit(jax.vmap(sampler.sample))(keys))
        self.assertEqual(masks.shape, (200, num_hospitals))
        np.testing.assert_array_equal(masks.sum(1), num_sampled)

    def test_fixed_size_is_uniform_over_hospitals(self):
        # 4000 draws of 2 of 5: each hospital's count ~ Binomial(4000, 0.4), sd ~ 31; allow 5 sd.
        keys = jax.random.split(jax.random.PRNGKey(1), 4000)
        masks = np.asarray(jax.vmap(lambda k: sampling.fixed_size_mask(k, 5, 2))(keys))
        np.testing.assert_allclose(masks.sum(0), 1600, atol=5 * np.sqrt(4000 * 0.4 * 0.6))

    def test_poisson_rate(self):
        # 20000 Bernoulli(0.3) draws: sd of the mean ~ 0.0032; allow 5 sd.
        sampler = sampling.poisson_sampler(10, 0.3)
        keys = jax.random.split(jax.random.PRNGKey(2), 2000)
        masks = np.asarray(jax.vmap(sampler.sample)(keys))
        self.assertAlmostEqual(masks.mean(), 0.3, delta=5 * np.sqrt(0.3 * 0.7 / masks.size))
        self.assertGreater(len(set(masks.sum(1).tolist())), 3)  # the count varies
        self.assertEqual(sampler.expected_count, 3.0)

    def test_bad_sizes_are_named_errors(self):
        for make, args in (
            (sampling.fixed_size_sampler, (5, 6)),
            (sampling.fixed_size_sampler, (0, 0)),
            (sampling.poisson_sampler, (5, 1.5)),
        ):
            with self.subTest(args), self.assertRaises(errors.FederatedConfigError):
                make(*args)


if __name__ == "__main__":
    absltest.main()
