"""Multi-host sharding: two JAX processes joined by jax.distributed run the round of one.

The 'shard' strategy splits the hospital axis over every device of every process (as on a TPU
pod slice); here two CPU processes with two devices each stand in for two hosts.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

from absl.testing import absltest

WORKER = pathlib.Path(__file__).with_name("multihost_worker.py")
REPO = pathlib.Path(__file__).parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MultiHostTest(absltest.TestCase):
    def test_two_processes_shard_the_hospital_axis_and_match_one_process(self):
        env = dict(
            os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu"
        )
        port = str(free_port())
        workers = [
            subprocess.Popen(
                [sys.executable, str(WORKER), str(pid), port],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=REPO,
            )
            for pid in (0, 1)
        ]
        outputs = []
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=300)
            self.assertEqual(worker.returncode, 0, stderr[-2000:])
            outputs.append(json.loads(stdout.strip().splitlines()[-1]))
        for out in outputs:
            self.assertEqual(out["devices"], 4)
            self.assertEqual(out["local_devices"], 2)
            self.assertTrue(out["deltas_span_processes"])
            self.assertGreater(out["max_abs"], 0.0)
            self.assertLessEqual(out["max_abs_diff"], 1e-5 * max(1.0, out["max_abs"]))


if __name__ == "__main__":
    absltest.main()
