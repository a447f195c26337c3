"""Typed calls to the consortium contract, one client per hospital.

:class:`HospitalClient` signs every transaction with its hospital's own key and mirrors the
contract's external functions; :class:`Consortium` is the handle the main job holds: it
knows every hospital's key and offers the per-round helpers (``open_round``,
``submit_update``, ``vote``, ``accepted_mask``, ``finalize``). Only hashes (bytes32),
hospital names/addresses, integer counts and integer scores cross into the chain.
Results are read from the receipts' events.
"""

import dataclasses
from collections.abc import Mapping, Sequence

from eth_account.signers.local import LocalAccount

from ledger import chain as chain_lib
from ledger import consensus, errors, ids, transact

# Gas limit per call, set explicitly (comfortably above what ledger_bench measures).
GAS = {
    "request_join": 150_000,
    "admit_founder": 200_000,
    "vote_admit": 250_000,
    "share_record": 300_000,
    "retrieve_record": 200_000,
    "open_round": 3_000_000,
    "submit_update": 300_000,
    "vote": 200_000,
    "finalize": 1_500_000,
}


def as_bytes32(value: bytes | str, what: str) -> bytes:
    """A 32-byte hash from bytes or hex (with or without 0x).

    Examples:
      >>> as_bytes32("ab" * 32, "model hash") == bytes([0xAB]) * 32
      True
    """
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value.removeprefix("0x"))
        except ValueError:
            value = b""
    if not isinstance(value, bytes | bytearray) or len(value) != 32:
        raise ValueError(
            f"{what} {value!r} is not a 32-byte hash: pass a sha256 digest as bytes or as "
            "64 hex characters."
        )
    return bytes(value)


def as_label(value: str, what: str) -> str:
    """A short text field of a record (at most 32 UTF-8 bytes, as the contract stores).

    Examples:
      >>> as_label("ct-series", "data type")
      'ct-series'
    """
    if not isinstance(value, str) or not 0 < len(value.encode()) <= 32:
        raise ValueError(
            f"{what} {value!r} must be a non-empty text of at most 32 UTF-8 bytes, e.g. "
            "'ct-series'; shorten it."
        )
    return value


@dataclasses.dataclass(frozen=True)
class RoundInfo:
    """A round as opened on chain.

    Attributes:
      round: the 1-based round index.
      model_hash: the global model hash the round started from.
      seed: keccak256(model_hash ++ round), which picked leader and validators.
      leader: the leader's hospital name.
      validators: validator names, closest to the seed first (Eq. 13).
      sampled: the sampled hospitals' names, in the order given to open_round.
    """

    round: int
    model_hash: bytes
    seed: bytes
    leader: str
    validators: tuple[str, ...]
    sampled: tuple[str, ...]


