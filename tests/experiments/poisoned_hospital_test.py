"""The poisoned-hospital experiment on tiny settings: the chain rejects the tampered update."""

import dataclasses
import json
import pathlib
import shutil
import tempfile

from absl import app
from absl.testing import absltest

from experiments import poisoned_hospital
from experiments.job_config import JobConfig
from ledger import audit

REPO = pathlib.Path(__file__).resolve().parents[2]
POISONED = "site_E_sao_paulo_brazil"


class PoisonedHospitalTest(absltest.TestCase):
    """One tiny poisoned run with the vote; every hospital is sampled every round."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = pathlib.Path(tempfile.mkdtemp())
        cls.base = JobConfig(
            manifest=str(REPO / "data" / "labels.csv"),
            image_size=32,
            cache_dir=str(cls.root / "cache"),
            max_per_hospital=10,
            rounds=2,
            local_steps=1,
            batch_size=4,
            hospitals_per_round=5,
            num_validators=5,  # every hospital scores every other's update (see the README)
            quorum=3,
            noise_multiplier=0.0,
            poison_hospital=POISONED,
            poison_scale=-1000.0,
            compare_local=False,
            bootstrap=20,
            progress=False,
        )
        variants = (("poisoned, FedAvg + vote", True, True),)
        cls.result = poisoned_hospital.run_experiment(cls.base, cls.root / "out", variants)
        cls.row = cls.result["rows"][0]
        cls.run_dir = pathlib.Path(cls.row["run_dir"])

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.root, ignore_errors=True)
        super().tearDownClass()

    def test_ledger_rejects_the_poisoned_update_whenever_it_was_sampled(self):
        decisions = poisoned_hospital.ledger_decisions(self.run_dir)
        self.assertEqual(sorted(decisions), [1, 2])
        for r, updates in decisions.items():
            with self.subTest(round=r):
                self.assertIn(POISONED, updates)  # sampled (all five are, every round)
                self.assertIs(updates[POISONED], False)
        fate = self.row["poisoned_hospital_updates"]
        self.assertEqual(fate["sampled_rounds"], [1, 2])
        self.assertEqual(fate["rejected_rounds"], [1, 2])
        self.assertEqual(fate["accepted_rounds"], [])

    def test_decisions_follow_eq18_from_the_recorded_votes(self):
        report = audit.audit(self.run_dir)
        scale = 1e6  # scores go on chain as integers, MAE x 1e6
        for r, entry in report.history.rounds.items():
            for address, update in entry.updates.items():
                with self.subTest(round=r, hospital=report.names[address]):
                    passed = [score <= self.base.gamma * scale for _, score, _ in update.votes]
                    self.assertEqual(passed, [ok for _, _, ok in update.votes])
                    self.assertEqual(update.accepted, sum(passed) >= self.base.quorum)

    def test_chain_decisions_match_what_was_aggregated(self):
        decisions = poisoned_hospital.ledger_decisions(self.run_dir)
        for record in poisoned_hospital.read_history(self.run_dir):
            on_chain = {h for h, ok in decisions[record["round"]].items() if ok}
            self.assertEqual(on_chain, set(record["accepted"]))
            self.assertNotIn(POISONED, record["accepted"])
        self.assertTrue(self.row["ledger_audit_ok"])
        # The job's own log (the no-vote reading) agrees with the chain.
        from_log = poisoned_hospital.hospital_fate(self.run_dir, POISONED, vote=False)
        self.assertEqual(from_log["accepted_rounds"], [])

    def test_table_files(self):
        table = (self.root / "out" / "table.md").read_text().splitlines()
        self.assertLen(table, 3)
        self.assertIn(f"{POISONED} (x-1000)", table[0])
        cells = [c.strip() for c in table[2].strip("|").split("|")]
        others = str(self.row["poisoned_hospital_updates"]["others_rejected"])
        self.assertEqual(cells[:5], ["poisoned, FedAvg + vote", "2", "0", "2", others])
        saved = json.loads((self.root / "out" / "table.json").read_text())
        self.assertEqual(saved["rows"][0]["poisoned_hospital_updates"]["rejected_rounds"], [1, 2])
        self.assertBetween(self.row["test_accuracy_at_0.5"], 0.0, 1.0)

    def test_variants_switch_only_the_attack_and_the_vote(self):
        for _, poisoned, vote in poisoned_hospital.VARIANTS:
            config = poisoned_hospital.variant_config(self.base, poisoned, vote)
            self.assertEqual(config.poison_hospital, POISONED if poisoned else "")
            self.assertEqual(config.use_ledger, vote)
            same = dataclasses.replace(config, poison_hospital=POISONED, use_ledger=True)
            self.assertEqual(same, dataclasses.replace(self.base, use_ledger=True))

    def test_no_poisoned_hospital_is_a_usage_error(self):
        clean = dataclasses.replace(self.base, poison_hospital="")
        with self.assertRaisesRegex(app.UsageError, "poison_hospital"):
            poisoned_hospital.run_experiment(clean, self.root / "never")


if __name__ == "__main__":
    absltest.main()
