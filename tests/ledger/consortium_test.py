"""Every on-chain rule of the consortium contract, through the typed client.

Each violation must revert with its named error from ledger.errors.
"""

import hashlib

from absl.testing import absltest, parameterized

from ledger import consensus, errors, ids, transact


def sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


M0 = sha("model-0")
M1 = sha("model-1")
FOUNDERS = ["h0", "h1", "h2", "h3"]


class MembershipTest(parameterized.TestCase):
    needs_world = True

    def test_founders_are_members_with_key_hash_ids(self):
        c = self.world.consortium
        self.assertEqual(c.member_names(), FOUNDERS)
        for name in FOUNDERS:
            key = transact.public_key(c.hospitals[name])
            on_chain = bytes(c.contract.functions.hospital_id(c.address_of(name)).call())
            self.assertEqual(on_chain, ids.hospital_id(key))
            # The address is the last 20 bytes of the id (the Ethereum rule).
            self.assertEqual(on_chain[12:].hex(), c.address_of(name)[2:].lower())

    def test_non_member_transaction_reverts(self):
        with self.assertRaises(errors.NotMember):
            self.world.send_as(self.world.outsider, "share_record", M0, "ct", 1)

    def test_wrong_public_key_reverts(self):
        c = self.world.consortium
        someone_elses = transact.public_key(c.hospitals["h0"])
        with self.assertRaises(errors.InvalidPublicKey):
            self.world.send_as(self.world.outsider, "request_join", someone_elses)

    def test_only_deployer_admits_founders(self):
        c = self.world.consortium
        c.hospital(self.world.applicant).request_join()
        with self.assertRaises(errors.NotDeployer):
            self.world.send_as(c.hospitals["h0"], "admit_founder", c.address_of("h4"))

    def test_founding_closes_with_first_round(self):
        c = self.world.consortium
        c.hospital(self.world.applicant).request_join()
        c.open_round(1, M0, FOUNDERS)
        with self.assertRaises(errors.FoundingClosed):
            c.admit_founder(self.world.applicant)

    def test_admission_needs_a_join_request(self):
        with self.assertRaises(errors.NotAdmitted):
            self.world.consortium.hospital("h0").vote_admit(self.world.applicant)

    def test_strict_majority_admits(self):
        c = self.world.consortium
        c.hospital(self.world.applicant).request_join()
        for voter in ["h0", "h1"]:  # 2 of 4 is no strict majority
            c.hospital(voter).vote_admit(self.world.applicant)
            self.assertFalse(c.contract.functions.is_member(c.address_of("h4")).call())
        with self.assertRaises(errors.DuplicateVote):
            c.hospital("h1").vote_admit(self.world.applicant)
        c.hospital("h2").vote_admit(self.world.applicant)  # 3 of 4
        self.assertEqual(c.member_names(), [*FOUNDERS, "h4"])
        with self.assertRaises(errors.AlreadyMember):
            c.hospital("h3").vote_admit(self.world.applicant)


class RecordsTest(absltest.TestCase):
    needs_world = True

    def test_share_and_retrieve_keep_fig3_fields(self):
        c = self.world.consortium
        record_id = c.hospital("h1").share_record(sha("scan-series"), "ct-series", 5_000_000)
        self.assertEqual(c.hospital("h2").retrieve_record(record_id, "hospital"), 1)
        self.assertEqual(c.hospital("h3").retrieve_record(record_id, "researcher"), 2)
        data_hash, provider, provider_id, data_type, size, timestamp, count = (
            c.contract.functions.records(record_id).call()
        )
        self.assertEqual(
            (bytes(data_hash), provider, data_type, size, count),
            (sha("scan-series"), c.address_of("h1"), "ct-series", 5_000_000, 2),
        )
        self.assertEqual(bytes(provider_id), c.hospital("h1").hospital_id)
        self.assertGreater(timestamp, 0)

    def test_overlong_labels_are_refused_before_sending(self):
        c = self.world.consortium
        blocks = c.chain.w3.eth.block_number
        with self.assertRaises(ValueError):
            c.hospital("h0").share_record(sha("x"), "x" * 33, 1)
        with self.assertRaises(ValueError):
            c.hospital("h0").share_record("not hex", "ct", 1)
        self.assertEqual(c.chain.w3.eth.block_number, blocks)

    def test_retrieval_of_unknown_record_reverts(self):
        with self.assertRaises(errors.UnknownRecord):
            self.world.consortium.hospital("h0").retrieve_record(99, "hospital")

    def test_only_members_retrieve(self):
        c = self.world.consortium
        record_id = c.hospital("h1").share_record(sha("x"), "ct-slice", 10)
        with self.assertRaises(errors.NotMember):
            self.world.send_as(self.world.outsider, "retrieve_record", record_id, "hospital")


