r"""The poisoned-hospital experiment: does the consensus vote keep a tampered update out?

Run from the repository root:

  python experiments/poisoned_hospital.py --flagfile=experiments/configs/poisoned_hospital.SAMPLE.flags

One hospital (``--poison_hospital``) multiplies the delta it shares by ``--poison_scale``
(negative: a sign flip, scaled). The main job (``experiments/federated_job.py``) runs four times
from the same seed, so every run samples the same hospitals each round:

  clean, plain FedAvg | clean, FedAvg + vote | poisoned, plain FedAvg | poisoned, FedAvg + vote

With the vote, the validators score each update by the MAE of ``theta + delta`` on their own
held-out scans (Eq. 17-18) and only a quorum-passed update is aggregated; the rejection is read
back from the chain's events (``ledger.audit``), not from the job's own log. Writes
``table.md`` and ``table.json`` to ``--workdir``, one sub-folder per run.
"""

import csv
import dataclasses
import json
import pathlib

import numpy as np
from absl import app, flags, logging

from experiments import federated_job, job_config
from experiments.benchmark_models import markdown_table
from experiments.job_config import JobConfig
from ledger import audit

VARIANTS = (
    ("clean, plain FedAvg", False, False),
    ("clean, FedAvg + vote", False, True),
    ("poisoned, plain FedAvg", True, False),
    ("poisoned, FedAvg + vote", True, True),
)


def variant_config(base: JobConfig, poisoned: bool, vote: bool) -> JobConfig:
    """``base`` with the attack on or off and the ledger vote on or off."""
    return dataclasses.replace(
        base, poison_hospital=base.poison_hospital if poisoned else "", use_ledger=vote
    )


def read_history(run_dir: pathlib.Path) -> list[dict]:
    """The run's ``history.jsonl``: one dict per round."""
    lines = (run_dir / "history.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def ledger_decisions(run_dir: pathlib.Path) -> dict[int, dict[str, bool]]:
    """``{round: {hospital name: accepted}}`` for every update the chain recorded.

    Rebuilt from the contract's events (``UpdateSubmitted``, ``UpdateDecided``) by
    :func:`ledger.audit.audit`; an undecided update maps to ``None``.
    """
    report = audit.audit(run_dir)
    return {
        r: {report.names.get(a, a): u.accepted for a, u in entry.updates.items()}
        for r, entry in report.history.rounds.items()
    }


def hospital_fate(run_dir: pathlib.Path, hospital: str, vote: bool) -> dict:
    """Per round, whether ``hospital`` was sampled and whether its update was aggregated.

    With the vote the decision is the chain's; without it every sampled update is aggregated
    (read from ``history.jsonl``). ``others_rejected`` counts other hospitals' rejected updates.
    """
    history = read_history(run_dir)
    sampled = [row["round"] for row in history if hospital in row["sampled"]]
    if vote:
        decisions = ledger_decisions(run_dir)
        accepted = [r for r in sampled if decisions.get(r, {}).get(hospital) is True]
        others = sum(
            1
            for r, updates in decisions.items()
            for name, ok in updates.items()
            if name != hospital and ok is False
        )
    else:
        accepted = [row["round"] for row in history if hospital in row["accepted"]]
        others = 0
    return {
        "sampled_rounds": sampled,
        "accepted_rounds": accepted,
        "rejected_rounds": [r for r in sampled if r not in accepted],
        "others_rejected": others,
    }


def accuracy_at_half(run_dir: pathlib.Path) -> float:
    """Pooled test accuracy at the fixed threshold 0.5, from ``test_predictions.csv``."""
    with open(run_dir / "test_predictions.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    labels = np.array([int(r["label"]) for r in rows])
    scores = np.array([float(r["probability"]) for r in rows])
    return float(np.mean((scores >= 0.5) == labels))


def run_experiment(base: JobConfig, workdir, variants=VARIANTS) -> dict:
    """Runs ``variants`` ((name, poisoned, vote), ...) in ``workdir``; writes table.md and .json."""
    if not base.poison_hospital:
        raise app.UsageError("set --poison_hospital to the hospital that tampers with its delta.")
    workdir = pathlib.Path(workdir)
    rows = []
    for name, poisoned, vote in variants:
        config = variant_config(base, poisoned, vote)
        run_dir = workdir / name.replace(", ", "_").replace(" + ", "_").replace(" ", "_")
        metrics = federated_job.train_and_evaluate(config, run_dir)
        pooled = metrics["test"]["pooled"]["metrics"]
        rows.append(
            {
                "run": name,
                "poisoned": poisoned,
                "vote": vote,
                "run_dir": str(run_dir),
                "poisoned_hospital_updates": hospital_fate(run_dir, base.poison_hospital, vote),
                "test": {m: pooled[m] for m in ("accuracy", "roc_auc", "balanced_accuracy")},
                "test_accuracy_at_0.5": accuracy_at_half(run_dir),
                "final_val_loss": read_history(run_dir)[-1]["val_loss"],
                "ledger_audit_ok": metrics.get("ledger_audit", {}).get("ok"),
                "wall_seconds": metrics["wall_seconds"],
            }
        )
    result = {"config": dataclasses.asdict(base), "rows": rows}
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "table.json").write_text(json.dumps(result, indent=1, default=float))
    (workdir / "table.md").write_text(render(rows, base) + "\n")
    return result


def _ci(metric: dict) -> str:
    return f"{metric['value']:.3f} [{metric['low']:.2f}, {metric['high']:.2f}]"


def render(rows: list[dict], base: JobConfig) -> str:
    """The table as markdown, one line per run."""
    who = f"{base.poison_hospital} (x{base.poison_scale:g})"
    header = (
        "run",
        f"{who}: rounds sampled",
        "its updates aggregated",
        "its updates rejected (ledger)",
        "other updates rejected",
        "test accuracy (val threshold)",
        "test accuracy @0.5",
        "test AUC",
        "final val loss",
    )
    lines = []
    for row in rows:
        fate = row["poisoned_hospital_updates"]
        lines.append(
            (
                row["run"],
                len(fate["sampled_rounds"]),
                len(fate["accepted_rounds"]),
                len(fate["rejected_rounds"]) if row["vote"] else "- (no vote)",
                fate["others_rejected"] if row["vote"] else "-",
                _ci(row["test"]["accuracy"]),
                f"{row['test_accuracy_at_0.5']:.3f}",
                _ci(row["test"]["roc_auc"]),
                f"{row['final_val_loss']:.3f}",
            )
        )
    return markdown_table(header, lines)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = job_config.config_from_flags()
    print("config:", json.dumps(dataclasses.asdict(config)))
    logging.set_verbosity(logging.WARNING)
    result = run_experiment(config, flags.FLAGS.workdir)
    print(render(result["rows"], config))


if __name__ == "__main__":
    job_config.define_flags()
    flags.DEFINE_string("workdir", "runs/poisoned_hospital", "Folder of the four runs and table.")
    app.run(main)
