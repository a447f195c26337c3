"""The public face of ccfl_jax.models and ccfl_jax.train, and get_model by name."""

from absl.testing import absltest

import ccfl_jax.models as models
import ccfl_jax.train as train
from ccfl_jax.errors import UnknownModelError


class RegistryTest(absltest.TestCase):
    def test_public_names_exist(self):
        for package in (models, train):
            for name in package.__all__:
                self.assertTrue(hasattr(package, name), f"{package.__name__}.{name}")

    def test_every_model_declares_its_output_kind(self):
        for name, cls in models.MODELS.items():
            self.assertIn(cls.output_kind, ("lengths", "logits", "segmentation"), name)

    def test_unknown_name_lists_choices(self):
        with self.assertRaises(UnknownModelError) as caught:
            models.get_model("resnet18")
        self.assertIn("resnet18", str(caught.exception))
        self.assertIn("capsnet", str(caught.exception))
        self.assertIsInstance(caught.exception, KeyError)


if __name__ == "__main__":
    absltest.main()
