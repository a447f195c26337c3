"""Hospital ids from key hashes, XOR distance and the round's leader and validators.

References:
  Kumar et al. 2020, arXiv 2007.06537, Sec. II-C (Eq. 12-13): every hospital has an id,
  and ids are compared by the Kademlia XOR metric (Maymounkov and Mazieres 2002).

A hospital's id is keccak256 of its 64-byte uncompressed public key, exactly what the
contract stores in ``request_join``; its Ethereum address is the last 20 bytes of that id.
"""

from collections.abc import Sequence

from eth_utils import keccak

from ledger import errors

ID_BYTES = 32


def hospital_id(public_key: bytes) -> bytes:
    """The id of a hospital: keccak256 of its public key (Eq. 12).

    Args:
      public_key: the 64-byte uncompressed secp256k1 public key (no 0x04 prefix).

    Returns:
      The 32-byte id.

    Raises:
      InvalidPublicKey: the key is not 64 bytes.

    Examples:
      >>> hospital_id(bytes(64)).hex()[:16]
      'ad3228b676f7d3cd'
    """
    if len(public_key) != 64:
        raise errors.InvalidPublicKey(
            f"public key of {len(public_key)} bytes: expected the 64-byte uncompressed "
            "secp256k1 key without its 0x04 prefix (eth_keys PublicKey.to_bytes())."
        )
    return keccak(public_key)


def xor_distance(a: bytes, b: bytes) -> int:
    """The Kademlia distance between two ids, as an integer (Eq. 13).

    Examples:
      >>> xor_distance(bytes([0b0101]), bytes([0b0011]))
      6
    """
    if len(a) != len(b):
        raise ValueError(f"ids of {len(a)} and {len(b)} bytes: XOR distance needs equal lengths.")
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")  # Eq. 13


def round_seed(round_index: int, model_hash: bytes) -> bytes:
    """The seed of round r: keccak256(model_hash ++ r as 32 big-endian bytes), as on chain.

    Examples:
      >>> len(round_seed(1, bytes(32)))
      32
    """
    if len(model_hash) != 32 or round_index < 1:
        raise ValueError(
            f"round {round_index} with a {len(model_hash)}-byte model hash: rounds start "
            "at 1 and the hash must be 32 bytes."
        )
    return keccak(model_hash + round_index.to_bytes(32, "big"))


def closest(seed: bytes, ids: Sequence[bytes], k: int) -> list[bytes]:
    """The k ids closest to seed by XOR distance, closest first (Eq. 13).

    Examples:
      >>> [i.hex() for i in closest(bytes([8]), [bytes([1]), bytes([9]), bytes([12])], 2)]
      ['09', '0c']
    """
    if len(set(ids)) != len(ids):
        raise ValueError("hospital ids repeat: every hospital needs its own id.")
    if not 1 <= k <= len(ids):
        raise ValueError(f"k={k} with {len(ids)} ids: choose 1 <= k <= the number of ids.")
    return sorted(ids, key=lambda i: xor_distance(i, seed))[:k]


def select_leader_and_validators(
    round_seed: bytes, hospital_ids: Sequence[bytes], k: int
) -> tuple[bytes, list[bytes]]:
    """The round's leader and validators: the k ids closest to the seed (Eq. 13).

    The validators are the k closest ids, closest first; the leader is the closest. The
    contract computes the same choice over its members in ``open_round``.

    Args:
      round_seed: 32 bytes, e.g. from :func:`round_seed`.
      hospital_ids: the members' 32-byte ids, distinct.
      k: number of validators, 1 <= k <= len(hospital_ids).

    Returns:
      ``(leader_id, validator_ids)`` with ``validator_ids[0] == leader_id``.

    Examples:
      >>> ids = [bytes([0x10]), bytes([0x03]), bytes([0x07])]
      >>> leader, validators = select_leader_and_validators(bytes([0x05]), ids, 2)
      >>> leader.hex(), [v.hex() for v in validators]
      ('07', ['07', '03'])
    """
    validators = closest(round_seed, hospital_ids, k)
    return validators[0], validators
