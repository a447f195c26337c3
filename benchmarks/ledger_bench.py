"""Ledger benchmark: gas per call type, transactions per second on the in-process chain, and
the gas that storing the default CapsNet's weights on chain would cost (computed, not run).

Gas is read from the receipts of real transactions on the in-process py-evm chain (Prague
rules). Throughput is the full client path (build, sign with the hospital's key, send, mine,
receipt) and is compared with a plain signed ETH transfer measured in the same run.
The weight-storage figure is computed from the EVM's prices: calldata 4 gas per zero byte
and 16 per non-zero byte (EIP-2028), or the EIP-7623 floor of 10 gas per token (zero byte
1 token, non-zero 4) if larger; one 32-byte storage slot written from zero costs
20,000 + 2,100 (cold, EIP-2929) gas; each transaction costs 21,000 gas to start.
"""

import hashlib
import math
import pathlib
import tempfile
import time

import numpy as np

from ledger import audit, transact, workspace
from ledger import chain as chain_lib

SSTORE_NEW_SLOT_GAS = 20_000 + 2_100
TX_BASE_GAS = 21_000


def _sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


def _last_gas(chain) -> int:
    block = chain.w3.eth.get_block("latest")
    return chain.w3.eth.get_transaction_receipt(block.transactions[-1]).gasUsed


def gas_per_call(num_hospitals: int) -> dict:
    """Gas used by each call type with ``num_hospitals`` founders, all sampled."""
    names = [f"h{i}" for i in range(num_hospitals)]
    c = workspace.create(None, names, num_validators=3, quorum=2, gamma=0.5, key_seed="bench")
    chain, gas = c.chain, {}
    late = c.add_hospital("late", transact.derive_account("bench", "late"))
    chain_lib.fund(chain, late.address, workspace.FUND_WEI)
    late.request_join()
    gas["request_join"] = _last_gas(chain)
    c.hospital("h0").vote_admit("late")
    gas["vote_admit"] = _last_gas(chain)
    record = c.hospital("h0").share_record(_sha("scan"), "ct-series", 1 << 20)
    gas["share_record"] = _last_gas(chain)
    c.hospital("h1").retrieve_record(record, "hospital")
    gas["retrieve_record"] = _last_gas(chain)
    info = c.open_round(1, _sha("m0"), names)
    gas["open_round"] = _last_gas(chain)
    for name in names:
        c.submit_update(1, name, _sha(name), 100, 0.3)
    gas["submit_update"] = _last_gas(chain)
    for validator in info.validators:
        for name in names:
            if name != validator:
                c.vote(1, validator, name, 0.2)
    gas["vote"] = _last_gas(chain)
    c.finalize(1, _sha("m1"))
    gas["finalize"] = _last_gas(chain)
    return gas


def _admit_founder_gas() -> int:
    c = workspace.create(None, ["a", "b"], num_validators=2, quorum=1, key_seed="bench-founder")
    extra = c.add_hospital("c", transact.derive_account("bench-founder", "c"))
    chain_lib.fund(c.chain, extra.address, workspace.FUND_WEI)
    extra.request_join()
    c.admit_founder("c")
    return _last_gas(c.chain)


def throughput(num_tx: int) -> dict:
    """Transactions per second: share_record via the client vs signed plain transfers."""
    c = workspace.create(None, ["h0", "h1", "h2"], key_seed="bench-tps")
    w3, sender = c.chain.w3, c.hospitals["h0"]
    start = time.perf_counter()
    for i in range(num_tx):
        tx = {
            "to": c.hospitals["h1"].address,
            "value": 1,
            "gas": 21_000,
            "nonce": w3.eth.get_transaction_count(sender.address),
            "chainId": w3.eth.chain_id,
            "maxFeePerGas": transact.MAX_FEE_PER_GAS,
            "maxPriorityFeePerGas": 1,
        }
        transact.send_raw(c.chain, sender.sign_transaction(tx).raw_transaction, f"transfer {i}")
    transfer_s = time.perf_counter() - start
    client = c.hospital("h0")
    start = time.perf_counter()
    for i in range(num_tx):
        client.share_record(_sha(str(i)), "ct-slice", i)
    share_s = time.perf_counter() - start
    return {
        "num_tx": num_tx,
        "transfer_tps": num_tx / transfer_s,
        "share_record_tps": num_tx / share_s,
        "share_record_over_transfer_time": share_s / transfer_s,
    }


