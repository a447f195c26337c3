"""The federated algorithm: one round equals its halves, training works, rejection is exact."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

from ccfl_jax.federated import aggregate, fedavg, rounds, sampling, testing

H, N, SIZE = 4, 8, 4


def global_loss(params, data):
    """Mask-weighted loss of the global linear model over every hospital's real rows."""
    flat = {k: np.reshape(v, (-1,) + v.shape[2:]) for k, v in data.items()}
    return float(testing.linear_loss_fn(params, flat, None)[0])


class FedAvgTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.data = testing.synthetic_hospitals(H, N, SIZE)
        cls.params = testing.linear_params(SIZE)
        cls.local_update = staticmethod(
            rounds.make_local_update(
                testing.linear_loss_fn, optax.sgd(0.05), local_steps=3, batch_size=4
            )
        )
        cls.algorithm = fedavg.federated_averaging(
            cls.local_update,
            aggregate.dp_aggregate(1.0, 0.1),
            sampling.fixed_size_sampler(H, 3),
            strategy="vmap",
        )

    def test_apply_equals_sample_compute_deltas_aggregate(self):
        state = self.algorithm.init(self.params, jax.random.PRNGKey(0))
        accepted = jnp.array([True, False, True, True])
        one_call, output = self.algorithm.apply(state, self.data, accepted)
        sampled = self.algorithm.sample(state)
        deltas, metrics = self.algorithm.compute_deltas(state, self.data)
        halves, diagnostics = self.algorithm.aggregate(
            state, deltas, sampled & accepted, metrics["num_examples"]
        )
        chex.assert_trees_all_close(one_call, halves)
        np.testing.assert_array_equal(output.mask, sampled & accepted)
        self.assertEqual(int(halves.round), 1)
        self.assertEqual(float(diagnostics.num_contributing), float((sampled & accepted).sum()))

    def test_rounds_lower_the_global_loss(self):
        state = self.algorithm.init(self.params, jax.random.PRNGKey(1))
        before = global_loss(state.params, self.data)
        for _ in range(6):
            state, _ = self.algorithm.apply(state, self.data)
        self.assertLess(global_loss(state.params, self.data), 0.9 * before)

    def test_rejected_hospital_data_does_not_matter(self):
        state = self.algorithm.init(self.params, jax.random.PRNGKey(2))
        poisoned = {k: v.copy() for k, v in self.data.items()}
        poisoned["images"][2] = 1e6
        poisoned["labels"][2] = 1 - poisoned["labels"][2]
        reject_2 = jnp.array([True, True, False, True])
        clean, _ = self.algorithm.apply(state, self.data, reject_2)
        dirty, _ = self.algorithm.apply(state, poisoned, reject_2)
        chex.assert_trees_all_equal(clean.params, dirty.params)

    def test_round_function_compiles_once(self):
        traced = chex.assert_max_traces(n=1)(self.local_update)
        algorithm = fedavg.federated_averaging(
            traced,
            aggregate.dp_aggregate(1.0),
            sampling.poisson_sampler(H, 0.5),
            strategy="vmap",
        )
        state = algorithm.init(self.params, jax.random.PRNGKey(3))
        for _ in range(3):
            state, _ = algorithm.apply(state, self.data)
        self.assertEqual(int(state.round), 3)

    def test_skipping_unsampled_hospitals_changes_nothing_aggregated(self):
        skipping = fedavg.federated_averaging(
            self.local_update,
            aggregate.dp_aggregate(1.0, 0.1),
            sampling.fixed_size_sampler(H, 3),
            strategy="loop",
            skip_unsampled=True,
        )
        state = skipping.init(self.params, jax.random.PRNGKey(5))
        sampled = np.asarray(skipping.sample(state))
        deltas, metrics = skipping.compute_deltas(state, self.data)
        for leaf in jax.tree.leaves((deltas, metrics)):
            np.testing.assert_array_equal(np.asarray(leaf)[~sampled], 0)
        skipped, _ = skipping.apply(state, self.data)
        full, _ = self.algorithm.apply(state, self.data)
        chex.assert_trees_all_close(skipped.params, full.params, rtol=1e-5, atol=1e-7)

    def test_local_laplace_noise_reaches_the_deltas(self):
        noisy = fedavg.federated_averaging(
            self.local_update,
            aggregate.dp_aggregate(None),
            sampling.fixed_size_sampler(H, H),
            strategy="vmap",
            local_laplace=fedavg.LocalLaplace(sensitivity=0.5, epsilon=1.0),
        )
        state = noisy.init(self.params, jax.random.PRNGKey(4))
        clean_deltas, _ = self.algorithm.compute_deltas(state, self.data)
        noisy_deltas, _ = noisy.compute_deltas(state, self.data)
        diff = np.concatenate(
            [
                np.ravel(a - b)
                for a, b in zip(jax.tree.leaves(noisy_deltas), jax.tree.leaves(clean_deltas))
            ]
        )
        # Laplace(b = 0.5): mean |noise| = 0.5; 136 draws give a standard error ~0.043.
        self.assertAlmostEqual(np.abs(diff).mean(), 0.5, delta=0.2)


if __name__ == "__main__":
    absltest.main()