class HospitalClient:
    """One hospital's view of the contract; every call is signed with its own key."""

    def __init__(self, consortium: "Consortium", name: str, account: LocalAccount):
        self.consortium = consortium
        self.name = name
        self.account = account

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def hospital_id(self) -> bytes:
        return ids.hospital_id(transact.public_key(self.account))

    def _send(self, function: str, *args, label: str | None = None):
        call = getattr(self.consortium.contract.functions, function)(*args)
        label = label or f"{self.name}: {function}{args}"
        return transact.transact(self.consortium.chain, self.account, call, GAS[function], label)

    def _event(self, receipt, event: str):
        (log,) = getattr(self.consortium.contract.events, event)().process_receipt(receipt)
        return log.args

    def request_join(self) -> bytes:
        """Asks to join with this hospital's public key; returns its id (Eq. 12)."""
        receipt = self._send("request_join", transact.public_key(self.account))
        return bytes(self._event(receipt, "JoinRequested").hospital_id)

    def vote_admit(self, applicant: str) -> None:
        """Votes to admit another hospital (by name); a strict majority admits it."""
        self._send("vote_admit", self.consortium.address_of(applicant))

    def share_record(self, data_hash: bytes | str, data_type: str, size: int) -> int:
        """Records that this hospital shares data with this hash (Fig. 3); returns its id."""
        data_hash = as_bytes32(data_hash, "data hash")
        receipt = self._send("share_record", data_hash, as_label(data_type, "data type"), size)
        return self._event(receipt, "RecordShared").record_id

    def retrieve_record(self, record_id: int, requester_type: str) -> int:
        """Retrieves a provider's record; returns the record's new transaction count."""
        receipt = self._send(
            "retrieve_record", record_id, as_label(requester_type, "requester type")
        )
        return self._event(receipt, "RecordRetrieved").tx_count

    def open_round(self, r: int, model_hash: bytes | str, sampled: Sequence[str]) -> RoundInfo:
        """Opens round r from the global model hash of checkpoint r - 1."""
        addresses = [self.consortium.address_of(name) for name in sampled]
        receipt = self._send("open_round", r, as_bytes32(model_hash, "model hash"), addresses)
        args = self._event(receipt, "RoundOpened")
        name_of = self.consortium.name_of
        return RoundInfo(
            round=r,
            model_hash=bytes(args.model_hash),
            seed=bytes(args.seed),
            leader=name_of(args.leader),
            validators=tuple(name_of(v) for v in args.validators),
            sampled=tuple(name_of(s) for s in args.sampled),
        )

    def submit_update(
        self, r: int, delta_hash: bytes | str, num_examples: int, local_loss: float
    ) -> None:
        """Submits this hospital's update of round r: sha256 of its serialized delta."""
        delta = as_bytes32(delta_hash, "delta hash")
        self._send("submit_update", r, delta, num_examples, consensus.to_score(local_loss))

    def vote(self, r: int, hospital: str, mae: float) -> bool:
        """Scores another hospital's update by this validator's MAE (Eq. 17); returns passed."""
        receipt = self._send(
            "vote", r, self.consortium.address_of(hospital), consensus.to_score(mae)
        )
        return self._event(receipt, "VoteCast").passed

    def finalize(self, r: int, new_model_hash: bytes | str, accepted: Sequence[str]) -> None:
        """Closes round r with the new global model hash and exactly the accepted updates."""
        addresses = [self.consortium.address_of(name) for name in accepted]
        self._send("finalize", r, as_bytes32(new_model_hash, "new model hash"), addresses)


