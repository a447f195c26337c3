r"""Table IV, honestly: every model trained under one budget, beside two shortcut predictors.

Run from the repository root:

  python experiments/benchmark_models.py --flagfile=experiments/configs/benchmark_models.SAMPLE.flags
  python experiments/benchmark_models.py --flagfile=experiments/configs/benchmark_models.BENCH.flags

Each model in ``--models`` is trained centrally on the pooled training split of every hospital
with the same steps, batch size and learning rate; CapsNet (``--federated_model``) is also
trained on each hospital alone, federated, and federated with client-level DP (the main job,
``experiments/federated_job.py``, without the ledger). Every row is scored on the held-out test
split at a threshold chosen on the validation split (``experiments/evaluation.py``): the paper's
columns (precision, sensitivity, specificity, accuracy) plus AUC and balanced accuracy, each with
a 95% bootstrap interval, and the AUC within each hospital that holds both classes. Two reference
rows (``experiments/reference_models.py``) show what image statistics or the hospital alone score.
Writes ``table.md`` and ``table.json`` to ``--workdir``.

A manifest without a hospital column (the benchmark pack's ``labels.csv``) gets ``--site`` as
every row's hospital, in a copy written to the workdir.
"""

import csv
import dataclasses
import json
import math
import pathlib
import time

import jax
import numpy as np
import optax
from absl import app, flags, logging

from ccfl_jax import data, models, train
from experiments import evaluation, federated_job, job_config, reference_models
from experiments.job_config import JobConfig

