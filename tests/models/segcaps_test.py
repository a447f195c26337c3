"""SegCaps R3: parameter count, shapes, gradients at zero input, overfitting two real slices."""

import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest
from PIL import Image

from ccfl_jax.errors import ModelConfigError
from ccfl_jax.models import SegCaps
from ccfl_jax.train.segmentation import make_segmentation_loss_fn, positive_weight
from ccfl_jax.train.steps import make_train_step

DATA = pathlib.Path(__file__).resolve().parents[2] / "data" / "covid_semiseg" / "train"
SIZE = 16  # the smallest size SegCaps takes (three stride-2 stages); keeps the test short


def load_real_segmentation_batch(names, size: int = SIZE) -> dict:
    """Real MedSeg slices and infection masks, resized, images scaled to [-0.5, 0.5]."""
    images, masks = [], []
    for name in names:
        image = Image.open(DATA / "images" / f"{name}.jpg").convert("L")
        mask = Image.open(DATA / "masks" / f"{name}.png").convert("L")
        images.append(np.asarray(image.resize((size, size), Image.BILINEAR), np.float32) / 255.0)
        masks.append(np.asarray(mask.resize((size, size), Image.NEAREST)) > 127)
    return {
        "images": np.stack(images)[..., None] - 0.5,
        "masks": np.stack(masks)[..., None].astype(np.float32),
        "mask": np.ones(len(names), bool),
    }


def count(tree) -> int:
    return sum(leaf.size for leaf in jax.tree.leaves(tree))


class SegCapsTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = SegCaps()
        jax.config.update("jax_disable_most_optimizations", True)  # init compiles fast this way
        init = jax.jit(cls.model.init)
        cls.params = init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 1)))["params"]
        jax.config.update("jax_disable_most_optimizations", False)
        cls.batch = load_real_segmentation_batch(["11", "12"])
        weight = positive_weight(cls.batch["masks"])
        loss_fn = make_segmentation_loss_fn(cls.model, positive_weight=weight)
        cls.optimizer = optax.adam(1e-2)
        cls.train_step = staticmethod(jax.jit(make_train_step(loss_fn, cls.optimizer)))

    def test_parameter_count_is_that_of_segcaps_r3(self):
        # Hand count of the R3 layer list (LaLonde & Bagci 2018): conv1 416, primary 12,832,
        # conv caps 25,664 + 51,328 + 205,056 + 410,112 + 409,856, deconv/conv up 131,328 +
        # 102,528 + 32,832 + 25,664 + 8,224, seg caps 272, decoder 1,088 + 8,320 + 129.
        want = 416 + 12832 + 25664 + 51328 + 205056 + 410112 + 409856
        want += 131328 + 102528 + 32832 + 25664 + 8224 + 272 + 1088 + 8320 + 129
        self.assertEqual(count(self.params), want)
        self.assertAlmostEqual(want / 1e6, 1.4, delta=0.05)

    def test_shapes(self):
        apply = lambda p, x: self.model.apply({"params": p}, x)  # noqa: E731
        probability, aux = jax.eval_shape(apply, self.params, jnp.zeros((3, 64, 48, 1)))
        chex.assert_shape(probability, (3, 64, 48, 1))
        chex.assert_shape(aux["poses"], (3, 64, 48, 16))
        chex.assert_shape(aux["reconstruction"], (3, 64, 48, 1))

    def test_overfits_two_real_slices(self):
        params, opt_state = self.params, self.optimizer.init(self.params)
        losses = []
        for index in range(150):
            params, opt_state, aux = self.train_step(
                params, opt_state, self.batch, jax.random.key(index)
            )
            losses.append(float(aux["loss"]))
            if losses[-1] < losses[0] / 10:
                break
        self.assertLess(losses[-1], losses[0] / 10, f"loss {losses[0]:.4f} -> {losses[-1]:.4f}")
        self.assertGreater(float(aux["dice"]), 0.8)

    def test_gradients_finite_at_zero_input(self):
        batch = {
            "images": np.zeros((2, SIZE, SIZE, 1), np.float32),
            "masks": np.zeros((2, SIZE, SIZE, 1), np.float32),
            "mask": np.ones(2, bool),
        }
        opt_state = self.optimizer.init(self.params)
        params, opt_state, aux = self.train_step(self.params, opt_state, batch, jax.random.key(0))
        # After one Adam step the first moment is exactly (1 - b1) * gradient.
        chex.assert_tree_all_finite((opt_state[0].mu, params, aux["loss"]))
        self.assertGreater(
            max(float(jnp.abs(m).max()) for m in jax.tree.leaves(opt_state[0].mu)), 0
        )

    def test_size_not_divisible_by_8_raises(self):
        with self.assertRaises(ModelConfigError):
            self.model.apply({"params": self.params}, jnp.zeros((1, 36, 36, 1)))


if __name__ == "__main__":
    absltest.main()
