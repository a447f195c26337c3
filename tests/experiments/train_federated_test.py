"""The main job end to end on tiny settings: artifacts, metrics, audit, predict, kill and resume."""

import dataclasses
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import jax
import numpy as np
import pytest

from ccfl_jax import checkpoint
from ccfl_jax.errors import FederatedConfigError
from experiments import evaluation, federated_job, predictions
from experiments.job_config import JobConfig
from ledger import audit, workspace
from ledger import errors as ledger_errors

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "experiments" / "train_federated.py"
JAX_CACHE = pathlib.Path(tempfile.gettempdir()) / "ccfl_jax_test_xla_cache"


def tiny_config(cache_dir) -> JobConfig:
    return JobConfig(
        manifest=str(REPO / "data" / "labels.csv"),
        image_size=32,
        rounds=2,
        local_steps=1,
        batch_size=4,
        max_per_hospital=12,
        bootstrap=50,
        compare_local=False,
        progress=False,
        cache_dir=str(cache_dir),
    )


def as_flags(config: JobConfig) -> list[str]:
    return [f"--{k}={v}" for k, v in dataclasses.asdict(config).items()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One finished tiny run: (config, workdir, metrics)."""
    root = tmp_path_factory.mktemp("job")
    config = tiny_config(root / "cache")
    # The resume test's subprocesses reuse what this run compiles.
    jax.config.update("jax_compilation_cache_dir", str(JAX_CACHE))
    metrics = federated_job.train_and_evaluate(config, root / "run")
    return config, root / "run", metrics


def mann_whitney_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    pos, neg = scores[labels == 1], scores[labels == 0]
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return greater / (len(pos) * len(neg))


def test_writes_every_artifact(run):
    _, workdir, metrics = run
    for name in (
        "metrics.json",
        "test_predictions.csv",
        "history.jsonl",
        "config.json",
        "data_summary.txt",
        "ledger_history.json",
        "ledger_audit.txt",
        "fig11_accuracy_per_hospital.png",
        "fig12_loss.png",
        "fig13_time_per_round.png",
        "privacy_epsilon.png",
        "roc_test.png",
    ):
        assert (workdir / name).stat().st_size > 0, name
    assert [c.round for c in checkpoint.list_checkpoints(workdir)] == [0, 1, 2]
    history = [json.loads(line) for line in (workdir / "history.jsonl").read_text().splitlines()]
    assert [row["round"] for row in history] == [1, 2]
    assert metrics["rounds_completed"] == 2
    assert 0 < metrics["privacy"]["epsilon"] < float("inf")


def test_metrics_agree_with_saved_predictions(run):
    _, workdir, metrics = run
    rows = evaluation_rows(workdir)
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r["probability"]) for r in rows])
    decisions = np.array([int(r["decision"]) for r in rows])
    pooled = metrics["test"]["pooled"]["metrics"]
    threshold = metrics["operating_point"]["threshold"]
    np.testing.assert_array_equal(decisions, (scores >= threshold).astype(int))
    assert pooled["roc_auc"]["value"] == pytest.approx(mann_whitney_auc(labels, scores), abs=1e-5)
    tp = np.sum((decisions == 1) & (labels == 1))
    tn = np.sum((decisions == 0) & (labels == 0))
    assert pooled["sensitivity"]["value"] == pytest.approx(tp / np.sum(labels == 1))
    assert pooled["specificity"]["value"] == pytest.approx(tn / np.sum(labels == 0))
    assert pooled["roc_auc"]["low"] <= pooled["roc_auc"]["value"] <= pooled["roc_auc"]["high"]


def evaluation_rows(workdir):
    return evaluation.read_predictions(workdir / "test_predictions.csv")


def test_audit_passes_then_catches_an_altered_checkpoint(run, tmp_path):
    _, workdir, metrics = run
    assert metrics["ledger_audit"]["ok"], metrics["ledger_audit"]
    assert audit.audit(workdir).ok
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    target = next((copy / "checkpoints").glob("round_000001-*")) / "params.msgpack"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    report = audit.audit(copy)
    assert not report.ok and any("round 1" in p for p in report.problems)
    cli = subprocess.run(
        [sys.executable, "-m", "ledger.audit", "--run_dir", str(copy)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert cli.returncode == 1 and "TAMPERING" in cli.stdout


def test_predict_reproduces_saved_test_predictions(run):
    _, workdir, _ = run
    trusted = predictions.load_trusted_model(workdir)
    saved = evaluation_rows(workdir)
    inputs = [predictions.InputScan(pathlib.Path(r["path"])) for r in saved]
    rows = predictions.classify(trusted, inputs)
    np.testing.assert_allclose(
        [float(r["probability"]) for r in rows],
        [float(r["probability"]) for r in saved],
        atol=1e-5,
    )
    assert [r["decision"] for r in rows] == [int(r["decision"]) for r in saved]


def test_predict_reports_unreadable_scans_and_classifies_the_rest(run, tmp_path):
    _, workdir, _ = run
    trusted = predictions.load_trusted_model(workdir)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"DICM" + b"\0" * 40)
    good = pathlib.Path(evaluation_rows(workdir)[0]["path"])
    rows = predictions.classify(
        trusted, [predictions.InputScan(broken), predictions.InputScan(good)]
    )
    assert rows[0]["error"] and rows[0]["probability"] == ""
    assert rows[1]["error"] == "" and 0.0 <= float(rows[1]["probability"]) <= 1.0


def test_predict_refuses_a_checkpoint_the_ledger_never_finalized(run, tmp_path):
    _, workdir, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    latest = checkpoint.latest_checkpoint(copy)
    first = checkpoint.list_checkpoints(copy)[1]
    # A self-consistent checkpoint (name, meta and bytes agree) that the chain never finalized.
    forged = latest.path.with_name(f"round_000002-{first.hash[:12]}")
    shutil.rmtree(latest.path)
    shutil.copytree(first.path, forged)
    meta = json.loads((forged / "meta.json").read_text())
    meta["round"] = 2
    (forged / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ledger_errors.TamperingDetected, match="refusing"):
        predictions.load_trusted_model(copy)


def test_killed_run_resumes_into_one_continuous_history(run, tmp_path):
    config, _, metrics = run
    workdir = tmp_path / "resumed"
    command = [
        sys.executable,
        str(SCRIPT),
        *as_flags(config),
        f"--workdir={workdir}",
        f"--jax_cache_dir={JAX_CACHE}",
    ]
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if list((workdir / "checkpoints").glob("round_000001-*")):
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert [c.round for c in checkpoint.list_checkpoints(workdir)][-1] in (1, 2)
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = json.loads((workdir / "metrics.json").read_text())
    assert resumed["resumed_from_round"] >= 1
    assert resumed["final_model_hash"] == metrics["final_model_hash"]
    consortium = workspace.resume(workdir)
    assert consortium.last_finalized_round() == 2
    for info in checkpoint.list_checkpoints(workdir)[1:]:
        on_disk = audit.file_sha256(info.path / "params.msgpack")
        assert consortium.finalized_model_hash(info.round) == on_disk
    assert audit.audit(workdir).ok


def test_resume_with_other_settings_is_refused_before_anything_is_written(run, tmp_path):
    config, workdir, _ = run
    copy = tmp_path / "copy"
    shutil.copytree(workdir, copy)
    before = (copy / "config.json").read_text()
    for changed in ({"seed": 7}, {"noise_multiplier": 1.0}, {"image_size": 64}):
        with pytest.raises(federated_job.ConfigMismatchError, match=f"--{next(iter(changed))}"):
            federated_job.train_and_evaluate(dataclasses.replace(config, **changed), copy)
    assert (copy / "config.json").read_text() == before
    # Only the resumable settings may change.
    federated_job.check_resume_config(dataclasses.replace(config, rounds=5, bootstrap=7), copy)


@pytest.mark.parametrize(
    "changed, flag",
    [
        ({"hospitals_per_round": 0}, "--hospitals_per_round=0"),
        ({"hospitals_per_round": 9}, "--hospitals_per_round=9"),
        ({"poison_hospital": "site_Z"}, "--poison_hospital='site_Z'"),
    ],
)
def test_settings_that_do_not_fit_the_manifest_name_their_flag(changed, flag):
    config = dataclasses.replace(JobConfig(), **changed)
    hospitals = ["site_A", "site_B", "site_C"]
    with pytest.raises(FederatedConfigError, match=re.escape(flag)):
        federated_job.check_job_config(config, hospitals)


def test_predict_lists_every_file_of_a_folder_and_keeps_csv_labels(tmp_path):
    (tmp_path / "IM0001").write_bytes(b"no extension, as PACS exports")
    (tmp_path / "notes.txt").write_text("not a scan")
    (tmp_path / "series").mkdir()
    (tmp_path / ".hidden").write_text("skipped")
    names = [item.path.name for item in predictions.list_inputs(tmp_path)]
    assert names == ["IM0001", "notes.txt", "series"]
    listing = tmp_path / "inputs.csv"
    listing.write_text("path,label\nIM0001,covid\nnotes.txt,0\n")
    assert [item.label for item in predictions.list_inputs(listing)] == [1, 0]
