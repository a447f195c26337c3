"""Every hard case in tests/data/cases/ against its case.json (tolerances from its README)."""

import json
import os
import pathlib

import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax import data, errors
from ccfl_jax.data import normalize

CASES = pathlib.Path(__file__).parent / "cases"
CASE_NAMES = sorted(p.name for p in CASES.iterdir() if (p / "case.json").is_file())

# The error each error case must raise (the README asks for a named error per class of fault).
EXPECTED_ERRORS = {
    "03-missing-slice-gap": errors.NonUniformSpacingError,
    "04-gantry-tilt": errors.InconsistentSeriesError,
    "05-missing-image-position": errors.MissingTagError,
    "07-rescale-tags-absent": errors.MissingTagError,
}
POSITION_TOL = 1e-4  # mm
MEAN_TOL = 0.01  # HU
WINDOWED_MEAN_TOL = 1e-4
# Keys that describe a case in words; every other key of case.json is checked.
INFORMATIONAL_KEYS = {
    "rule",
    "note",
    "affine_to_use",
    "default_window_explanation",
    "transfer_syntax_to_assume",
}


def _load(name):
    case = json.loads((CASES / name / "case.json").read_text())
    return case, CASES / name / case["input"]


class CasesTest(parameterized.TestCase):
    def test_every_case_is_covered(self):
        self.assertLen(CASE_NAMES, 15)
        self.assertSameElements(
            [n for n in CASE_NAMES if "error" in _load(n)[0]["expect"]], EXPECTED_ERRORS
        )

    @parameterized.parameters(*CASE_NAMES)
    def test_case(self, name):
        case, path = _load(name)
        expect = case["expect"]
        if "error" in expect:
            with self.assertRaises(EXPECTED_ERRORS[name]) as ctx:
                data.read_scan(path)
            for fact in _named_files(case):
                self.assertIn(fact, str(ctx.exception))
            return
        scan = data.read_scan(path)
        value = expect["value"]
        self.assertEmpty([k for k in value if not _checked(k) and k not in INFORMATIONAL_KEYS])
        for key in filter(_checked, value):
            with self.subTest(key):
                if key.startswith("hu_at_"):
                    self._check_pixel_at(scan, key, value[key])
                else:
                    getattr(self, f"_check_{key}")(scan, value[key], value)

    # --- one checker per case.json key ---------------------------------------------------
    def _check_shape(self, scan, want, value):
        self.assertEqual(list(scan.array.shape), want)

    def _check_array_shape(self, scan, want, value):  # NIfTI file order [i, j, k] -> [k, j, i]
        self.assertEqual(list(scan.array.shape), want[::-1])

    def _check_n_slices(self, scan, want, value):
        self.assertEqual(scan.array.shape[0], want)

    def _check_slice_order(self, scan, want, value):
        self.assertEqual(list(scan.metadata.slice_files), want)

    def _check_excluded_files(self, scan, want, value):
        self.assertEqual(list(scan.metadata.excluded_files), want)

    def _check_ignored_files(self, scan, want, value):
        self.assertContainsSubset(want, scan.metadata.ignored_files)
        self.assertNoCommonElements(want, scan.metadata.slice_files)

    def _check_spacing_mm(self, scan, want, value):
        np.testing.assert_allclose(scan.spacing_mm, want, atol=POSITION_TOL)

    def _check_pixel_spacing_mm(self, scan, want, value):
        np.testing.assert_allclose(scan.spacing_mm[-2:], want, atol=POSITION_TOL)

    def _check_voxel_size_mm(self, scan, want, value):  # file order [i, j, k]
        np.testing.assert_allclose(scan.spacing_mm[::-1], want, atol=POSITION_TOL)

    def _check_slice_mean_hu(self, scan, want, value):
        np.testing.assert_allclose(scan.array.mean(axis=(1, 2)), want, atol=MEAN_TOL)

    _check_slice_mean_hu_cranio_caudal = _check_slice_mean_hu

    def _check_hu_min(self, scan, want, value):
        self.assertEqual(scan.array.min(), want)

    def _check_hu_max(self, scan, want, value):
        self.assertEqual(scan.array.max(), want)

    def _check_hu_mean(self, scan, want, value):
        self.assertAlmostEqual(float(scan.array.mean()), want, delta=MEAN_TOL)

    def _check_affine(self, scan, want, value):
        np.testing.assert_allclose(scan.metadata.affine, want, atol=1e-3)  # 4 decimals in json

    def _check_axcodes(self, scan, want, value):
        self.assertEqual(list(scan.metadata.axcodes), want)

    def _check_all_windows(self, scan, want, value):
        self.assertEqual([list(w) for w in scan.metadata.windows], want)

    def _check_default_window_center(self, scan, want, value):
        self.assertEqual(scan.metadata.windows[0][0], want)

    def _check_default_window_width(self, scan, want, value):
        self.assertEqual(scan.metadata.windows[0][1], want)

    def _check_mean_after_default_window_0_to_1(self, scan, want, value):
        level, width = scan.metadata.windows[0]
        unit = np.asarray(normalize.window(scan.array, level, width)) + 0.5  # Eq. 1 -> [0, 1]
        self.assertAlmostEqual(float(unit.mean()), want, delta=WINDOWED_MEAN_TOL)

    def _check_n_padding_pixels(self, scan, want, value):
        self.assertEqual(scan.metadata.padding_pixels, want)

    def _check_forbidden_hu(self, scan, want, value):
        self.assertFalse(np.any(scan.array == want))

    def _check_hu_min_non_padding(self, scan, want, value):
        self.assertEqual(scan.array.min(), want)  # padding is set to air (-1024 HU)

    def _check_hu_mean_non_padding(self, scan, want, value):
        n_pad, total = scan.metadata.padding_pixels, float(scan.array.sum(dtype=np.float64))
        mean = (total - n_pad * -1024.0) / (scan.array.size - n_pad)
        self.assertAlmostEqual(mean, want, delta=MEAN_TOL)

    def _check_channels_in_file(self, scan, want, value):
        self.assertEqual(scan.metadata.channels_in_file, want)
        self.assertEqual(scan.metadata.units, "display")

    def _check_grey_min(self, scan, want, value):
        self.assertEqual(scan.array.min(), want)

    def _check_grey_max(self, scan, want, value):
        self.assertEqual(scan.array.max(), want)

    def _check_grey_mean(self, scan, want, value):
        self.assertAlmostEqual(float(scan.array.mean()), want, delta=MEAN_TOL)

    def _check_pixel_at(self, scan, key, want):
        row, col = (int(p[3:]) for p in key.removeprefix("hu_at_").split("_"))
        self.assertEqual(scan.array[row, col], want)


def _named_files(case):
    """File names the error message must name (from the case's facts)."""
    facts = case.get("facts", {})
    names = [facts["file_without_position"]] if "file_without_position" in facts else []
    if case["kind"].startswith("missing slice"):
        names += ["IM0003.dcm", "IM0005.dcm"]
    return names


def _checked(key):
    return key.startswith("hu_at_") or hasattr(CasesTest, f"_check_{key}")


if __name__ == "__main__":
    os.chdir(pathlib.Path(__file__).parents[2])
    absltest.main()
