r"""Loads a manifest into per-hospital splits, prints the summary, writes previews and JSON.

Run from the repository root:

  python experiments/prepare_data.py --flagfile=experiments/configs/prepare_data.DEMO.flags

Writes, under --out: summary.txt (the table), summary.json (per hospital and split: images per
class, patients, split unit, scanners, and the files of each split), flags.json, and
preview_<hospital>.png (normalized training slices with their labels).
"""

import json
import pathlib

from absl import app, flags, logging

from ccfl_jax import data
from experiments import plots

_MANIFEST = flags.DEFINE_string("manifest", "data/labels.csv", "Manifest CSV.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 128, "Side of the normalized slices (pixels).")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the patient-level split.")
_OUT = flags.DEFINE_string("out", "runs/prepare_data", "Output folder.")
_CACHE_DIR = flags.DEFINE_string("cache_dir", None, "Folder of the npz ingest cache.")
_MAX_PER_HOSPITAL = flags.DEFINE_integer("max_per_hospital", None, "Rows kept per hospital.")
_WINDOW = flags.DEFINE_string(
    "window", "preset", "'preset' (per scanner), 'header' (DICOM default) or 'LEVEL,WIDTH' in HU."
)
_EXTENT_MM = flags.DEFINE_float(
    "extent_mm", 334.0, "In-plane field of view of CT slices (mm); 0 fits each slice's longer side."
)
_ON_ERROR = flags.DEFINE_enum("on_error", "raise", ["raise", "collect"], "Bad rows: raise/collect.")
_PREVIEW_PER_CLASS = flags.DEFINE_integer("preview_per_class", 6, "Slices per class in previews.")


def _window_setting(text: str):
    if text in ("preset", "header"):
        return None if text == "preset" else "header"
    try:
        level, width = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise app.UsageError(f"--window={text!r}: use preset, header or LEVEL,WIDTH.") from exc
    return (level, width)


def summary_dict(ds: data.FederatedDataset) -> dict:
    """JSON-ready summary: per hospital and split, counts and the files used."""
    out = {}
    for h, name in enumerate(ds.hospitals):
        splits = {}
        for s, rows in ds.rows.items():
            splits[s] = {
                "covid": sum(r.label for r in rows[h]),
                "non_covid": sum(1 - r.label for r in rows[h]),
                "patients": sorted({r.patient_id for r in rows[h] if r.patient_id}),
                "files": [str(r.path) for r in rows[h]],
            }
        out[name] = {"scanners": ds.scanners[h], "split_unit": ds.split_unit[h], "splits": splits}
    return {"hospitals": out, "failures": [list(f) for f in ds.failures]}


def write_preview(ds: data.FederatedDataset, h: int, path: pathlib.Path, per_class: int) -> None:
    """A grid of normalized training slices of hospital ``h``, one row per class."""
    arrays, rows = ds.train, ds.rows["train"][h]
    fig, axes = plots.new_figure(2, per_class, figsize=(1.6 * per_class, 3.6), squeeze=False)
    for label, row_axes in zip((1, 0), axes, strict=True):
        picks = [j for j, r in enumerate(rows) if r.label == label][:per_class]
        for k, ax in enumerate(row_axes):
            ax.axis("off")
            if k < len(picks):
                ax.imshow(arrays.images[h, picks[k], ..., 0], cmap="gray", vmin=-0.5, vmax=0.5)
                ax.set_title(
                    ("covid" if label else "non-covid") + f"\n{rows[picks[k]].path.name[:14]}",
                    fontsize=6,
                )
    fig.suptitle(f"{ds.hospitals[h]} (train, normalized to [-0.5, 0.5])", fontsize=8)
    fig.savefig(path, dpi=100)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    out = pathlib.Path(_OUT.value)
    out.mkdir(parents=True, exist_ok=True)
    holders = (
        _MANIFEST,
        _IMAGE_SIZE,
        _SEED,
        _OUT,
        _CACHE_DIR,
        _MAX_PER_HOSPITAL,
        _WINDOW,
        _EXTENT_MM,
        _ON_ERROR,
        _PREVIEW_PER_CLASS,
    )
    resolved = {h.name: h.value for h in holders}
    logging.info("flags: %s", resolved)
    (out / "flags.json").write_text(json.dumps(resolved, indent=2) + "\n")
    ds = data.load_federated_dataset(
        _MANIFEST.value,
        image_size=_IMAGE_SIZE.value,
        seed=_SEED.value,
        window=_window_setting(_WINDOW.value),
        extent_mm=_EXTENT_MM.value or None,
        max_per_hospital=_MAX_PER_HOSPITAL.value,
        cache_dir=_CACHE_DIR.value,
        on_error=_ON_ERROR.value,
    )
    table = data.summary_table(ds)
    print(table)
    (out / "summary.txt").write_text(table + "\n")
    (out / "summary.json").write_text(json.dumps(summary_dict(ds), indent=2) + "\n")
    for h, name in enumerate(ds.hospitals):
        write_preview(ds, h, out / f"preview_{name}.png", _PREVIEW_PER_CLASS.value)
    print(f"wrote {out}/summary.txt, summary.json and {len(ds.hospitals)} previews")


if __name__ == "__main__":
    app.run(main)
