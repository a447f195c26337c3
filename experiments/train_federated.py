r"""The main job: federated CapsNet with DP and the ledger in the loop, on the bundled real CT.

Run from the repository root (what `make demo` runs):

  python experiments/train_federated.py --flagfile=experiments/configs/train_federated.DEMO.flags

Every flag is a field of ``experiments.job_config.JobConfig``; ``--workdir`` is where the run
lives. Run the same command again to resume a killed run: it continues from the last checkpoint
on the same chain. ``python -m ledger.audit --run_dir WORKDIR`` audits it at any time.
"""

import json
import sys

import jax
from absl import app, flags, logging

from ccfl_jax.errors import CcflError
from experiments import federated_job, job_config
from ledger.errors import LedgerError

job_config.define_flags()
_WORKDIR = flags.DEFINE_string("workdir", "runs/federated_demo", "The run's folder.")
_JAX_CACHE_DIR = flags.DEFINE_string(
    "jax_cache_dir", "runs/jax_cache", "Persistent XLA compilation cache ('' for none)."
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = job_config.config_from_flags()
    print("config:", json.dumps(config.__dict__))
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO
    if _JAX_CACHE_DIR.value:
        jax.config.update("jax_compilation_cache_dir", _JAX_CACHE_DIR.value)
    try:
        metrics = federated_job.train_and_evaluate(config, _WORKDIR.value)
    except (CcflError, LedgerError) as err:  # named errors say what to do: no traceback
        sys.exit(f"error: {type(err).__name__}: {err}")
    print(federated_job.describe(metrics, _WORKDIR.value))


if __name__ == "__main__":
    app.run(main)
