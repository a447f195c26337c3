"""The main job's settings: one frozen dataclass, and absl flags generated from its fields.

Each field of :class:`JobConfig` becomes a flag of the same name, with the field's default and
the help text in its metadata, so the two never drift apart. Flags are read only in a script's
``main`` (``config_from_flags``); library code takes a ``JobConfig``.
"""

import dataclasses

from absl import flags


def config_field(default, help_text: str, **kwargs):
    """A config dataclass field whose flag gets ``help_text`` (and ``enum=(...)`` if given)."""
    return dataclasses.field(default=default, metadata={"help": help_text, **kwargs})


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Federated CapsNet with DP and the ledger in the loop (see ``experiments/README.md``)."""

    # Data.
    manifest: str = config_field(
        "data/labels.csv", "Manifest CSV (path, hospital/site, label, ...)."
    )
    image_size: int = config_field(64, "Side of the normalized slices in pixels (divisible by 8).")
    seed: int = config_field(
        0, "Seed of the split, the initial model and every round's randomness."
    )
    cache_dir: str = config_field("runs/cache", "Folder of the ingest cache ('' for none).")
    max_per_hospital: int = config_field(0, "Keep at most this many rows per hospital (0: all).")
    # Model.
    model: str = config_field("capsnet", "Model name (see ccfl_jax.models.MODELS).")
    reconstruction_weight: float = config_field(0.0005, "Weight of CapsNet's reconstruction term.")
    # Federated rounds.
    rounds: int = config_field(30, "Total federated rounds (a resumed run continues up to it).")
    local_steps: int = config_field(5, "K: local steps per hospital per round.")
    batch_size: int = config_field(16, "Local batch size.")
    hospital_learning_rate: float = config_field(1e-3, "Hospitals' Adam learning rate.")
    hospitals_per_round: int = config_field(3, "m_t: hospitals sampled each round (fixed size).")
    sampling: str = config_field(
        "fixed", "'fixed' (m_t without replacement) or 'poisson'.", enum=("fixed", "poisson")
    )
    strategy: str = config_field(
        "auto", "Hospital axis: auto, vmap, loop or shard.", enum=("auto", "vmap", "loop", "shard")
    )
    server_optimizer: str = config_field(
        "fedavg", "fedavg, fedavgm or fedadam.", enum=("fedavg", "fedavgm", "fedadam")
    )
    server_learning_rate: float = config_field(1.0, "Server learning rate.")
    # Differential privacy (Eq. 8, 15).
    clip_norm: float = config_field(2.0, "S: each hospital's delta is clipped to this L2 norm.")
    noise_multiplier: float = config_field(
        0.3, "sigma: noise N(0, sigma^2 S^2) on the sum of deltas."
    )
    delta: float = config_field(1e-5, "The delta of the reported (epsilon, delta).")
    target_epsilon: float = config_field(
        0.0, "Stop before a round would pass this epsilon (0: none)."
    )
    laplace_epsilon: float = config_field(0.0, "Local Laplace noise epsilon per release (0: off).")
    laplace_sensitivity: float = config_field(1e-3, "L1 sensitivity for the local Laplace noise.")
    # Ledger and consensus (Eq. 12-13, 17-18).
    use_ledger: bool = config_field(
        True, "Put hashes on the chain and aggregate only voted updates."
    )
    num_validators: int = config_field(3, "k: validators per round, closest ids to the round seed.")
    quorum: int = config_field(2, "Passing votes an update needs (Eq. 18).")
    score: str = config_field(
        "mae_increase",
        "Validator score: 'mae_increase' over the round's model, or 'mae'.",
        enum=("mae_increase", "mae"),
    )
    gamma: float = config_field(0.05, "Largest passing validator score (Eq. 18).")
    # Attack (the poisoned-hospital experiment).
    poison_hospital: str = config_field(
        "", "Hospital whose shared delta is tampered with ('' none)."
    )
    poison_scale: float = config_field(
        -10.0, "Its delta is multiplied by this (negative: sign flip)."
    )
    # Evaluation and outputs.
    compare_local: bool = config_field(True, "Also train local-only models per hospital (Fig. 9).")
    bootstrap: int = config_field(1000, "Bootstrap resamples for the 95% confidence intervals.")
    progress: bool = config_field(True, "Show tqdm progress bars.")


def define_flags(config_class=None) -> None:
    """Defines one absl flag per field of a config dataclass (call once, in a script).

    A field's default sets the flag's type (a tuple becomes a list flag), its metadata the help
    text, and ``enum`` metadata the allowed values.
    """
    for field in dataclasses.fields(config_class or JobConfig):
        name, default, text = field.name, field.default, field.metadata["help"]
        if "enum" in field.metadata:
            flags.DEFINE_enum(name, default, list(field.metadata["enum"]), text)
        elif isinstance(default, tuple):
            flags.DEFINE_list(name, list(default), text)
        elif isinstance(default, bool):
            flags.DEFINE_bool(name, default, text)
        elif isinstance(default, int):
            flags.DEFINE_integer(name, default, text)
        elif isinstance(default, float):
            flags.DEFINE_float(name, default, text)
        else:
            flags.DEFINE_string(name, default, text)


def config_from_flags(config_class=None, values=flags.FLAGS):
    """The config dataclass (default :class:`JobConfig`) of the parsed flags."""
    config_class = config_class or JobConfig
    fields = dataclasses.fields(config_class)
    return config_class(
        **{
            f.name: tuple(values[f.name].value)
            if isinstance(f.default, tuple)
            else values[f.name].value
            for f in fields
        }
    )


def sampling_rate(config: JobConfig, num_hospitals: int) -> float:
    """q = m_t / H, each hospital's per-round inclusion probability (the accountant's q)."""
    return min(1.0, config.hospitals_per_round / num_hospitals)
