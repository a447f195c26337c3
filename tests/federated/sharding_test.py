"""The hospital axis sharded over 8 (fake CPU) devices gives the single-device round."""

import json
import os
import pathlib
import subprocess
import sys

from absl.testing import absltest

WORKER = pathlib.Path(__file__).with_name("sharding_worker.py")


class ShardingTest(absltest.TestCase):
    def test_sharded_round_equals_single_device_round(self):
        env = dict(
            os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu"
        )
        out = subprocess.run(
            [sys.executable, str(WORKER)],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
            check=True,
            cwd=pathlib.Path(__file__).parents[2],
        )
        result = json.loads(out.stdout.strip().splitlines()[-1])
        self.assertEqual(result["devices"], 8)
        self.assertGreater(result["size"], 100)
        self.assertGreater(result["max_abs"], 0.0)
        self.assertLessEqual(result["max_abs_diff"], 1e-5 * max(1.0, result["max_abs"]))


if __name__ == "__main__":
    absltest.main()
