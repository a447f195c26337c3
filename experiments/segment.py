r"""SegCaps on the COVID-SemiSeg infection masks, then the three-plane aggregation on a CT series.

Part 1 trains SegCaps R3 (LaLonde & Bagci 2018) on the bundled ``data/covid_semiseg`` train
slices with the loss of :mod:`ccfl_jax.train.segmentation` and reports hard Dice on its test
split. Part 2 reads a bundled DICOM series, resamples it to a small isotropic cube with Lanczos
interpolation (Sec. II-A-1), windows it (Eq. 1), runs the trained 2D SegCaps over its XY, XZ and
YZ slices (Eq. 2) and combines the three per-voxel probabilities (Eq. 3, mean or max) with
:mod:`ccfl_jax.models.multiplane`. It writes ``segment_summary.json``, ``flags.json`` and
``multiplane_montage.png`` into ``--workdir``.

Run from the repository root:

  python experiments/segment.py --flagfile=experiments/configs/segment.DEMO.flags

The bundled COVID-CT-MD series are sparse (12 slices spread over the lungs, data/README.md), so
``data.read_dicom`` refuses them as uneven; they are then read slice by slice and interpolated
linearly along z onto a regular grid, and the summary says so (``series.reading``).
"""

import dataclasses
import json
import pathlib
import time

import jax
import numpy as np
import optax
import pydicom
from absl import app, flags

from ccfl_jax import data, models, train
from ccfl_jax.errors import InconsistentSeriesError, NonUniformSpacingError, ScanNotFoundError
from ccfl_jax.models import multiplane
from ccfl_jax.train import segmentation
from experiments import plots


@dataclasses.dataclass(frozen=True)
class SegmentConfig:
    """Settings of one run (each field is the flag of the same name)."""

    semiseg_dir: str = "data/covid_semiseg"
    image_size: int = 64
    max_train: int = 0
    max_test: int = 0
    train_steps: int = 200
    batch_size: int = 8
    learning_rate: float = 1e-3
    routing_iterations: int = 3
    threshold: float = 0.5
    series: str = "data/covid_ct_md/covid/P001"
    cube: int = 64
    extent_mm: float = 334.0
    aggregation: str = "mean"
    seed: int = 0
    progress: bool = True


