"""Hospital ids, XOR distance (Eq. 13) and the leader/validator choice, by hand."""

import numpy as np
from absl.testing import absltest, parameterized
from eth_keys import keys

from ledger import errors, ids, transact


class IdsTest(parameterized.TestCase):
    def test_id_is_keccak_of_public_key_and_ends_in_address(self):
        account = transact.derive_account("t", "h0")
        public_key = keys.PrivateKey(account.key).public_key
        hospital = ids.hospital_id(public_key.to_bytes())
        self.assertLen(hospital, 32)
        self.assertEqual(hospital[12:], public_key.to_canonical_address())

    def test_bad_public_key_is_named(self):
        with self.assertRaises(errors.InvalidPublicKey):
            ids.hospital_id(b"\x04" + bytes(64))

    @parameterized.parameters(
        (0b1010, 0b0110, 0b1100),
        (0xFF, 0x00, 255),
        (7, 7, 0),
    )
    def test_xor_distance_by_hand(self, a, b, expected):
        self.assertEqual(ids.xor_distance(bytes([a]), bytes([b])), expected)

    def test_xor_distance_is_a_metric_on_samples(self):
        rng = np.random.default_rng(0)
        for _ in range(20):
            a, b, c = (rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(3))
            self.assertEqual(ids.xor_distance(a, b), ids.xor_distance(b, a))
            self.assertLessEqual(
                ids.xor_distance(a, c), ids.xor_distance(a, b) + ids.xor_distance(b, c)
            )

    def test_leader_and_validators_by_hand(self):
        # seed 0b1000: distances 0b1001->1, 0b1100->4, 0b0001->9, 0b1111->7
        hospital_ids = [bytes([0b0001]), bytes([0b1100]), bytes([0b1001]), bytes([0b1111])]
        leader, validators = ids.select_leader_and_validators(bytes([0b1000]), hospital_ids, 3)
        self.assertEqual(leader, bytes([0b1001]))
        self.assertEqual(validators, [bytes([0b1001]), bytes([0b1100]), bytes([0b1111])])

    def test_choice_matches_numpy_on_random_ids(self):
        rng = np.random.default_rng(1)
        for trial in range(10):
            hospital_ids = [rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(9)]
            seed = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
            # Independent: compare byte arrays lexicographically after XOR.
            xored = np.frombuffer(b"".join(hospital_ids), np.uint8).reshape(9, 32) ^ np.frombuffer(
                seed, np.uint8
            )
            order = np.lexsort(xored.T[::-1])
            _, validators = ids.select_leader_and_validators(seed, hospital_ids, 4)
            with self.subTest(trial=trial):
                self.assertEqual(validators, [hospital_ids[i] for i in order[:4]])

    def test_round_seed_binds_round_and_model(self):
        model = bytes(range(32))
        self.assertNotEqual(ids.round_seed(1, model), ids.round_seed(2, model))
        with self.assertRaises(ValueError):
            ids.round_seed(0, model)

    @parameterized.parameters(0, 4)
    def test_bad_k_is_rejected(self, k):
        with self.assertRaises(ValueError):
            ids.select_leader_and_validators(bytes(1), [bytes([1]), bytes([2]), bytes([3])], k)


if __name__ == "__main__":
    absltest.main()
