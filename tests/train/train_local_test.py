"""Smoke test of experiments/train_local.py on a few real slices (3 steps, tiny images)."""

import json
import pathlib
import tempfile

import numpy as np
from absl.testing import absltest

from ccfl_jax import data
from experiments import train_local

ROOT = pathlib.Path(__file__).resolve().parents[2]
CONFIG = {
    "manifest": str(ROOT / "data" / "labels.csv"),
    "image_size": 32,
    "seed": 0,
    "max_per_hospital": 8,
    "cache_dir": "",
    "model": "cnn_small",
    "width": 1.0,
    "hospital": "",
    "steps": 3,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "reconstruction_weight": 0.0005,
    "bootstrap": 20,
    "progress": False,
}


class TrainLocalTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dataset = data.load_federated_dataset(
            CONFIG["manifest"], image_size=32, max_per_hospital=8, progress=False
        )

    def test_one_hospital_alone_or_pooled(self):
        pooled, _ = train_local.training_arrays(self.dataset, "")
        self.assertEqual(len(pooled), int(np.asarray(self.dataset.train.mask).sum()))
        name = self.dataset.hospitals[-1]
        alone_images, alone_labels = train_local.training_arrays(self.dataset, name)
        self.assertEqual(len(alone_images), int(np.asarray(self.dataset.train.mask[-1]).sum()))
        self.assertLen(alone_labels, len(alone_images))

    def test_train_and_evaluate_writes_its_files(self):
        with tempfile.TemporaryDirectory() as workdir:
            result = train_local.train_and_evaluate(CONFIG, workdir)
            for name in ("flags.json", "metrics.json", "history.json", "predictions.csv"):
                self.assertTrue((pathlib.Path(workdir) / name).is_file(), name)
            for name in ("loss.png", "roc.png"):
                self.assertGreater((pathlib.Path(workdir) / name).stat().st_size, 1000, name)
            written = json.loads((pathlib.Path(workdir) / "metrics.json").read_text())
        self.assertIn("roc_auc", written["pooled"]["metrics"])
        self.assertIn("balanced_accuracy", written["pooled"]["metrics"])
        self.assertEqual(result["train_examples"], int(np.asarray(self.dataset.train.mask).sum()))


if __name__ == "__main__":
    absltest.main()
