"""Runs every benchmark suite and writes benchmarks/results.json and benchmarks/results.md.

Each suite is a module ``benchmarks/<name>_bench.py`` with ``run(quick: bool) -> dict``: a flat or
nested dict of measured figures (seconds, ratios, bytes). Ratios compare against a baseline
measured in the same run, because these machines are noisy.

Usage (from the repo root):  python -m benchmarks.run [--quick] [--only NAME,NAME]
"""

import importlib
import json
import pathlib
import platform
import time

from absl import app, flags

_QUICK = flags.DEFINE_bool("quick", False, "Fewer repetitions and smaller inputs.")
_ONLY = flags.DEFINE_list("only", [], "Run only these suites (names without _bench).")
_OUT = flags.DEFINE_string("out", "benchmarks/results.json", "Where to write the JSON figures.")

HERE = pathlib.Path(__file__).parent


def suite_names() -> list[str]:
    """Names of the suites found beside this file, e.g. ``['ingest', 'routing']``."""
    return sorted(p.stem.removesuffix("_bench") for p in HERE.glob("*_bench.py"))


def _flatten(prefix: str, value, rows: list) -> None:
    if isinstance(value, dict):
        for key, sub in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, rows)
    else:
        rows.append((prefix, value))


def to_markdown(results: dict) -> str:
    """A two-column markdown table of every figure in ``results``."""
    rows: list = []
    _flatten("", results["suites"], rows)
    lines = ["| figure | value |", "|---|---|"]
    for key, value in rows:
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        lines.append(f"| {key} | {shown} |")
    return "\n".join(lines) + "\n"


def main(argv):
    del argv
    names = _ONLY.value or suite_names()
    import jax

    results = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "backend": jax.default_backend(),
            "devices": [str(d) for d in jax.devices()],
        },
        "quick": _QUICK.value,
        "suites": {},
    }
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}_bench")
        start = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        figures = module.run(quick=_QUICK.value)
        figures["suite_wall_s"] = time.perf_counter() - start
        results["suites"][name] = figures
        print(json.dumps(figures, indent=2), flush=True)
    out = pathlib.Path(_OUT.value)
    out.write_text(json.dumps(results, indent=2) + "\n")
    out.with_suffix(".md").write_text(to_markdown(results))
    print(f"wrote {out} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    app.run(main)
