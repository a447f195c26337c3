"""The events decode to exactly the history the client wrote."""

import hashlib

from absl.testing import absltest

from ledger import consensus, history


def sha(text: str) -> bytes:
    return hashlib.sha256(text.encode()).digest()


class HistoryTest(absltest.TestCase):
    needs_world = True

    def test_events_rebuild_what_was_written(self):
        c = self.world.consortium
        addr = c.address_of
        written_records = {}
        for provider, data_type, size in [("h0", "ct-series", 1200), ("h2", "ct-slice", 34)]:
            rid = c.hospital(provider).share_record(sha(data_type), data_type, size)
            written_records[rid] = (
                sha(data_type),
                c.hospital(provider).hospital_id,
                data_type,
                size,
            )
        c.hospital("h3").retrieve_record(1, "hospital")

        sampled = ["h1", "h0", "h3"]
        info = c.open_round(1, sha("m0"), sampled)
        written_updates = {}
        for i, name in enumerate(sampled):
            c.submit_update(1, name, sha(f"d{name}"), 10 + i, 0.1 * (i + 1))
            written_updates[addr(name)] = (
                sha(f"d{name}"),
                10 + i,
                consensus.to_score(0.1 * (i + 1)),
            )
        written_votes = {addr(n): [] for n in sampled}
        for validator in info.validators:
            for name in sampled:
                if name != validator:
                    mae = 0.2 if name != "h3" else 0.8
                    c.vote(1, validator, name, mae)
                    written_votes[addr(name)].append(
                        (addr(validator), consensus.to_score(mae), mae <= 0.5)
                    )
        accepted = c.finalize(1, sha("m1"))

        hist = history.rebuild(c.chain, c.contract)
        self.assertEqual(
            [m for m, _, _ in hist.members], [addr(n) for n in ["h0", "h1", "h2", "h3"]]
        )
        self.assertEqual(
            {
                rid: (bytes(r["data_hash"]), bytes(r["provider_id"]), r["data_type"], r["size"])
                for rid, r in hist.records.items()
            },
            written_records,
        )
        (retrieval,) = hist.retrievals
        self.assertEqual(
            (retrieval["record_id"], retrieval["requester_type"], retrieval["tx_count"]),
            (1, "hospital", 1),
        )
        self.assertEqual(bytes(retrieval["requester_id"]), c.hospital("h3").hospital_id)
        (entry,) = hist.rounds.values()
        self.assertEqual((entry.model_hash, entry.new_model_hash), (sha("m0"), sha("m1")))
        self.assertEqual(entry.sampled, [addr(n) for n in sampled])
        self.assertEqual(entry.leader, addr(info.leader))
        self.assertEqual(entry.validators, [addr(v) for v in info.validators])
        self.assertEqual(list(entry.updates), [addr(n) for n in sampled])
        for address, update in entry.updates.items():
            self.assertEqual(
                (update.delta_hash, update.num_examples, update.local_loss),
                written_updates[address],
            )
            self.assertEqual(update.votes, written_votes[address])
            self.assertEqual(update.accepted, address in entry.accepted)
        self.assertEqual(entry.accepted, [addr(n) for n in accepted])
        self.assertEqual(accepted, ["h0", "h1"])  # hospital order
        blocks = [block for _, block, _ in hist.events]
        self.assertEqual(blocks, sorted(blocks))


if __name__ == "__main__":
    absltest.main()
