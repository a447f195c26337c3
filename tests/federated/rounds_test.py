"""Local updates and the hospital-axis strategies."""

import chex
import jax
import numpy as np
import optax
from absl.testing import absltest, parameterized

from ccfl_jax import errors
from ccfl_jax.federated import rounds, testing

H, N, SIZE = 5, 6, 8


class StrategiesTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        model = testing.TinyConvNet(features=4)
        cls.params = testing.conv_params(model, SIZE)
        cls.local_update = rounds.make_local_update(
            testing.conv_loss_fn(model), optax.adam(1e-2), local_steps=2, batch_size=4
        )
        cls.data = testing.synthetic_hospitals(H, N, SIZE, pad_value=np.nan)
        cls.keys = jax.random.split(jax.random.PRNGKey(0), H)
        cls.active = np.array([True, False, True, True, False])
        cls.results, cls.partial = {}, {}
        for strategy in ("vmap", "loop", "shard"):
            runner = rounds.hospital_runner(cls.local_update, strategy=strategy)
            cls.results[strategy] = runner.run(cls.params, cls.data, cls.keys)
            cls.partial[strategy] = runner.run(cls.params, cls.data, cls.keys, cls.active)

    @parameterized.parameters("loop", "shard")
    def test_strategies_agree_with_vmap(self, strategy):
        chex.assert_trees_all_close(
            self.results[strategy], self.results["vmap"], rtol=1e-5, atol=1e-6
        )

    @parameterized.parameters("vmap", "loop", "shard")
    def test_inactive_hospitals_output_zeros_and_active_ones_are_unchanged(self, strategy):
        partial, full = self.partial[strategy], self.results["vmap"]
        for got, want in zip(jax.tree.leaves(partial), jax.tree.leaves(full)):
            np.testing.assert_array_equal(np.asarray(got)[~self.active], 0)
            np.testing.assert_allclose(
                np.asarray(got)[self.active], np.asarray(want)[self.active], rtol=1e-5, atol=1e-6
            )

    def test_outputs_have_the_hospital_axis_and_are_finite(self):
        # Padded rows hold NaN: any read of them would poison the deltas.
        deltas, metrics = self.results["vmap"]
        for delta, param in zip(jax.tree.leaves(deltas), jax.tree.leaves(self.params)):
            chex.assert_shape(delta, (H,) + param.shape)
        chex.assert_tree_all_finite((deltas, metrics))
        np.testing.assert_array_equal(metrics["num_examples"], self.data["mask"].sum(1))

    def test_each_hospital_gets_its_own_update(self):
        deltas, _ = self.results["vmap"]
        flat = np.asarray(jax.tree.leaves(deltas)[0]).reshape(H, -1)
        self.assertEqual(len({row.tobytes() for row in flat}), H)


class LocalUpdateTest(parameterized.TestCase):
    def test_full_batch_local_steps_lower_the_loss(self):
        data = testing.synthetic_hospitals(3, 8, 4)
        local_update = rounds.make_local_update(
            testing.linear_loss_fn, optax.sgd(0.05), local_steps=5, batch_size=8
        )
        keys = jax.random.split(jax.random.PRNGKey(1), 3)
        _, metrics = rounds.run_hospitals(
            local_update, testing.linear_params(4), data, keys, strategy="vmap"
        )
        self.assertTrue(np.all(metrics["loss_last"] < metrics["loss_first"]), metrics)

    def test_short_hospital_pads_its_batch_without_reading_padding(self):
        # 2 real rows, batch of 4: two padding rows (NaN images) enter the batch with mask False.
        data = testing.synthetic_hospitals(1, 6, 4, pad_value=np.nan)
        data["mask"][0, 2:] = False
        data["images"][0, 2:] = np.nan
        local_update = rounds.make_local_update(
            testing.linear_loss_fn, optax.sgd(0.1), local_steps=3, batch_size=4
        )
        keys = jax.random.split(jax.random.PRNGKey(2), 1)
        deltas, metrics = rounds.run_hospitals(
            local_update, testing.linear_params(4), data, keys, strategy="loop"
        )
        chex.assert_tree_all_finite(deltas)
        self.assertEqual(int(metrics["num_examples"][0]), 2)

    def test_proximal_term_keeps_the_update_closer_to_global(self):
        data = testing.synthetic_hospitals(2, 8, 4)
        keys = jax.random.split(jax.random.PRNGKey(3), 2)
        norms = {}
        for mu in (0.0, 10.0):
            local_update = rounds.make_local_update(
                testing.linear_loss_fn,
                optax.sgd(0.05),
                local_steps=4,
                batch_size=8,
                proximal_mu=mu,
            )
            deltas, _ = rounds.run_hospitals(
                local_update, testing.linear_params(4), data, keys, strategy="vmap"
            )
            norms[mu] = np.sqrt(sum(np.sum(np.asarray(d) ** 2) for d in jax.tree.leaves(deltas)))
        self.assertLess(norms[10.0], norms[0.0])

    def test_bad_hospital_data_is_a_named_error(self):
        good = testing.synthetic_hospitals(2, 4, 4)
        keys = jax.random.split(jax.random.PRNGKey(0), 2)
        local_update = rounds.make_local_update(
            testing.linear_loss_fn, optax.sgd(0.1), local_steps=1, batch_size=2
        )
        cases = {
            "missing labels": {k: v for k, v in good.items() if k != "labels"},
            "int mask": {**good, "mask": good["mask"].astype(np.int32)},
            "labels of another N": {**good, "labels": good["labels"][:, :3]},
            "flat mask": {**good, "mask": good["mask"].ravel()},
        }
        runner = rounds.hospital_runner(local_update, strategy="loop")
        for name, data in cases.items():
            with self.subTest(name), self.assertRaises(errors.HospitalDataError):
                runner.run(testing.linear_params(4), data, keys)
        with self.subTest("one key short"), self.assertRaises(errors.HospitalDataError):
            runner.run(testing.linear_params(4), good, keys[:1])

    def test_bad_configuration_is_a_named_error(self):
        for kwargs in (
            {"local_steps": 0, "batch_size": 2},
            {"local_steps": 1, "batch_size": 0},
            {"local_steps": 1, "batch_size": 2, "proximal_mu": -1.0},
        ):
            with self.subTest(str(kwargs)), self.assertRaises(errors.FederatedConfigError):
                rounds.make_local_update(testing.linear_loss_fn, optax.sgd(0.1), **kwargs)
        with self.assertRaises(errors.FederatedConfigError):
            rounds.hospital_runner(lambda p, d, r: (p, {}), strategy="pmap")

    def test_auto_reports_its_choice(self):
        runner = rounds.hospital_runner(lambda p, d, r: (p, {}), strategy="auto")
        self.assertEqual(runner.strategy, rounds.pick_strategy())
        self.assertIn(runner.strategy, ("vmap", "loop", "shard"))


if __name__ == "__main__":
    absltest.main()
