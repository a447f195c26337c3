"""Checkpoints named by the content hash of the global model (the ledger records the hash).

Layout, fixed by contract with ``ledger`` (which re-hashes without JAX)::

  run_dir/checkpoints/round_{r:06d}-{h[:12]}/   the state after r completed rounds (0: initial)
    params.msgpack   flax.serialization.to_bytes(global_params); h = sha256 hex of these bytes
    state/           the full server state (round, optimizer state, rng, ...) saved with orbax
    meta.json        {"round", "hash", "timestamp", "flags"}

A checkpoint is built in a hidden temporary folder beside the others and renamed into place in
one step, so a process killed mid-write leaves the last complete checkpoint intact and the
half-written one is never listed. Loading re-hashes ``params.msgpack`` and refuses a mismatch.
"""

import hashlib
import json
import os
import pathlib
import re
import shutil
import tempfile
import time
from typing import Any, NamedTuple

import flax.serialization
import jax
import numpy as np
import orbax.checkpoint as ocp

from ccfl_jax.errors import CheckpointIntegrityError, CheckpointNotFoundError
from ccfl_jax.typing import Params

_NAME = re.compile(r"^round_(\d{6})-([0-9a-f]{12})$")


class CheckpointInfo(NamedTuple):
    """A complete checkpoint on disk.

    Attributes:
      path: its folder.
      round: rounds completed when it was written.
      hash: sha256 hex digest of its ``params.msgpack``.
    """

    path: pathlib.Path
    round: int
    hash: str


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def model_hash(params: Params) -> str:
    """sha256 hex digest of ``flax.serialization.to_bytes(params)``.

    Examples:
      >>> import numpy as np
      >>> len(model_hash({'w': np.zeros(3, np.float32)}))
      64
    """
    return _sha256(flax.serialization.to_bytes(params))


def delta_hash(delta: Params) -> str:
    """sha256 hex digest of ``flax.serialization.to_bytes(delta)`` (one hospital's delta)."""
    return _sha256(flax.serialization.to_bytes(delta))


def checkpoint_dir(run_dir: str | os.PathLike) -> pathlib.Path:
    """``run_dir/checkpoints``."""
    return pathlib.Path(run_dir) / "checkpoints"


def save(
    run_dir: str | os.PathLike,
    round_index: int,
    params: Params,
    state: Any,
    *,
    flags: dict | None = None,
) -> CheckpointInfo:
    """Writes one checkpoint atomically.

    Args:
      run_dir: the run's folder.
      round_index: rounds completed (0 for the initial model).
      params: the global params; their bytes define the hash.
      state: a pytree of arrays with everything else needed to resume (round, optimizer
        state, rng, accountant inputs); saved with orbax.
      flags: JSON-able settings of the run, stored in meta.json.

    Returns:
      The :class:`CheckpointInfo` of what was written.
    """
    params = jax.device_get(params)
    data = flax.serialization.to_bytes(params)
    digest = _sha256(data)
    root = checkpoint_dir(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"round_{round_index:06d}-{digest[:12]}"
    if final.exists():
        return _verify(final)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        _write(tmp / "params.msgpack", data)
        with ocp.PyTreeCheckpointer() as checkpointer:
            checkpointer.save((tmp / "state").absolute(), jax.device_get(state))
        meta = {"round": round_index, "hash": digest, "timestamp": time.time(), "flags": flags}
        _write(tmp / "meta.json", json.dumps(meta, indent=2, sort_keys=True).encode())
        os.rename(tmp, final)  # atomic on one filesystem
        _fsync_dir(root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return CheckpointInfo(final, round_index, digest)


def list_checkpoints(run_dir: str | os.PathLike) -> list[CheckpointInfo]:
    """Complete checkpoints by round, oldest first (names only; nothing is verified)."""
    root = checkpoint_dir(run_dir)
    found = []
    for path in root.iterdir() if root.is_dir() else ():
        match = _NAME.match(path.name)
        if match and path.is_dir():
            found.append(CheckpointInfo(path, int(match.group(1)), match.group(2)))
    return sorted(found, key=lambda info: info.round)


def latest_checkpoint(run_dir: str | os.PathLike) -> CheckpointInfo | None:
    """The verified checkpoint with the most rounds, or None when there is none.

    Raises:
      CheckpointIntegrityError: if its params do not hash to its name and meta.json.
    """
    found = list_checkpoints(run_dir)
    return _verify(found[-1].path) if found else None


def restore(
    run_dir: str | os.PathLike,
    params_target: Params,
    state_target: Any,
    *,
    round_index: int | None = None,
) -> tuple[Params, Any, CheckpointInfo]:
    """Loads a verified checkpoint (the latest, or the one of ``round_index``).

    Args:
      run_dir: the run's folder.
      params_target: a params pytree of the right structure (e.g. freshly initialized).
      state_target: a state pytree of the right structure, as passed to :func:`save`.
      round_index: which round; None for the latest.

    Returns:
      (params, state, info).

    Raises:
      CheckpointNotFoundError: if no such checkpoint exists.
      CheckpointIntegrityError: if its bytes do not hash to its recorded hash.
    """
    found = list_checkpoints(run_dir)
    if round_index is not None:
        found = [info for info in found if info.round == round_index]
    if not found:
        which = "any round" if round_index is None else f"round {round_index}"
        raise CheckpointNotFoundError(
            f"no complete checkpoint for {which} under {checkpoint_dir(run_dir)}: start a new "
            "run, or point run_dir at the folder of the run to resume."
        )
    info = _verify(found[-1].path)
    data = (info.path / "params.msgpack").read_bytes()
    params = flax.serialization.from_bytes(params_target, data)
    with ocp.PyTreeCheckpointer() as checkpointer:
        state = checkpointer.restore(
            (info.path / "state").absolute(),
            item=jax.device_get(state_target),
        )
    state = jax.tree.map(lambda t, x: np.asarray(x, dtype=np.asarray(t).dtype), state_target, state)
    return params, state, info


def _verify(path: pathlib.Path) -> CheckpointInfo:
    match = _NAME.match(path.name)
    data = (path / "params.msgpack").read_bytes()
    digest = _sha256(data)
    meta = json.loads((path / "meta.json").read_text())
    if not match or not digest.startswith(match.group(2)) or meta.get("hash") != digest:
        raise CheckpointIntegrityError(
            f"{path}/params.msgpack hashes to {digest[:12]}..., but its name and meta.json say "
            f"{path.name.rsplit('-', 1)[-1]} / {str(meta.get('hash'))[:12]}...: the checkpoint "
            "was altered or corrupted; restore an earlier round or delete this folder."
        )
    return CheckpointInfo(path, int(match.group(1)), digest)


def _write(path: pathlib.Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: pathlib.Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