def rounds_with_audit(num_rounds: int, run_dir: pathlib.Path) -> dict:
    """Wall time of full ledger rounds (3 hospitals, all vote) with saving, then the audit."""
    names = ["h0", "h1", "h2"]
    c = workspace.create(run_dir, names, key_seed="bench-rounds")
    model = hashlib.sha256(b"m0").hexdigest()
    folder = run_dir / "checkpoints" / f"round_{0:06d}-{model[:12]}"
    start = time.perf_counter()
    for r in range(1, num_rounds + 1):
        info = c.open_round(r, model, names)
        for name in names:
            c.submit_update(r, name, _sha(f"{r}{name}"), 10, 0.2)
        for validator in info.validators:
            for name in names:
                if name != validator:
                    c.vote(r, validator, name, 0.1)
        model = hashlib.sha256(f"m{r}".encode()).hexdigest()
        c.finalize(r, model)  # saves chain.db
    rounds_s = time.perf_counter() - start
    # Checkpoints with the right hashes, so that the audit passes and is timed end to end.
    for r in range(num_rounds + 1):
        content = f"m{r}".encode()
        h = hashlib.sha256(content).hexdigest()
        folder = run_dir / "checkpoints" / f"round_{r:06d}-{h[:12]}"
        folder.mkdir(parents=True)
        (folder / "params.msgpack").write_bytes(content)
    start = time.perf_counter()
    report = audit.audit(run_dir)
    audit_s = time.perf_counter() - start
    return {
        "num_rounds": num_rounds,
        "round_s": rounds_s / num_rounds,
        "tx_per_round": 2 + 3 + 6,
        "chain_db_bytes": (run_dir / "ledger" / "chain.db").stat().st_size,
        "audit_s": audit_s,
        "audit_ok": report.ok,
    }


def capsnet_weights_on_chain(image_size: int, block_gas_limit: int, hash_gas: int) -> dict:
    """Gas to put the default CapsNet's float32 weights on chain, from EVM prices."""
    import jax
    import jax.numpy as jnp

    from ccfl_jax.models import CapsNet

    variables = CapsNet().init(jax.random.key(0), jnp.zeros((1, image_size, image_size, 1)))
    leaves = [np.asarray(x, np.float32) for x in jax.tree_util.tree_leaves(variables)]
    data = b"".join(leaf.tobytes() for leaf in leaves)
    zeros = data.count(0)
    nonzero = len(data) - zeros
    calldata = max(4 * zeros + 16 * nonzero, 10 * (zeros + 4 * nonzero))
    storage = math.ceil(len(data) / 32) * SSTORE_NEW_SLOT_GAS
    total = calldata + storage
    txs = math.ceil(total / (block_gas_limit - TX_BASE_GAS))
    total += txs * TX_BASE_GAS
    return {
        "image_size": image_size,
        "num_params": int(sum(leaf.size for leaf in leaves)),
        "bytes": len(data),
        "calldata_gas": calldata,
        "storage_gas": storage,
        "total_gas": total,
        "full_blocks_needed": total / block_gas_limit,
        "over_submit_update_gas": total / hash_gas,
        "eth_at_10_gwei": total * 10e-9,
    }


def run(quick: bool = False) -> dict:
    """Measured figures: gas per call, throughput, and the cost of weights on chain."""
    gas = gas_per_call(5)
    gas["admit_founder"] = _admit_founder_gas()
    results = {"gas_5_hospitals": gas}
    if not quick:
        results["gas_16_hospitals"] = gas_per_call(16)
    results["throughput"] = throughput(20 if quick else 200)
    with tempfile.TemporaryDirectory() as tmp:
        results["rounds"] = rounds_with_audit(5 if quick else 50, pathlib.Path(tmp))
    block_gas_limit = chain_lib.in_process().w3.eth.get_block("latest").gasLimit
    results["block_gas_limit"] = block_gas_limit
    try:
        results["capsnet_weights_on_chain"] = capsnet_weights_on_chain(
            64 if quick else 128, block_gas_limit, gas["submit_update"]
        )
    except ImportError as err:  # the model is another area's; report rather than hide it
        results["capsnet_weights_on_chain"] = {"error": str(err)}
    return results
