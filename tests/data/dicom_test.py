"""DICOM slices and series: HU against NumPy on real files, slice order, one test per bad input."""

import pathlib
import shutil
import tempfile
from unittest import mock

import numpy as np
import pydicom
import pydicom.data
from absl.testing import absltest, parameterized
from pydicom.pixels.decoders.base import Decoder

from ccfl_jax import data, errors

DATA = pathlib.Path(__file__).parents[2] / "data"
CT_SMALL = pydicom.data.get_testdata_file("CT_small.dcm")


def _expected_hu(path):
    """HU computed independently: stored * slope + intercept, fill (<= -2000 HU / padding) -> -1024."""
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array.astype(np.float64)
    hu = stored * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    pad = hu <= -2000
    if "PixelPaddingValue" in ds:
        pad |= stored == ds.PixelPaddingValue
    return np.where(pad, -1024.0, hu), int(pad.sum())


class RealFilesTest(parameterized.TestCase):
    @parameterized.named_parameters(
        ("pydicom_ct_small", CT_SMALL),
        ("pydicom_jpeg2000_ct", pydicom.data.get_testdata_file("693_J2KI.dcm")),
        ("siemens_jpeg_lossless", DATA / "covid_ct_md/covid/P001/98C14734-ASSH_57.dcm"),
        ("ge_padding_3024", DATA / "tcia_covid19_ny_sbu/A048383/19001231-30.dcm"),
        ("toshiba_fill_2048", DATA / "tcia_covid19_ny_sbu/A046441/19010101-23.dcm"),
        ("philips_implicit_vr", DATA / "tcia_lung_pet_ct_dx/Lung_Dx-A0001/1-18.dcm"),
    )
    def test_hu_matches_numpy(self, path):
        scan = data.read_scan(path)
        want, n_pad = _expected_hu(path)
        np.testing.assert_array_equal(scan.array, want.astype(np.float32))
        self.assertEqual(scan.metadata.padding_pixels, n_pad)
        self.assertGreater(scan.array.min(), -2000.0)  # no fill value is left as tissue
        self.assertEqual(scan.metadata.units, "HU")

    @parameterized.named_parameters(
        # HU ranges stated in data/README.md for each source (None: not stated).
        ("covid_ct_md", "covid_ct_md", -1024.0, 1699.0),
        ("lung_pet_ct_dx", "tcia_lung_pet_ct_dx", -1024.0, 2976.0),
        ("ny_sbu", "tcia_covid19_ny_sbu", None, 5622.0),
    )
    def test_sample_hu_range_matches_readme(self, folder, lo, hi):
        scans = [data.read_scan(p) for p in sorted((DATA / folder).rglob("*.dcm"))]
        self.assertEqual(max(s.array.max() for s in scans), hi)
        if lo is not None:
            self.assertEqual(min(s.array.min() for s in scans), lo)

    def test_ct_small_hand_values(self):
        scan = data.read_scan(CT_SMALL)
        # CT_small.dcm: slope 1, intercept -1024; stored 1928 at (64, 64) -> 904 HU.
        self.assertEqual(scan.array[64, 64], 1928 - 1024)
        self.assertEqual(scan.spacing_mm, (0.661468, 0.661468))

    def test_sample_fill_values_become_air(self):
        ge = data.read_scan(DATA / "tcia_covid19_ny_sbu/A048383/19001231-30.dcm")
        toshiba = data.read_scan(DATA / "tcia_covid19_ny_sbu/A046441/19010101-23.dcm")
        # GE stores -2000 (PixelPaddingValue, -3024 HU); Toshiba writes -2048 HU with no tag.
        for scan, fill in ((ge, -3024.0), (toshiba, -2048.0)):
            self.assertGreater(scan.metadata.padding_pixels, 1000)
            self.assertFalse(np.any(scan.array == fill))
            self.assertGreater(scan.array.min(), -2000.0)

    def test_scanner_metadata(self):
        meta = data.read_scan(DATA / "covid_ct_md/covid/P001/98C14734-ASSH_57.dcm").metadata
        self.assertEqual((meta.manufacturer, meta.model), ("SIEMENS", "SOMATOM Scope"))
        self.assertIn((-600.0, 1200.0), meta.windows)  # README: header window C -600 / W 1200
        self.assertEqual(meta.modality, "CT")


