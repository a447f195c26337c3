"""The ledger's history, rebuilt from the contract's events alone.

Reading events (not storage) means the history is what every node can verify from the
blocks: members and how they were admitted, data-sharing and retrieval records (Fig. 3),
and per round the model hashes, leader, validators, updates, votes and decisions.
"""

import dataclasses

from eth_utils import event_abi_to_log_topic

from ledger import chain as chain_lib

EVENTS = (
    "JoinRequested",
    "AdmissionVoted",
    "MemberAdmitted",
    "RecordShared",
    "RecordRetrieved",
    "RoundOpened",
    "UpdateSubmitted",
    "VoteCast",
    "UpdateDecided",
    "RoundFinalized",
)


@dataclasses.dataclass
class UpdateEntry:
    """One hospital's update in a round.

    Attributes:
      hospital: the submitting address.
      delta_hash: sha256 of its serialized delta.
      num_examples: its example count.
      local_loss: its local loss times SCORE_SCALE.
      votes: (validator address, score, passed) in the order cast.
      accepted: the leader's decision, or None while the round is open.
    """

    hospital: str
    delta_hash: bytes
    num_examples: int
    local_loss: int
    votes: list = dataclasses.field(default_factory=list)
    accepted: bool | None = None


@dataclasses.dataclass
class RoundEntry:
    """One round.

    Attributes:
      round: 1-based index.
      model_hash: global model hash it opened with (checkpoint r - 1).
      seed: the round seed.
      leader: the leader's address.
      validators: validator addresses, closest first.
      sampled: sampled addresses in the order given.
      updates: address -> UpdateEntry, in submission order.
      new_model_hash: the finalized model hash (checkpoint r), or None while open.
      accepted: accepted addresses as finalized.
    """

    round: int
    model_hash: bytes
    seed: bytes
    leader: str
    validators: list
    sampled: list
    updates: dict = dataclasses.field(default_factory=dict)
    new_model_hash: bytes | None = None
    accepted: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class History:
    """Everything the contract recorded.

    Attributes:
      members: (address, hospital id, founder) in admission order.
      admission_votes: (applicant, voter, votes so far).
      records: record id -> RecordShared fields.
      retrievals: RecordRetrieved fields, in order.
      rounds: round -> RoundEntry.
      events: (event name, block number, args dict) of every event, in chain order.
    """

    members: list = dataclasses.field(default_factory=list)
    admission_votes: list = dataclasses.field(default_factory=list)
    records: dict = dataclasses.field(default_factory=dict)
    retrievals: list = dataclasses.field(default_factory=list)
    rounds: dict = dataclasses.field(default_factory=dict)
    events: list = dataclasses.field(default_factory=list)


def read_events(chain, contract, from_block: int = 0) -> list[tuple[str, int, dict]]:
    """Every event of the contract, decoded, in chain order (block, then log index).

    The contract's logs come from :func:`ledger.chain.get_logs`; each is decoded by topic.
    """
    by_topic = {}
    for name in EVENTS:
        abi = next(e for e in contract.abi if e.get("type") == "event" and e["name"] == name)
        by_topic[event_abi_to_log_topic(abi)] = getattr(contract.events, name)()
    logs = chain_lib.get_logs(chain, contract.address, from_block)
    decoded = []
    for log in logs:
        event = by_topic.get(bytes(log["topics"][0]))
        if event is None:
            raise ValueError(
                f"log in block {log['blockNumber']} has an unknown topic: the contract at "
                f"{contract.address} is not the Consortium contract this client knows."
            )
        entry = event.process_log(log)
        decoded.append(
            (entry["blockNumber"], entry["logIndex"], entry["event"], dict(entry["args"]))
        )
    decoded.sort(key=lambda item: item[:2])
    return [(name, block, args) for block, _, name, args in decoded]


def _apply(history: History, name: str, a: dict) -> None:
    if name == "MemberAdmitted":
        history.members.append((a["member"], bytes(a["hospital_id"]), a["founder"]))
    elif name == "AdmissionVoted":
        history.admission_votes.append((a["applicant"], a["voter"], a["votes"]))
    elif name == "RecordShared":
        history.records[a["record_id"]] = a
    elif name == "RecordRetrieved":
        history.retrievals.append(a)
    elif name == "RoundOpened":
        history.rounds[a["round"]] = RoundEntry(
            round=a["round"],
            model_hash=bytes(a["model_hash"]),
            seed=bytes(a["seed"]),
            leader=a["leader"],
            validators=list(a["validators"]),
            sampled=list(a["sampled"]),
        )
    elif name == "UpdateSubmitted":
        history.rounds[a["round"]].updates[a["hospital"]] = UpdateEntry(
            hospital=a["hospital"],
            delta_hash=bytes(a["delta_hash"]),
            num_examples=a["num_examples"],
            local_loss=a["local_loss"],
        )
    elif name == "VoteCast":
        entry = history.rounds[a["round"]].updates[a["hospital"]]
        entry.votes.append((a["validator"], a["score"], a["passed"]))
    elif name == "UpdateDecided":
        history.rounds[a["round"]].updates[a["hospital"]].accepted = a["accepted"]
    elif name == "RoundFinalized":
        entry = history.rounds[a["round"]]
        entry.new_model_hash = bytes(a["new_model_hash"])
        entry.accepted = list(a["accepted"])


def rebuild(chain, contract, from_block: int = 0) -> History:
    """The history of a deployed consortium contract, from its events."""
    history = History()
    for name, block, args in read_events(chain, contract, from_block):
        history.events.append((name, block, args))
        _apply(history, name, args)
    return history