_METRICS = ("precision", "sensitivity", "specificity", "accuracy", "roc_auc", "balanced_accuracy")
_HEADERS = ("precision", "sensitivity", "specificity", "accuracy", "AUC", "balanced acc.")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Settings of one Table IV run (every field is a flag of the same name)."""

    manifest: str = job_config.config_field(
        "data/labels.csv", "Manifest CSV (path, hospital/site, label, ...)."
    )
    site: str = job_config.config_field(
        "", "Hospital name for a manifest without a hospital/site column."
    )
    image_size: int = job_config.config_field(
        64, "Side of the normalized slices in pixels (divisible by 8)."
    )
    seed: int = job_config.config_field(0, "Seed of the split, the initial models and the batches.")
    cache_dir: str = job_config.config_field(
        "runs/cache", "Folder of the ingest cache ('' for none)."
    )
    max_per_hospital: int = job_config.config_field(
        0, "Keep at most this many rows per hospital (0: all)."
    )
    models: tuple = job_config.config_field(
        ("capsnet", "cnn_small"), "Models trained centrally (MODELS names)."
    )
    steps: int = job_config.config_field(
        200, "Training steps of every model (federated: rounds x local steps)."
    )
    batch_size: int = job_config.config_field(16, "Batch size of every model.")
    learning_rate: float = job_config.config_field(1e-3, "Adam learning rate of every model.")
    reconstruction_weight: float = job_config.config_field(
        0.0005, "Weight of CapsNet's reconstruction term."
    )
    federated_model: str = job_config.config_field(
        "capsnet", "Model of the local-only and federated rows."
    )
    federated: bool = job_config.config_field(
        True, "Add local-only, federated and federated + DP rows."
    )
    local_steps: int = job_config.config_field(
        5, "K: local steps per hospital per federated round."
    )
    hospitals_per_round: int = job_config.config_field(
        3, "m_t: hospitals sampled each federated round."
    )
    clip_norm: float = job_config.config_field(2.0, "S: L2 clip of each hospital's delta (Eq. 8).")
    noise_multiplier: float = job_config.config_field(
        0.3, "sigma of the federated + DP row (Eq. 8)."
    )
    bootstrap: int = job_config.config_field(
        1000, "Bootstrap resamples for the 95% confidence intervals."
    )
    progress: bool = job_config.config_field(True, "Show tqdm progress bars.")


def manifest_with_site(manifest: str, site: str, out_dir: pathlib.Path) -> str:
    """``manifest``, or a copy of it with a ``site`` column of ``site`` when it has none.

    Paths in the copy are made absolute so it can live anywhere.
    """
    with open(manifest, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns, rows = list(reader.fieldnames or []), list(reader)
    if "hospital" in columns or "site" in columns:
        return manifest
    if not site:
        raise app.UsageError(f"{manifest} has no hospital/site column; name its site with --site.")
    base = pathlib.Path(manifest).resolve().parent
    out_dir.mkdir(parents=True, exist_ok=True)
    copy = out_dir / "manifest_with_site.csv"
    with open(copy, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["site", *columns])
        writer.writeheader()
        for row in rows:
            writer.writerow({**row, "site": site, "path": str(base / row["path"])})
    return str(copy)


def load_dataset(config: BenchConfig, manifest: str) -> data.FederatedDataset:
    """The per-hospital train/val/test splits of ``manifest`` (patient-level where ids exist)."""
    return data.load_federated_dataset(
        manifest,
        image_size=config.image_size,
        seed=config.seed,
        cache_dir=config.cache_dir or None,
        max_per_hospital=config.max_per_hospital or None,
        progress=config.progress,
    )


def split_by_hospital(scores: np.ndarray, arrays: data.HospitalArrays) -> list[np.ndarray]:
    """Pooled ``[M]`` scores in :func:`data.pool_hospitals` order -> H arrays ``[N_h]``."""
    counts = np.asarray(arrays.mask).sum(axis=1)
    return np.split(np.asarray(scores, np.float64), np.cumsum(counts)[:-1])


def evaluate(dataset: data.FederatedDataset, val_scores, test_scores, n_boot: int) -> dict:
    """Test report at the validation-chosen threshold (per-hospital lists of scores in)."""
    operating = evaluation.operating_threshold(
        np.concatenate(evaluation.split_labels(dataset.val)), np.concatenate(val_scores)
    )
    report = evaluation.test_report(
        dataset.hospitals,
        evaluation.split_labels(dataset.test),
        test_scores,
        dataset.rows["test"],
        threshold=operating["threshold"],
        n_boot=n_boot,
    )
    return {**report, "operating_point": operating}


def table_row(name: str, training: str, report: dict, **extra) -> dict:
    """One row of the table: pooled metrics with CIs, and the within-hospital AUCs."""
    return {
        "model": name,
        "training": training,
        "threshold": report["operating_point"]["threshold"],
        "metrics": {m: report["pooled"]["metrics"][m] for m in _METRICS},
        "within_hospital_auc": report["within_hospital_auc"],
        "flags": report["pooled"]["flags"],
        **extra,
    }


def _histogram_scores(logistic: reference_models.LogisticModel):
    def score(arrays: data.HospitalArrays) -> np.ndarray:
        images = data.pool_hospitals(arrays)[0]
        return reference_models.logistic_scores(
            logistic, reference_models.intensity_histograms(images)
        )

    return score


def _hospital_scores(rates: np.ndarray):
    def score(arrays: data.HospitalArrays) -> np.ndarray:
        return reference_models.hospital_only_scores(rates, data.pool_hospitals(arrays)[2])

    return score


def reference_rows(dataset: data.FederatedDataset, n_boot: int) -> list[dict]:
    """The intensity-histogram logistic regression and the hospital-only predictor."""
    train_images, train_labels, _ = data.pool_hospitals(dataset.train)
    features = reference_models.intensity_histograms(train_images)
    logistic = reference_models.fit_logistic_regression(features, train_labels)
    rates = reference_models.hospital_positive_rates(evaluation.split_labels(dataset.train))
    predictors = {
        f"intensity histogram ({reference_models.HISTOGRAM_BINS} bins) + logistic regression": (
            _histogram_scores(logistic)
        ),
        "hospital only (training positive rate)": _hospital_scores(rates),
    }
    rows = []
    for name, score in predictors.items():
        val = split_by_hospital(score(dataset.val), dataset.val)
        test = split_by_hospital(score(dataset.test), dataset.test)
        rows.append(table_row(name, "reference", evaluate(dataset, val, test, n_boot)))
    return rows


def train_and_score(name, dataset, images, labels, config: BenchConfig, training: str, seed: int):
    """Trains model ``name`` on ``(images, labels)`` with the shared budget; returns its row."""
    model = models.get_model(name)
    rng = jax.random.key(seed)
    params = train.init_params(model, rng, config.image_size)
    tic = time.perf_counter()
    params, _ = train.train_centrally(
        model,
        params,
        (images, labels),
        steps=config.steps,
        batch_size=min(config.batch_size, len(images)),
        optimizer=optax.adam(config.learning_rate),
        rng=rng,
        reconstruction_weight=config.reconstruction_weight,
        progress=config.progress,
    )
    seconds = time.perf_counter() - tic
    predict = train.make_predict_fn(model)
    val = evaluation.split_scores(predict, params, dataset.val)
    test = evaluation.split_scores(predict, params, dataset.test)
    report = evaluate(dataset, val, test, config.bootstrap)
    return table_row(name, training, report, train_seconds=seconds, steps=config.steps)


def central_rows(dataset, config: BenchConfig) -> list[dict]:
    """Every model of ``config.models`` trained on the pooled training split."""
    images, labels, _ = data.pool_hospitals(dataset.train)
    return [
        train_and_score(name, dataset, images, labels, config, "central (pooled)", config.seed)
        for name in config.models
    ]


def local_only_rows(dataset, config: BenchConfig) -> list[dict]:
    """``config.federated_model`` trained on each hospital's training split alone."""
    rows = []
    for h, hospital in enumerate(dataset.hospitals):
        mask = np.asarray(dataset.train.mask[h])
        images = np.asarray(dataset.train.images[h])[mask]
        labels = np.asarray(dataset.train.labels[h])[mask]
        rows.append(
            train_and_score(
                config.federated_model,
                dataset,
                images,
                labels,
                config,
                f"local only: {hospital}",
                config.seed + 1000 + h,
            )
        )
    return rows


