"""Smoke test of experiments/prepare_data.py on a tiny setting."""

import json
import pathlib
import subprocess
import sys
import tempfile

from absl.testing import absltest

ROOT = pathlib.Path(__file__).parents[2]


class PrepareDataTest(absltest.TestCase):
    def test_runs_and_writes_outputs(self):
        with tempfile.TemporaryDirectory() as out:
            cmd = [
                sys.executable,
                "experiments/prepare_data.py",
                "--manifest=data/labels.csv",
                "--image_size=16",
                "--max_per_hospital=3",
                f"--out={out}",
                "--preview_per_class=2",
            ]
            result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
            self.assertEqual(result.returncode, 0, result.stderr[-2000:])
            self.assertIn("site_A_tehran_iran", result.stdout)
            summary = json.loads((pathlib.Path(out) / "summary.json").read_text())
            self.assertLen(summary["hospitals"], 5)
            files = [
                f
                for h in summary["hospitals"].values()
                for s in h["splits"].values()
                for f in s["files"]
            ]
            self.assertLen(files, 15)
            self.assertLen(list(pathlib.Path(out).glob("preview_*.png")), 5)


if __name__ == "__main__":
    absltest.main()
