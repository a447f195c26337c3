"""The end of the main job: test figures, local-only comparison, audit, metrics.json and plots.

Everything written here is computed from the run's final checkpoint and its held-out patients;
``metrics.json`` can be recomputed from ``test_predictions.csv`` (a test checks that it is).
"""

import json
import math
import pathlib

import numpy as np
import optax

from ccfl_jax import federated, train
from experiments import evaluation, plots
from ledger import audit


def _summary(report: dict) -> dict:
    """value/low/high of the headline metrics of one classification report."""
    names = ("roc_auc", "balanced_accuracy", "sensitivity", "specificity", "precision", "accuracy")
    return {name: report["metrics"][name] for name in names}


def local_only_comparison(problem, config, federated_params, test_scores, test_labels) -> dict:
    """Fig. 9: per hospital, a model trained on that hospital alone with the same number of
    local steps as the whole federated run, against the federated model, both scored on every
    hospital's test scans (pooled AUC and accuracy at 0.5)."""
    import jax

    dataset = problem.dataset
    pooled_y = np.concatenate(test_labels)
    federated_s = np.concatenate(test_scores)
    steps = config.rounds * config.local_steps
    out = {}
    for h, name in enumerate(dataset.hospitals):
        mask = np.asarray(dataset.train.mask[h])
        images = np.asarray(dataset.train.images[h])[mask]
        labels = np.asarray(dataset.train.labels[h])[mask]
        rng = jax.random.key(config.seed + 1000 + h)
        params = train.init_params(problem.model, rng, config.image_size)
        params, _ = train.train_centrally(
            problem.model,
            params,
            (images, labels),
            steps=steps,
            batch_size=min(config.batch_size, len(images)),
            optimizer=optax.adam(config.hospital_learning_rate),
            rng=rng,
            reconstruction_weight=config.reconstruction_weight,
            progress=False,
        )
        local_s = np.concatenate(evaluation.split_scores(problem.predict, params, dataset.test))
        out[name] = {
            "train_classes": sorted(set(labels.tolist())),
            "local": {
                "roc_auc": _auc(pooled_y, local_s),
                "accuracy": float(np.mean((local_s >= 0.5) == pooled_y)),
            },
            "federated": {
                "roc_auc": _auc(pooled_y, federated_s),
                "accuracy": float(np.mean((federated_s >= 0.5) == pooled_y)),
            },
        }
    return out


def _auc(y, s) -> float:
    return train.metrics.roc_auc(y, s) if len(np.unique(y)) == 2 else math.nan


def write_report(
    problem,
    config,
    workdir,
    state,
    history,
    consortium,
    *,
    resumed_from,
    stopped_by_budget,
    seconds,
) -> dict:
    """Evaluates the final model and writes every artifact of the run; returns metrics.json."""
    workdir = pathlib.Path(workdir)
    dataset, hospitals = problem.dataset, list(problem.dataset.hospitals)
    params = state.params
    val_scores = evaluation.split_scores(problem.predict, params, dataset.val)
    val_labels = evaluation.split_labels(dataset.val)
    operating = evaluation.operating_threshold(
        np.concatenate(val_labels), np.concatenate(val_scores)
    )
    test_scores = evaluation.split_scores(problem.predict, params, dataset.test)
    test_labels = evaluation.split_labels(dataset.test)
    test_rows = dataset.rows["test"]
    report = evaluation.test_report(
        hospitals,
        test_labels,
        test_scores,
        test_rows,
        threshold=operating["threshold"],
        n_boot=config.bootstrap,
    )
    evaluation.write_predictions(
        workdir / "test_predictions.csv", hospitals, test_rows, test_scores, operating["threshold"]
    )
    rounds_done = int(state.round)
    eps = math.inf
    if config.noise_multiplier > 0:
        q = min(1.0, config.hospitals_per_round / len(hospitals))
        eps = federated.epsilon(config.noise_multiplier, q, rounds_done, config.delta)
    metrics = {
        "rounds_completed": rounds_done,
        "resumed_from_round": resumed_from,
        "stopped_by_privacy_budget": stopped_by_budget,
        "strategy": problem.algorithm.strategy,
        "hospitals": hospitals,
        "split_unit": dict(zip(hospitals, dataset.split_unit, strict=True)),
        "privacy": {
            "epsilon": eps,
            "delta": config.delta,
            "noise_multiplier": config.noise_multiplier,
            "clip_norm": config.clip_norm,
            "accountant": "RDP (dp-accounting), Poisson-sampled Gaussian, client level",
            "note": "epsilon is infinite without noise" if math.isinf(eps) else "",
        },
        "operating_point": operating,
        "test": {
            "pooled": report["pooled"],
            "hospitals": report["hospitals"],
            "within_hospital_auc": report["within_hospital_auc"],
        },
        "headline": evaluation.headline(report["pooled"]),
        "final_model_hash": history[-1]["model_hash"] if history else None,
        "wall_seconds": seconds,
    }
    if config.compare_local:
        metrics["local_vs_federated"] = local_only_comparison(
            problem, config, params, test_scores, test_labels
        )
        plots.local_vs_federated(
            metrics["local_vs_federated"], workdir / "fig09_local_vs_federated.png"
        )
    if consortium is not None:
        verdict = audit.audit(workdir)
        (workdir / "ledger_history.json").write_text(json.dumps(audit.to_json(verdict), indent=1))
        (workdir / "ledger_audit.txt").write_text(audit.to_text(verdict) + "\n")
        metrics["ledger_audit"] = {"ok": verdict.ok, "problems": verdict.problems}
    (workdir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=_json_default))
    if history:
        plots.accuracy_per_hospital(history, hospitals, workdir / "fig11_accuracy_per_hospital.png")
        plots.loss_curves(history, workdir / "fig12_loss.png")
        plots.time_per_round(history, workdir / "fig13_time_per_round.png")
        plots.privacy_curve(history, workdir / "privacy_epsilon.png")
    curves = {"pooled": (np.concatenate(test_labels), np.concatenate(test_scores))}
    curves.update({n: (y, s) for n, y, s in zip(hospitals, test_labels, test_scores, strict=True)})
    plots.roc_curves(curves, workdir / "roc_test.png")
    return metrics


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value)} to JSON")
