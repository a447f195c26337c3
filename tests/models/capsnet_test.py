"""CapsNet: shapes, output ranges, gradients at zero input, and overfitting a tiny real batch."""

import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest
from PIL import Image

from ccfl_jax.errors import ModelConfigError
from ccfl_jax.models import CapsNet
from ccfl_jax.train import init_params, make_loss_fn, make_train_step

DATA = pathlib.Path(__file__).resolve().parents[2] / "data" / "sars_cov_2_ct"
SIZE = 32


def load_real_batch(per_class: int, size: int = SIZE) -> dict:
    """A few real CT slices per class: grey, resized, scaled to [-0.5, 0.5]; covid = 1."""
    images, labels = [], []
    for label, folder in enumerate(["non_covid", "covid"]):
        for path in sorted((DATA / folder).glob("*.png"))[:per_class]:
            grey = Image.open(path).convert("L").resize((size, size), Image.BILINEAR)
            images.append(np.asarray(grey, np.float32)[..., None] / 255.0 - 0.5)
            labels.append(label)
    return {
        "images": np.stack(images),
        "labels": np.asarray(labels, np.int32),
        "mask": np.ones(len(labels), bool),
    }


def small_capsnet(**kwargs) -> CapsNet:
    return CapsNet(
        conv_features=(16,), primary_types=4, primary_dims=8, decoder_hidden=32, **kwargs
    )


def setUpModule():
    jax.config.update("jax_disable_most_optimizations", True)


def tearDownModule():
    jax.config.update("jax_disable_most_optimizations", False)


class CapsNetTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = small_capsnet()
        cls.params = init_params(cls.model, jax.random.key(0), SIZE)
        cls.batch = load_real_batch(per_class=4)

    def test_shapes_and_length_range(self):
        lengths, aux = jax.jit(lambda p, x: self.model.apply({"params": p}, x))(
            self.params, self.batch["images"]
        )
        chex.assert_shape(lengths, (8, 2))
        chex.assert_shape(aux["poses"], (8, 2, 16))
        chex.assert_shape(aux["reconstruction"], (8, SIZE, SIZE, 1))
        np.testing.assert_allclose(lengths, np.linalg.norm(aux["poses"], axis=-1), atol=1e-3)
        self.assertTrue(np.all((np.asarray(lengths) >= 0) & (np.asarray(lengths) <= 1)))
        recon = np.asarray(aux["reconstruction"])
        self.assertTrue(np.all((recon >= -0.5) & (recon <= 0.5)))

    def test_labels_choose_the_decoded_pose(self):
        apply = jax.jit(lambda p, x, y: self.model.apply({"params": p}, x, labels=y))
        images = self.batch["images"][:2]
        first = apply(self.params, images, jnp.array([0, 0]))[1]["reconstruction"]
        second = apply(self.params, images, jnp.array([1, 1]))[1]["reconstruction"]
        self.assertGreater(float(jnp.abs(first - second).max()), 0.0)

    def test_gradients_finite_at_zero_input(self):
        loss_fn = make_loss_fn(self.model)
        batch = {
            "images": jnp.zeros((2, SIZE, SIZE, 1)),
            "labels": jnp.array([0, 1]),
            "mask": jnp.ones(2, bool),
        }
        grads, aux = jax.jit(jax.grad(loss_fn, has_aux=True))(self.params, batch, jax.random.key(1))
        chex.assert_tree_all_finite(grads)
        self.assertTrue(np.isfinite(float(aux["loss"])))

    def test_overfits_a_tiny_real_batch(self):
        optimizer = optax.adam(3e-3)
        step = jax.jit(make_train_step(make_loss_fn(self.model), optimizer))
        params, opt_state = self.params, optimizer.init(self.params)
        losses = []
        for index in range(150):
            params, opt_state, aux = step(params, opt_state, self.batch, jax.random.key(index))
            losses.append(float(aux["loss"]))
            if losses[-1] < losses[0] / 10:
                break
        self.assertLess(
            losses[-1], losses[0] / 10, f"loss went {losses[0]:.4f} -> {losses[-1]:.4f}"
        )
        self.assertEqual(float(aux["accuracy"]), 1.0)

    def test_bad_input_shape_raises(self):
        with self.assertRaises(ModelConfigError):
            self.model.apply({"params": self.params}, jnp.zeros((1, 30, 30, 1)))
        with self.assertRaises(ModelConfigError):
            self.model.apply({"params": self.params}, jnp.zeros((1, 32, 32)))


if __name__ == "__main__":
    absltest.main()
