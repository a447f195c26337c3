"""ccfl_jax.data exposes the agreed public names."""

from absl.testing import absltest

from ccfl_jax import data

REQUIRED = {
    "read_scan",
    "read_dicom",
    "read_nifti",
    "read_image",
    "Scan",
    "read_manifest",
    "window",
    "resample_volume",
    "resample_slice",
    "WINDOW_PRESETS",
    "load_federated_dataset",
    "HospitalArrays",
    "FederatedDataset",
    "pool_hospitals",
    "summary_table",
}


class DataPackageTest(absltest.TestCase):
    def test_public_names(self):
        self.assertContainsSubset(REQUIRED, data.__all__)
        for name in data.__all__:
            self.assertTrue(hasattr(data, name), name)


if __name__ == "__main__":
    absltest.main()
