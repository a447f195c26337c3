"""The main job: federated CapsNet with client-level DP and the ledger in the loop (Fig. 2-5).

``train_and_evaluate(config, workdir)`` ingests and normalizes the manifest (one hospital per
site), then runs rounds of:

  sample m_t hospitals -> K local steps at every hospital -> open round r on chain, submit the
  sampled deltas' hashes, validators vote with their MAE (Eq. 17-18) -> aggregate only the
  accepted deltas with clipping and Gaussian noise (Eq. 8) -> the leader finalizes round r with
  the new model's hash -> checkpoint r (named by that hash) -> account epsilon.

It resumes from ``workdir`` after a kill: from the last checkpoint, on the same chain. At the end
it evaluates the global model on held-out patients, audits the ledger against the checkpoints,
and writes ``metrics.json``, ``test_predictions.csv``, ``history.jsonl``, the ledger history and
the figures (see ``experiments/README.md``).
"""

import dataclasses
import hashlib
import json
import pathlib
import time

import jax
import numpy as np
import optax
import tqdm

import ledger
from ccfl_jax import checkpoint, data, federated, models, train
from ccfl_jax.errors import (
    CcflError,
    CheckpointIntegrityError,
    FederatedConfigError,
    PrivacyBudgetExceededError,
)
from experiments import consensus_round, evaluation, job_report
from experiments.job_config import JobConfig, sampling_rate


@dataclasses.dataclass(frozen=True)
class Problem:
    """Everything fixed for a run: data, model, and the algorithm built from the config."""

    dataset: data.FederatedDataset
    model: object
    algorithm: federated.FederatedAlgorithm
    train_data: dict
    predict: object  # predict(params, images [N, S, S, 1]) -> [N] P(covid)


def build_problem(config: JobConfig) -> Problem:
    """Loads the data and builds the model and the federated algorithm of ``config``."""
    dataset = data.load_federated_dataset(
        config.manifest,
        image_size=config.image_size,
        seed=config.seed,
        cache_dir=config.cache_dir or None,
        max_per_hospital=config.max_per_hospital or None,
        progress=config.progress,
    )
    num_hospitals = len(dataset.hospitals)
    check_job_config(config, list(dataset.hospitals))
    model = models.get_model(config.model)
    loss_fn = train.make_loss_fn(model, reconstruction_weight=config.reconstruction_weight)
    local_update = federated.make_local_update(
        loss_fn,
        optax.adam(config.hospital_learning_rate),
        local_steps=config.local_steps,
        batch_size=config.batch_size,
    )
    if config.sampling == "fixed":
        sampler = federated.fixed_size_sampler(num_hospitals, config.hospitals_per_round)
    else:
        sampler = federated.poisson_sampler(num_hospitals, sampling_rate(config, num_hospitals))
    aggregator = federated.dp_aggregate(
        config.clip_norm,
        config.noise_multiplier,
        server_optimizer=federated.make_server_optimizer(
            config.server_optimizer, config.server_learning_rate
        ),
        # Eq. 8 divides by m_t; a fixed public m_t keeps each hospital's influence <= S / m_t.
        denominator=float(config.hospitals_per_round) if config.noise_multiplier > 0 else None,
    )
    laplace = None
    if config.laplace_epsilon > 0:
        laplace = federated.LocalLaplace(config.laplace_sensitivity, config.laplace_epsilon)
    algorithm = federated.federated_averaging(
        local_update,
        aggregator,
        sampler,
        strategy=config.strategy,
        local_laplace=laplace,
        skip_unsampled=True,  # only the sampled hospitals train; the others' deltas are zeros
    )
    train_data = federated.stack_hospital_data(
        dataset.train.images, dataset.train.labels, dataset.train.mask
    )
    return Problem(dataset, model, algorithm, train_data, train.make_predict_fn(model))


