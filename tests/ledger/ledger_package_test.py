"""The ledger package: public names, no JAX, errors and revert reasons in step."""

import re
import subprocess
import sys

from absl.testing import absltest

import ledger
from ledger import chain, errors


class LedgerPackageTest(absltest.TestCase):
    def test_public_names(self):
        for name in ledger.__all__:
            self.assertTrue(hasattr(ledger, name), name)

    def test_does_not_import_jax_or_ccfl_jax(self):
        code = "import sys, ledger, ledger.audit; print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'flax', 'ccfl_jax')))"
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        self.assertEqual(out.stdout.strip(), "[]")

    def test_errors_subclass_base_and_a_builtin(self):
        for obj in vars(errors).values():
            if (
                isinstance(obj, type)
                and issubclass(obj, Exception)
                and obj is not errors.LedgerError
            ):
                self.assertTrue(issubclass(obj, errors.LedgerError), obj)
                builtins = [
                    c
                    for c in obj.__mro__
                    if c.__module__ == "builtins" and c not in (Exception, BaseException, object)
                ]
                self.assertNotEmpty(builtins, obj)
                self.assertTrue(obj.__doc__, obj)

    def test_every_revert_reason_is_mapped(self):
        source = chain.CONTRACT_PATH.read_text()
        reasons = set(re.findall(r'assert [^\n]*, "([^"]+)"', source))
        self.assertSetEqual(reasons, set(errors.REVERT_REASONS))


if __name__ == "__main__":
    absltest.main()
