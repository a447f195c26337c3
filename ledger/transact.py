"""Signing and sending transactions; reverts and replays become named errors.

Every transaction is signed by the sending hospital's own key (eth-account) with its gas
set explicitly, so nothing is estimated by running it first. When a mined transaction
reverted, its reason is recovered by replaying the call on the state just before it,
and mapped to the named error of ``ledger.errors``.
"""

import re

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from ledger import errors

MAX_FEE_PER_GAS = 10**10  # 10 gwei: well above the in-process chain's base fee
PRIORITY_FEE_PER_GAS = 1
_REASON = re.compile(r"reverted:?\s*'?([^'\"]*)")
_NONCE = re.compile(r"expected (\d+), but got (\d+)")


def derive_account(key_seed: str, name: str) -> LocalAccount:
    """A deterministic account for a named party (tests and the in-process demo only).

    Examples:
      >>> derive_account("seed", "hospital_a").address == derive_account("seed", "hospital_a").address
      True
    """
    return Account.from_key(keccak(text=f"ccfl-ledger:{key_seed}:{name}"))


def public_key(account: LocalAccount) -> bytes:
    """The 64-byte uncompressed public key of an account."""
    return account._key_obj.public_key.to_bytes()


def _revert_reason(chain, tx: dict, block_number: int) -> str:
    call = {k: tx[k] for k in ("from", "to", "data", "gas") if k in tx}
    try:
        chain.w3.eth.call(call, block_identifier=block_number)
    except Exception as err:  # eth-tester and nodes raise different classes  # noqa: BLE001
        match = _REASON.search(str(err))
        return match.group(1).strip() if match else str(err)
    return "unknown reason (the call succeeds when replayed)"


def _is_replay(message: str) -> bool:
    """Whether a refusal means the nonce was used already (not a gap ahead of it)."""
    message = message.lower()
    if "nonce too low" in message or "already known" in message:
        return True
    match = _NONCE.search(message)
    return bool(match) and int(match.group(2)) < int(match.group(1))


def send_raw(chain, raw_transaction: bytes, label: str):
    """Sends an already signed transaction and returns its receipt.

    A replay is recognised by its nonce, which the chain has already used: looking the
    transaction up by hash would scan every block on the in-process chain.

    Raises:
      ReplayedTransaction: this signed transaction, or another with its nonce, was sent.
    """
    try:
        sent = chain.w3.eth.send_raw_transaction(raw_transaction)
    except Exception as err:
        if _is_replay(str(err)):
            raise errors.ReplayedTransaction(
                f"{label}: signed transaction 0x{keccak(raw_transaction).hex()} reuses a "
                f"nonce already spent on this chain ({err}). Sign a new transaction with the "
                "account's current nonce instead of sending old bytes again."
            ) from err
        raise
    return chain.w3.eth.wait_for_transaction_receipt(sent)


def transact(chain, account: LocalAccount, call, gas: int, label: str):
    """Signs ``call`` (a web3 contract function call) with ``account`` and sends it.

    Args:
      chain: where to send.
      account: the sender's key.
      call: e.g. ``contract.functions.vote(1, hospital, 250000)``.
      gas: the gas limit, set explicitly.
      label: names the call in error messages.

    Returns:
      The receipt of the successful transaction.

    Raises:
      TransactionReverted: (a subclass named by the revert reason) the contract refused it.
    """
    w3 = chain.w3
    tx = call.build_transaction(
        {
            "from": account.address,
            "nonce": w3.eth.get_transaction_count(account.address),
            "gas": gas,
            "chainId": w3.eth.chain_id,
            "maxFeePerGas": MAX_FEE_PER_GAS,
            "maxPriorityFeePerGas": PRIORITY_FEE_PER_GAS,
        }
    )
    signed = account.sign_transaction(tx)
    receipt = send_raw(chain, signed.raw_transaction, label)
    if receipt.status != 1:
        if receipt.gasUsed >= gas:
            raise errors.TransactionReverted(
                f"{label} ran out of its {gas} gas in tx 0x{receipt.transactionHash.hex()}; "
                "raise its entry in ledger.client.GAS."
            )
        reason = _revert_reason(chain, tx, receipt.blockNumber - 1)
        raise errors.from_revert(reason, label)
    return receipt
