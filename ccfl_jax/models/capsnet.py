"""A capsule-network classifier for CT slices (Sabour et al. 2017, as used by Kumar et al. 2020).

Convolutions -> primary capsules -> two 16-D class capsules by dynamic routing; the probability of a
class is the length of its capsule. An optional decoder reconstructs the slice from the masked class
poses (a regularizer weighted 0.0005 per pixel by ``ccfl_jax.train.losses``).

Sizes are configurable. The defaults (SAME padding, three stride-2 stages) give 8 x 8 x 8 = 512
primary capsules of 8 dims at 64 x 64 and 2048 at 128 x 128, small enough to train on 2 CPU cores.
The decoder is deconvolutional rather than Sabour's fully connected one, whose last layer alone
would hold 1024 x 128 x 128 = 16.8M weights at 128 x 128.
"""

from collections.abc import Sequence
from typing import ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from ccfl_jax.errors import ModelConfigError
from ccfl_jax.models.capsules import capsule_length, dynamic_routing, squash
from ccfl_jax.models.outputs import predicted_class
from ccfl_jax.typing import Array


def check_images(images: Array, multiple: int = 1) -> None:
    """Raises :class:`ModelConfigError` unless ``images`` is [B, Y, X, 1] with Y, X % multiple == 0."""
    if images.ndim != 4 or images.shape[-1] != 1:
        raise ModelConfigError(
            f"images has shape {images.shape}; models take [B, Y, X, 1] grey slices: "
            "add the batch and channel axes."
        )
    if images.shape[1] % multiple or images.shape[2] % multiple:
        raise ModelConfigError(
            f"image size {images.shape[1:3]} is not divisible by {multiple}, which this "
            "model's strides need; resize the slices (e.g. to 64 or 128)."
        )


class ClassCapsules(nn.Module):
    """Fully-connected capsule layer: I input capsules -> J output capsules by routing.

    Attributes:
      num_capsules: J.
      capsule_dims: output pose dimension.
      routing_iterations: static routing iteration count.
    """

    num_capsules: int
    capsule_dims: int
    routing_iterations: int = 3

    @nn.compact
    def __call__(self, inputs: Array) -> tuple[Array, Array]:
        """Routes ``inputs [B, I, Din]`` to ``(poses [B, J, D], couplings [B, I, J])``."""
        _, num_inputs, input_dims = inputs.shape
        weights = self.param(
            "transforms",
            nn.initializers.variance_scaling(1.0, "fan_in", "normal", in_axis=(0, 2), out_axis=3),
            (num_inputs, self.num_capsules, input_dims, self.capsule_dims),
        )
        predictions = jnp.einsum("bid,ijde->bije", inputs, weights)  # Eq. 4: u_hat = W u
        return dynamic_routing(predictions, self.routing_iterations)


class ReconstructionDecoder(nn.Module):
    """Masked class poses -> a [-0.5, 0.5] slice, through a dense layer and 3 deconvolutions.

    Attributes:
      image_size: (Y, X) of the output; both divisible by 8.
      hidden: width of the dense layer.
      channels: channels of the 1/8-size map the deconvolutions start from.
    """

    image_size: tuple[int, int]
    hidden: int = 128
    channels: int = 16

    @nn.compact
    def __call__(self, masked_poses: Array) -> Array:
        """Maps ``masked_poses [B, J * D]`` to a reconstruction ``[B, Y, X, 1]``."""
        rows, cols = self.image_size[0] // 8, self.image_size[1] // 8
        x = nn.relu(nn.Dense(self.hidden, name="dense_hidden")(masked_poses))
        x = nn.relu(nn.Dense(rows * cols * self.channels, name="dense_map")(x))
        x = x.reshape(x.shape[0], rows, cols, self.channels)
        x = nn.relu(nn.ConvTranspose(self.channels, (3, 3), (2, 2), name="deconv_1")(x))
        x = nn.relu(nn.ConvTranspose(self.channels // 2, (3, 3), (2, 2), name="deconv_2")(x))
        x = nn.ConvTranspose(1, (3, 3), (2, 2), name="deconv_3")(x)
        return nn.sigmoid(x) - 0.5


class CapsNet(nn.Module):
    """Capsule classifier: ``images [B, Y, X, 1] -> (lengths [B, 2], aux)``.

    Attributes:
      num_classes: class capsules (2: non-covid = 0, covid = 1).
      conv_features: channels of the stride-2 ReLU convolutions before the primary capsules.
      kernel_size: kernel of those convolutions and of the primary-capsule convolution.
      primary_types: primary capsule types per position.
      primary_dims: pose dimension of a primary capsule.
      class_dims: pose dimension of a class capsule (16).
      routing_iterations: dynamic routing iterations (3).
      use_decoder: add the reconstruction decoder (aux['reconstruction']).
      decoder_hidden: width of the decoder's dense layer.

    The output ``aux`` holds ``'poses' [B, 2, class_dims]``, ``'couplings' [B, I, 2]`` and, with
    the decoder, ``'reconstruction' [B, Y, X, 1]``. With ``labels`` the decoder sees the true
    class's pose (training); without, the predicted class's pose.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = CapsNet(conv_features=(8,), primary_types=4, primary_dims=4, class_dims=8)
      >>> images = jnp.zeros((2, 32, 32, 1))
      >>> lengths, aux = jax.eval_shape(model.init_with_output, jax.random.key(0), images)[0]
      >>> lengths.shape, aux['poses'].shape, aux['reconstruction'].shape
      ((2, 2), (2, 2, 8), (2, 32, 32, 1))
    """

    output_kind: ClassVar[str] = "lengths"

    num_classes: int = 2
    conv_features: Sequence[int] = (32, 64)
    kernel_size: int = 5
    primary_types: int = 8
    primary_dims: int = 8
    class_dims: int = 16
    routing_iterations: int = 3
    use_decoder: bool = True
    decoder_hidden: int = 128

    @nn.compact
    def __call__(
        self, images: Array, *, train: bool = False, labels: Array | None = None
    ) -> tuple[Array, dict]:
        """Classifies slices.

        Args:
          images: [B, Y, X, 1] in [-0.5, 0.5]; Y and X divisible by 8 with the decoder on.
          train: unused (no dropout or normalization statistics); kept for the common interface.
          labels: optional [B] int class labels that choose the pose the decoder sees.

        Returns:
          ``(lengths [B, num_classes], aux)``.
        """
        del train
        check_images(images, 8 if self.use_decoder else 1)
        kernel = (self.kernel_size, self.kernel_size)
        x = images
        for index, features in enumerate(self.conv_features):
            x = nn.relu(nn.Conv(features, kernel, (2, 2), name=f"conv_{index}")(x))
        x = nn.Conv(self.primary_types * self.primary_dims, kernel, (2, 2), name="primary")(x)
        batch, rows, cols, _ = x.shape
        primary = squash(x.reshape(batch, rows * cols * self.primary_types, self.primary_dims))
        poses, couplings = ClassCapsules(
            self.num_classes, self.class_dims, self.routing_iterations, name="class_capsules"
        )(primary)
        lengths = capsule_length(poses)
        aux = {"poses": poses, "couplings": couplings}
        if self.use_decoder:
            chosen = predicted_class(lengths) if labels is None else labels
            mask = jax.nn.one_hot(chosen, self.num_classes, dtype=poses.dtype)
            masked = (poses * mask[:, :, None]).reshape(batch, -1)
            decoder = ReconstructionDecoder(images.shape[1:3], self.decoder_hidden, name="decoder")
            aux["reconstruction"] = decoder(masked)
        return lengths, aux
