"""Manifest CSV: columns, labels, relative paths, missing files."""

import pathlib
import shutil
import tempfile

from absl.testing import absltest, parameterized

from ccfl_jax import data, errors

DATA = pathlib.Path(__file__).parents[2] / "data"


class ManifestTest(parameterized.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)
        (self.tmp / "scans").mkdir()
        (self.tmp / "scans" / "a.png").write_bytes(b"")

    def _csv(self, text):
        path = self.tmp / "m.csv"
        path.write_text(text)
        return path

    def test_bundled_labels(self):
        rows = data.read_manifest(DATA / "labels.csv")
        self.assertLen(rows, 280)
        self.assertLen({r.hospital for r in rows}, 5)
        self.assertEqual(sum(r.label for r in rows), 174)  # README: covid 174, non_covid 106
        site_d = [r for r in rows if r.hospital.startswith("site_D")]
        self.assertTrue(all(r.label == 1 and r.mask_path is not None for r in site_d))
        self.assertTrue(all(r.patient_id is None for r in site_d))
        self.assertTrue(all(r.path.is_absolute() and r.path.exists() for r in rows))
        self.assertEqual(rows[0].extra["source"], "covid_ct_md")

    @parameterized.parameters(
        ("covid", 1), ("non_covid", 0), ("1", 1), ("0", 0), ("COVID", 1), ("non-covid", 0)
    )
    def test_labels_and_hospital_column(self, text, want):
        path = self._csv(f"path,hospital,patient_id,label\nscans/a.png,h1,,{text}\n")
        (row,) = data.read_manifest(path)
        self.assertEqual((row.label, row.hospital, row.patient_id), (want, "h1", None))
        self.assertEqual(row.path, (self.tmp / "scans" / "a.png").resolve())

    def test_bad_label(self):
        path = self._csv("path,site,label\nscans/a.png,h1,maybe\n")
        with self.assertRaisesRegex(errors.ManifestError, "line 2.*'maybe'"):
            data.read_manifest(path)

    def test_missing_column(self):
        path = self._csv("path,label\nscans/a.png,covid\n")
        with self.assertRaisesRegex(errors.ManifestError, "missing column"):
            data.read_manifest(path)

    def test_row_whose_file_is_missing(self):
        path = self._csv("path,site,label\nscans/a.png,h1,1\nscans/gone.dcm,h1,0\n")
        with self.assertRaisesRegex(errors.ScanNotFoundError, "line 3.*gone.dcm"):
            data.read_manifest(path)
        self.assertLen(data.read_manifest(path, check_files=False), 2)


if __name__ == "__main__":
    absltest.main()


def test_a_manifest_with_only_a_header_is_a_named_error(tmp_path):
    import pytest

    from ccfl_jax import errors
    from ccfl_jax.data import read_manifest

    path = tmp_path / "empty.csv"
    path.write_text("path,site,label\n")
    with pytest.raises(errors.ManifestError, match="no rows"):
        read_manifest(path)
