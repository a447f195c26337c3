"""Privacy accounting equals a direct dp-accounting computation; the budget stops a run."""

import math

import dp_accounting
from absl.testing import absltest, parameterized
from dp_accounting import pld, rdp

from ccfl_jax import errors
from ccfl_jax.federated import privacy


def direct_rdp(sigma, q, rounds, delta):
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), rounds
    )
    accountant = rdp.RdpAccountant()  # dp-accounting's own default orders
    accountant.compose(event)
    return accountant.get_epsilon(delta)


def direct_pld(sigma, q, rounds, delta):
    accountant = pld.PLDAccountant()
    accountant.compose(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), rounds
    )
    return accountant.get_epsilon(delta)


class PrivacyTest(parameterized.TestCase):
    @parameterized.parameters((1.0, 0.6, 20, 1e-5), (2.0, 0.1, 12, 1e-6), (0.8, 1.0, 5, 1e-5))
    def test_epsilon_equals_direct_dp_accounting(self, sigma, q, rounds, delta):
        ours = privacy.epsilon(sigma, q, rounds, delta)
        self.assertAlmostEqual(ours, direct_rdp(sigma, q, rounds, delta), delta=0.01 * ours)
        ours_pld = privacy.epsilon(sigma, q, rounds, delta, method="pld")
        self.assertAlmostEqual(ours_pld, direct_pld(sigma, q, rounds, delta), delta=0.01 * ours_pld)
        self.assertLessEqual(ours_pld, ours * 1.01)  # PLD is the tighter of the two

    def test_no_sampling_matches_gaussian_closed_form(self):
        # q = 1, one round: the Gaussian mechanism's exact (eps, delta) curve (Balle & Wang 2018).
        eps = privacy.epsilon(2.0, 1.0, 1, 1e-5, method="pld")
        self.assertAlmostEqual(eps, dp_accounting.get_epsilon_gaussian(2.0, 1e-5), delta=0.02 * eps)

    def test_edge_cases(self):
        self.assertEqual(privacy.epsilon(0.0, 0.5, 3, 1e-5), math.inf)
        self.assertEqual(privacy.epsilon(1.0, 0.5, 0, 1e-5), 0.0)
        self.assertEqual(privacy.epsilon(1.0, 0.0, 10, 1e-5), 0.0)

    @parameterized.parameters(1.0, 8.0)
    def test_noise_for_epsilon_inverts_epsilon(self, target):
        sigma = privacy.noise_for_epsilon(target, 0.6, 20, 1e-5)
        self.assertLessEqual(privacy.epsilon(sigma, 0.6, 20, 1e-5), target)
        self.assertGreater(privacy.epsilon(sigma * 0.98, 0.6, 20, 1e-5), target)

    def test_budget_stops_before_the_round_that_would_pass_it(self):
        target = privacy.epsilon(1.0, 0.6, 3, 1e-5) + 1e-6  # room for exactly 3 rounds
        state = privacy.accountant_init(1.0, 0.6, 1e-5, target_epsilon=target)
        epsilons = []
        for _ in range(3):
            state, eps = privacy.account_round(state)
            epsilons.append(eps)
        self.assertEqual(epsilons, sorted(epsilons))
        with self.assertRaisesRegex(errors.PrivacyBudgetExceededError, "round 4"):
            privacy.account_round(state)
        self.assertEqual(state.rounds, 3)

    def test_bad_arguments_are_named_errors(self):
        for args in (
            (-1.0, 0.5, 1, 1e-5),
            (1.0, 1.5, 1, 1e-5),
            (1.0, 0.5, -1, 1e-5),
            (1.0, 0.5, 1, 0.0),
        ):
            with self.subTest(args), self.assertRaises(errors.FederatedConfigError):
                privacy.epsilon(*args)
        with self.assertRaises(errors.FederatedConfigError):
            privacy.epsilon(1.0, 0.5, 1, 1e-5, method="moments")


if __name__ == "__main__":
    absltest.main()
