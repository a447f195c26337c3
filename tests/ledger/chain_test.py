"""Chain access: compile cache, deployment checks, save/load of the in-process chain."""

import pathlib
import tempfile
from unittest import mock

from absl.testing import absltest

from ledger import chain, errors, transact


class ChainTest(absltest.TestCase):
    def tempdir(self) -> pathlib.Path:
        tmp = tempfile.TemporaryDirectory()
        self.addCleanup(tmp.cleanup)
        return pathlib.Path(tmp.name)

    def test_compile_is_cached_by_source_hash(self):
        cache = self.tempdir()
        first = chain.compile_contract(cache_dir=cache)
        self.assertLen(list(cache.glob("*.json")), 1)
        with mock.patch.object(
            chain.vyper, "compile_code", side_effect=AssertionError("recompiled")
        ):
            second = chain.compile_contract(cache_dir=cache)
        self.assertEqual(first, second)
        self.assertTrue(first.bytecode.startswith("0x"))

    def test_bad_consensus_parameters_revert_by_name(self):
        c = chain.in_process()
        deployer = transact.derive_account("chain-test", "deployer")
        chain.fund(c, deployer.address, 10**18)
        compiled = chain.compile_contract()
        for args in [(3, 3, 500_000), (1, 0, 500_000), (17, 2, 500_000)]:
            with self.subTest(args=args), self.assertRaises(errors.InvalidConsensusParameters):
                chain.deploy(c, compiled, args, deployer)
        address, block = chain.deploy(c, compiled, (3, 2, 500_000), deployer)
        self.assertGreater(len(c.w3.eth.get_code(address)), 0)
        self.assertEqual(block, c.w3.eth.block_number)

    def test_save_and_load_continue_the_same_blocks(self):
        c = chain.in_process()
        chain.fund(c, transact.derive_account("chain-test", "x").address, 10**18)
        path = self.tempdir() / "ledger" / "chain.db"
        chain.save(c, path)
        loaded = chain.load(path)
        latest = c.w3.eth.get_block("latest")
        self.assertEqual(loaded.w3.eth.get_block("latest").hash, latest.hash)
        self.assertEqual(
            loaded.w3.eth.get_balance(transact.derive_account("chain-test", "x").address), 10**18
        )
        chain.fund(loaded, transact.derive_account("chain-test", "y").address, 1)
        self.assertEqual(loaded.w3.eth.block_number, latest.number + 1)

    def test_missing_or_foreign_chain_file(self):
        with self.assertRaises(errors.LedgerNotFound):
            chain.load(self.tempdir() / "nope.db")
        bogus = self.tempdir() / "bogus.db"
        bogus.write_bytes(b"x" * 10)
        with self.assertRaises(ValueError):
            chain.load(bogus)

    def test_connect_to_nothing_is_named(self):
        with self.assertRaises(ConnectionError):
            chain.connect("http://127.0.0.1:9")


if __name__ == "__main__":
    absltest.main()
