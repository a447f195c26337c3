"""PNG figures of a federated run, mirroring the paper's Fig. 9, 11, 12 and 13, plus ROC curves.

Every function takes plain lists/arrays (from ``history.jsonl`` and ``metrics.json``) and writes
one PNG; nothing here computes a figure that the run did not record.
"""

import pathlib
from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ccfl_jax.train import metrics


def new_figure(nrows: int = 1, ncols: int = 1, figsize=(7, 4), **kwargs):
    """``(figure, axes)`` without pyplot, so drawing changes no global matplotlib state (a
    notebook keeps its inline backend). ``kwargs`` go to ``Figure.subplots``."""
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _save(fig, path: pathlib.Path) -> pathlib.Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _short(name: str) -> str:
    return name.removeprefix("site_")


def accuracy_per_hospital(history: Sequence[dict], hospitals: Sequence[str], path) -> pathlib.Path:
    """Fig. 11: each hospital's validation accuracy of the global model after every round."""
    fig, ax = new_figure()
    rounds = [h["round"] for h in history]
    for index, name in enumerate(hospitals):
        values = np.asarray([h["val_accuracy"][index] for h in history], float)  # None -> NaN
        if not np.all(np.isnan(values)):
            ax.plot(rounds, values, marker=".", label=_short(name))
    ax.set(xlabel="round", ylabel="validation accuracy", ylim=(-0.02, 1.02))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title("Global model accuracy per hospital (Fig. 11; no line: no validation scans)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return _save(fig, pathlib.Path(path))


def loss_curves(history: Sequence[dict], path) -> pathlib.Path:
    """Fig. 12: the sampled hospitals' mean local loss and the global validation loss per round."""
    fig, ax = new_figure()
    rounds = [h["round"] for h in history]
    ax.plot(rounds, [h["local_loss"] for h in history], marker=".", label="local (sampled)")
    ax.plot(rounds, [h["val_loss"] for h in history], marker=".", label="global, validation")
    ax.set(xlabel="round", ylabel="loss")
    ax.set_title("Loss over rounds (Fig. 12)")
    ax.legend()
    return _save(fig, pathlib.Path(path))


def time_per_round(history: Sequence[dict], path) -> pathlib.Path:
    """Fig. 13: wall time of each round, split into its stages."""
    stages = list(history[0]["seconds"]) if history else []
    fig, ax = new_figure()
    rounds = np.array([h["round"] for h in history])
    bottom = np.zeros(len(history))
    for stage in stages:
        values = np.array([h["seconds"][stage] for h in history])
        ax.bar(rounds, values, bottom=bottom, label=stage)
        bottom += values
    ax.set(xlabel="round", ylabel="seconds")
    ax.set_title("Time per round (Fig. 13)")
    ax.legend(fontsize=7)
    return _save(fig, pathlib.Path(path))


def privacy_curve(history: Sequence[dict], path) -> pathlib.Path:
    """Epsilon spent after each round (RDP accountant)."""
    fig, ax = new_figure(figsize=(6, 3.5))
    ax.plot([h["round"] for h in history], [h["epsilon"] for h in history], marker=".")
    ax.set(xlabel="round", ylabel="epsilon", title="Privacy spent (client-level DP)")
    return _save(fig, pathlib.Path(path))


def local_vs_federated(comparison: dict, path) -> pathlib.Path:
    """Fig. 9: per hospital, test AUC and accuracy of a local-only model vs the federated one.

    Args:
      comparison: ``{hospital: {'local': {'roc_auc', 'accuracy'}, 'federated': {...}}}``,
        evaluated on the pooled test split of every hospital.
    """
    names = list(comparison)
    x = np.arange(len(names))
    fig, axes = new_figure(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("roc_auc", "accuracy"), strict=True):
        local = [comparison[n]["local"][metric] for n in names]
        federated = [comparison[n]["federated"][metric] for n in names]
        ax.bar(x - 0.2, local, width=0.4, label="local only")
        ax.bar(x + 0.2, federated, width=0.4, label="federated")
        ax.set_xticks(x, [_short(n) for n in names], rotation=30, ha="right", fontsize=7)
        ax.set(ylim=(0, 1), ylabel=f"pooled test {metric}")
        ax.axhline(0.5, color="grey", lw=0.8, ls="--")
    axes[0].legend()
    fig.suptitle("Trained at one hospital vs federated (Fig. 9), all hospitals' test scans")
    return _save(fig, pathlib.Path(path))


def roc_curves(curves: dict, path) -> pathlib.Path:
    """ROC curves: ``curves = {label: (y_true [N], y_score [N])}`` (one-class entries skipped)."""
    fig, ax = new_figure(figsize=(5, 5))
    for label, (y, s) in curves.items():
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = metrics.roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{_short(label)} (AUC {metrics.roc_auc(y, s):.2f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC, test split")
    ax.legend(fontsize=7)
    return _save(fig, pathlib.Path(path))
