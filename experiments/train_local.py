r"""Train one model centrally, on every hospital pooled or on one hospital alone, and score it.

Run from the repository root:

  python experiments/train_local.py --flagfile=experiments/configs/train_local.CAPSNET.flags
  python experiments/train_local.py --flagfile=experiments/configs/train_local.SMOKE.flags

The model (``--model``, a name of ``ccfl_jax.models.MODELS``) trains from scratch (no ImageNet
weights exist here) on the patient-level training split of the bundled real sample, pooled over
hospitals or of ``--hospital`` alone. The decision threshold is chosen on the validation split;
the test split gives every metric with a 95% patient-level bootstrap interval, AUC and balanced
accuracy always included. Writes ``flags.json``, ``metrics.json``, ``history.json``,
``predictions.csv``, ``loss.png`` and ``roc.png`` to ``--workdir``.
"""

import dataclasses
import json
import pathlib
import time

import jax
import numpy as np
import optax
from absl import app, flags

from ccfl_jax import data, models, train
from experiments import evaluation, job_config, plots


def training_arrays(dataset: data.FederatedDataset, hospital: str):
    """``(images [M, S, S, 1], labels [M])``: every hospital pooled, or ``hospital`` alone."""
    if not hospital:
        images, labels, _ = data.pool_hospitals(dataset.train)
        return images, labels
    if hospital not in dataset.hospitals:
        raise app.UsageError(f"--hospital={hospital!r} is not one of {dataset.hospitals}.")
    index = dataset.hospitals.index(hospital)
    mask = np.asarray(dataset.train.mask[index])
    return np.asarray(dataset.train.images[index])[mask], np.asarray(dataset.train.labels[index])[
        mask
    ]


def plot_loss(history: dict, path: pathlib.Path) -> None:
    """Training loss per step, and its 20-step running mean."""
    loss = np.asarray(history["loss"])
    window = min(20, len(loss))
    fig, ax = plots.new_figure(figsize=(6, 4))
    ax.plot(loss, lw=0.6, alpha=0.5, label="per step")
    ax.plot(
        np.arange(window - 1, len(loss)),
        np.convolve(loss, np.ones(window) / window, "valid"),
        label=f"{window}-step mean",
    )
    ax.set(xlabel="step", ylabel="training loss", yscale="log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def train_and_evaluate(config: dict, workdir: str) -> dict:
    """Trains ``config['model']`` and writes the run's files; returns the metrics dict."""
    out = pathlib.Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "flags.json").write_text(json.dumps(config, indent=2) + "\n")
    dataset = data.load_federated_dataset(
        config["manifest"],
        image_size=config["image_size"],
        seed=config["seed"],
        max_per_hospital=config["max_per_hospital"] or None,
        cache_dir=config["cache_dir"] or None,
        progress=config["progress"],
    )
    images, labels = training_arrays(dataset, config["hospital"])
    kwargs = (
        {"width": config["width"]}
        if "width" in models.MODELS[config["model"]].__dataclass_fields__
        else {}
    )
    model = models.get_model(config["model"], **kwargs)
    rng = jax.random.key(config["seed"])
    params = train.init_params(model, rng, config["image_size"])
    tic = time.perf_counter()
    params, history = train.train_centrally(
        model,
        params,
        (images, labels),
        steps=config["steps"],
        batch_size=min(config["batch_size"], len(images)),
        optimizer=optax.adam(config["learning_rate"]),
        rng=rng,
        reconstruction_weight=config["reconstruction_weight"],
        progress=config["progress"],
    )
    train_seconds = time.perf_counter() - tic
    predict = train.make_predict_fn(model)
    val_scores = evaluation.split_scores(predict, params, dataset.val)
    test_scores = evaluation.split_scores(predict, params, dataset.test)
    val_labels = np.concatenate(evaluation.split_labels(dataset.val))
    operating = evaluation.operating_threshold(val_labels, np.concatenate(val_scores))
    test_labels = evaluation.split_labels(dataset.test)
    report = evaluation.test_report(
        dataset.hospitals,
        test_labels,
        test_scores,
        dataset.rows["test"],
        threshold=operating["threshold"],
        n_boot=config["bootstrap"],
    )
    result = {
        **report,
        "operating_point": operating,
        "train_seconds": train_seconds,
        "train_examples": int(len(labels)),
        "train_positive_rate": float(np.mean(labels)),
        "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
        "final_train_loss": float(np.mean(history["loss"][-10:])),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (out / "history.json").write_text(json.dumps(history) + "\n")
    evaluation.write_predictions(
        out / "predictions.csv",
        dataset.hospitals,
        dataset.rows["test"],
        test_scores,
        operating["threshold"],
    )
    plot_loss(history, out / "loss.png")
    curves = {"pooled": (np.concatenate(test_labels), np.concatenate(test_scores))}
    curves.update(
        {
            name: (y, s)
            for name, y, s in zip(dataset.hospitals, test_labels, test_scores, strict=True)
        }
    )
    plots.roc_curves(curves, out / "roc.png")
    return result


@dataclasses.dataclass(frozen=True)
class TrainLocalConfig:
    """Settings of a central training run; one flag per field (``job_config.define_flags``)."""

    manifest: str = job_config.config_field("data/labels.csv", "Manifest CSV of the sample.")
    image_size: int = job_config.config_field(64, "Side of the slices (divisible by 8).")
    seed: int = job_config.config_field(0, "Seed of the split, the initial model and the batches.")
    max_per_hospital: int = job_config.config_field(0, "Rows per hospital (0: all).")
    cache_dir: str = job_config.config_field("runs/cache", "Ingest cache folder ('' for none).")
    model: str = job_config.config_field(
        "capsnet", "The classifier.", enum=tuple(models.CLASSIFIERS)
    )
    width: float = job_config.config_field(1.0, "Channel multiplier of the CNN baselines.")
    hospital: str = job_config.config_field("", "Train on this hospital alone ('' = pooled).")
    steps: int = job_config.config_field(300, "Training steps.")
    batch_size: int = job_config.config_field(16, "Batch size.")
    learning_rate: float = job_config.config_field(1e-3, "Adam learning rate.")
    reconstruction_weight: float = job_config.config_field(0.0005, "CapsNet decoder weight.")
    bootstrap: int = job_config.config_field(1000, "Bootstrap resamples of the 95% CIs.")
    progress: bool = job_config.config_field(True, "Show tqdm progress bars.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = dataclasses.asdict(job_config.config_from_flags(TrainLocalConfig))
    print("config:", json.dumps(config))
    result = train_and_evaluate(config, _WORKDIR.value)
    print(
        f"{config['model']} ({config['hospital'] or 'pooled'}), test:",
        evaluation.headline(result["pooled"]),
    )
    print(f"wrote {_WORKDIR.value}/metrics.json, loss.png, roc.png")


if __name__ == "__main__":
    job_config.define_flags(TrainLocalConfig)
    _WORKDIR = flags.DEFINE_string("workdir", "runs/train_local", "Output folder.")
    app.run(main)