def federated_rows(config: BenchConfig, manifest: str, workdir: pathlib.Path) -> list[dict]:
    """The main job without the ledger, with and without DP, at the same total local steps."""
    rows = []
    for training, sigma in (("federated", 0.0), ("federated + DP", config.noise_multiplier)):
        job = JobConfig(
            manifest=manifest,
            image_size=config.image_size,
            seed=config.seed,
            cache_dir=config.cache_dir,
            max_per_hospital=config.max_per_hospital,
            model=config.federated_model,
            reconstruction_weight=config.reconstruction_weight,
            rounds=max(1, config.steps // config.local_steps),
            local_steps=config.local_steps,
            batch_size=config.batch_size,
            hospital_learning_rate=config.learning_rate,
            hospitals_per_round=config.hospitals_per_round,
            clip_norm=config.clip_norm,
            noise_multiplier=sigma,
            use_ledger=False,
            compare_local=False,
            bootstrap=config.bootstrap,
            progress=config.progress,
        )
        tic = time.perf_counter()
        metrics = federated_job.train_and_evaluate(job, workdir / training.replace(" + ", "_"))
        report = {**metrics["test"], "operating_point": metrics["operating_point"]}
        extra = {"train_seconds": time.perf_counter() - tic, "rounds": job.rounds}
        if sigma > 0:
            extra["epsilon"] = metrics["privacy"]["epsilon"]
            extra["delta"] = metrics["privacy"]["delta"]
        rows.append(table_row(config.federated_model, training, report, **extra))
    return rows


def _cell(metric: dict) -> str:
    if math.isnan(metric["value"]):
        return "n/a"
    return f"{metric['value']:.3f} [{metric['low']:.2f}, {metric['high']:.2f}]"


def markdown_table(header: tuple, lines: list[tuple]) -> str:
    """A GitHub markdown table of string cells."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in line) + " |" for line in lines]
    return "\n".join(out)


def render(rows: list[dict], hospitals: tuple) -> str:
    """The table as markdown: pooled metrics with 95% CIs, then within-hospital AUCs."""
    within = [h for h in hospitals if any(h in row["within_hospital_auc"] for row in rows)]
    header = ("model", "training", *_HEADERS, *(f"AUC within {h}" for h in within))
    lines = []
    for row in rows:
        cells = [_cell(row["metrics"][m]) for m in _METRICS]
        cells += [_cell(row["within_hospital_auc"][h]) for h in within]
        lines.append((row["model"], row["training"], *cells))
    return markdown_table(header, lines)


def run_benchmark(config: BenchConfig, workdir) -> dict:
    """Builds the whole table in ``workdir`` (table.md, table.json); returns the JSON."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    manifest = manifest_with_site(config.manifest, config.site, workdir)
    dataset = load_dataset(config, manifest)
    rows = reference_rows(dataset, config.bootstrap)
    rows += central_rows(dataset, config)
    if config.federated:
        rows += local_only_rows(dataset, config)
        rows += federated_rows(config, manifest, workdir)
    result = {
        "config": dataclasses.asdict(config),
        "hospitals": list(dataset.hospitals),
        "split_unit": dict(zip(dataset.hospitals, dataset.split_unit, strict=True)),
        "data_summary": data.summary_table(dataset),
        "rows": rows,
        "wall_seconds": time.perf_counter() - started,
    }
    (workdir / "table.json").write_text(json.dumps(result, indent=1, default=float))
    (workdir / "table.md").write_text(render(rows, dataset.hospitals) + "\n")
    return result


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = job_config.config_from_flags(BenchConfig)
    unknown = [m for m in (*config.models, config.federated_model) if m not in models.MODELS]
    if unknown:
        raise app.UsageError(f"unknown model(s) {unknown}; choose from {sorted(models.MODELS)}.")
    print("config:", json.dumps(dataclasses.asdict(config)))
    logging.set_verbosity(logging.WARNING)
    result = run_benchmark(config, flags.FLAGS.workdir)
    print(result["data_summary"])
    print((pathlib.Path(flags.FLAGS.workdir) / "table.md").read_text())
    print(f"wall time: {result['wall_seconds']:.0f} s")


if __name__ == "__main__":
    job_config.define_flags(BenchConfig)
    flags.DEFINE_string("workdir", "runs/benchmark_models", "Folder of the outputs.")
    app.run(main)
