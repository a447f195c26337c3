"""The package installs and exposes its public names."""

from absl.testing import absltest

import ccfl_jax
from ccfl_jax import errors


class PackageTest(absltest.TestCase):
    def test_version(self):
        self.assertRegex(ccfl_jax.__version__, r"^\d+\.\d+\.\d+$")

    def test_errors_share_a_base(self):
        named = [
            obj
            for obj in vars(errors).values()
            if isinstance(obj, type) and issubclass(obj, Exception) and obj is not errors.CcflError
        ]
        for cls in named:
            self.assertTrue(issubclass(cls, errors.CcflError), cls)


if __name__ == "__main__":
    absltest.main()