class Consortium:
    """The deployed consortium contract with every hospital's key: the main job's handle.

    Attributes:
      chain: where the contract lives.
      contract: the web3 contract object.
      deployer: the account that deployed it (admits founders).
      hospitals: name -> account, in hospital order.
    """

    def __init__(
        self,
        chain: chain_lib.Chain,
        address: str,
        abi: list,
        deployer: LocalAccount,
        hospitals: Mapping[str, LocalAccount],
        on_finalize=None,
    ):
        self.chain = chain
        self.contract = chain.w3.eth.contract(address=address, abi=abi)
        self.deployer = deployer
        self.hospitals = dict(hospitals)
        self._names = {acct.address: name for name, acct in self.hospitals.items()}
        self._on_finalize = on_finalize

    def add_hospital(self, name: str, account: LocalAccount) -> HospitalClient:
        """Adds a key that may join later (e.g. an applicant admitted by vote)."""
        self.hospitals[name] = account
        self._names[account.address] = name
        return self.hospital(name)

    def hospital(self, name: str) -> HospitalClient:
        """The client that signs as hospital ``name``."""
        if name not in self.hospitals:
            raise errors.UnknownHospital(
                f"hospital {name!r} is not in this ledger; known: {sorted(self.hospitals)}."
            )
        return HospitalClient(self, name, self.hospitals[name])

    def address_of(self, name: str) -> str:
        return self.hospital(name).address

    def name_of(self, address: str) -> str:
        """The hospital name of an address (the address itself if it is not one of ours)."""
        return self._names.get(address, address)

    def admit_founder(self, name: str) -> None:
        """The deployer admits a founding member (before the first round)."""
        call = self.contract.functions.admit_founder(self.address_of(name))
        label = f"deployer: admit_founder({name})"
        transact.transact(self.chain, self.deployer, call, GAS["admit_founder"], label)

    def member_names(self) -> list[str]:
        view = self.contract.functions
        return [self.name_of(view.members(i).call()) for i in range(view.member_count().call())]

    def round_info(self, r: int) -> RoundInfo:
        """Round r as stored on chain."""
        view = self.contract.functions
        model_hash, _, seed, leader, state = view.rounds(r).call()
        if state == 0:
            raise errors.UnknownRound(f"round {r} was never opened; open it first.")
        return RoundInfo(
            round=r,
            model_hash=bytes(model_hash),
            seed=bytes(seed),
            leader=self.name_of(leader),
            validators=tuple(self.name_of(v) for v in view.round_validators(r).call()),
            sampled=tuple(self.name_of(s) for s in view.round_sampled(r).call()),
        )

    def last_finalized_round(self) -> int:
        """The last round finalized on chain (0 before the first): where a run resumes."""
        view = self.contract.functions
        last = view.last_round().call()
        if last and view.rounds(last).call()[4] != 2:
            last -= 1
        return last

    def finalized_model_hash(self, r: int) -> str:
        """Hex hash of checkpoint r as the chain records it (r = 0: round 1's start).

        Raises:
          UnknownRound: round r (or round 1, for r = 0) is not finalized (opened) yet.
        """
        view = self.contract.functions
        model_hash, new_model_hash, _, _, state = view.rounds(max(r, 1)).call()
        if r == 0 and state != 0:
            return bytes(model_hash).hex()
        if r > 0 and state == 2:
            return bytes(new_model_hash).hex()
        raise errors.UnknownRound(
            f"checkpoint {r} has no hash on chain yet: round {max(r, 1)} is not "
            f"{'opened' if r == 0 else 'finalized'}; the last finalized round is "
            f"{self.last_finalized_round()}."
        )

    # The main job's per-round helpers.

    def open_round(
        self, r: int, model_hash: bytes | str, sampled_ids: Sequence[str], opener: str | None = None
    ) -> RoundInfo:
        """Opens round r with checkpoint r - 1's hash; sent by ``opener`` (default sampled[0])."""
        return self.hospital(opener or sampled_ids[0]).open_round(r, model_hash, sampled_ids)

    def submit_update(
        self, r: int, hospital: str, delta_hash: bytes | str, num_examples: int, local_loss: float
    ) -> None:
        """Hospital ``hospital`` submits its update of round r."""
        self.hospital(hospital).submit_update(r, delta_hash, num_examples, local_loss)

    def vote(self, r: int, validator: str, hospital: str, mae: float) -> bool:
        """Validator ``validator`` scores ``hospital``'s update by its MAE (Eq. 17-18)."""
        return self.hospital(validator).vote(r, hospital, mae)

    def accepted_mask(self, r: int) -> list[bool]:
        """Per hospital of this ledger, in hospital order: accepted in round r so far (Eq. 18).

        The list has one entry per hospital in ``self.hospitals`` (the order given to
        ``workspace.create``), aligned with the hospital axis; hospitals that were not
        sampled or did not submit are False.
        """
        view = self.contract.functions
        self.round_info(r)  # raises UnknownRound for a round never opened
        return [view.is_accepted(r, acct.address).call() for acct in self.hospitals.values()]

    def finalize(self, r: int, new_model_hash: bytes | str) -> list[str]:
        """The round's leader closes round r with checkpoint r's hash; returns the accepted."""
        info = self.round_info(r)
        accepted = [n for n, ok in zip(self.hospitals, self.accepted_mask(r), strict=True) if ok]
        self.hospital(info.leader).finalize(r, new_model_hash, accepted)
        if self._on_finalize is not None:
            self._on_finalize()
        return accepted
