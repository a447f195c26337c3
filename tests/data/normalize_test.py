"""Eq. 1 window against NumPy; Lanczos resampling keeps physical extent and volume."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax import data
from ccfl_jax.data import normalize


def _window_reference(image, level, width):
    return np.clip((np.asarray(image, np.float64) - level) / width, -0.5, 0.5)


def _box_volume(shape, spacing, lo_mm, hi_mm):
    """1 inside the box [lo_mm, hi_mm) (voxel centres, mm from the corner), 0 elsewhere."""
    axes = [(np.arange(n) + 0.5) * s for n, s in zip(shape, spacing, strict=True)]
    z, y, x = np.meshgrid(*axes, indexing="ij")
    inside = [(c >= lo) & (c < hi) for c, lo, hi in zip((z, y, x), lo_mm, hi_mm, strict=True)]
    return (inside[0] & inside[1] & inside[2]).astype(np.float32)


class WindowTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_window_matches_numpy(self):
        rng = np.random.default_rng(0)
        image = rng.uniform(-3000, 3000, size=(4, 16, 16)).astype(np.float32)
        for level, width in ((-600.0, 1500.0), (40.0, 400.0), (-600.0, 1200.0)):
            got = self.variant(normalize.window)(image, level, width)
            np.testing.assert_allclose(got, _window_reference(image, level, width), atol=1e-6)

    @chex.variants(with_jit=True, without_jit=True)
    def test_display_to_unit_matches_numpy(self):
        image = np.arange(256, dtype=np.float32).reshape(16, 16)
        got = self.variant(normalize.display_to_unit)(image)
        np.testing.assert_allclose(got, image / 255.0 - 0.5, atol=1e-6)
        self.assertEqual(float(jnp.min(got)), -0.5)
        self.assertEqual(float(jnp.max(got)), 0.5)

    def test_presets(self):
        self.assertEqual(data.WINDOW_PRESETS["default"], (-600.0, 1500.0))
        self.assertEqual(normalize.scanner_window("ACME", "Unknown 1"), (-600.0, 1500.0))
        with self.assertRaises(TypeError):
            data.WINDOW_PRESETS["x"] = (0.0, 1.0)  # read-only table


class ResampleVolumeTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.resample = staticmethod(
            jax.jit(
                lambda v, s: normalize.resample_volume(
                    v, s, extent_mm=(200.0, 160.0, 160.0), shape=(40, 40, 40), pad_value=0.0
                )
            )
        )

    @parameterized.parameters(((4.0, 2.0, 2.0),), ((2.5, 1.25, 1.6),))
    def test_box_keeps_physical_extent_and_position(self, spacing):
        in_shape = (48, 96, 90)
        extent_in = np.asarray(in_shape) * spacing
        centre_in = extent_in / 2
        lo = centre_in + np.array([-30.0, -20.0, 5.0])
        hi = lo + np.array([60.0, 40.0, 30.0])  # box size in mm
        out = np.asarray(self.resample(_box_volume(in_shape, spacing, lo, hi), jnp.array(spacing)))
        out_spacing = np.array([200.0, 160.0, 160.0]) / 40
        inside = out > 0.5
        for axis in range(3):
            profile = inside.any(axis=tuple(a for a in range(3) if a != axis))
            idx = np.flatnonzero(profile)
            size_mm = (idx[-1] - idx[0] + 1) * out_spacing[axis]
            start_mm = idx[0] * out_spacing[axis] - np.array([100.0, 80.0, 80.0])[axis]
            with self.subTest(axis=axis):
                self.assertAlmostEqual(size_mm, (hi - lo)[axis], delta=out_spacing[axis])
                self.assertAlmostEqual(start_mm, (lo - centre_in)[axis], delta=out_spacing[axis])

    def test_sphere_keeps_volume_within_2_percent(self):
        spacing, shape, radius = (1.2, 0.8, 0.8), (100, 150, 150), 28.0
        axes = [(np.arange(n) + 0.5) * s - n * s / 2 for n, s in zip(shape, spacing, strict=True)]
        z, y, x = np.meshgrid(*axes, indexing="ij")
        sphere = (z**2 + y**2 + x**2 <= radius**2).astype(np.float32)
        out = np.asarray(self.resample(sphere, jnp.array(spacing)))
        truth = 4 / 3 * np.pi * radius**3
        measured = (out > 0.5).sum() * np.prod(np.array([200.0, 160.0, 160.0]) / 40)
        self.assertAlmostEqual(measured / truth, 1.0, delta=0.02)

    def test_air_outside_the_scan(self):
        out = normalize.resample_volume(
            jnp.zeros((4, 8, 8)), (2.0, 2.0, 2.0), extent_mm=(16.0, 32.0, 32.0), shape=(8, 16, 16)
        )  # an 8 x 16 x 16 mm scan in the middle of a 16 x 32 x 32 mm box at 2 mm
        self.assertEqual(float(out[0, 0, 0]), -1024.0)  # default pad: air
        np.testing.assert_allclose(out[2:6, 4:12, 4:12], 0.0, atol=1e-3)
        self.assertEqual(float(out[1, 8, 8]), -1024.0)

    def test_compiles_once_for_new_spacings(self):
        fn = chex.assert_max_traces(n=1)(
            lambda v, s: normalize.resample_volume(v, s, shape=(4, 8, 8))
        )
        jitted = jax.jit(fn)
        for spacing in ((5.0, 0.7, 0.7), (2.0, 0.6, 0.6)):
            self.assertEqual(jitted(jnp.zeros((6, 12, 12)), jnp.array(spacing)).shape, (4, 8, 8))


class ResampleSliceTest(parameterized.TestCase):
    def test_fixed_spacing_keeps_extent(self):
        image = np.zeros((200, 200), np.float32)
        image[50:150, 70:130] = 1.0  # 100 x 60 pixels at 0.5 mm -> 50 x 30 mm
        out = np.asarray(
            data.resample_slice(image, (0.5, 0.5), size=64, spacing_mm_target=1.0, pad_value=0.0)
        )
        rows, cols = np.flatnonzero((out > 0.5).any(1)), np.flatnonzero((out > 0.5).any(0))
        self.assertAlmostEqual(rows[-1] - rows[0] + 1, 50, delta=1)
        self.assertAlmostEqual(cols[-1] - cols[0] + 1, 30, delta=1)

    def test_unknown_spacing_keeps_aspect(self):
        image = np.ones((100, 50), np.float32)
        out = np.asarray(data.resample_slice(image, None, size=32, pad_value=0.0))
        self.assertEqual(out.shape, (32, 32))
        cols = np.flatnonzero((out > 0.5).any(0))
        self.assertAlmostEqual(len(cols), 16, delta=1)


if __name__ == "__main__":
    absltest.main()
