"""Table IV: the reference predictors against NumPy, and one tiny end-to-end table."""

import json
import pathlib
import shutil
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax.errors import MetricInputError
from experiments import benchmark_models, reference_models

REPO = pathlib.Path(__file__).resolve().parents[2]


def mann_whitney_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


def youden_threshold(labels: np.ndarray, scores: np.ndarray) -> float:
    """The highest candidate threshold with the largest TPR - FPR (predict positive if >=)."""
    candidates = np.unique(scores)[::-1]
    j = [np.mean(scores[labels == 1] >= t) - np.mean(scores[labels == 0] >= t) for t in candidates]
    return float(candidates[int(np.argmax(j))])


class ReferenceModelsTest(parameterized.TestCase):
    @parameterized.parameters(4, 32)
    def test_histograms_match_numpy(self, bins):
        rng = np.random.default_rng(0)
        images = rng.uniform(-0.5, 0.5, size=(5, 8, 8, 1))
        got = reference_models.intensity_histograms(images, bins=bins)
        for image, row in zip(images, got, strict=True):
            counts, _ = np.histogram(image, bins=bins, range=(-0.5, 0.5))
            np.testing.assert_allclose(row, counts / image.size)

    def test_logistic_regression_is_at_the_penalized_optimum(self):
        rng = np.random.default_rng(1)
        features = rng.normal(size=(60, 3)) * [1.0, 5.0, 0.1]
        labels = (features[:, 0] + rng.normal(size=60) > 0).astype(int)
        l2 = 0.5
        model = reference_models.fit_logistic_regression(features, labels, l2=l2)
        z = (features - features.mean(0)) / features.std(0)
        p = 1 / (1 + np.exp(-(z @ model.weights + model.bias)))
        # Gradient of sum BCE + l2/2 |w|^2, written out independently: zero at the optimum.
        np.testing.assert_allclose(z.T @ (p - labels) + l2 * model.weights, 0, atol=1e-8)
        np.testing.assert_allclose(np.sum(p - labels), 0, atol=1e-8)
        np.testing.assert_allclose(reference_models.logistic_scores(model, features), p)

    def test_hospital_only_scores(self):
        rates = reference_models.hospital_positive_rates([np.array([1, 0, 0, 0]), np.array([1])])
        np.testing.assert_allclose(rates, [0.25, 1.0])
        scores = reference_models.hospital_only_scores(rates, [1, 0, 0])
        np.testing.assert_allclose(scores, [1.0, 0.25, 0.25])

    def test_bad_inputs_raise_named_errors(self):
        with self.assertRaisesRegex(MetricInputError, "hospitals"):
            reference_models.hospital_only_scores(np.array([0.5]), [0, 1])
        with self.assertRaisesRegex(MetricInputError, "disagree"):
            reference_models.fit_logistic_regression(np.zeros((3, 2)), np.zeros(4))
        with self.assertRaisesRegex(MetricInputError, "0/1"):
            reference_models.fit_logistic_regression(np.zeros((2, 2)), np.array([0, 2]))


class BenchmarkTableTest(absltest.TestCase):
    """One tiny run of the whole table (cnn_small, 2 steps, 8 images per hospital)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = pathlib.Path(tempfile.mkdtemp())
        cls.config = benchmark_models.BenchConfig(
            manifest=str(REPO / "data" / "labels.csv"),
            image_size=32,
            cache_dir=str(cls.root / "cache"),
            max_per_hospital=10,
            models=("cnn_small",),
            steps=2,
            batch_size=4,
            federated_model="cnn_small",
            local_steps=1,
            hospitals_per_round=2,
            bootstrap=20,
            progress=False,
        )
        cls.result = benchmark_models.run_benchmark(cls.config, cls.root / "out")
        cls.dataset = benchmark_models.load_dataset(cls.config, cls.config.manifest)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def row(self, training_prefix: str) -> dict:
        rows = [r for r in self.result["rows"] if r["training"].startswith(training_prefix)]
        self.assertLen(rows, 1)
        return rows[0]

    def test_table_has_every_row(self):
        trainings = [(r["model"], r["training"]) for r in self.result["rows"]]
        self.assertEqual([t for _, t in trainings[:2]], ["reference", "reference"])
        self.assertIn("intensity histogram", trainings[0][0])
        self.assertIn("hospital only", trainings[1][0])
        self.assertIn(("cnn_small", "central (pooled)"), trainings)
        for hospital in self.dataset.hospitals:
            self.assertIn(("cnn_small", f"local only: {hospital}"), trainings)
        self.assertIn(("cnn_small", "federated"), trainings)
        self.assertIn(("cnn_small", "federated + DP"), trainings)
        self.assertLen(trainings, 2 + 1 + len(self.dataset.hospitals) + 2)
        markdown = (self.root / "out" / "table.md").read_text().splitlines()
        self.assertLen(markdown, 2 + len(trainings))
        saved = json.loads((self.root / "out" / "table.json").read_text())
        self.assertEqual([(r["model"], r["training"]) for r in saved["rows"]], trainings)

    def test_every_row_has_the_paper_columns_and_auc_with_cis(self):
        for row in self.result["rows"]:
            for name in ("precision", "sensitivity", "specificity", "accuracy", "roc_auc"):
                metric = row["metrics"][name]
                if not np.isnan(metric["value"]):
                    self.assertBetween(metric["value"], metric["low"] - 1e-9, metric["high"] + 1e-9)
            self.assertIn("balanced_accuracy", row["metrics"])
        self.assertGreater(self.row("federated + DP")["epsilon"], 0)

    def test_hospital_only_row_equals_numpy(self):
        row = self.result["rows"][1]
        self.assertIn("hospital only", row["model"])
        rows = self.dataset.rows
        rates = [np.mean([r.label for r in hospital]) for hospital in rows["train"]]

        def labels_scores(split):
            y = np.array([r.label for h in rows[split] for r in h])
            s = np.array([rates[i] for i, h in enumerate(rows[split]) for _ in h])
            return y, s

        val_y, val_s = labels_scores("val")
        test_y, test_s = labels_scores("test")
        threshold = youden_threshold(val_y, val_s)
        self.assertAlmostEqual(row["threshold"], threshold)
        decision = test_s >= threshold
        got = {k: v["value"] for k, v in row["metrics"].items()}
        self.assertAlmostEqual(got["roc_auc"], mann_whitney_auc(test_y, test_s))
        self.assertAlmostEqual(got["accuracy"], np.mean(decision == test_y))
        self.assertAlmostEqual(got["sensitivity"], np.mean(decision[test_y == 1]))
        self.assertAlmostEqual(got["specificity"], np.mean(~decision[test_y == 0]))
        both = [
            name
            for name, hospital_rows in zip(self.dataset.hospitals, rows["test"], strict=True)
            if len({r.label for r in hospital_rows}) == 2
        ]
        self.assertNotEmpty(both)
        self.assertCountEqual(row["within_hospital_auc"], both)
        for auc in row["within_hospital_auc"].values():
            self.assertEqual(auc["value"], 0.5)  # one score per hospital: no ranking within it

    def test_site_column_is_added_when_missing(self):
        manifest = self.root / "no_site.csv"
        manifest.write_text("path,label\ncovid/a.png,covid\n")
        copy = benchmark_models.manifest_with_site(str(manifest), "one_site", self.root / "m")
        lines = pathlib.Path(copy).read_text().splitlines()
        self.assertEqual(lines[0], "site,path,label")
        self.assertEqual(lines[1], f"one_site,{self.root / 'covid' / 'a.png'},covid")


if __name__ == "__main__":
    absltest.main()
