"""Where the chain is: an in-process py-evm chain, or a JSON-RPC node; compile and deploy.

``in_process()`` runs eth-tester's PyEVMBackend inside this process, with its deterministic
funded tester accounts: used by the tests and the demo. Its whole database can be saved
into a run directory and loaded back (:func:`save` / :func:`load`), so that a resumed run
continues the very same blocks. ``connect(url)`` talks to a real node over HTTP, where
resuming is simply reconnecting. ``compile_contract`` compiles the Vyper source once and
caches the result by the source's hash; ``deploy`` signs the deployment with a given key.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import struct
import zlib

import vyper
from eth.db.atomic import AtomicDB
from eth.db.backends.memory import MemoryDB
from eth_tester import EthereumTester, PyEVMBackend
from hexbytes import HexBytes
from web3 import Web3
from web3.providers.eth_tester import EthereumTesterProvider

from ledger import errors, transact

CONTRACT_PATH = pathlib.Path(__file__).parent / "contracts" / "Consortium.vy"
CACHE_DIR = pathlib.Path.home() / ".cache" / "ccfl_jax" / "vyper"
_DB_MAGIC = b"CCFLEVM1"


@dataclasses.dataclass(frozen=True)
class Compiled:
    """A compiled contract.

    Attributes:
      abi: the ABI, a list of dicts.
      bytecode: the deployment bytecode, 0x-prefixed hex.
      source_sha256: hex sha256 of the Vyper source it came from.
    """

    abi: list
    bytecode: str
    source_sha256: str


@dataclasses.dataclass
class Chain:
    """A connection to a chain.

    Attributes:
      w3: the web3 handle.
      backend: the in-process PyEVMBackend, or None for a node.
    """

    w3: Web3
    backend: PyEVMBackend | None = None

    @property
    def in_process(self) -> bool:
        return self.backend is not None


def compile_contract(path: pathlib.Path = CONTRACT_PATH, cache_dir: pathlib.Path = CACHE_DIR):
    """Compiles a Vyper source once; later calls read the cache keyed by the source's sha256.

    Returns:
      A :class:`Compiled`.
    """
    source = pathlib.Path(path).read_text()
    digest = hashlib.sha256(f"{vyper.__version__}\n{source}".encode()).hexdigest()
    cached = pathlib.Path(cache_dir) / f"{digest}.json"
    if cached.exists():
        data = json.loads(cached.read_text())
    else:
        out = vyper.compile_code(source, output_formats=["abi", "bytecode"])
        data = {"abi": out["abi"], "bytecode": out["bytecode"]}
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data))
        tmp.replace(cached)
    return Compiled(abi=data["abi"], bytecode=data["bytecode"], source_sha256=digest)


def _wrap(backend: PyEVMBackend) -> Chain:
    return Chain(w3=Web3(EthereumTesterProvider(EthereumTester(backend))), backend=backend)


def in_process() -> Chain:
    """A fresh in-process chain whose tester accounts are funded and deterministic.

    Examples:
      >>> chain = in_process()
      >>> chain.w3.eth.block_number
      0
    """
    return _wrap(PyEVMBackend())


def connect(url: str) -> Chain:
    """A chain reached over JSON-RPC HTTP, e.g. ``http://127.0.0.1:8545``."""
    w3 = Web3(Web3.HTTPProvider(url))
    if not w3.is_connected():
        raise ConnectionError(f"no Ethereum node answers at {url}: start it or fix the URL.")
    return Chain(w3=w3)


def fund(chain: Chain, address: str, wei: int) -> None:
    """Sends wei from the first tester account (in-process chains only)."""
    tester = chain.w3.eth.accounts[0]
    chain.w3.eth.send_transaction({"from": tester, "to": address, "value": wei, "gas": 21000})


def deploy(chain: Chain, compiled: Compiled, args: tuple, deployer) -> tuple[str, int]:
    """Deploys a compiled contract, signed by ``deployer`` (an eth-account LocalAccount).

    Returns:
      ``(contract address, block number of the deployment)``.

    Raises:
      InvalidConsensusParameters: (and other reverts, by name) the constructor refused args.
    """
    factory = chain.w3.eth.contract(abi=compiled.abi, bytecode=compiled.bytecode)
    receipt = transact.transact(chain, deployer, factory.constructor(*args), 5_000_000, "deploy")
    return receipt.contractAddress, receipt.blockNumber


def get_logs(chain: Chain, address: str, from_block: int = 0) -> list[dict]:
    """The raw logs a contract emitted since ``from_block``, in chain order.

    On a node this is ``eth_getLogs``. On the in-process chain the receipts are read from
    py-evm directly: eth-tester's ``get_logs`` looks every transaction up by hash, which
    scans the chain each time and makes auditing a long run quadratic.
    """
    if not chain.in_process:
        return list(chain.w3.eth.get_logs({"address": address, "fromBlock": from_block}))
    evm = chain.backend.chain
    wanted = bytes.fromhex(address.removeprefix("0x"))
    logs = []
    for number in range(from_block, evm.get_canonical_head().block_number + 1):
        block = evm.get_canonical_block_by_number(number)
        log_index = 0
        receipts = block.get_receipts(evm.chaindb)
        for tx_index, (tx, receipt) in enumerate(zip(block.transactions, receipts, strict=True)):
            for log in receipt.logs:
                if log.address == wanted:
                    logs.append(
                        {
                            "address": address,
                            "topics": [HexBytes(t.to_bytes(32, "big")) for t in log.topics],
                            "data": HexBytes(log.data),
                            "blockNumber": number,
                            "blockHash": HexBytes(block.hash),
                            "transactionIndex": tx_index,
                            "transactionHash": HexBytes(tx.hash),
                            "logIndex": log_index,
                        }
                    )
                log_index += 1
    return logs


def _kv_store(chain: Chain) -> dict:
    if not chain.in_process:
        raise ValueError("only an in-process chain is saved to disk; a node keeps its own state.")
    db = chain.backend.chain.chaindb.db
    return db.wrapped_db.kv_store


def save(chain: Chain, path: pathlib.Path) -> None:
    """Writes the whole in-process chain database to ``path`` (atomically)."""
    chunks = [_DB_MAGIC]
    for key, value in _kv_store(chain).items():
        chunks.append(struct.pack(">II", len(key), len(value)) + key + value)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(zlib.compress(b"".join(chunks), 1))
    tmp.replace(path)


def load(path: pathlib.Path) -> Chain:
    """An in-process chain continuing the history saved by :func:`save`.

    Raises:
      LedgerNotFound: ``path`` does not exist.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise errors.LedgerNotFound(
            f"{path}: no saved chain. Resume only a run whose ledger was set up, or start anew."
        )
    try:
        blob = zlib.decompress(path.read_bytes())
    except zlib.error:
        blob = b""
    if not blob.startswith(_DB_MAGIC):
        raise ValueError(f"{path}: not a chain saved by ledger.chain.save; restore it from backup.")
    kv, pos = {}, len(_DB_MAGIC)
    while pos < len(blob):
        key_len, value_len = struct.unpack_from(">II", blob, pos)
        pos += 8
        kv[blob[pos : pos + key_len]] = blob[pos + key_len : pos + key_len + value_len]
        pos += key_len + value_len
    backend = PyEVMBackend()
    backend.chain = type(backend.chain)(AtomicDB(MemoryDB(kv)))
    return _wrap(backend)
