"""The public face of ccfl_jax.federated."""

from absl.testing import absltest

from ccfl_jax import federated


class FederatedApiTest(absltest.TestCase):
    def test_all_names_exist_and_are_sorted(self):
        for name in federated.__all__:
            self.assertTrue(hasattr(federated, name), name)
        self.assertEqual(list(federated.__all__), sorted(federated.__all__))

    def test_core_entry_points_are_public(self):
        for name in (
            "make_local_update",
            "hospital_runner",
            "run_hospitals",
            "pick_strategy",
            "fixed_size_sampler",
            "poisson_sampler",
            "dp_aggregate",
            "federated_averaging",
            "epsilon",
            "noise_for_epsilon",
            "account_round",
            "save_server_state",
            "restore_server_state",
            "train",
        ):
            self.assertIn(name, federated.__all__)


if __name__ == "__main__":
    absltest.main()
