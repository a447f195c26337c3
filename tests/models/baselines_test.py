"""CNN baselines: published backbone sizes at width 1, and a forward pass of each at tiny width."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax.models import BASELINES, covid_probability, get_model

# Backbone parameters of the reference implementations (Keras applications, include_top=False;
# AlexNet: torchvision `features`), 3-channel input. Ours take 1 channel and use GroupNorm.
PUBLISHED = {
    "vgg16": 14_714_688,
    "alexnet": 2_469_696,
    "resnet50": 23_587_712,
    "resnet50v2": 23_564_800,
    "inception_v3": 21_802_784,
    "xception": 20_861_480,
    "mobilenet": 3_228_864,
    "mobilenet_v2": 2_257_984,
    "densenet121": 7_037_504,
}
SIZE = 32


def setUpModule():
    jax.config.update("jax_disable_most_optimizations", True)


def tearDownModule():
    jax.config.update("jax_disable_most_optimizations", False)


def backbone_size(variables) -> int:
    leaves = jax.tree_util.tree_flatten_with_path(variables)[0]
    return sum(x.size for path, x in leaves if "Head" not in jax.tree_util.keystr(path))


class BaselinesTest(parameterized.TestCase):
    def test_every_table_iv_family_is_registered(self):
        self.assertContainsSubset(PUBLISHED, BASELINES)

    @parameterized.parameters(*PUBLISHED)
    def test_backbone_size_matches_the_reference(self, name):
        model = get_model(name)
        variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 1)))
        self.assertAlmostEqual(backbone_size(variables) / PUBLISHED[name], 1.0, delta=0.03)
        self.assertNotIn("batch_stats", variables)

    @parameterized.parameters(*PUBLISHED)
    def test_forward_pass(self, name):
        model = get_model(name, width=0.125)
        images = np.random.default_rng(0).uniform(-0.5, 0.5, (2, SIZE, SIZE, 1)).astype(np.float32)
        variables = jax.jit(model.init)(jax.random.key(0), images[:1])
        forward = jax.jit(lambda v, x, key: model.apply(v, x, train=True, rngs={"dropout": key}))
        logits, aux = forward(variables, images, jax.random.key(1))
        chex.assert_shape(logits, (2, 2))
        chex.assert_tree_all_finite((logits, aux["features"]))
        probability = np.asarray(covid_probability(logits, model.output_kind))
        self.assertTrue(np.all((probability >= 0) & (probability <= 1)))

    def test_width_shrinks_the_model(self):
        sizes = [
            backbone_size(
                jax.eval_shape(
                    get_model("resnet50", width=width).init,
                    jax.random.key(0),
                    jnp.zeros((1, 64, 64, 1)),
                )
            )
            for width in (0.25, 0.5)
        ]
        self.assertAlmostEqual(sizes[1] / sizes[0], 4.0, delta=0.3)


if __name__ == "__main__":
    absltest.main()
