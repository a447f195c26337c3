"""SegCaps R3 (LaLonde & Bagci 2018): convolutional capsules with locally-constrained routing.

Layout as the paper's Fig. 2 (and its R3 reference code): conv 5x5 16 -> primary caps 2x16 stride
2 (1 routing) -> conv caps 4x16, 4x32 s2, 8x32, 8x64 s2, 8x32 -> deconv caps 8x32 (+ skip from the
8x32 stage) -> conv caps 4x32 -> deconv 4x16 (+ skip from the 4x16 stage) -> conv caps 4x16 ->
deconv 2x16 (+ skip from conv1 seen as one 16-D capsule) -> seg caps 1x16 (1x1) -> the length of
the seg capsule at each pixel is P(lesion). Three routing iterations everywhere but the primary
capsules. The reconstruction decoder (1x1 convs 64-128-1) sees the seg capsules masked by the
true mask during training. About 1.4M parameters.

Axes: B batch, Y X pixels, C capsule types, A atoms (pose dimensions).
"""

from typing import ClassVar

import flax.linen as nn
import jax.numpy as jnp

from ccfl_jax.models.capsnet import check_images
from ccfl_jax.models.capsules import capsule_length, local_routing
from ccfl_jax.typing import Array

_HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "truncated_normal")


class ConvCapsules(nn.Module):
    """A (de)convolutional capsule layer with locally-constrained routing.

    The transformation kernel [k, k, A_in, C_out * A_out] is shared by every input capsule type,
    as in SegCaps; each input type votes at each output position and routing runs per position.

    Attributes:
      num_capsules: output capsule types C_out.
      num_atoms: output pose dimension A_out.
      kernel_size: k.
      strides: 2 to halve (conv) or double (deconv) the grid, else 1.
      routing_iterations: routing iterations.
      transpose: a deconvolution (upsampling) instead of a convolution.
    """

    num_capsules: int
    num_atoms: int
    kernel_size: int = 5
    strides: int = 1
    routing_iterations: int = 3
    transpose: bool = False

    @nn.compact
    def __call__(self, capsules: Array) -> Array:
        """Maps ``capsules [B, Y, X, C_in, A_in]`` to ``[B, Y', X', C_out, A_out]``."""
        batch, rows, cols, types_in, atoms_in = capsules.shape
        flat = capsules.transpose(0, 3, 1, 2, 4).reshape(batch * types_in, rows, cols, atoms_in)
        layer = nn.ConvTranspose if self.transpose else nn.Conv
        votes = layer(
            self.num_capsules * self.num_atoms,
            (self.kernel_size, self.kernel_size),
            (self.strides, self.strides),
            use_bias=False,
            kernel_init=_HE_NORMAL,
            name="transforms",
        )(flat)
        _, rows_out, cols_out, _ = votes.shape
        votes = votes.reshape(
            batch, types_in, rows_out, cols_out, self.num_capsules, self.num_atoms
        )
        votes = votes.transpose(0, 2, 3, 1, 4, 5)  # [B, Y', X', C_in, C_out, A_out]
        bias = self.param(
            "bias", nn.initializers.constant(0.1), (self.num_capsules, self.num_atoms)
        )
        return local_routing(votes, self.routing_iterations, bias)


class SegCaps(nn.Module):
    """SegCaps R3: ``images [B, Y, X, 1] -> (lesion probability [B, Y, X, 1], aux)``.

    Attributes:
      routing_iterations: routing iterations of every capsule layer but the primary one (3).
      use_decoder: add the masked reconstruction decoder (aux['reconstruction']).

    ``aux`` holds ``'poses' [B, Y, X, 16]`` (the seg capsule) and, with the decoder,
    ``'reconstruction' [B, Y, X, 1]`` in [-0.5, 0.5]. With ``masks`` the decoder sees the seg
    capsule only where the mask is 1 (training); without, everywhere (evaluation, as SegCaps).

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> model = SegCaps()
      >>> variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
      >>> sum(x.size for x in jax.tree.leaves(variables))
      1425649
    """

    output_kind: ClassVar[str] = "segmentation"

    routing_iterations: int = 3
    use_decoder: bool = True

    @nn.compact
    def __call__(
        self, images: Array, *, train: bool = False, masks: Array | None = None
    ) -> tuple[Array, dict]:
        """Segments slices.

        Args:
          images: [B, Y, X, 1], Y and X divisible by 8.
          train: unused (no dropout or normalization statistics); kept for the common interface.
          masks: optional [B, Y, X, 1] 0/1 masks that choose what the decoder sees.

        Returns:
          ``(probability [B, Y, X, 1], aux)``: the seg capsule's length at each pixel.
        """
        del train
        check_images(images, 8)
        routings = self.routing_iterations

        def caps(name, types, atoms, strides=1, kernel=5, iterations=routings, transpose=False):
            return ConvCapsules(types, atoms, kernel, strides, iterations, transpose, name=name)

        conv1 = nn.relu(nn.Conv(16, (5, 5), kernel_init=_HE_NORMAL, name="conv1")(images))
        conv1 = conv1[:, :, :, None, :]  # one 16-D capsule per pixel
        primary = caps("primary_caps", 2, 16, strides=2, iterations=1)(conv1)
        down_2_1 = caps("conv_caps_2_1", 4, 16)(primary)
        down_2_2 = caps("conv_caps_2_2", 4, 32, strides=2)(down_2_1)
        down_3_1 = caps("conv_caps_3_1", 8, 32)(down_2_2)
        down_3_2 = caps("conv_caps_3_2", 8, 64, strides=2)(down_3_1)
        down_4_1 = caps("conv_caps_4_1", 8, 32)(down_3_2)
        up_1 = caps("deconv_caps_1_1", 8, 32, strides=2, kernel=4, transpose=True)(down_4_1)
        up_1 = caps("conv_caps_1_2", 4, 32)(jnp.concatenate([up_1, down_3_1], axis=3))
        up_2 = caps("deconv_caps_2_1", 4, 16, strides=2, kernel=4, transpose=True)(up_1)
        up_2 = caps("conv_caps_2_2_up", 4, 16)(jnp.concatenate([up_2, down_2_1], axis=3))
        up_3 = caps("deconv_caps_3_1", 2, 16, strides=2, kernel=4, transpose=True)(up_2)
        seg = caps("seg_caps", 1, 16, kernel=1)(jnp.concatenate([up_3, conv1], axis=3))
        poses = seg[:, :, :, 0, :]
        probability = capsule_length(poses)[..., None]
        aux = {"poses": poses}
        if self.use_decoder:
            shown = poses if masks is None else poses * masks.astype(poses.dtype)
            x = nn.relu(nn.Conv(64, (1, 1), kernel_init=_HE_NORMAL, name="recon_1")(shown))
            x = nn.relu(nn.Conv(128, (1, 1), kernel_init=_HE_NORMAL, name="recon_2")(x))
            x = nn.Conv(1, (1, 1), kernel_init=_HE_NORMAL, name="recon_out")(x)
            aux["reconstruction"] = nn.sigmoid(x) - 0.5
        return probability, aux