def held_out_scans(dataset: data.FederatedDataset) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each hospital's scans for scoring others' updates: its validation split, or its
    training split when it has no validation rows (the update's author never saw either)."""
    scans = []
    for h in range(len(dataset.hospitals)):
        split = dataset.val if np.asarray(dataset.val.mask[h]).any() else dataset.train
        mask = np.asarray(split.mask[h])
        scans.append((np.asarray(split.images[h])[mask], np.asarray(split.labels[h])[mask]))
    return scans


def poison(deltas, hospital_index: int, scale: float):
    """The attack of the poisoned-hospital experiment: one hospital's delta times ``scale``."""
    factor = np.ones(jax.tree.leaves(deltas)[0].shape[0], np.float32)
    factor[hospital_index] = scale
    return jax.tree.map(lambda d: d * factor.reshape((-1,) + (1,) * (d.ndim - 1)), deltas)


def validation_metrics(problem: Problem, params) -> dict:
    """Per hospital: accuracy of the global model on its validation split (None when empty)."""
    scores = evaluation.split_scores(problem.predict, params, problem.dataset.val)
    labels = evaluation.split_labels(problem.dataset.val)
    accuracy = [
        float(np.mean((s >= 0.5) == y)) if len(y) else None  # None: no validation rows
        for s, y in zip(scores, labels, strict=True)
    ]
    pooled_y, pooled_s = np.concatenate(labels), np.clip(np.concatenate(scores), 1e-6, 1 - 1e-6)
    bce = -np.mean(pooled_y * np.log(pooled_s) + (1 - pooled_y) * np.log(1 - pooled_s))
    return {"val_accuracy": accuracy, "val_loss": float(bce)}


def _flags(config: JobConfig) -> dict:
    return dataclasses.asdict(config)


def _read_history(workdir: pathlib.Path, upto: int) -> list[dict]:
    path = workdir / "history.jsonl"
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [row for row in rows if row["round"] <= upto]


def _write_history(workdir: pathlib.Path, rows: list[dict]) -> None:
    path = workdir / "history.jsonl"
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows))
    tmp.replace(path)


# Settings a resumed run may change: they alter neither the model, the data nor the privacy.
RESUMABLE_FIELDS = frozenset({"rounds", "progress", "compare_local", "bootstrap", "cache_dir"})


class ConfigMismatchError(CcflError, ValueError):
    """A resume asked for settings that differ from the run's own (``config.json``)."""


def check_resume_config(config: JobConfig, workdir: pathlib.Path) -> None:
    """Refuses to resume ``workdir`` with different data, model, privacy or ledger settings.

    Changing the seed or manifest would reshuffle the patient split (test scans the model
    trained on), changing sigma or S would make the reported epsilon wrong, and changing the
    image size cannot load the checkpoints; only ``RESUMABLE_FIELDS`` may differ.

    Raises:
      ConfigMismatchError: naming every differing setting, before anything is written.
    """
    path = workdir / "config.json"
    if not path.exists():
        return
    stored = json.loads(path.read_text())
    changed = {
        name: (stored.get(name), value)
        for name, value in _flags(config).items()
        if name not in RESUMABLE_FIELDS and stored.get(name) != value
    }
    if changed:
        listing = ", ".join(f"--{k}={new!r} (run has {old!r})" for k, (old, new) in changed.items())
        raise ConfigMismatchError(
            f"{workdir} was started with other settings: {listing}. Resume with the run's own "
            f"settings (see {path}; only {sorted(RESUMABLE_FIELDS)} may change), or give a new "
            "--workdir."
        )


def check_job_config(config: JobConfig, hospitals: list[str]) -> None:
    """Checks the settings that name hospitals or count them against the manifest's hospitals.

    Raises:
      FederatedConfigError: naming the flag and the allowed values.
    """
    if not 1 <= config.hospitals_per_round <= len(hospitals):
        raise FederatedConfigError(
            f"--hospitals_per_round={config.hospitals_per_round}: the manifest has "
            f"{len(hospitals)} hospitals; pick 1 to {len(hospitals)}."
        )
    if config.poison_hospital and config.poison_hospital not in hospitals:
        raise FederatedConfigError(
            f"--poison_hospital={config.poison_hospital!r} is not a hospital of the manifest; "
            f"pick one of {hospitals}."
        )


class LedgerCheckpointMismatch(CheckpointIntegrityError):
    """The run's checkpoints and its ledger disagree in a way a resume cannot repair."""


def _aggregate_round(problem, state, sampled, accepted, deltas, metrics):
    mask = np.asarray(sampled) & np.asarray(accepted)
    return problem.algorithm.aggregate(state, deltas, mask, metrics["num_examples"])


def _local_deltas(problem, state, config):
    deltas, metrics = problem.algorithm.compute_deltas(state, problem.train_data)
    if config.poison_hospital:
        index = problem.dataset.hospitals.index(config.poison_hospital)
        deltas = poison(deltas, index, config.poison_scale)
    return deltas, metrics


