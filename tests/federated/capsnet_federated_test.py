"""Federated CapsNet training on real CT slices (the bundled SARS-CoV-2 CT sample) lowers the loss."""

import pathlib

import jax
import numpy as np
import optax
from absl.testing import absltest
from PIL import Image

from ccfl_jax import federated as fl
from ccfl_jax import models, train

SAMPLE = pathlib.Path(__file__).parents[2] / "data" / "sars_cov_2_ct"
SIZE, PER_CLASS, HOSPITALS = 16, 4, 2


def read_slices(folder: str, count: int) -> np.ndarray:
    """The first ``count`` PNGs of a class as [count, SIZE, SIZE, 1] in [-0.5, 0.5]."""
    paths = sorted((SAMPLE / folder).glob("*.png"))[:count]
    images = [
        np.asarray(Image.open(p).convert("L").resize((SIZE, SIZE), Image.LANCZOS), np.float32)
        for p in paths
    ]
    return (np.stack(images) / 255.0 - 0.5)[..., None]


def real_hospitals() -> dict:
    """Two hospitals, each with PER_CLASS covid and PER_CLASS non-covid slices (one padded row)."""
    covid = read_slices("covid", PER_CLASS * HOSPITALS)
    normal = read_slices("non_covid", PER_CLASS * HOSPITALS)
    rows = 2 * PER_CLASS + 1
    images = np.zeros((HOSPITALS, rows, SIZE, SIZE, 1), np.float32)
    labels = np.zeros((HOSPITALS, rows), np.int32)
    mask = np.zeros((HOSPITALS, rows), bool)
    for h in range(HOSPITALS):
        part = slice(h * PER_CLASS, (h + 1) * PER_CLASS)
        images[h, : 2 * PER_CLASS] = np.concatenate([covid[part], normal[part]])
        labels[h, :PER_CLASS] = 1
        mask[h, : 2 * PER_CLASS] = True
    return {"images": images, "labels": labels, "mask": mask}


class CapsNetFederatedTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        # Halves CPU compile time (as flax's imagenet train_test does); restored afterwards.
        super().setUpClass()
        cls.saved_flag = jax.config.read("jax_disable_most_optimizations")
        jax.config.update("jax_disable_most_optimizations", True)

    @classmethod
    def tearDownClass(cls):
        jax.config.update("jax_disable_most_optimizations", cls.saved_flag)
        super().tearDownClass()

    def test_federated_capsnet_lowers_the_loss_on_real_slices(self):
        model = models.get_model(
            "capsnet",
            conv_features=(8,),
            primary_types=4,
            primary_dims=4,
            class_dims=8,
            routing_iterations=2,
            decoder_hidden=16,
        )
        loss_fn = train.make_loss_fn(model)
        local_update = fl.make_local_update(loss_fn, optax.adam(3e-3), local_steps=4, batch_size=4)
        algorithm = fl.federated_averaging(
            local_update,
            fl.dp_aggregate(None),
            fl.fixed_size_sampler(HOSPITALS, HOSPITALS),
            strategy="vmap",
        )
        data = real_hospitals()
        pooled = {k: np.reshape(v, (-1,) + v.shape[2:]) for k, v in data.items()}
        global_loss = jax.jit(lambda p: loss_fn(p, pooled, jax.random.PRNGKey(0))[0])
        state = algorithm.init(
            train.init_params(model, jax.random.PRNGKey(0), SIZE), jax.random.PRNGKey(1)
        )
        before = float(global_loss(state.params))
        for _ in range(2):
            state, output = algorithm.apply(state, data)
        after = float(global_loss(state.params))
        self.assertTrue(np.isfinite(after))
        self.assertLess(after, 0.8 * before, (before, after))
        self.assertEqual(int(output.diagnostics.num_contributing), HOSPITALS)


if __name__ == "__main__":
    absltest.main()
