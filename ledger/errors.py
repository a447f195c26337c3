"""Named errors of the ledger.

Every error subclasses :class:`LedgerError` and the builtin it refines, so ``except
PermissionError`` still works. Errors raised by the contract carry its revert reason; the
table ``REVERT_REASONS`` maps each reason string of ``contracts/Consortium.vy`` to its class.
"""


class LedgerError(Exception):
    """Base class of every error raised by the ledger package."""


class TransactionReverted(LedgerError, RuntimeError):
    """The contract reverted with a reason that has no more specific error."""


class NotMember(TransactionReverted, PermissionError):
    """The sender is not an admitted member of the consortium."""


class NotDeployer(TransactionReverted, PermissionError):
    """Only the deployer may admit founding members."""


class FoundingClosed(TransactionReverted, PermissionError):
    """Founding members can no longer be admitted once the first round opened."""


class NotAdmitted(TransactionReverted, PermissionError):
    """The address never requested to join, so it cannot be admitted."""


class AlreadyMember(TransactionReverted, ValueError):
    """The address is already a member."""


class InvalidPublicKey(TransactionReverted, ValueError):
    """The public key is not 64 bytes or does not belong to the sender."""


class DuplicateVote(TransactionReverted, ValueError):
    """The sender already voted on this admission or update."""


class UnknownRecord(TransactionReverted, LookupError):
    """No data-sharing record has this id."""


class RoundOutOfOrder(TransactionReverted, ValueError):
    """Round r opens only right after round r - 1 was finalized."""


class ModelHashMismatch(TransactionReverted, ValueError):
    """Round r must open with the model hash that finalized round r - 1."""


class InvalidSample(TransactionReverted, ValueError):
    """The sampled hospitals are empty, repeated or not members."""


class UnknownRound(TransactionReverted, LookupError):
    """The round was never opened."""


class RoundClosed(TransactionReverted, ValueError):
    """The round is already finalized; nothing more can be recorded in it."""


class NotSampled(TransactionReverted, PermissionError):
    """The hospital was not sampled for this round, so it may not submit."""


class DuplicateUpdate(TransactionReverted, ValueError):
    """The hospital already submitted its update of this round."""


class NotValidator(TransactionReverted, PermissionError):
    """The sender is not a validator of this round."""


class UnknownUpdate(TransactionReverted, LookupError):
    """The hospital being voted on submitted no update in this round."""


class SelfVote(TransactionReverted, PermissionError):
    """A validator may not vote on its own update."""


class NotLeader(TransactionReverted, PermissionError):
    """Only the round's leader may finalize it."""


class NoQuorum(TransactionReverted, RuntimeError):
    """Too few votes (or too few members) to reach the quorum."""


class AcceptedSetMismatch(TransactionReverted, ValueError):
    """The accepted set given to finalize is not exactly the updates that passed."""


class InvalidConsensusParameters(TransactionReverted, ValueError):
    """Deployment needs 2 <= validators <= 16 and 1 <= quorum < validators."""


class ReplayedTransaction(LedgerError, ValueError):
    """The same signed transaction (or its nonce) was already used on this chain."""


class UnknownHospital(LedgerError, KeyError):
    """The hospital name is not registered in this ledger."""


class LedgerNotFound(LedgerError, FileNotFoundError):
    """A run directory has no persisted ledger to resume or audit."""


class TamperingDetected(LedgerError, RuntimeError):
    """Checkpoints on disk disagree with the hashes recorded on chain."""


REVERT_REASONS: dict[str, type[TransactionReverted]] = {
    "not a member": NotMember,
    "not the deployer": NotDeployer,
    "founding closed": FoundingClosed,
    "no join request": NotAdmitted,
    "already a member": AlreadyMember,
    "bad public key": InvalidPublicKey,
    "already voted": DuplicateVote,
    "unknown record": UnknownRecord,
    "round out of order": RoundOutOfOrder,
    "model hash mismatch": ModelHashMismatch,
    "too few members": NoQuorum,
    "bad sample": InvalidSample,
    "unknown round": UnknownRound,
    "round closed": RoundClosed,
    "not sampled": NotSampled,
    "duplicate update": DuplicateUpdate,
    "not a validator": NotValidator,
    "unknown update": UnknownUpdate,
    "self vote": SelfVote,
    "not the leader": NotLeader,
    "no quorum": NoQuorum,
    "accepted set mismatch": AcceptedSetMismatch,
    "bad validator count": InvalidConsensusParameters,
    "bad quorum": InvalidConsensusParameters,
}


def from_revert(reason: str, call: str) -> TransactionReverted:
    """The named error for a revert reason of the contract.

    Args:
      reason: the contract's revert string, e.g. ``"self vote"``.
      call: what was sent, e.g. ``"vote(round=3, hospital=h1)"``, named in the message.

    Returns:
      An instance of the mapped class (``TransactionReverted`` if the reason is unknown).

    Examples:
      >>> err = from_revert("self vote", "vote(round=1)")
      >>> isinstance(err, SelfVote), isinstance(err, PermissionError)
      (True, True)
    """
    cls = REVERT_REASONS.get(reason, TransactionReverted)
    return cls(f"{call} reverted on chain: {reason!r}. {cls.__doc__}")
