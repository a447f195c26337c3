"""Hospital datasets: patient-level split, padded arrays, cache, empty hospitals, summary."""

import collections
import pathlib
import shutil
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

from ccfl_jax import data, errors
from ccfl_jax.data import split

DATA = pathlib.Path(__file__).parents[2] / "data"
MANIFEST = DATA / "labels.csv"
SIZE = 32


class SplitTest(parameterized.TestCase):
    """On every row of the bundled manifest (no images read)."""

    @parameterized.parameters(0, 1, 7)
    def test_no_patient_in_two_splits(self, seed):
        rows = data.read_manifest(MANIFEST)
        for hospital in sorted({r.hospital for r in rows}):
            group = [r for r in rows if r.hospital == hospital]
            assignment = split.split_hospital(group, (0.6, 0.2, 0.2), seed)
            splits_of = collections.defaultdict(set)
            for row, s in zip(group, assignment, strict=True):
                if row.patient_id is not None:
                    splits_of[row.patient_id].add(s)
            with self.subTest(hospital):
                self.assertTrue(all(len(s) == 1 for s in splits_of.values()), splits_of)
                self.assertEqual(assignment, split.split_hospital(group, (0.6, 0.2, 0.2), seed))

    def test_image_split_is_stratified(self):
        rows = [r for r in data.read_manifest(MANIFEST) if r.hospital.startswith("site_E")]
        assignment = split.split_hospital(rows, (0.6, 0.2, 0.2), 0)
        counts = collections.Counter((r.label, s) for r, s in zip(rows, assignment, strict=True))
        for label in (0, 1):  # 40 images per class -> 24 / 8 / 8
            self.assertEqual([counts[(label, s)] for s in range(3)], [24, 8, 8])

    @parameterized.named_parameters(
        ("fractions", dict(fractions=(0.5, 0.2, 0.2))),
        ("window_width", dict(window=(-600.0, 0.0))),
        ("window_name", dict(window="lung")),
        ("on_error", dict(on_error="skip")),
    )
    def test_bad_settings(self, kwargs):
        with self.assertRaises(errors.InvalidSplitError):
            data.load_federated_dataset(MANIFEST, progress=False, **kwargs)


class FederatedDatasetTest(parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.cache = pathlib.Path(tempfile.mkdtemp())
        cls.kwargs = dict(image_size=SIZE, max_per_hospital=10, progress=False, seed=3)
        cls.ds = data.load_federated_dataset(MANIFEST, cache_dir=cls.cache, **cls.kwargs)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.cache)
        super().tearDownClass()

    def test_shapes_values_and_padding(self):
        ds = self.ds
        self.assertLen(ds.hospitals, 5)
        for name in ("train", "val", "test"):
            arrays, rows = getattr(ds, name), ds.rows[name]
            h, n = arrays.mask.shape
            self.assertEqual(arrays.images.shape, (h, n, SIZE, SIZE, 1))
            self.assertEqual(arrays.labels.dtype, np.int32)
            self.assertBetween(float(arrays.images.min()), -0.5, 0.5)
            self.assertBetween(float(arrays.images.max()), -0.5, 0.5)
            for i in range(h):
                k = len(rows[i])
                np.testing.assert_array_equal(arrays.mask[i], np.arange(n) < k)
                self.assertEqual(list(arrays.labels[i, :k]), [r.label for r in rows[i]])
                self.assertFalse(np.any(arrays.images[i, k:]))
                self.assertFalse(np.any(arrays.labels[i, k:]))
        self.assertEqual(sum(len(r) for s in ds.rows.values() for r in s), 50)

    def test_no_patient_in_two_splits(self):
        for i, name in enumerate(self.ds.hospitals):
            seen = {}
            for s in ("train", "val", "test"):
                for row in self.ds.rows[s][i]:
                    if row.patient_id is not None:
                        self.assertEqual(seen.setdefault(row.patient_id, s), s, name)

    def test_split_units_and_scanners(self):
        unit = dict(zip(self.ds.hospitals, self.ds.split_unit, strict=True))
        self.assertEqual(unit["site_A_tehran_iran"], "patient")
        self.assertEqual(unit["site_E_sao_paulo_brazil"], "image")
        scanners = dict(zip(self.ds.hospitals, self.ds.scanners, strict=True))
        self.assertEqual(scanners["site_A_tehran_iran"], ("SIEMENS SOMATOM Scope",))

    def test_cache_gives_same_arrays(self):
        self.assertLen(list(self.cache.glob("ingest_*.npz")), 1)
        again = data.load_federated_dataset(MANIFEST, cache_dir=self.cache, **self.kwargs)
        np.testing.assert_array_equal(again.train.images, self.ds.train.images)
        self.assertEqual(again.rows, self.ds.rows)

    def test_pool_hospitals(self):
        images, labels, hospital = data.pool_hospitals(self.ds.train)
        self.assertLen(images, int(self.ds.train.mask.sum()))
        for i in range(len(self.ds.hospitals)):
            want = [r.label for r in self.ds.rows["train"][i]]
            self.assertEqual(list(labels[hospital == i]), want)

    def test_summary_table(self):
        table = data.summary_table(self.ds)
        for name in self.ds.hospitals:
            self.assertIn(name, table)
        self.assertIn("image (no patient ids", table)

    def test_window_from_header_differs(self):
        kwargs = dict(image_size=SIZE, max_per_hospital=2, progress=False)
        kwargs["hospitals"] = ("site_A_tehran_iran",)
        preset = data.load_federated_dataset(MANIFEST, **kwargs)
        header = data.load_federated_dataset(MANIFEST, window="header", **kwargs)
        self.assertFalse(np.allclose(preset.train.images, header.train.images))

    def test_empty_hospital(self):
        with self.assertRaisesRegex(errors.EmptyHospitalError, "'site_Z'"):
            data.load_federated_dataset(MANIFEST, hospitals=("site_Z",), progress=False)


class BadRowsTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        good = DATA / "sars_cov_2_ct/covid"
        pngs = sorted(good.glob("*.png"))[:2]
        lines = ["path,site,patient_id,label"]
        lines += [f"{p},h1,,covid" for p in pngs]
        lines += [f"{self.tmp / 'gone.png'},h1,,non_covid", f"{self.tmp / 'gone2.png'},h2,,covid"]
        self.csv = self.tmp / "m.csv"
        self.csv.write_text("\n".join(lines) + "\n")

    def test_missing_file_raises(self):
        with self.assertRaisesRegex(errors.ScanNotFoundError, "gone.png"):
            data.load_federated_dataset(self.csv, image_size=SIZE, progress=False)

    def test_collect_reports_bad_rows_and_empty_hospital(self):
        kwargs = dict(image_size=SIZE, progress=False, on_error="collect")
        with self.assertRaisesRegex(errors.EmptyHospitalError, "'h2'"):
            data.load_federated_dataset(self.csv, **kwargs)
        ds = data.load_federated_dataset(self.csv, hospitals=("h1",), **kwargs)
        self.assertLen(ds.failures, 1)
        self.assertIn("gone.png", ds.failures[0][0])
        self.assertIn("1 rows left out", data.summary_table(ds))
        self.assertEqual(int(sum(m.sum() for m in (ds.train.mask, ds.val.mask, ds.test.mask))), 2)


if __name__ == "__main__":
    absltest.main()