class CraftedTest(parameterized.TestCase):
    """Small files written to a temporary folder, from pydicom's CT_small.dcm."""

    def setUp(self):
        super().setUp()
        self.tmp = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def _write(self, name, edit=None, z=0.0, folder=None):
        ds = pydicom.dcmread(CT_SMALL)
        ds.ImagePositionPatient = [0.0, 0.0, z]
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        if edit is not None:
            edit(ds)
        path = (folder or self.tmp) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        ds.save_as(path)
        return path

    def test_series_order_from_shuffled_names(self):
        rng = np.random.default_rng(0)
        names = [f"{n}.dcm" for n in rng.permutation(1000)[:7]]
        zs = -40.0 + 2.5 * np.arange(7)  # name k at z[k], marker pixel = k
        for k, (name, z) in enumerate(zip(names, zs, strict=True)):

            def mark(ds, k=k):
                pixels = ds.pixel_array.copy()
                pixels[0, 0] = 100 + k
                ds.PixelData = pixels.tobytes()

            self._write(name, mark, z=float(z))
        scan = data.read_scan(self.tmp)
        order = np.argsort(-zs)  # most cranial (largest z) first
        self.assertEqual(list(scan.metadata.slice_files), [names[k] for k in order])
        np.testing.assert_array_equal(scan.array[:, 0, 0], 100 + order - 1024)
        self.assertAlmostEqual(scan.spacing_mm[0], 2.5, places=6)
        self.assertEqual(scan.array.shape, (7, 128, 128))

    def test_truncated_file(self):
        path = self._write("full.dcm")
        raw = path.read_bytes()
        (self.tmp / "cut.dcm").write_bytes(raw[: len(raw) // 2])
        with self.assertRaisesRegex(errors.DicomReadError, "cut.dcm"):
            data.read_scan(self.tmp / "cut.dcm")

    def test_truncated_header(self):
        raw = self._write("full.dcm").read_bytes()
        (self.tmp / "head.dcm").write_bytes(raw[:300])
        with self.assertRaisesRegex(errors.DicomReadError, "head.dcm"):
            data.read_dicom(self.tmp / "head.dcm")

    def test_not_an_image(self):
        (self.tmp / "notes.dcm").write_text("not a scan")
        with self.assertRaisesRegex(errors.UnsupportedFormatError, "notes.dcm"):
            data.read_scan(self.tmp / "notes.dcm")

    def test_missing_file(self):
        with self.assertRaises(errors.ScanNotFoundError):
            data.read_scan(self.tmp / "absent.dcm")

    def test_missing_pixel_data(self):
        path = self._write("nopix.dcm", lambda ds: delattr(ds, "PixelData"))
        with self.assertRaisesRegex(errors.MissingPixelDataError, "nopix.dcm"):
            data.read_scan(path)

    @parameterized.parameters("RescaleSlope", "RescaleIntercept", "PixelSpacing")
    def test_missing_tag(self, tag):
        path = self._write("tagless.dcm", lambda ds: delattr(ds, tag))
        with self.assertRaisesRegex(errors.MissingTagError, f"tagless.dcm.*{tag}"):
            data.read_scan(path)

    def test_non_ct_modality(self):
        path = self._write("mr.dcm", lambda ds: setattr(ds, "Modality", "MR"))
        with self.assertRaisesRegex(errors.UnsupportedModalityError, "'MR'"):
            data.read_scan(path)
        with self.assertRaises(errors.UnsupportedModalityError):  # a real MR file
            data.read_scan(pydicom.data.get_testdata_file("MR_small.dcm"))

    def test_series_mixing_orientations(self):
        self._write("a.dcm", z=0.0)
        self._write(
            "b.dcm", lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 0, 0, -1]), z=5.0
        )
        with self.assertRaisesRegex(errors.InconsistentSeriesError, "orientation"):
            data.read_scan(self.tmp)

    def test_series_mixing_sizes(self):
        def shrink(ds):
            ds.PixelData = ds.pixel_array[::2, ::2].copy().tobytes()
            ds.Rows, ds.Columns = 64, 64

        self._write("a.dcm", z=0.0)
        self._write("b.dcm", shrink, z=5.0)
        with self.assertRaisesRegex(errors.InconsistentSeriesError, "matrix size"):
            data.read_scan(self.tmp)

    def test_duplicate_positions(self):
        for name, z in (("a.dcm", 0.0), ("b.dcm", 5.0), ("c.dcm", 5.0)):
            self._write(name, z=z)
        with self.assertRaisesRegex(errors.DuplicateSlicePositionError, "b.dcm and c.dcm"):
            data.read_scan(self.tmp)

    def test_missing_slice(self):
        for name, z in (("a.dcm", 0.0), ("b.dcm", 5.0), ("d.dcm", 15.0)):
            self._write(name, z=z)
        with self.assertRaisesRegex(errors.NonUniformSpacingError, "d.dcm and b.dcm"):
            data.read_scan(self.tmp)

    def test_compressed_without_decoder(self):
        path = DATA / "covid_ct_md/covid/P001/98C14734-ASSH_57.dcm"  # JPEG Lossless
        with mock.patch.object(Decoder, "is_available", new_callable=mock.PropertyMock) as avail:
            avail.return_value = False
            with self.assertRaisesRegex(errors.MissingDecoderError, "pip install pylibjpeg"):
                data.read_scan(path)

    def test_no_preamble_is_read(self):
        ds = pydicom.dcmread(CT_SMALL)
        ds.file_meta, ds.preamble = pydicom.dataset.FileMetaDataset(), None
        path = self.tmp / "bare"
        pydicom.dcmwrite(path, ds, implicit_vr=True, little_endian=True)
        self.assertEqual(path.read_bytes()[:2], b"\x08\x00")  # starts with (0008,0005)
        np.testing.assert_array_equal(data.read_scan(path).array, data.read_scan(CT_SMALL).array)


if __name__ == "__main__":
    absltest.main()
