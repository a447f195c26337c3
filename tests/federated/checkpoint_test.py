"""Hash-named atomic checkpoints, and a killed run resuming to the uninterrupted result."""

import hashlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import chex
import flax.serialization
import jax
import numpy as np
from absl.testing import absltest

from ccfl_jax import checkpoint, errors
from ccfl_jax import federated as fl
from ccfl_jax.federated import testing

WORKER = pathlib.Path(__file__).with_name("resume_worker.py")
REPO = pathlib.Path(__file__).parents[2]


def start_worker(run_dir, rounds, delay=0.0):
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(run_dir), str(rounds), str(delay)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


def finish_worker(proc):
    out, _ = proc.communicate(timeout=240)
    if proc.returncode != 0:
        raise RuntimeError(f"{WORKER.name} failed with exit code {proc.returncode}")
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


def small_state(seed=0):
    params = testing.linear_params(3)
    params = jax.tree.map(lambda x: x + seed, params)
    optimizer = fl.make_server_optimizer("fedadam", 0.1)
    aggregator = fl.dp_aggregate(1.0, server_optimizer=optimizer)
    return fl.ServerState(
        params=params,
        aggregator_state=aggregator.init(params),
        round=np.int32(seed),
        rng=jax.random.key(seed),
    )


class CheckpointTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.run_dir = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.run_dir, ignore_errors=True)

    def test_layout_and_hash_contract(self):
        state = small_state(3)
        info = fl.save_server_state(str(self.run_dir), state, flags={"rounds": 5})
        data = (info.path / "params.msgpack").read_bytes()
        expected = hashlib.sha256(
            flax.serialization.to_bytes(jax.device_get(state.params))
        ).hexdigest()
        self.assertEqual(hashlib.sha256(data).hexdigest(), expected)
        self.assertEqual(info.hash, expected)
        self.assertEqual(checkpoint.model_hash(state.params), expected)
        self.assertEqual(info.path.name, f"round_000003-{expected[:12]}")
        self.assertEqual(info.path.parent, self.run_dir / "checkpoints")
        meta = json.loads((info.path / "meta.json").read_text())
        self.assertEqual((meta["round"], meta["hash"], meta["flags"]), (3, expected, {"rounds": 5}))
        self.assertTrue((info.path / "state").is_dir())
        delta = {"w": np.ones((2, 2), np.float32)}
        self.assertEqual(
            checkpoint.delta_hash(delta),
            hashlib.sha256(flax.serialization.to_bytes(delta)).hexdigest(),
        )

    def test_restore_round_trips_the_full_state(self):
        state = small_state(2)
        state = state.replace(
            aggregator_state=jax.tree.map(lambda x: x + 3, state.aggregator_state)
        )
        fl.save_server_state(str(self.run_dir), small_state(1))
        fl.save_server_state(str(self.run_dir), state)
        restored, _, info = fl.restore_server_state(str(self.run_dir), small_state(0))
        self.assertEqual(info.round, 2)
        chex.assert_trees_all_equal(
            jax.tree.map(np.asarray, restored.replace(rng=jax.random.key_data(restored.rng))),
            jax.tree.map(np.asarray, state.replace(rng=jax.random.key_data(state.rng))),
        )

    def test_half_written_checkpoint_is_never_listed(self):
        info = fl.save_server_state(str(self.run_dir), small_state(1))
        # What a writer killed before its rename leaves behind.
        partial = self.run_dir / "checkpoints" / ".tmp-killed"
        partial.mkdir()
        (partial / "params.msgpack").write_bytes(b"\x81\xa1")
        self.assertEqual(checkpoint.latest_checkpoint(str(self.run_dir)), info)

    def test_tampered_checkpoint_is_refused(self):
        info = fl.save_server_state(str(self.run_dir), small_state(1))
        path = info.path / "params.msgpack"
        data = bytearray(path.read_bytes())
        data[-1] ^= 1
        path.write_bytes(bytes(data))
        with self.assertRaises(errors.CheckpointIntegrityError):
            checkpoint.latest_checkpoint(str(self.run_dir))
        with self.assertRaises(errors.CheckpointIntegrityError):
            fl.restore_server_state(str(self.run_dir), small_state(0))

    def test_missing_checkpoint_is_a_named_error(self):
        self.assertIsNone(checkpoint.latest_checkpoint(str(self.run_dir)))
        with self.assertRaises(errors.CheckpointNotFoundError):
            fl.restore_server_state(str(self.run_dir), small_state(0))


class KillAndResumeTest(absltest.TestCase):
    def test_killed_run_resumes_to_the_uninterrupted_result(self):
        rounds = 5
        with tempfile.TemporaryDirectory() as straight, tempfile.TemporaryDirectory() as killed:
            victim = start_worker(killed, rounds, delay=0.7)
            straight_run = start_worker(straight, rounds)  # the uninterrupted run, meanwhile
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline:
                done = [info.round for info in checkpoint.list_checkpoints(killed)]
                if done and max(done) >= 2:
                    break
                time.sleep(0.1)
            os.kill(victim.pid, signal.SIGKILL)
            victim.communicate(timeout=30)
            self.assertEqual(victim.returncode, -signal.SIGKILL)  # it did not finish
            resumed = finish_worker(start_worker(killed, rounds))
            reference = finish_worker(straight_run)
            self.assertGreaterEqual(resumed[-1]["resumed_from"], 2)
            self.assertLess(resumed[-1]["resumed_from"], rounds)
            self.assertEqual(resumed[-1]["hash"], reference[-1]["hash"])
            self.assertEqual(resumed[-2], reference[-2])  # same round, same epsilon
            names = {p.path.name for p in checkpoint.list_checkpoints(straight)}
            self.assertEqual({p.path.name for p in checkpoint.list_checkpoints(killed)}, names)
            self.assertLen(names, rounds + 1)


if __name__ == "__main__":
    absltest.main()
