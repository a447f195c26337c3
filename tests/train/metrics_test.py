"""Metrics against independent NumPy computations (AUC through the Mann-Whitney U statistic)."""

import itertools

import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax.errors import MetricInputError
from ccfl_jax.train import metrics


def counts(labels, predicted):
    tp = sum(1 for t, p in zip(labels, predicted) if t == 1 and p == 1)
    tn = sum(1 for t, p in zip(labels, predicted) if t == 0 and p == 0)
    fp = sum(1 for t, p in zip(labels, predicted) if t == 0 and p == 1)
    fn = sum(1 for t, p in zip(labels, predicted) if t == 1 and p == 0)
    return tp, tn, fp, fn


def mann_whitney_auc(labels, scores):
    positives = [s for t, s in zip(labels, scores) if t == 1]
    negatives = [s for t, s in zip(labels, scores) if t == 0]
    u = sum((p > n) + 0.5 * (p == n) for p, n in itertools.product(positives, negatives))
    return u / (len(positives) * len(negatives))


def random_case(seed, n=60, ties=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = rng.uniform(size=n) + 0.3 * labels
    if ties:
        scores = np.round(scores, 1)
    return labels, scores


class ThresholdedMetricsTest(parameterized.TestCase):
    @parameterized.parameters(0, 1, 2)
    def test_match_counts(self, seed):
        labels, scores = random_case(seed)
        predicted = (scores >= 0.6).astype(int)
        tp, tn, fp, fn = counts(labels, predicted)
        np.testing.assert_array_equal(
            metrics.confusion_matrix(labels, predicted), [[tn, fp], [fn, tp]]
        )
        self.assertAlmostEqual(metrics.precision(labels, predicted), tp / (tp + fp))
        self.assertAlmostEqual(metrics.sensitivity(labels, predicted), tp / (tp + fn))
        self.assertAlmostEqual(metrics.specificity(labels, predicted), tn / (tn + fp))
        self.assertAlmostEqual(metrics.accuracy(labels, predicted), (tp + tn) / len(labels))
        self.assertAlmostEqual(
            metrics.balanced_accuracy(labels, predicted), (tp / (tp + fn) + tn / (tn + fp)) / 2
        )
        precision, recall = tp / (tp + fp), tp / (tp + fn)
        self.assertAlmostEqual(
            metrics.f1(labels, predicted), 2 * precision * recall / (precision + recall)
        )

    def test_zero_denominators_are_nan(self):
        self.assertTrue(np.isnan(metrics.precision([0, 1], [0, 0])))
        self.assertTrue(np.isnan(metrics.sensitivity([0, 0], [0, 1])))
        self.assertTrue(np.isnan(metrics.specificity([1, 1], [0, 1])))
        self.assertTrue(np.isnan(metrics.accuracy([], [])))


class RankingMetricsTest(parameterized.TestCase):
    @parameterized.product(seed=[0, 1, 2], ties=[False, True])
    def test_auc_equals_mann_whitney(self, seed, ties):
        labels, scores = random_case(seed, ties=ties)
        self.assertAlmostEqual(
            metrics.roc_auc(labels, scores), mann_whitney_auc(labels, scores), places=12
        )

    def test_roc_points_match_direct_counts(self):
        labels, scores = random_case(4, ties=True)
        fpr, tpr, thresholds = metrics.roc_curve(labels, scores)
        self.assertEqual(thresholds[0], np.inf)
        self.assertTrue(np.all(np.diff(thresholds) < 0))
        for f, t, threshold in zip(fpr, tpr, thresholds):
            tp, tn, fp, fn = counts(labels, (scores >= threshold).astype(int))
            self.assertAlmostEqual(t, tp / (tp + fn))
            self.assertAlmostEqual(f, fp / (fp + tn))
        self.assertEqual((fpr[-1], tpr[-1]), (1.0, 1.0))

    def test_youden_and_sensitivity_at_specificity_by_brute_force(self):
        labels, scores = random_case(5, n=80)
        best_j, best_t, best_sens = -np.inf, None, 0.0
        for threshold in sorted(set(scores), reverse=True):
            tp, tn, fp, fn = counts(labels, (scores >= threshold).astype(int))
            sens, spec = tp / (tp + fn), tn / (tn + fp)
            if sens + spec - 1 > best_j:
                best_j, best_t = sens + spec - 1, threshold
            if spec >= 0.9:
                best_sens = max(best_sens, sens)
        threshold, j = metrics.youden_threshold(labels, scores)
        self.assertAlmostEqual(j, best_j)
        self.assertEqual(threshold, best_t)
        self.assertAlmostEqual(metrics.sensitivity_at_specificity(labels, scores, 0.9), best_sens)

    def test_one_class_gives_nan_not_a_crash(self):
        self.assertTrue(np.isnan(metrics.roc_auc([1, 1, 1], [0.2, 0.5, 0.9])))
        self.assertTrue(np.isnan(metrics.youden_threshold([0, 0], [0.2, 0.5])[0]))
        self.assertTrue(np.isnan(metrics.sensitivity_at_specificity([1, 1], [0.2, 0.5])))
        report = metrics.classification_report([1, 1, 1, 1], [0.9, 0.8, 0.4, 0.7], n_boot=50)
        self.assertTrue(report["flags"]["one_class"])
        self.assertTrue(np.isnan(report["metrics"]["roc_auc"]["value"]))
        self.assertEqual(report["metrics"]["sensitivity"]["value"], 0.75)


class MaskMetricsTest(absltest.TestCase):
    def test_dice_and_iou_match_set_counts(self):
        rng = np.random.default_rng(0)
        truth, predicted = rng.uniform(size=(2, 3, 16, 16)) > 0.6
        for index in range(3):
            a = {tuple(p) for p in np.argwhere(truth[index])}
            b = {tuple(p) for p in np.argwhere(predicted[index])}
            per_image_dice = metrics.dice(truth, predicted, axis=(1, 2))[index]
            per_image_iou = metrics.iou(truth, predicted, axis=(1, 2))[index]
            self.assertAlmostEqual(per_image_dice, 2 * len(a & b) / (len(a) + len(b)))
            self.assertAlmostEqual(per_image_iou, len(a & b) / len(a | b))

    def test_empty_masks_agree_perfectly(self):
        empty = np.zeros((4, 4))
        self.assertEqual(metrics.dice(empty, empty), 1.0)
        self.assertEqual(metrics.iou(empty, empty), 1.0)
        self.assertEqual(metrics.dice(empty, np.ones((4, 4))), 0.0)


class BootstrapTest(absltest.TestCase):
    def test_accuracy_interval_width_matches_binomial(self):
        rng = np.random.default_rng(1)
        labels = rng.integers(0, 2, 400)
        correct = rng.uniform(size=400) < 0.7
        predicted = np.where(correct, labels, 1 - labels)
        ci = metrics.bootstrap_ci(metrics.accuracy, labels, predicted, n_boot=500)
        p = ci.value
        want = 2 * 1.96 * np.sqrt(p * (1 - p) / 400)
        self.assertAlmostEqual((ci.high - ci.low) / want, 1.0, delta=0.2)
        self.assertLess(ci.low, p)
        self.assertGreater(ci.high, p)
        self.assertEqual(ci.n_valid, 500)

    def test_resampling_patients_widens_the_interval(self):
        rng = np.random.default_rng(2)
        patient_labels = rng.integers(0, 2, 40)
        patient_right = rng.uniform(size=40) < 0.7
        labels = np.repeat(patient_labels, 10)
        predicted = np.repeat(np.where(patient_right, patient_labels, 1 - patient_labels), 10)
        groups = np.repeat(np.arange(40), 10)
        rows = metrics.bootstrap_ci(metrics.accuracy, labels, predicted, n_boot=300)
        patients = metrics.bootstrap_ci(
            metrics.accuracy, labels, predicted, n_boot=300, groups=groups
        )
        self.assertEqual(rows.value, patients.value)
        self.assertGreater(patients.high - patients.low, 2 * (rows.high - rows.low))

    def test_undefined_resamples_are_dropped_and_counted(self):
        ci = metrics.bootstrap_ci(metrics.roc_auc, [0, 1, 1, 1], [0.1, 0.9, 0.8, 0.7], n_boot=200)
        self.assertEqual(ci.value, 1.0)
        self.assertLess(ci.n_valid, 200)
        self.assertGreater(ci.n_valid, 0)


class ReportTest(absltest.TestCase):
    def test_table_iv_like_predictor_is_flagged(self):
        rng = np.random.default_rng(3)
        labels = (rng.uniform(size=300) < 0.83).astype(int)
        scores = np.full(300, 0.9)  # always "covid", as the capsule row of Table IV nearly is
        report = metrics.classification_report(labels, scores, n_boot=200)
        self.assertTrue(report["flags"]["precision_at_positive_rate"])
        self.assertTrue(report["flags"]["auc_ci_includes_chance"])
        self.assertAlmostEqual(report["metrics"]["balanced_accuracy"]["value"], 0.5)
        self.assertEqual(report["metrics"]["roc_auc"]["value"], 0.5)
        self.assertEqual(report["metrics"]["sensitivity"]["value"], 1.0)
        self.assertAlmostEqual(report["positive_rate"], labels.mean())

    def test_good_detector_is_not_flagged(self):
        labels, scores = random_case(6, n=200)
        scores = scores + 0.7 * labels
        report = metrics.classification_report(labels, scores, threshold=0.8, n_boot=200)
        self.assertFalse(report["flags"]["auc_ci_includes_chance"])
        self.assertAlmostEqual(
            report["metrics"]["roc_auc"]["value"], mann_whitney_auc(labels, scores), places=12
        )
        for name, entry in report["metrics"].items():
            self.assertLessEqual(entry["low"], entry["value"] + 1e-12, name)
            self.assertGreaterEqual(entry["high"], entry["value"] - 1e-12, name)


class BadInputTest(absltest.TestCase):
    def test_named_errors(self):
        with self.assertRaises(MetricInputError):
            metrics.roc_auc([0, 2], [0.1, 0.2])
        with self.assertRaises(MetricInputError):
            metrics.roc_auc([0, 1], [0.1])
        with self.assertRaises(MetricInputError):
            metrics.roc_auc([0, 1], [0.1, np.nan])
        with self.assertRaises(MetricInputError):
            metrics.dice(np.zeros((2, 2)), np.zeros((3, 2)))
        with self.assertRaises(MetricInputError):
            metrics.sensitivity_at_specificity([0, 1], [0.1, 0.2], 1.5)


if __name__ == "__main__":
    absltest.main()
