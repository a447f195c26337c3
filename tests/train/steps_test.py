"""Train and eval steps: masking, one compilation, loss falling, the central loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

from ccfl_jax.errors import BatchError
from ccfl_jax.models import get_model
from ccfl_jax.train import steps
from ccfl_jax.train.losses import cross_entropy

SIZE = 16


def setUpModule():
    jax.config.update("jax_disable_most_optimizations", True)


def tearDownModule():
    jax.config.update("jax_disable_most_optimizations", False)


def synthetic_batch(size: int, seed: int = 0) -> dict:
    """A separable toy problem: checkerboard (covid) or stripes, under noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=size).astype(np.int32)
    images = rng.normal(scale=0.1, size=(size, SIZE, SIZE, 1)).astype(np.float32)
    rows, cols = np.indices((SIZE, SIZE))
    checker, stripes = (rows + cols) % 2, rows % 2
    covid = (labels == 1)[:, None, None, None]
    images += 0.3 * np.where(covid, checker[..., None], stripes[..., None])
    return {"images": images, "labels": labels, "mask": np.ones(size, bool)}


class StepsTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.model = get_model("cnn_small")
        cls.params = steps.init_params(cls.model, jax.random.key(0), SIZE)

    def test_loss_is_mean_cross_entropy_over_real_rows(self):
        batch = synthetic_batch(6)
        logits, _ = self.model.apply({"params": self.params}, batch["images"])
        want = np.mean(np.asarray(cross_entropy(logits, batch["labels"]))[:4])
        batch["mask"] = np.array([True] * 4 + [False] * 2)
        loss_fn = jax.jit(steps.make_loss_fn(self.model))
        loss, aux = loss_fn(self.params, batch, jax.random.key(0))
        np.testing.assert_allclose(float(loss), want, rtol=1e-5)
        self.assertEqual(int(aux["num_examples"]), 4)

    def test_padded_rows_change_nothing(self):
        real = synthetic_batch(4)
        padded = {
            "images": np.concatenate(
                [real["images"], np.full((3, SIZE, SIZE, 1), 7.0, np.float32)]
            ),
            "labels": np.concatenate([real["labels"], np.array([1, 0, 1], np.int32)]),
            "mask": np.array([True] * 4 + [False] * 3),
        }
        grad_fn = jax.jit(jax.grad(steps.make_loss_fn(self.model), has_aux=True))
        (grads_real, aux_real), (grads_padded, aux_padded) = (
            grad_fn(self.params, b, jax.random.key(0)) for b in (real, padded)
        )
        chex.assert_trees_all_close(grads_real, grads_padded, atol=1e-6)
        np.testing.assert_allclose(aux_real["accuracy"], aux_padded["accuracy"])

    def test_all_padding_batch_gives_zero_loss_and_zero_gradient(self):
        batch = synthetic_batch(3)
        batch["mask"] = np.zeros(3, bool)
        grads, aux = jax.jit(jax.grad(steps.make_loss_fn(self.model), has_aux=True))(
            self.params, batch, jax.random.key(0)
        )
        self.assertEqual(float(aux["loss"]), 0.0)
        self.assertEqual(float(aux["accuracy"]), 0.0)
        chex.assert_trees_all_close(grads, jax.tree.map(jnp.zeros_like, grads))

    def test_train_step_compiles_once_and_lowers_loss(self):
        optimizer = optax.adam(1e-2)
        step = jax.jit(
            chex.assert_max_traces(
                steps.make_train_step(steps.make_loss_fn(self.model), optimizer), n=1
            )
        )
        batch = synthetic_batch(16)
        params, opt_state = self.params, optimizer.init(self.params)
        first = None
        for index in range(30):
            params, opt_state, aux = step(params, opt_state, batch, jax.random.key(index))
            first = float(aux["loss"]) if first is None else first
        self.assertLess(float(aux["loss"]), first / 2)

    def test_train_step_vmaps_over_hospitals(self):
        optimizer = optax.sgd(0.1)
        step = steps.make_train_step(steps.make_loss_fn(self.model), optimizer)
        batches = [synthetic_batch(4, seed) for seed in (0, 1)]
        batches[1]["mask"] = np.array([True, True, False, False])
        stacked_batch = jax.tree.map(lambda *x: np.stack(x), *batches)
        params = jax.tree.map(lambda x: jnp.stack([x, x + 0.01]), self.params)
        opt_state = jax.vmap(optimizer.init)(params)
        keys = jax.random.split(jax.random.key(0), 2)
        got, _, aux = jax.jit(jax.vmap(step))(params, opt_state, stacked_batch, keys)
        for h in range(2):
            own = jax.tree.map(lambda x, h=h: x[h], params)
            want, _, want_aux = step(own, optimizer.init(own), batches[h], keys[h])
            chex.assert_trees_all_close(jax.tree.map(lambda x, h=h: x[h], got), want, atol=1e-5)
            np.testing.assert_allclose(aux["loss"][h], want_aux["loss"], rtol=1e-5)
        np.testing.assert_array_equal(aux["num_examples"], [4, 2])

    def test_eval_step_probabilities_match_softmax(self):
        batch = synthetic_batch(5)
        out = jax.jit(steps.make_eval_step(self.model))(self.params, batch)
        logits, _ = self.model.apply({"params": self.params}, batch["images"])
        logits = np.asarray(logits, np.float64)
        want = np.exp(logits[:, 1]) / np.exp(logits).sum(-1)
        np.testing.assert_allclose(out["probability"], want, rtol=1e-5)
        np.testing.assert_array_equal(out["correct"], logits.argmax(-1) == batch["labels"])

    def test_train_centrally_and_predict(self):
        data = synthetic_batch(20, seed=3)
        params, history = steps.train_centrally(
            self.model,
            self.params,
            (data["images"], data["labels"]),
            steps=25,
            batch_size=8,
            optimizer=optax.adam(1e-2),
            rng=jax.random.key(2),
            progress=False,
        )
        self.assertLen(history["loss"], 25)
        self.assertLess(np.mean(history["loss"][-5:]), np.mean(history["loss"][:5]))
        scores = steps.predict(self.model, params, data["images"], batch_size=8)
        self.assertEqual(scores.shape, (20,))
        self.assertGreater(np.mean((scores > 0.5) == data["labels"]), 0.9)

    def test_batch_indices_cover_each_epoch(self):
        order = steps.batch_indices(10, 4, 5, seed=0)
        self.assertEqual(order.shape, (5, 4))
        np.testing.assert_array_equal(np.sort(order.ravel()[:10]), np.arange(10))

    def test_bad_batch_raises(self):
        with self.assertRaises(BatchError):
            steps.check_batch({"images": np.zeros((2, 8, 8, 1))})
        with self.assertRaises(BatchError):
            steps.check_batch(
                {"images": np.zeros((2, 8, 8, 1)), "labels": np.zeros(3), "mask": np.ones(2)}
            )


if __name__ == "__main__":
    absltest.main()