class RoundTest(parameterized.TestCase):
    needs_world = True

    def open_and_submit(self):
        c = self.world.consortium
        info = c.open_round(1, M0, FOUNDERS)
        for name in FOUNDERS:
            c.submit_update(1, name, sha(f"delta-{name}"), 10, 0.25)
        return info

    def vote_all(self, info, mae_of):
        c = self.world.consortium
        for validator in info.validators:
            for name in FOUNDERS:
                if name != validator:
                    c.vote(1, validator, name, mae_of(validator, name))

    def test_leader_and_validators_match_python_xor_choice(self):
        c = self.world.consortium
        info = c.open_round(1, M0, FOUNDERS)
        seed = ids.round_seed(1, M0)
        self.assertEqual(info.seed, seed)
        member_ids = {c.hospital(n).hospital_id: n for n in FOUNDERS}
        leader, validators = ids.select_leader_and_validators(seed, list(member_ids), 3)
        self.assertEqual(info.leader, member_ids[leader])
        self.assertEqual(list(info.validators), [member_ids[v] for v in validators])

    def test_accepted_mask_matches_hand_computed_eq18(self):
        info = self.open_and_submit()
        # h2's update is poor for every validator; h3's passes for exactly one validator.
        first_validator = info.validators[0]

        def mae_of(validator, name):
            if name == "h2":
                return 0.9
            if name == "h3":
                return 0.1 if validator == first_validator else 0.7
            return 0.2

        self.vote_all(info, mae_of)
        expected = []
        for name in FOUNDERS:
            scores = [consensus.to_score(mae_of(v, name)) for v in info.validators if v != name]
            passing = sum(s <= 500_000 for s in scores)  # gamma = 0.5, by hand
            expected.append(passing >= 2)
            self.assertEqual(consensus.is_accepted(scores, gamma=0.5, quorum=2), passing >= 2)
        mask = self.world.consortium.accepted_mask(1)
        self.assertEqual(mask, [*expected, False])  # h4 is no member, so never sampled
        self.assertEqual(mask[2], False)
        accepted = self.world.consortium.finalize(1, M1)
        self.assertEqual(accepted, [n for n, ok in zip(FOUNDERS, expected, strict=True) if ok])

    def test_resume_points(self):
        c = self.world.consortium
        self.assertEqual(c.last_finalized_round(), 0)
        with self.assertRaises(errors.UnknownRound):
            c.finalized_model_hash(0)
        info = self.open_and_submit()
        self.assertEqual((c.last_finalized_round(), c.finalized_model_hash(0)), (0, M0.hex()))
        with self.assertRaises(errors.UnknownRound):
            c.finalized_model_hash(1)
        self.vote_all(info, lambda v, n: 0.1)
        c.finalize(1, M1)
        self.assertEqual((c.last_finalized_round(), c.finalized_model_hash(1)), (1, M1.hex()))

    def test_round_out_of_order_reverts(self):
        with self.assertRaises(errors.RoundOutOfOrder):
            self.world.consortium.open_round(2, M0, FOUNDERS)

    def test_next_round_must_start_from_finalized_model(self):
        info = self.open_and_submit()
        self.vote_all(info, lambda v, n: 0.1)
        self.world.consortium.finalize(1, M1)
        with self.assertRaises(errors.ModelHashMismatch):
            self.world.consortium.open_round(2, M0, FOUNDERS)
        self.world.consortium.open_round(2, M1, FOUNDERS)

    @parameterized.named_parameters(
        ("repeated", ["h0", "h0"]),
        ("non_member", ["h0", "h4"]),
        ("empty", []),
    )
    def test_bad_sample_reverts(self, sampled):
        c = self.world.consortium
        with self.assertRaises(errors.InvalidSample):
            c.hospital("h0").open_round(1, M0, sampled)

    def test_non_member_cannot_submit(self):
        self.world.consortium.open_round(1, M0, FOUNDERS)
        with self.assertRaises(errors.NotMember):
            self.world.send_as(self.world.outsider, "submit_update", 1, sha("d"), 1, 1)

    def test_unknown_round_reverts(self):
        with self.assertRaises(errors.UnknownRound):
            self.world.consortium.submit_update(3, "h0", sha("d"), 1, 0.1)

    def test_unsampled_hospital_cannot_submit(self):
        self.world.consortium.open_round(1, M0, ["h0", "h1"])
        with self.assertRaises(errors.NotSampled):
            self.world.consortium.submit_update(1, "h3", sha("d"), 1, 0.1)

    def test_one_update_per_hospital_per_round(self):
        self.open_and_submit()
        with self.assertRaises(errors.DuplicateUpdate):
            self.world.consortium.submit_update(1, "h0", sha("again"), 1, 0.1)

    def test_vote_rules(self):
        c = self.world.consortium
        info = self.open_and_submit()
        outsider_of_validators = next(n for n in FOUNDERS if n not in info.validators)
        validator = info.validators[1]
        other = next(n for n in FOUNDERS if n != validator)
        with self.subTest("only validators vote"), self.assertRaises(errors.NotValidator):
            c.vote(1, outsider_of_validators, validator, 0.1)
        with self.subTest("no vote on one's own update"), self.assertRaises(errors.SelfVote):
            c.vote(1, validator, validator, 0.1)
        with self.subTest("one vote per update"):
            c.vote(1, validator, other, 0.1)
            with self.assertRaises(errors.DuplicateVote):
                c.vote(1, validator, other, 0.1)
        with self.subTest("only on submitted updates"):
            with self.assertRaises(errors.UnknownUpdate):
                c.vote(1, validator, "h4", 0.1)

    def test_finalize_rules(self):
        c = self.world.consortium
        info = self.open_and_submit()
        with self.subTest("no quorum before votes"), self.assertRaises(errors.NoQuorum):
            c.finalize(1, M1)
        self.vote_all(info, lambda v, n: 0.1 if n != "h1" else 0.9)
        non_leader = next(n for n in FOUNDERS if n != info.leader)
        with self.subTest("only the leader"), self.assertRaises(errors.NotLeader):
            c.hospital(non_leader).finalize(1, M1, ["h0", "h2", "h3"])
        leader = c.hospital(info.leader)
        for wrong in (
            ["h0", "h2"],
            ["h0", "h1", "h2", "h3"],
            ["h0", "h0", "h2"],
            ["h1", "h2", "h3"],
        ):
            with self.subTest(accepted=wrong), self.assertRaises(errors.AcceptedSetMismatch):
                leader.finalize(1, M1, wrong)
        leader.finalize(1, M1, ["h3", "h0", "h2"])
        with self.subTest("nothing after the round closed"):
            for call in (
                lambda: c.submit_update(1, "h0", sha("late"), 1, 0.1),
                lambda: c.vote(1, info.leader, "h1", 0.1),
                lambda: leader.finalize(1, M1, ["h0", "h2", "h3"]),
            ):
                with self.assertRaises(errors.RoundClosed):
                    call()

    def test_replayed_signed_transaction_is_rejected(self):
        c = self.world.consortium
        account = c.hospitals["h0"]
        w3 = c.chain.w3
        tx = c.contract.functions.share_record(sha("r"), "ct", 1).build_transaction(
            {
                "from": account.address,
                "nonce": w3.eth.get_transaction_count(account.address),
                "gas": 300_000,
                "chainId": w3.eth.chain_id,
                "maxFeePerGas": transact.MAX_FEE_PER_GAS,
                "maxPriorityFeePerGas": 1,
            }
        )
        raw = account.sign_transaction(tx).raw_transaction
        self.assertEqual(transact.send_raw(c.chain, raw, "first").status, 1)
        with self.assertRaises(errors.ReplayedTransaction):
            transact.send_raw(c.chain, raw, "replay")
        self.assertEqual(c.contract.functions.num_records().call(), 1)
        reused_nonce = account.sign_transaction({**tx, "data": tx["data"][:-2] + "01"})
        with self.assertRaises(errors.ReplayedTransaction):
            transact.send_raw(c.chain, reused_nonce.raw_transaction, "reused nonce")


if __name__ == "__main__":
    absltest.main()
