"""NIfTI and PNG/JPEG readers: axis order, NaN refusal, grey channel, content dispatch."""

import pathlib
import shutil
import tempfile

import nibabel as nib
import numpy as np
import PIL.Image
from absl.testing import absltest

from ccfl_jax import data, errors

DATA = pathlib.Path(__file__).parents[2] / "data"


class NiftiTest(absltest.TestCase):
    def setUp(self):
        super().setUp()
        self.tmp = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, self.tmp)

    def test_ras_volume_becomes_cranial_first_zyx(self):
        vol = np.arange(4 * 5 * 3, dtype=np.int16).reshape(4, 5, 3)  # [i: to R, j: to A, k: to S]
        affine = np.diag([0.8, 0.9, 2.5, 1.0])
        nib.save(nib.Nifti1Image(vol, affine), self.tmp / "v.nii.gz")
        scan = data.read_scan(self.tmp / "v.nii.gz")
        self.assertEqual(scan.array.shape, (3, 5, 4))
        np.testing.assert_allclose(scan.spacing_mm, (2.5, 0.9, 0.8))
        # first slice = largest k (superior); rows run A->P (j reversed); columns R->L (i reversed)
        np.testing.assert_array_equal(scan.array[0], vol[::-1, ::-1, 2].T)
        self.assertEqual(scan.metadata.axcodes, ("R", "A", "S"))

    def test_nan_voxels(self):
        vol = np.zeros((4, 4, 3), np.float32)
        vol[1, 2, 0] = np.nan
        nib.save(nib.Nifti1Image(vol, np.eye(4)), self.tmp / "nan.nii")
        with self.assertRaisesRegex(errors.NonFinitePixelsError, "nan.nii: 1 voxels"):
            data.read_scan(self.tmp / "nan.nii")

    def test_4d_refused(self):
        nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.int16), np.eye(4)), self.tmp / "t.nii")
        with self.assertRaises(errors.UnsupportedFormatError):
            data.read_nifti(self.tmp / "t.nii")


class ImageTest(absltest.TestCase):
    def test_jpeg_sample(self):
        path = DATA / "covid_semiseg/train/images/2.jpg"
        scan = data.read_scan(path)
        want = np.asarray(PIL.Image.open(path).convert("L"), np.float32)
        np.testing.assert_array_equal(scan.array, want)
        self.assertEqual((scan.metadata.file_format, scan.metadata.units), ("jpg", "display"))
        self.assertFalse(scan.spacing_known)

    def test_png_sample_grey_channel(self):
        path = next((DATA / "sars_cov_2_ct/covid").glob("*.png"))
        scan = data.read_image(path)
        rgb = np.asarray(PIL.Image.open(path).convert("RGB"), np.float32)
        np.testing.assert_array_equal(scan.array, rgb[..., 0])
        self.assertEqual(scan.metadata.file_format, "png")

    def test_dispatch_by_content_not_extension(self):
        tmp = pathlib.Path(tempfile.mkdtemp())
        self.addCleanup(shutil.rmtree, tmp)
        src = DATA / "covid_semiseg/train/images/2.jpg"
        shutil.copy(src, tmp / "slice.png")  # a JPEG with the wrong extension
        self.assertEqual(data.read_scan(tmp / "slice.png").metadata.file_format, "jpg")


if __name__ == "__main__":
    absltest.main()
