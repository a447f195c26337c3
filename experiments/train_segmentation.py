r"""Train SegCaps R3 on the sample's infection masks (MedSeg via COVID-SemiSeg); Dice on its test split.

Run from the repository root:

  python experiments/train_segmentation.py --flagfile=experiments/configs/train_segmentation.SAMPLE.flags
  python experiments/train_segmentation.py --flagfile=experiments/configs/train_segmentation.SMOKE.flags

Rows of ``--manifest`` with a ``mask_path`` are the labelled slices; the source's own
``series_or_split`` column (train / test) splits them. Slices are resized to
``--image_size`` squared (display intensities mapped to [-0.5, 0.5]); masks by nearest
neighbour. The test figures are the mean per-slice Dice and IoU at probability 0.5, beside the
Dice of the trivial "everything is lesion" predictor. Writes ``flags.json``, ``metrics.json``,
``history.json`` and ``loss.png`` to ``--workdir``.
"""

import dataclasses
import json
import pathlib
import time

import jax
import numpy as np
import optax
import PIL.Image
from absl import app, flags

from ccfl_jax import data, models
from ccfl_jax.data import normalize
from ccfl_jax.train import metrics, segmentation
from experiments import job_config
from experiments.train_local import plot_loss


def load_masked_slices(manifest: str, split: str, image_size: int, limit: int = 0):
    """``(images [M, S, S, 1] in [-0.5, 0.5], masks [M, S, S, 1] in {0, 1})`` of one split."""
    rows = [
        row
        for row in data.read_manifest(manifest)
        if row.mask_path is not None and row.extra.get("series_or_split") == split
    ]
    if not rows:
        raise app.UsageError(f"{manifest} has no rows with a mask_path in split {split!r}.")
    rows = rows[:limit] if limit else rows
    images, masks = [], []
    for row in rows:
        grey = PIL.Image.fromarray(np.asarray(data.read_image(row.path).array, np.float32))
        image = np.asarray(grey.resize((image_size, image_size), PIL.Image.BILINEAR))
        images.append(np.asarray(normalize.display_to_unit(image)))
        with PIL.Image.open(row.mask_path) as mask:
            small = mask.convert("L").resize((image_size, image_size), PIL.Image.NEAREST)
        masks.append(np.asarray(small) > 127)
    return np.stack(images)[..., None], np.stack(masks)[..., None].astype(np.float32)


def train_and_evaluate(config: dict, workdir: str) -> dict:
    """Trains SegCaps and writes the run's files; returns the metrics dict."""
    out = pathlib.Path(workdir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "flags.json").write_text(json.dumps(config, indent=2) + "\n")
    size, limit = config["image_size"], config["max_slices"]
    train_images, train_masks = load_masked_slices(config["manifest"], "train", size, limit)
    test_images, test_masks = load_masked_slices(config["manifest"], "test", size, limit)
    model = models.SegCaps()
    rng = jax.random.key(config["seed"])
    params = jax.jit(model.init)(rng, train_images[:1])["params"]
    tic = time.perf_counter()
    params, history = segmentation.train_segmentation(
        model,
        params,
        train_images,
        train_masks,
        steps=config["steps"],
        batch_size=min(config["batch_size"], len(train_images)),
        optimizer=optax.adam(config["learning_rate"]),
        rng=rng,
        reconstruction_weight=config["reconstruction_weight"],
        progress=config["progress"],
    )
    train_seconds = time.perf_counter() - tic
    probability = segmentation.predict_probabilities(model, params, test_images)
    predicted = probability >= 0.5
    per_slice_dice = metrics.dice(test_masks, predicted, axis=(1, 2, 3))
    per_slice_iou = metrics.iou(test_masks, predicted, axis=(1, 2, 3))
    everything = metrics.dice(test_masks, np.ones_like(test_masks), axis=(1, 2, 3))
    result = {
        "test_slices": len(test_images),
        "train_slices": len(train_images),
        "dice_mean": float(np.mean(per_slice_dice)),
        "dice_std": float(np.std(per_slice_dice)),
        "iou_mean": float(np.mean(per_slice_iou)),
        "dice_pooled_pixels": metrics.dice(test_masks, predicted),
        "dice_all_lesion_baseline": float(np.mean(everything)),
        "test_lesion_fraction": float(np.mean(test_masks)),
        "dice_per_slice": per_slice_dice.tolist(),
        "train_seconds": train_seconds,
        "final_train_loss": float(np.mean(history["loss"][-10:])),
        "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
    }
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "history.json").write_text(json.dumps(history) + "\n")
    plot_loss(history, out / "loss.png")
    return result


@dataclasses.dataclass(frozen=True)
class TrainSegmentationConfig:
    """Settings of a SegCaps run; one flag per field (``job_config.define_flags``)."""

    manifest: str = job_config.config_field("data/labels.csv", "Manifest CSV.")
    image_size: int = job_config.config_field(64, "Side of the slices (x 8).")
    max_slices: int = job_config.config_field(0, "Slices per split (0: all).")
    seed: int = job_config.config_field(0, "Seed of the model and the batches.")
    steps: int = job_config.config_field(300, "Training steps.")
    batch_size: int = job_config.config_field(4, "Batch size.")
    learning_rate: float = job_config.config_field(1e-3, "Adam learning rate.")
    reconstruction_weight: float = job_config.config_field(
        0.1, "Weight of the masked reconstruction term."
    )
    progress: bool = job_config.config_field(True, "Show tqdm progress bars.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = dataclasses.asdict(job_config.config_from_flags(TrainSegmentationConfig))
    print("config:", json.dumps(config))
    result = train_and_evaluate(config, _WORKDIR.value)
    print(
        f"SegCaps test Dice {result['dice_mean']:.3f} +- {result['dice_std']:.3f} over "
        f"{result['test_slices']} slices (all-lesion baseline {result['dice_all_lesion_baseline']:.3f})"
    )


if __name__ == "__main__":
    job_config.define_flags(TrainSegmentationConfig)
    _WORKDIR = flags.DEFINE_string("workdir", "runs/train_segmentation", "Output folder.")
    app.run(main)
