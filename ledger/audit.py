"""Audits a run: rebuild the ledger's history and verify the checkpoints against it.

The main job writes ``run_dir/checkpoints/round_{r:06d}-{h[:12]}/params.msgpack`` where h
is the hex sha256 of that file: the global model after r rounds. Round r opened with
checkpoint r - 1's hash and was finalized with checkpoint r's. The audit recomputes every
hash with hashlib alone and reports as TAMPERING: a changed or renamed checkpoint, a
finalized round without its checkpoint, a checkpoint of a round the chain never
finalized, a broken chain of model hashes, or missing rounds.

Usage:  python -m ledger.audit --run_dir DIR [--json]
Exit status: 0 consistent, 1 tampering, 2 no ledger in DIR.
"""

import dataclasses
import hashlib
import json
import pathlib
import re
import sys

from ledger import errors, history, workspace

_CHECKPOINT = re.compile(r"round_(\d{6})-([0-9a-f]{12})")


@dataclasses.dataclass
class AuditReport:
    """The outcome of an audit.

    Attributes:
      history: the rebuilt :class:`~ledger.history.History`.
      names: address -> hospital name.
      checkpoints: round -> hex sha256 of its params.msgpack (None if unreadable).
      problems: human-readable tampering findings; empty when consistent.
    """

    history: history.History
    names: dict
    checkpoints: dict
    problems: list

    @property
    def ok(self) -> bool:
        return not self.problems


def file_sha256(path: pathlib.Path) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def scan_checkpoints(run_dir: pathlib.Path, problems: list) -> dict[int, str | None]:
    """round -> hex sha256 of each checkpoint's params.msgpack, noting bad entries."""
    found: dict[int, str | None] = {}
    root = pathlib.Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return found
    for entry in sorted(root.glob("round_*")):
        match = _CHECKPOINT.fullmatch(entry.name)
        if not match:
            problems.append(f"checkpoint {entry.name}: name is not round_RRRRRR-<12 hex>.")
            continue
        r, prefix = int(match.group(1)), match.group(2)
        params = entry / "params.msgpack"
        if r in found:
            problems.append(f"checkpoint {entry.name}: a second checkpoint for round {r}.")
            continue
        if not params.is_file():
            problems.append(f"checkpoint {entry.name}: params.msgpack is missing.")
            found[r] = None
            continue
        found[r] = file_sha256(params)
        if not found[r].startswith(prefix):
            problems.append(
                f"checkpoint {entry.name}: its file hashes to {found[r][:12]}..., not the "
                f"{prefix} in its name: the file was changed or renamed."
            )
    return found


def expected_hashes(hist: history.History, problems: list) -> dict[int, str]:
    """round -> model hash the chain vouches for (0: round 1's start; r: round r's end)."""
    expected: dict[int, str] = {}
    rounds = sorted(hist.rounds)
    if rounds != list(range(1, len(rounds) + 1)):
        problems.append(f"rounds on chain are {rounds}: some rounds are missing.")
    for r in rounds:
        entry = hist.rounds[r]
        if r == 1:
            expected[0] = entry.model_hash.hex()
        elif r - 1 in expected and expected[r - 1] != entry.model_hash.hex():
            problems.append(f"round {r} opened from a model that round {r - 1} did not finalize.")
        if entry.new_model_hash is not None:
            expected[r] = entry.new_model_hash.hex()
    return expected


def audit(run_dir: str | pathlib.Path) -> AuditReport:
    """Rebuilds the run's ledger history and verifies its checkpoints.

    Raises:
      LedgerNotFound: the run has no ledger.
    """
    deployment = workspace.read_deployment(run_dir)
    consortium = workspace.resume(run_dir)
    hist = history.rebuild(consortium.chain, consortium.contract, deployment.get("deploy_block", 0))
    problems: list[str] = []
    checkpoints = scan_checkpoints(pathlib.Path(run_dir), problems)
    expected = expected_hashes(hist, problems)
    for r, on_chain in sorted(expected.items()):
        if r not in checkpoints:
            problems.append(
                f"round {r}: the chain records model {on_chain[:12]}... but no checkpoint exists."
            )
        elif checkpoints[r] is not None and checkpoints[r] != on_chain:
            problems.append(
                f"round {r}: checkpoint hashes to {checkpoints[r][:12]}..., the chain recorded "
                f"{on_chain[:12]}...: the checkpoint does not match the ledger."
            )
    for r in sorted(set(checkpoints) - set(expected)):
        if r > 0 or hist.rounds:
            problems.append(f"checkpoint of round {r}: no finalized round on chain vouches for it.")
    names = {address: name for name, address in deployment["hospitals"].items()}
    return AuditReport(history=hist, names=names, checkpoints=checkpoints, problems=problems)


def verify(run_dir: str | pathlib.Path) -> AuditReport:
    """Like :func:`audit`, but raises when the checkpoints and the ledger disagree.

    Raises:
      TamperingDetected: listing every finding.
    """
    report = audit(run_dir)
    if not report.ok:
        raise errors.TamperingDetected(
            f"{run_dir}: " + "; ".join(report.problems) + " Restore the run from a trusted copy."
        )
    return report


def _jsonable(value):
    if isinstance(value, bytes):
        return value.hex()
    if dataclasses.is_dataclass(value):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def to_json(report: AuditReport) -> dict:
    """The report as JSON-ready data (bytes as hex)."""
    return {
        "ok": report.ok,
        "problems": report.problems,
        "names": report.names,
        "checkpoints": _jsonable(report.checkpoints),
        "history": _jsonable(report.history),
    }


def to_text(report: AuditReport) -> str:
    """A readable history, then the verdict."""
    name = lambda a: report.names.get(a, a)  # noqa: E731
    h = report.history
    lines = [
        f"members: {', '.join(name(m) + (' (founder)' if f else '') for m, _, f in h.members)}"
    ]
    for rid, rec in sorted(h.records.items()):
        lines.append(
            f"record {rid}: {rec['data_type']} ({rec['size']} B) hash {bytes(rec['data_hash']).hex()[:12]}"
        )
    for ret in h.retrievals:
        lines.append(
            f"retrieval of record {ret['record_id']} by a {ret['requester_type']} (count {ret['tx_count']})"
        )
    for r, entry in sorted(h.rounds.items()):
        end = entry.new_model_hash.hex()[:12] if entry.new_model_hash else "OPEN"
        lines.append(
            f"round {r}: model {entry.model_hash.hex()[:12]} -> {end}, leader {name(entry.leader)}, "
            f"validators {[name(v) for v in entry.validators]}"
        )
        for update in entry.updates.values():
            verdict = {True: "accepted", False: "rejected", None: "pending"}[update.accepted]
            scores = ", ".join(f"{name(v)}={s / 1e6:.4f}" for v, s, _ in update.votes)
            lines.append(
                f"  {name(update.hospital)}: {verdict} (n={update.num_examples}; MAE votes {scores})"
            )
    if report.ok:
        lines.append(f"OK: {len(report.checkpoints)} checkpoints match the ledger.")
    else:
        lines.append("TAMPERING:")
        lines.extend(f"  - {p}" for p in report.problems)
    return "\n".join(lines)


def main(argv=None) -> int:
    """Command line: ``python -m ledger.audit --run_dir DIR [--json]``; returns the exit status."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m ledger.audit", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--run_dir", required=True, help="the run directory to audit")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    try:
        report = audit(args.run_dir)
    except errors.LedgerNotFound as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(to_json(report), indent=1) if args.json else to_text(report))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
