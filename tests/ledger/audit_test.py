"""The audit of a run directory: a consistent run passes, every kind of tampering is caught,
and a resumed run shows one continuous history."""

import contextlib
import hashlib
import io
import json
import pathlib
import shutil
import tempfile

from absl.testing import absltest

from ledger import audit, errors, workspace

NAMES = ["h0", "h1", "h2"]


def write_checkpoint(run_dir: pathlib.Path, r: int, content: bytes) -> str:
    h = hashlib.sha256(content).hexdigest()
    folder = run_dir / "checkpoints" / f"round_{r:06d}-{h[:12]}"
    folder.mkdir(parents=True)
    (folder / "params.msgpack").write_bytes(content)
    return h


def play_round(consortium, r: int, model_hash: str, run_dir: pathlib.Path) -> str:
    info = consortium.open_round(r, model_hash, NAMES)
    for name in NAMES:
        consortium.submit_update(r, name, hashlib.sha256(f"{r}{name}".encode()).digest(), 4, 0.3)
    for validator in info.validators:
        for name in NAMES:
            if name != validator:
                consortium.vote(r, validator, name, 0.2)
    new_hash = write_checkpoint(run_dir, r, f"params after round {r}".encode())
    consortium.finalize(r, new_hash)
    return new_hash


def run_cli(run_dir, *extra) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        status = audit.main(["--run_dir", str(run_dir), *extra])
    return status, out.getvalue()


class AuditTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._tmp = tempfile.TemporaryDirectory()
        cls.base = pathlib.Path(cls._tmp.name) / "base_run"
        consortium = workspace.create(cls.base, NAMES)
        h = write_checkpoint(cls.base, 0, b"initial params")
        # Round 1 in this process, then resume from disk for round 2, as a restarted job does.
        h = play_round(consortium, 1, h, cls.base)
        cls.blocks_before_resume = consortium.chain.w3.eth.block_number
        resumed = workspace.resume(cls.base)
        cls.blocks_after_resume = resumed.chain.w3.eth.block_number
        play_round(resumed, 2, h, cls.base)

    @classmethod
    def tearDownClass(cls):
        cls._tmp.cleanup()
        super().tearDownClass()

    def tempdir(self) -> pathlib.Path:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        return pathlib.Path(tmp.name)

    def copy_run(self) -> pathlib.Path:
        run_dir = self.tempdir() / "run"
        shutil.copytree(self.base, run_dir)
        return run_dir

    def checkpoint(self, run_dir, r) -> pathlib.Path:
        (folder,) = (run_dir / "checkpoints").glob(f"round_{r:06d}-*")
        return folder

    def test_consistent_resumed_run_passes_with_one_history(self):
        self.assertEqual(self.blocks_after_resume, self.blocks_before_resume)
        report = audit.verify(self.copy_run())
        self.assertEqual(report.problems, [])
        self.assertEqual(sorted(report.history.rounds), [1, 2])
        r1, r2 = report.history.rounds[1], report.history.rounds[2]
        self.assertEqual(r2.model_hash, r1.new_model_hash)
        self.assertEqual(sorted(report.checkpoints), [0, 1, 2])
        status, text = run_cli(self.copy_run())
        self.assertEqual(status, 0, text)
        self.assertIn("round 2:", text)
        self.assertNotIn("TAMPERING", text)

    def test_json_output(self):
        status, text = run_cli(self.copy_run(), "--json")
        data = json.loads(text)
        self.assertEqual((status, data["ok"]), (0, True))
        self.assertEqual(len(data["history"]["rounds"]), 2)

    def test_changed_checkpoint_is_tampering(self):
        run_dir = self.copy_run()
        params = self.checkpoint(run_dir, 1) / "params.msgpack"
        params.write_bytes(params.read_bytes() + b"!")
        status, text = run_cli(run_dir)
        self.assertEqual(status, 1)
        self.assertIn("TAMPERING", text)
        with self.assertRaises(errors.TamperingDetected):
            audit.verify(run_dir)

    def test_consistently_renamed_forgery_is_tampering(self):
        run_dir = self.copy_run()
        shutil.rmtree(self.checkpoint(run_dir, 2))
        write_checkpoint(run_dir, 2, b"forged params")
        report = audit.audit(run_dir)
        self.assertLen(report.problems, 1)
        self.assertIn("does not match the ledger", report.problems[0])

    def test_missing_round_is_tampering(self):
        run_dir = self.copy_run()
        shutil.rmtree(self.checkpoint(run_dir, 1))
        report = audit.audit(run_dir)
        self.assertFalse(report.ok)
        self.assertIn("no checkpoint exists", " ".join(report.problems))

    def test_extra_checkpoint_is_tampering(self):
        run_dir = self.copy_run()
        write_checkpoint(run_dir, 3, b"never finalized")
        report = audit.audit(run_dir)
        self.assertEqual(len(report.problems), 1)
        self.assertIn("no finalized round", report.problems[0])

    def test_open_or_resume_continues_the_saved_run(self):
        run_dir = self.copy_run()
        resumed = workspace.open_or_resume(run_dir, NAMES)
        self.assertEqual(resumed.last_finalized_round(), 2)
        (checkpoint,) = (run_dir / "checkpoints").glob("round_000002-*")
        self.assertEqual(resumed.finalized_model_hash(2)[:12], checkpoint.name[-12:])
        with self.assertRaises(ValueError):
            workspace.open_or_resume(run_dir, ["h0", "h1"])

    def test_create_checks_validator_count(self):
        with self.assertRaises(ValueError):
            workspace.create(None, ["a", "b"], num_validators=3)

    def test_run_without_ledger(self):
        status, text = run_cli(self.tempdir())
        self.assertEqual(status, 2)
        self.assertIn("deployment.json is missing", text)
        with self.assertRaises(errors.LedgerNotFound):
            workspace.resume(self.tempdir())


if __name__ == "__main__":
    absltest.main()