def load_semiseg(root, split: str, image_size: int, limit: int = 0):
    """COVID-SemiSeg slices and binary infection masks of one split, resized and normalized.

    Args:
      root: the ``covid_semiseg`` folder (``<split>/images/<k>.jpg``, ``<split>/masks/<k>.png``).
      split: ``'train'`` or ``'test'``.
      image_size: output side S (the longer side of a slice fills it, centred).
      limit: keep the first ``limit`` slices in name order (0: all).

    Returns:
      ``(images [N, S, S, 1] in [-0.5, 0.5], masks [N, S, S, 1] in {0, 1}, names [N])``.

    Raises:
      ScanNotFoundError: if the split has no images.
    """
    folder = pathlib.Path(root) / split
    paths = sorted((folder / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    if not paths:
        raise ScanNotFoundError(
            f"{folder / 'images'}: no <k>.jpg slices; point --semiseg_dir at the covid_semiseg "
            "folder of the bundled data."
        )
    paths = paths[:limit] if limit else paths
    images, masks = [], []
    for path in paths:
        image = data.read_image(path).array
        mask = data.read_image(folder / "masks" / f"{path.stem}.png").array / 255.0
        resized = data.resample_slice(image, None, size=image_size, pad_value=0.0)
        images.append(np.asarray(data.display_to_unit(resized)))
        mask = data.resample_slice(mask, None, size=image_size, method="linear", pad_value=0.0)
        masks.append(np.asarray(mask) >= 0.5)
    as_batch = lambda x: np.stack(x)[..., None].astype(np.float32)  # noqa: E731
    return as_batch(images), as_batch(masks), [p.stem for p in paths]


def make_slice_predictor(model, params, chunk: int):
    """``predict(slices [N, A, B, 1]) -> probabilities [N, A, B, 1]``, in zero-padded chunks of
    ``chunk`` slices so that every call of one slice shape reuses one compiled step."""
    eval_step = jax.jit(segmentation.make_segmentation_eval_step(model))

    def predict(slices):
        slices = np.asarray(slices, np.float32)
        out = []
        for start in range(0, len(slices), chunk):
            block = slices[start : start + chunk]
            padded = np.concatenate([block, np.zeros((chunk - len(block),) + block.shape[1:])])
            out.append(np.asarray(eval_step(params, padded.astype(np.float32)))[: len(block)])
        return np.concatenate(out)

    return predict


def dice_figures(probability: np.ndarray, masks: np.ndarray, threshold: float) -> dict:
    """Hard Dice of ``probability >= threshold``: per slice (1 when both are empty), its mean
    over all slices and over slices with a lesion, and pooled over every test pixel; beside it
    the pooled Dice of the trivial segmenter that calls every pixel lesion (a model must beat
    it to have learned anything)."""
    predicted = probability >= threshold
    per_slice = train.metrics.dice(masks, predicted, axis=(1, 2, 3))
    has_lesion = masks.reshape(len(masks), -1).any(axis=1)
    return {
        "mean_per_slice": float(np.mean(per_slice)),
        "mean_per_lesion_slice": float(np.mean(per_slice[has_lesion]))
        if has_lesion.any()
        else None,
        "pooled": train.metrics.dice(masks, predicted),
        "pooled_all_lesion_baseline": train.metrics.dice(masks, np.ones_like(predicted)),
        "per_slice": [float(d) for d in per_slice],
        "slices": len(masks),
        "lesion_slices": int(has_lesion.sum()),
    }


def regular_z_grid(slices: np.ndarray, z_mm: np.ndarray) -> tuple[np.ndarray, float]:
    """Linearly interpolates slices at uneven positions onto a regular grid along z.

    Args:
      slices: [N, Y, X], ordered with ``z_mm`` strictly decreasing (most cranial first).
      z_mm: [N] slice positions.

    Returns:
      ``(volume [M, Y, X], step)``: M = round(span / median step) + 1 slices from ``z_mm[0]``
      down to ``z_mm[-1]``, ``step`` the grid spacing (span / (M - 1)).
    """
    span = float(z_mm[0] - z_mm[-1])
    count = int(round(span / float(np.median(-np.diff(z_mm))))) + 1
    grid = np.linspace(z_mm[0], z_mm[-1], count)
    upper = np.clip(np.searchsorted(-z_mm, -grid, side="right"), 1, len(z_mm) - 1)
    lower = upper - 1
    weight = ((z_mm[lower] - grid) / (z_mm[lower] - z_mm[upper]))[:, None, None]
    volume = (1.0 - weight) * slices[lower] + weight * slices[upper]
    return volume.astype(np.float32), span / (count - 1)


def read_series(folder) -> tuple[np.ndarray, tuple[float, float, float], data.Scan, str]:
    """A DICOM series folder as ``(volume [Z, Y, X] HU, (z, y, x) spacing, first scan, how)``.

    A regular series comes from ``data.read_dicom``; a sparse one (uneven steps) is read slice
    by slice and interpolated with :func:`regular_z_grid`.

    Raises:
      InconsistentSeriesError: a sparse series whose slices are not axial.
    """
    try:
        scan = data.read_dicom(folder)
        return scan.array, tuple(scan.spacing_mm), scan, "regular series (data.read_dicom)"
    except NonUniformSpacingError:
        pass
    files = sorted(pathlib.Path(folder).glob("*.dcm"))
    scans = [data.read_dicom(f) for f in files]
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    for f, ds in zip(files, headers, strict=True):
        row, col = np.reshape(np.asarray(ds.ImageOrientationPatient, float), (2, 3))
        if abs(abs(np.cross(row, col)[2]) - 1.0) > 1e-3:
            raise InconsistentSeriesError(
                f"{f}: slice orientation {list(ds.ImageOrientationPatient)} is not axial; a sparse "
                "series can only be interpolated along z. Supply a complete series."
            )
    z = np.array([float(ds.ImagePositionPatient[2]) for ds in headers])
    order = np.argsort(-z)
    volume, step = regular_z_grid(np.stack([scans[i].array for i in order]), z[order])
    spacing = (step, *scans[0].spacing_mm)
    gaps = -np.diff(z[order])
    how = (
        f"sparse series: {len(files)} slices at uneven z steps ({gaps.min():.1f}-{gaps.max():.1f}"
        f" mm), linearly interpolated onto {len(volume)} slices {step:.2f} mm apart"
    )
    return volume, spacing, scans[0], how


def plane_figures(per_plane: np.ndarray, combined: np.ndarray, threshold: float) -> dict:
    """Mean probability and fraction of voxels at or above ``threshold``, per plane and combined,
    and the Dice agreement between the planes' thresholded masks."""
    figures = {}
    for name, volume in zip((*multiplane.PLANES, "aggregate"), (*per_plane, combined)):
        figures[name] = {
            "mean_probability": float(np.mean(volume)),
            "fraction_at_threshold": float(np.mean(volume >= threshold)),
        }
    masks = per_plane >= threshold
    figures["agreement_dice"] = {
        f"{a}-{b}": train.metrics.dice(masks[i], masks[j])
        for i, a in enumerate(multiplane.PLANES)
        for j, b in enumerate(multiplane.PLANES)
        if i < j
    }
    return figures


def write_montage(path, cube: np.ndarray, per_plane: np.ndarray, combined: np.ndarray, how: str):
    """Axial (middle z) and coronal (middle y) views of the CT and of every probability volume."""
    columns = [("CT (Eq. 1 window)", cube)] + [
        (f"P from {name.upper()} slices", v) for name, v in zip(multiplane.PLANES, per_plane)
    ]
    columns.append((f"aggregate ({how})", combined))
    views = [("axial", lambda v: v[v.shape[0] // 2]), ("coronal", lambda v: v[:, v.shape[1] // 2])]
    fig, axes = plots.new_figure(len(views), len(columns), figsize=(2.6 * len(columns), 5.4))
    for row, (view, cut) in enumerate(views):
        for col, (title, volume) in enumerate(columns):
            ax = axes[row, col]
            if col == 0:
                ax.imshow(cut(volume), cmap="gray", vmin=-0.5, vmax=0.5)
            else:
                ax.imshow(cut(volume), cmap="magma", vmin=0.0, vmax=1.0)
            ax.set_title(f"{title}\n{view}", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def run(config: SegmentConfig, workdir) -> dict:
    """Trains, scores and runs the three-plane aggregation; writes and returns the summary."""
    started = time.perf_counter()
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "flags.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    model = models.get_model("segcaps", routing_iterations=config.routing_iterations)
    init_rng = jax.random.key(config.seed)
    size = config.image_size
    params = jax.jit(model.init)(init_rng, np.zeros((1, size, size, 1), np.float32))["params"]
    images, masks, _ = load_semiseg(config.semiseg_dir, "train", size, config.max_train)
    params, history = segmentation.train_segmentation(
        model,
        params,
        images,
        masks,
        steps=config.train_steps,
        batch_size=config.batch_size,
        optimizer=optax.adam(config.learning_rate),
        rng=jax.random.key(config.seed),
        progress=config.progress,
    )
    losses = history["loss"]
    test_images, test_masks, test_names = load_semiseg(
        config.semiseg_dir, "test", size, config.max_test
    )
    predict = make_slice_predictor(model, params, chunk=config.cube)
    dice = dice_figures(predict(test_images), test_masks, config.threshold)
    dice["names"] = test_names

    volume, spacing, first, reading = read_series(config.series)
    extent = (config.extent_mm,) * 3
    cube_hu = data.resample_volume(volume, spacing, extent_mm=extent, shape=(config.cube,) * 3)
    level, width = data.scanner_window(first.metadata.manufacturer, first.metadata.model)
    cube = np.asarray(data.window(cube_hu, level, width))  # Eq. 1
    per_plane = np.asarray(multiplane.plane_probabilities(predict, cube))  # Eq. 2
    combined = np.asarray(multiplane.aggregate(per_plane, config.aggregation))  # Eq. 3
    write_montage(workdir / "multiplane_montage.png", cube, per_plane, combined, config.aggregation)
    summary = {
        "segmentation": {
            "train_slices": len(images),
            "positive_weight": segmentation.positive_weight(masks),
            "loss_first": losses[0] if losses else None,
            "loss_last": losses[-1] if losses else None,
            "losses": losses,
            "test_dice": dice,
        },
        "series": {
            "folder": str(config.series),
            "reading": reading,
            "shape": list(volume.shape),
            "spacing_mm": [float(s) for s in spacing],
            "scanner": f"{first.metadata.manufacturer} {first.metadata.model}",
            "window": [level, width],
            "cube_shape": list(cube.shape),
            "cube_extent_mm": list(extent),
        },
        "multiplane": {
            "aggregation": config.aggregation,
            **plane_figures(per_plane, combined, config.threshold),
        },
        "seconds": time.perf_counter() - started,
    }
    (workdir / "segment_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


_FLAG_HELP = {
    "semiseg_dir": "The covid_semiseg folder (train/ and test/ with images/ and masks/).",
    "image_size": "Side of the training slices in pixels (divisible by 8).",
    "max_train": "Keep at most this many training slices (0: all).",
    "max_test": "Keep at most this many test slices (0: all).",
    "train_steps": "SegCaps training steps.",
    "batch_size": "Training batch size.",
    "learning_rate": "Adam learning rate.",
    "routing_iterations": "Routing iterations of SegCaps' capsule layers (3 in the paper).",
    "threshold": "Probability at or above which a pixel counts as lesion.",
    "series": "A DICOM series folder for the three-plane run.",
    "cube": "Side of the resampled cube in voxels (divisible by 8).",
    "extent_mm": "Physical side of the cube in mm (isotropic voxels).",
    "aggregation": "How the three planes' probabilities combine (Eq. 3).",
    "seed": "Seed of the initial model and the batch order.",
    "progress": "Show tqdm progress bars.",
}


def define_flags() -> None:
    """One absl flag per :class:`SegmentConfig` field."""
    for field in dataclasses.fields(SegmentConfig):
        name, default, text = field.name, field.default, _FLAG_HELP[field.name]
        if name == "aggregation":
            flags.DEFINE_enum(name, default, ["mean", "max"], text)
        elif isinstance(default, bool):
            flags.DEFINE_bool(name, default, text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, text, lower_bound=0)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, text)
        else:
            flags.DEFINE_string(name, default, text)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    values = flags.FLAGS
    for name in ("image_size", "cube"):
        if values[name].value < 8 or values[name].value % 8:
            raise app.UsageError(f"--{name}={values[name].value}: SegCaps needs a multiple of 8.")
    config = SegmentConfig(
        **{f.name: values[f.name].value for f in dataclasses.fields(SegmentConfig)}
    )
    print("config:", json.dumps(dataclasses.asdict(config)))
    summary = run(config, values.workdir)
    seg, planes = summary["segmentation"]["test_dice"], summary["multiplane"]
    print(f"test Dice: mean per slice {seg['mean_per_slice']:.3f}, pooled {seg['pooled']:.3f}")
    print(f"series: {summary['series']['reading']}")
    for name in (*multiplane.PLANES, "aggregate"):
        print(f"  {name}: mean P {planes[name]['mean_probability']:.3f}")
    print(f"written to {values.workdir}: segment_summary.json, multiplane_montage.png")


if __name__ == "__main__":
    define_flags()
    flags.DEFINE_string("workdir", "runs/segment_demo", "The run's folder.")
    app.run(main)
