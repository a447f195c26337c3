"""The Eq. 17-18 combination rule against NumPy and hand computations."""

import numpy as np
from absl.testing import absltest, parameterized

from ledger import consensus


class ConsensusTest(parameterized.TestCase):
    def test_mae_matches_numpy(self):
        rng = np.random.default_rng(0)
        labels = rng.integers(0, 2, 50)
        probs = rng.uniform(size=50)
        self.assertAlmostEqual(
            consensus.mean_absolute_error(labels.tolist(), probs.tolist()),
            float(np.mean(np.abs(labels - probs))),
            places=10,
        )

    def test_mae_rejects_mismatched_lengths(self):
        with self.assertRaises(ValueError):
            consensus.mean_absolute_error([1, 0], [0.5])

    @parameterized.parameters(float("nan"), -0.1, float("inf"))
    def test_bad_scores_are_rejected(self, value):
        with self.assertRaises(ValueError):
            consensus.to_score(value)

    @parameterized.named_parameters(
        # (validators' MAEs, gamma, quorum, accepted by hand)
        ("all_pass", [0.1, 0.2, 0.3], 0.35, 2, True),
        ("one_passes", [0.1, 0.4, 0.5], 0.35, 2, False),
        ("boundary_passes", [0.35, 0.35], 0.35, 2, True),
        ("just_above", [0.350001, 0.1], 0.35, 2, False),
        ("quorum_three", [0.1, 0.2, 0.9], 0.5, 3, False),
        ("quorum_one", [0.9, 0.2], 0.5, 1, True),
    )
    def test_combination_rule_by_hand(self, maes, gamma, quorum, expected):
        scores = [consensus.to_score(m) for m in maes]
        self.assertEqual(consensus.is_accepted(scores, gamma, quorum), expected)


if __name__ == "__main__":
    absltest.main()
