"""A run's ledger on disk: set it up once, then resume the same chain history.

``run_dir/ledger/`` holds ``deployment.json`` (chain kind, chain id, contract address and
ABI, consensus parameters, which account is which hospital) and, for the in-process
chain, ``chain.db`` (the whole py-evm database). The chain is saved after setup and after
every finalized round, so a resumed run continues from the last finalized round.

The in-process demo derives every key from ``key_seed`` and the party's name, and writes
that seed into deployment.json; a real deployment keeps its keys elsewhere.

One round, as the main job runs it (hashes are hex sha256 strings or 32 bytes):

  >>> import hashlib
  >>> h = lambda text: hashlib.sha256(text.encode()).hexdigest()
  >>> ledger = create(None, ["h0", "h1", "h2"], num_validators=3, quorum=2, gamma=0.5)
  >>> info = ledger.open_round(1, h("checkpoint 0"), ["h0", "h1", "h2"])
  >>> for name in info.sampled:
  ...     ledger.submit_update(1, name, h(f"delta {name}"), num_examples=40, local_loss=0.31)
  >>> for validator in info.validators:  # each scores the others' updates by its MAE
  ...     for name in info.sampled:
  ...         if name != validator:
  ...             _ = ledger.vote(1, validator, name, mae=0.8 if name == "h2" else 0.2)
  >>> ledger.accepted_mask(1)  # per hospital, in hospital order
  [True, True, False]
  >>> ledger.finalize(1, h("checkpoint 1"))  # the leader signs; the chain is saved
  ['h0', 'h1']
  >>> ledger.last_finalized_round()
  1
"""

import json
import pathlib
from collections.abc import Sequence

from ledger import chain as chain_lib
from ledger import client, consensus, errors, transact

FUND_WEI = 10 * 10**18


def ledger_dir(run_dir: str | pathlib.Path) -> pathlib.Path:
    return pathlib.Path(run_dir) / "ledger"


def _attach(
    chain: chain_lib.Chain, deployment: dict, store: pathlib.Path | None
) -> client.Consortium:
    seed = deployment["key_seed"]
    accounts = {name: transact.derive_account(seed, name) for name in deployment["hospitals"]}
    on_finalize = (lambda: chain_lib.save(chain, store)) if store and chain.in_process else None
    return client.Consortium(
        chain,
        deployment["contract_address"],
        deployment["abi"],
        transact.derive_account(seed, "deployer"),
        accounts,
        on_finalize=on_finalize,
    )


def create(
    run_dir: str | pathlib.Path | None,
    hospital_names: Sequence[str],
    *,
    num_validators: int = 3,
    quorum: int = 2,
    gamma: float = 0.5,
    key_seed: str = "ccfl-demo",
    chain: chain_lib.Chain | None = None,
) -> client.Consortium:
    """Deploys the contract on a fresh chain, admits every hospital as a founder, saves.

    Args:
      run_dir: where ``ledger/`` goes; None keeps everything in memory (tests).
      hospital_names: the founding hospitals, in hospital order.
      num_validators: validators per round (k, Eq. 13).
      quorum: passing votes an update needs (Eq. 18), < num_validators.
      gamma: the largest passing MAE (Eq. 18).
      key_seed: derives every account's key (demo and tests only).
      chain: an existing chain (default: a new in-process one).

    Returns:
      The :class:`~ledger.client.Consortium`.
    """
    if len(set(hospital_names)) != len(hospital_names) or "deployer" in hospital_names:
        raise ValueError(
            f"hospital names {list(hospital_names)} repeat or use 'deployer': give each "
            "hospital its own name."
        )
    if not 2 <= num_validators <= len(hospital_names):
        raise ValueError(
            f"num_validators={num_validators} with {len(hospital_names)} hospitals: every "
            "round needs 2 <= num_validators <= the number of hospitals; lower it."
        )
    chain = chain or chain_lib.in_process()
    compiled = chain_lib.compile_contract()
    deployer = transact.derive_account(key_seed, "deployer")
    names = list(hospital_names)
    if chain.in_process:
        for name in ["deployer", *names]:
            chain_lib.fund(chain, transact.derive_account(key_seed, name).address, FUND_WEI)
    args = (num_validators, quorum, consensus.to_score(gamma))
    address, block = chain_lib.deploy(chain, compiled, args, deployer)
    deployment = {
        "chain": "in_process" if chain.in_process else "node",
        "url": None if chain.in_process else chain.w3.provider.endpoint_uri,
        "chain_id": chain.w3.eth.chain_id,
        "contract_address": address,
        "deploy_block": block,
        "source_sha256": compiled.source_sha256,
        "abi": compiled.abi,
        "num_validators": num_validators,
        "quorum": quorum,
        "gamma": gamma,
        "key_seed": key_seed,
        "hospitals": {n: transact.derive_account(key_seed, n).address for n in names},
    }
    store = ledger_dir(run_dir) / "chain.db" if run_dir is not None else None
    consortium = _attach(chain, deployment, store)
    for name in names:
        consortium.hospital(name).request_join()
        consortium.admit_founder(name)
    if run_dir is not None:
        ledger_dir(run_dir).mkdir(parents=True, exist_ok=True)
        (ledger_dir(run_dir) / "deployment.json").write_text(json.dumps(deployment, indent=1))
        if chain.in_process:
            chain_lib.save(chain, store)
    return consortium


def read_deployment(run_dir: str | pathlib.Path) -> dict:
    """The deployment record of a run's ledger.

    Raises:
      LedgerNotFound: the run has no ``ledger/deployment.json``.
    """
    path = ledger_dir(run_dir) / "deployment.json"
    if not pathlib.Path(run_dir).is_dir():
        raise errors.LedgerNotFound(
            f"{run_dir}: no such run directory; check the path (a run's folder holds "
            "checkpoints/ and ledger/)."
        )
    if not path.exists():
        raise errors.LedgerNotFound(
            f"{path} is missing: this run has no ledger. Set it up with "
            "ledger.workspace.create(run_dir, hospital_names) before training."
        )
    return json.loads(path.read_text())


def resume(run_dir: str | pathlib.Path) -> client.Consortium:
    """The consortium of a run, on its saved in-process chain or its node."""
    deployment = read_deployment(run_dir)
    store = ledger_dir(run_dir) / "chain.db"
    if deployment["chain"] == "in_process":
        chain = chain_lib.load(store)
    else:
        chain = chain_lib.connect(deployment["url"])
    if chain.w3.eth.chain_id != deployment["chain_id"]:
        raise ValueError(
            f"{run_dir}: the chain has id {chain.w3.eth.chain_id} but the ledger was deployed on "
            f"{deployment['chain_id']}; connect to the original chain."
        )
    return _attach(chain, deployment, store)


def open_or_resume(
    run_dir: str | pathlib.Path, hospital_names: Sequence[str], **kwargs
) -> client.Consortium:
    """Resumes the run's ledger if it exists (same hospitals), else creates it."""
    if (ledger_dir(run_dir) / "deployment.json").exists():
        consortium = resume(run_dir)
        if list(consortium.hospitals) != list(hospital_names):
            raise ValueError(
                f"{run_dir}: ledger hospitals {list(consortium.hospitals)} differ from "
                f"{list(hospital_names)}; resume with the same hospitals or use a new run_dir."
            )
        return consortium
    return create(run_dir, hospital_names, **kwargs)


def save(consortium: client.Consortium, run_dir: str | pathlib.Path) -> None:
    """Saves the in-process chain now (finalize already does it after every round)."""
    if consortium.chain.in_process:
        chain_lib.save(consortium.chain, ledger_dir(run_dir) / "chain.db")