def _recover_finalized_round(problem, config, consortium, state, workdir):
    """A kill after the chain finalized round r but before checkpoint r was written: recompute
    round r (deterministic from the seed) with the accepted set the chain recorded, check that
    it hashes to what the chain holds, and write the checkpoint."""
    r = int(state.round) + 1
    sampled = np.asarray(problem.algorithm.sample(state))
    accepted = np.array(consortium.accepted_mask(r), bool)  # hospital order
    deltas, metrics = _local_deltas(problem, state, config)
    state, _ = _aggregate_round(problem, state, sampled, accepted, deltas, metrics)
    on_chain = consortium.finalized_model_hash(r)
    if checkpoint.model_hash(state.params) != on_chain:
        raise LedgerCheckpointMismatch(
            f"{workdir}: recomputing round {r} gives model {checkpoint.model_hash(state.params)[:12]}"
            f" but the chain finalized {on_chain[:12]}; resume on the machine and version "
            "that wrote the run, or start a new run directory."
        )
    federated.save_server_state(str(workdir), state, flags=_flags(config))
    return state


def start_or_resume(problem: Problem, config: JobConfig, workdir: pathlib.Path, consortium):
    """The server state to continue from, reconciled with the chain. Returns (state, resumed)."""
    rng = jax.random.key(config.seed)
    init_rng, run_rng = jax.random.split(rng)
    params = train.init_params(problem.model, init_rng, config.image_size)
    initial = problem.algorithm.init(params, run_rng)
    if checkpoint.latest_checkpoint(workdir) is None:
        federated.save_server_state(str(workdir), initial, flags=_flags(config))
    state, _, info = federated.restore_server_state(str(workdir), initial)
    if consortium is None:
        return state, info.round
    last = consortium.last_finalized_round()
    if last == info.round + 1:
        state = _recover_finalized_round(problem, config, consortium, state, workdir)
    elif last != info.round or (last and consortium.finalized_model_hash(last) != info.hash):
        raise LedgerCheckpointMismatch(
            f"{workdir}: the chain's last finalized round is {last} but the latest checkpoint is "
            f"round {info.round} ({info.hash[:12]}); run `python -m ledger.audit --run_dir "
            f"{workdir}` to see where they part, and start a new run directory."
        )
    return state, info.round


def register_datasets(consortium, dataset: data.FederatedDataset) -> None:
    """Fig. 3: each hospital records the hash of its training set (file checksums, never scans)."""
    for h, name in enumerate(dataset.hospitals):
        rows = dataset.rows["train"][h]
        listing = "\n".join(sorted(r.extra.get("sha256") or str(r.path) for r in rows))
        digest = hashlib.sha256(listing.encode()).hexdigest()
        consortium.hospital(name).share_record(digest, "chest_ct_slices", len(rows))


def run_round(problem, config, workdir, state, consortium, held_out, accountant):
    """One federated round with the ledger in the loop; returns (state, accountant, record)."""
    hospitals = list(problem.dataset.hospitals)
    r = int(state.round) + 1
    seconds = {}
    tic = time.perf_counter()
    eps = float("inf")
    if accountant is not None:
        accountant, eps = federated.account_round(accountant)  # refuses a round over budget
    sampled = np.asarray(problem.algorithm.sample(state))
    deltas, metrics = _local_deltas(problem, state, config)
    deltas = jax.block_until_ready(deltas)
    seconds["local training"] = time.perf_counter() - tic
    tic = time.perf_counter()
    votes = None
    if consortium is not None:
        votes = consensus_round.run_round_votes(
            consortium,
            r,
            checkpoint.model_hash(state.params),
            hospitals,
            sampled,
            deltas,
            metrics,
            state.params,
            problem.predict,
            held_out,
            score=config.score,
        )
        accepted = votes.accepted
    else:
        accepted = sampled
    seconds["ledger: submit + vote"] = time.perf_counter() - tic
    tic = time.perf_counter()
    state, diagnostics = _aggregate_round(problem, state, sampled, accepted, deltas, metrics)
    new_hash = checkpoint.model_hash(state.params)
    seconds["aggregate"] = time.perf_counter() - tic
    tic = time.perf_counter()
    if consortium is not None:
        consortium.finalize(r, new_hash)  # the chain first: a checkpoint always has its round
    seconds["ledger: finalize"] = time.perf_counter() - tic
    tic = time.perf_counter()
    info = federated.save_server_state(str(workdir), state, flags=_flags(config))
    seconds["checkpoint"] = time.perf_counter() - tic
    mask = sampled & accepted
    local_loss = np.asarray(metrics["loss_last"])[sampled]
    record = {
        "round": r,
        "sampled": [h for h, s in zip(hospitals, sampled, strict=True) if s],
        "accepted": [h for h, a in zip(hospitals, mask, strict=True) if a],
        "local_loss": float(local_loss.mean()) if local_loss.size else float("nan"),
        "local_accuracy": {
            h: float(a) for h, a, s in zip(hospitals, metrics["accuracy"], sampled) if s
        },
        "delta_norms": np.asarray(diagnostics.norms).tolist(),
        "clipped_fraction": float(diagnostics.clipped_fraction),
        "vc": float(diagnostics.vc),
        "us": float(diagnostics.us),
        "epsilon": eps,
        "model_hash": info.hash,
        "votes": {f"{v}->{h}": mae for (v, h), mae in (votes.scores if votes else {}).items()},
        "leader": votes.leader if votes else None,
        "seconds": seconds,
    }
    record.update(validation_metrics(problem, state.params))
    return state, accountant, record


