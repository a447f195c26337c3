"""The consortium ledger: Vyper contract, chain access, typed client, ids and audit.

It knows nothing of JAX: only hashes, hospital names/addresses, integer counts and integer
scores cross into it. See DESIGN.md (ledger rows) and ``contracts/Consortium.vy``.
"""

from ledger import chain, consensus, errors, history, ids, workspace
from ledger.client import Consortium, HospitalClient, RoundInfo
from ledger.ids import select_leader_and_validators
from ledger.workspace import create, open_or_resume, resume

__all__ = [
    "Consortium",
    "HospitalClient",
    "RoundInfo",
    "chain",
    "consensus",
    "create",
    "errors",
    "history",
    "ids",
    "open_or_resume",
    "resume",
    "select_leader_and_validators",
    "workspace",
]
