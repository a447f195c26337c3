r"""Classifies scans with a trained run's final model, after checking it against the ledger.

Run from the repository root:

  python experiments/predict.py --run_dir=runs/federated_demo --inputs=data/labels.csv \
      --out=runs/federated_demo/predictions.csv

--inputs is a manifest CSV (a ``path`` column; ``label`` and ``patient_id`` optional), a folder
of scans (DICOM, NIfTI, PNG/JPG files, and sub-folders read as DICOM series) or one scan. Writes a
CSV of per-image P(covid) and decisions at the run's validation-chosen threshold, with an
``error`` column naming why a scan could not be read (the others are still classified), and,
where patient ids are known, ``*_patients.csv`` with per-patient means. Refuses a checkpoint
whose hash is not the ledger's last finalized global model.
"""

import pathlib
import sys

from absl import app, flags, logging

from ccfl_jax.errors import CcflError
from experiments import predictions
from ledger.errors import LedgerError

_RUN_DIR = flags.DEFINE_string("run_dir", None, "The trained run's folder.", required=True)
_INPUTS = flags.DEFINE_string("inputs", None, "Manifest CSV, folder or scan.", required=True)
_OUT = flags.DEFINE_string("out", None, "Output CSV (default: RUN_DIR/predictions.csv).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    out = pathlib.Path(_OUT.value or pathlib.Path(_RUN_DIR.value) / "predictions.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        trusted = predictions.load_trusted_model(_RUN_DIR.value)
        inputs = predictions.list_inputs(_INPUTS.value)
    except (CcflError, LedgerError) as err:  # named errors say what to do: no traceback
        sys.exit(f"error: {type(err).__name__}: {err}")
    print(f"model of round {trusted.round}, hash {trusted.model_hash[:12]}... matches the ledger")
    rows = predictions.classify(trusted, inputs)
    predictions.write_csv(out, rows, predictions.OUTPUT_COLUMNS)
    patients = predictions.per_patient(rows, trusted.threshold)
    if patients:
        patients_out = out.with_name(out.stem + "_patients.csv")
        predictions.write_csv(patients_out, patients, patients[0].keys())
        print(f"wrote {patients_out} ({len(patients)} patients)")
    failed = sum(1 for row in rows if row["error"])
    print(f"wrote {out}: {len(rows) - failed} scans classified, {failed} unreadable")
    if failed == len(rows):
        sys.exit(1)  # nothing could be classified


if __name__ == "__main__":
    app.run(main)
