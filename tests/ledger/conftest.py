"""The ledger world, built once per test process: a chain, the contract, five hospitals.

Test classes that set ``needs_world = True`` get it as ``self.world``; the chain is
snapshotted before each of their tests and reverted after, so no test sees another's
transactions and nothing is redeployed.
"""

import dataclasses

import pytest

from ledger import chain as chain_lib
from ledger import client, transact, workspace

HOSPITALS = ("h0", "h1", "h2", "h3", "h4")
NUM_VALIDATORS = 3
QUORUM = 2
GAMMA = 0.5
KEY_SEED = "ledger-tests"


@dataclasses.dataclass
class World:
    """Everything a ledger test needs.

    Attributes:
      consortium: the main job's handle, founders h0..h3 admitted.
      outsider: a funded account that never joined.
      applicant: name of a hospital (h4) that holds a key but is not a member yet.
    """

    consortium: client.Consortium
    outsider: object
    applicant: str

    def send_as(self, account, function: str, *args):
        """Sends a contract call signed by an arbitrary account."""
        call = getattr(self.consortium.contract.functions, function)(*args)
        gas = client.GAS.get(function, 500_000)
        return transact.transact(self.consortium.chain, account, call, gas, f"{function}{args}")


def build_world() -> World:
    founders = HOSPITALS[:-1]
    consortium = workspace.create(
        None,
        founders,
        num_validators=NUM_VALIDATORS,
        quorum=QUORUM,
        gamma=GAMMA,
        key_seed=KEY_SEED,
    )
    chain = consortium.chain
    applicant = HOSPITALS[-1]
    account = transact.derive_account(KEY_SEED, applicant)
    consortium.add_hospital(applicant, account)
    outsider = transact.derive_account(KEY_SEED, "outsider")
    for acct in (account, outsider):
        chain_lib.fund(chain, acct.address, workspace.FUND_WEI)
    return World(consortium=consortium, outsider=outsider, applicant=applicant)


@pytest.fixture(scope="session")
def world() -> World:
    return build_world()


@pytest.fixture(autouse=True)
def _world_snapshot(request):
    if not getattr(request.cls, "needs_world", False):
        yield
        return
    world = request.getfixturevalue("world")
    tester = world.consortium.chain.w3.provider.ethereum_tester
    snapshot = tester.take_snapshot()
    request.instance.world = world
    yield
    tester.revert_to_snapshot(snapshot)