def train_and_evaluate(config: JobConfig, workdir) -> dict:
    """Runs (or resumes) the whole job in ``workdir``; returns the contents of metrics.json."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    check_resume_config(config, workdir)  # before anything in workdir is written
    started = time.perf_counter()
    problem = build_problem(config)
    hospitals = list(problem.dataset.hospitals)
    if not (workdir / "config.json").exists():
        (workdir / "config.json").write_text(json.dumps(_flags(config), indent=1))
    (workdir / "data_summary.txt").write_text(data.summary_table(problem.dataset) + "\n")
    consortium = None
    if config.use_ledger:
        fresh = not (workdir / "ledger" / "deployment.json").exists()
        consortium = ledger.open_or_resume(
            workdir,
            hospitals,
            num_validators=config.num_validators,
            quorum=config.quorum,
            gamma=config.gamma,
        )
        if fresh:
            register_datasets(consortium, problem.dataset)
            ledger.workspace.save(consortium, workdir)
    state, resumed_from = start_or_resume(problem, config, workdir, consortium)
    rows = _read_history(workdir, int(state.round))
    accountant = None
    if config.noise_multiplier > 0:
        accountant = federated.accountant_init(
            config.noise_multiplier,
            sampling_rate(config, len(hospitals)),
            config.delta,
            target_epsilon=config.target_epsilon or None,
            rounds=int(state.round),
        )
    held_out = held_out_scans(problem.dataset)
    stopped_by_budget = None
    bar = tqdm.tqdm(
        total=config.rounds, initial=int(state.round), desc="rounds", disable=not config.progress
    )
    while int(state.round) < config.rounds:
        try:
            state, accountant, record = run_round(
                problem, config, workdir, state, consortium, held_out, accountant
            )
        except PrivacyBudgetExceededError as err:
            stopped_by_budget = str(err)
            break
        rows.append(record)
        _write_history(workdir, rows)
        bar.update(1)
        bar.set_postfix(
            loss=f"{record['local_loss']:.3f}",
            eps=f"{record['epsilon']:.3g}",
            accepted=len(record["accepted"]),
        )
    bar.close()
    return job_report.write_report(
        problem,
        config,
        workdir,
        state,
        rows,
        consortium,
        resumed_from=resumed_from,
        stopped_by_budget=stopped_by_budget,
        seconds=time.perf_counter() - started,
    )


def describe(metrics: dict, workdir) -> str:
    """A short text report of a finished run: what the numbers are and where the files are."""
    privacy = metrics["privacy"]
    lines = [
        f"rounds completed: {metrics['rounds_completed']} "
        f"(resumed from round {metrics['resumed_from_round']}; strategy {metrics['strategy']})",
        f"pooled test, threshold {metrics['operating_point']['threshold']:.3f} "
        f"({metrics['operating_point']['chosen_by']}):",
        f"  {metrics['headline']}",
    ]
    for name, auc in metrics["test"]["within_hospital_auc"].items():
        lines.append(
            f"  AUC within {name}: {auc['value']:.3f} [{auc['low']:.3f}, {auc['high']:.3f}]"
        )
    lines.append(
        f"privacy: (epsilon, delta) = ({privacy['epsilon']:.3g}, {privacy['delta']:g}) at "
        f"sigma={privacy['noise_multiplier']}, S={privacy['clip_norm']}"
    )
    if metrics.get("stopped_by_privacy_budget"):
        lines.append(f"stopped early: {metrics['stopped_by_privacy_budget']}")
    if "ledger_audit" in metrics:
        verdict = "OK" if metrics["ledger_audit"]["ok"] else "TAMPERING"
        lines.append(f"ledger audit: {verdict} {metrics['ledger_audit']['problems'] or ''}")
    written = sorted(p.name for p in pathlib.Path(workdir).iterdir() if p.is_file())
    lines.append(f"artifacts in {workdir}: {', '.join(written)}")
    return "\n".join(lines)
