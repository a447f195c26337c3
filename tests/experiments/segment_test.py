"""Tests of experiments/segment.py: its helpers against NumPy, and one run on the SMOKE config."""

import json
import os
import pathlib
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax.errors import ScanNotFoundError
from experiments import segment

ROOT = pathlib.Path(__file__).parents[2]


class RegularZGridTest(parameterized.TestCase):
    @parameterized.parameters(
        ([40.0, 30.0, 20.0, 10.0],),  # already regular
        ([50.0, 28.0, 6.0, -20.0, -42.0],),  # one uneven gap, as the bundled sparse series
    )
    def test_matches_np_interp_per_pixel(self, z):
        z = np.array(z)
        rng = np.random.default_rng(0)
        slices = rng.normal(size=(len(z), 3, 2)).astype(np.float32)
        volume, step = segment.regular_z_grid(slices, z)
        count = int(round((z[0] - z[-1]) / np.median(-np.diff(z)))) + 1
        grid = np.linspace(z[0], z[-1], count)
        self.assertAlmostEqual(step, (z[0] - z[-1]) / (count - 1), places=5)
        for y in range(3):
            for x in range(2):
                expected = np.interp(grid[::-1], z[::-1], slices[::-1, y, x])[::-1]
                np.testing.assert_allclose(volume[:, y, x], expected, rtol=1e-5, atol=1e-5)


class DiceFiguresTest(absltest.TestCase):
    def test_against_numpy(self):
        masks = np.zeros((3, 4, 4, 1), np.float32)
        masks[0, :2, :2] = 1  # 4 lesion pixels
        masks[1, 0, 0] = 1  # 1 lesion pixel; slice 2 has none
        probability = np.zeros_like(masks)
        probability[0, :2, :1] = 0.9  # 2 of 4 found
        probability[1, 3, 3] = 0.7  # a false positive, the lesion missed
        figures = segment.dice_figures(probability, masks, threshold=0.5)
        per_slice = [2 * 2 / (4 + 2), 0.0, 1.0]  # both empty -> 1
        np.testing.assert_allclose(figures["per_slice"], per_slice)
        self.assertAlmostEqual(figures["mean_per_slice"], np.mean(per_slice))
        self.assertAlmostEqual(figures["mean_per_lesion_slice"], np.mean(per_slice[:2]))
        self.assertAlmostEqual(figures["pooled"], 2 * 2 / (5 + 3))
        self.assertAlmostEqual(figures["pooled_all_lesion_baseline"], 2 * 5 / (5 + 48))
        self.assertEqual((figures["slices"], figures["lesion_slices"]), (3, 2))


class PlaneFiguresTest(absltest.TestCase):
    def test_against_numpy(self):
        rng = np.random.default_rng(1)
        per_plane = rng.uniform(size=(3, 4, 4, 4))
        combined = per_plane.mean(axis=0)
        figures = segment.plane_figures(per_plane, combined, 0.5)
        self.assertAlmostEqual(figures["xz"]["mean_probability"], per_plane[1].mean())
        self.assertAlmostEqual(
            figures["aggregate"]["fraction_at_threshold"], np.mean(combined >= 0.5)
        )
        a, b = per_plane[0] >= 0.5, per_plane[2] >= 0.5
        self.assertAlmostEqual(
            figures["agreement_dice"]["xy-yz"], 2 * np.sum(a & b) / (a.sum() + b.sum())
        )


class LoadSemisegTest(absltest.TestCase):
    def test_shapes_ranges_and_binary_masks(self):
        images, masks, names = segment.load_semiseg(
            ROOT / "data" / "covid_semiseg", "test", 16, limit=2
        )
        self.assertEqual(images.shape, (2, 16, 16, 1))
        self.assertEqual(masks.shape, (2, 16, 16, 1))
        self.assertLen(names, 2)
        self.assertBetween(float(images.min()), -0.5, 0.5)
        self.assertBetween(float(images.max()), -0.5, 0.5)
        self.assertSameElements(np.unique(masks).tolist(), [0.0, 1.0])

    def test_missing_folder_is_a_named_error(self):
        with tempfile.TemporaryDirectory() as empty:
            with self.assertRaisesRegex(ScanNotFoundError, "semiseg_dir"):
                segment.load_semiseg(empty, "train", 16)


class FlagsTest(absltest.TestCase):
    def test_cube_not_a_multiple_of_8_is_refused(self):
        cmd = [sys.executable, "experiments/segment.py", "--cube=12", "--workdir=/nonexistent"]
        result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
        self.assertNotEqual(result.returncode, 0)
        self.assertIn("--cube=12: SegCaps needs a multiple of 8", result.stderr)


class SmokeRunTest(absltest.TestCase):
    """The script on its SMOKE config: it runs, and its outputs hang together."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workdir = tempfile.TemporaryDirectory()
        cmd = [
            sys.executable,
            "experiments/segment.py",
            "--flagfile=experiments/configs/segment.SMOKE.flags",
            f"--workdir={cls.workdir.name}",
        ]
        env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
        cls.result = subprocess.run(
            cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env=env
        )
        summary_path = pathlib.Path(cls.workdir.name) / "segment_summary.json"
        cls.summary = json.loads(summary_path.read_text()) if summary_path.exists() else None

    @classmethod
    def tearDownClass(cls):
        cls.workdir.cleanup()
        super().tearDownClass()

    def test_exit_status(self):
        self.assertEqual(self.result.returncode, 0, self.result.stderr[-3000:])
        self.assertIn("test Dice:", self.result.stdout)

    def test_writes_montage_and_flags(self):
        out = pathlib.Path(self.workdir.name)
        self.assertGreater((out / "multiplane_montage.png").stat().st_size, 1000)
        self.assertEqual(json.loads((out / "flags.json").read_text())["cube"], 16)

    def test_dice_figures_are_consistent(self):
        dice = self.summary["segmentation"]["test_dice"]
        self.assertEqual(dice["slices"], 3)  # --max_test=3
        self.assertLen(dice["per_slice"], 3)
        self.assertAlmostEqual(dice["mean_per_slice"], np.mean(dice["per_slice"]))
        for value in (*dice["per_slice"], dice["pooled"], dice["pooled_all_lesion_baseline"]):
            self.assertBetween(value, 0.0, 1.0)

    def test_sparse_series_and_planes(self):
        series = self.summary["series"]
        self.assertEqual(series["shape"][1:], [512, 512])
        self.assertIn("sparse series: 12 slices", series["reading"])
        self.assertEqual(series["cube_shape"], [16, 16, 16])
        planes = self.summary["multiplane"]
        means = [planes[p]["mean_probability"] for p in ("xy", "xz", "yz")]
        self.assertAlmostEqual(planes["aggregate"]["mean_probability"], np.mean(means), places=5)
        for p in ("xy", "xz", "yz", "aggregate"):
            self.assertBetween(planes[p]["fraction_at_threshold"], 0.0, 1.0)


if __name__ == "__main__":
    absltest.main()
