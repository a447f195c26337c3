"""Using a trained run: load its ledger-verified final model and classify new scans.

The final checkpoint is used only when its content hash is the global model hash that the
run's ledger finalized last; anything else is refused as tampering. Inputs go through exactly
the normalization of training (``ccfl_jax.data.preprocess.normalized_slice``), and the decision
threshold is the operating point the run chose on its validation split.
"""

import csv
import dataclasses
import json
import pathlib

import flax.serialization
import jax
import numpy as np

from ccfl_jax import checkpoint, errors, models, train
from ccfl_jax.data import manifest, preprocess
from ccfl_jax.data.load import read_scan
from ledger import errors as ledger_errors
from ledger import workspace

OUTPUT_COLUMNS = ("path", "patient_id", "label", "probability", "decision", "error")


@dataclasses.dataclass(frozen=True)
class TrustedModel:
    """A run's final model, checked against its ledger.

    Attributes:
      model: the Flax module.
      params: its params.
      model_hash: sha256 hex of the params, as finalized on chain.
      round: the round that produced it.
      image_size: the slice size the model was trained on.
      threshold: the operating threshold chosen on validation data.
    """

    model: object
    params: object
    model_hash: str
    round: int
    image_size: int
    threshold: float


def finalized_model_hash(run_dir) -> tuple[int, str]:
    """(round, hex hash) of the last global model the run's ledger finalized."""
    consortium = workspace.resume(run_dir)
    last = consortium.last_finalized_round()
    if last == 0:
        raise errors.CheckpointNotFoundError(
            f"{run_dir}: the ledger finalized no round yet, so no trained model is vouched for; "
            "run at least one round (or resume the run) before predicting."
        )
    return last, consortium.finalized_model_hash(last)


def load_trusted_model(run_dir) -> TrustedModel:
    """The run's final model, refused unless its hash is the ledger's last finalized hash.

    Raises:
      TamperingDetected: the checkpoint is not the model the ledger finalized last.
      CheckpointIntegrityError: the checkpoint's bytes do not match its own name.
    """
    run_dir = pathlib.Path(run_dir)
    for name in ("config.json", "metrics.json"):
        if not (run_dir / name).is_file():
            raise errors.CheckpointNotFoundError(
                f"{run_dir / name} is missing: --run_dir must be the folder of a finished run "
                "(experiments/train_federated.py writes both files)."
            )
    config = json.loads((run_dir / "config.json").read_text())
    operating = json.loads((run_dir / "metrics.json").read_text())["operating_point"]
    info = checkpoint.latest_checkpoint(run_dir)
    if info is None:
        raise errors.CheckpointNotFoundError(f"{run_dir}: no checkpoint; train the run first.")
    chain_round, chain_hash = finalized_model_hash(run_dir)
    if info.hash != chain_hash or info.round != chain_round:
        raise ledger_errors.TamperingDetected(
            f"{info.path}: checkpoint of round {info.round} hashes to {info.hash[:12]}..., but "
            f"the ledger's last finalized model is round {chain_round}, {chain_hash[:12]}...; "
            "refusing to use it. Audit with `python -m ledger.audit --run_dir "
            f"{run_dir}` and restore the run from a trusted copy."
        )
    model = models.get_model(config["model"])
    template = train.init_params(model, jax.random.key(0), config["image_size"])
    params = flax.serialization.from_bytes(template, (info.path / "params.msgpack").read_bytes())
    return TrustedModel(
        model, params, info.hash, info.round, config["image_size"], operating["threshold"]
    )


@dataclasses.dataclass(frozen=True)
class InputScan:
    """One scan to classify: a file or series folder, with what the input list says of it."""

    path: pathlib.Path
    patient_id: str | None = None
    label: int | None = None


def list_inputs(path) -> list[InputScan]:
    """The scans named by a manifest CSV (``path`` column; label and patient_id optional), a
    folder (each scan file, and each sub-folder as a DICOM series), or a single scan."""
    path = pathlib.Path(path)
    if path.suffix.lower() == ".csv":
        return _csv_inputs(path)
    if path.is_dir():
        # Every visible file gets a row (DICOM from PACS often has no extension; a file that is
        # not a scan gets its named error), and every sub-folder is read as a DICOM series.
        entries = [e for e in sorted(path.iterdir()) if not e.name.startswith(".")]
        scans = [e for e in entries if e.is_file()]
        series = [e for e in entries if e.is_dir()]
        if scans or series:
            return [InputScan(p) for p in scans + series]
    return [InputScan(path)]


def _csv_inputs(path: pathlib.Path) -> list[InputScan]:
    """Rows of a CSV with a ``path`` column (relative to the CSV's folder); ``patient_id`` and
    ``label`` (covid/non_covid/1/0) are kept where present."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if "path" not in (reader.fieldnames or []):
            raise errors.ManifestError(f"{path}: no 'path' column (found {reader.fieldnames}).")
        base = path.resolve().parent
        return [
            InputScan(
                (base / row["path"]).resolve(),
                row.get("patient_id") or None,
                manifest.parse_label(row["label"], f"{path} line {line}")
                if row.get("label")
                else None,
            )
            for line, row in enumerate(reader, start=2)
        ]


def classify(trusted: TrustedModel, inputs: list[InputScan], *, batch_size: int = 32) -> list:
    """P(covid) and decision per input; unreadable scans get their named error instead.

    Returns:
      One dict per input with the keys of ``OUTPUT_COLUMNS``.
    """
    predict_fn = train.make_predict_fn(trusted.model, batch_size=batch_size)
    images, readable, out = [], [], []
    for index, item in enumerate(inputs):
        row = {"path": str(item.path), "patient_id": item.patient_id or "", "label": item.label}
        try:
            image, _ = preprocess.normalized_slice(
                read_scan(item.path), image_size=trusted.image_size
            )
            images.append(image[..., None])
            readable.append(index)
            row["error"] = ""
        except errors.CcflError as err:
            row.update(probability="", decision="", error=f"{type(err).__name__}: {err}")
        out.append(row)
    if images:
        scores = predict_fn(trusted.params, np.stack(images))
        for index, score in zip(readable, scores, strict=True):
            out[index]["probability"] = f"{float(score):.6f}"
            out[index]["decision"] = int(score >= trusted.threshold)
    return out


def per_patient(rows: list[dict], threshold: float) -> list[dict]:
    """Mean P(covid) over each patient's readable images, and the decision at ``threshold``."""
    grouped: dict[str, list[float]] = {}
    for row in rows:
        if row["patient_id"] and row["probability"] != "":
            grouped.setdefault(row["patient_id"], []).append(float(row["probability"]))
    return [
        {
            "patient_id": pid,
            "images": len(values),
            "probability": f"{np.mean(values):.6f}",
            "decision": int(np.mean(values) >= threshold),
        }
        for pid, values in sorted(grouped.items())
    ]


def write_csv(path, rows: list[dict], columns) -> None:
    """Writes ``rows`` (dicts) with ``columns`` as the header."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
