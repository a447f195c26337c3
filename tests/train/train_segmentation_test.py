"""experiments/train_segmentation.py: the labelled slices it reads (the training path is tested by
tests/models/segcaps_test.py; the script's full run is too slow for the unit suite)."""

import pathlib

import numpy as np
from absl.testing import absltest

from experiments import train_segmentation

MANIFEST = str(pathlib.Path(__file__).resolve().parents[2] / "data" / "labels.csv")


class LoadMaskedSlicesTest(absltest.TestCase):
    def test_reads_images_and_binary_masks_of_one_split(self):
        images, masks = train_segmentation.load_masked_slices(MANIFEST, "test", 24, limit=3)
        self.assertEqual(images.shape, (3, 24, 24, 1))
        self.assertEqual(masks.shape, (3, 24, 24, 1))
        self.assertTrue(np.all((images >= -0.5) & (images <= 0.5)))
        self.assertTrue(set(np.unique(masks)) <= {0.0, 1.0})
        self.assertGreater(masks.sum(), 0)

    def test_every_labelled_slice_of_the_sample_is_found(self):
        train_images, _ = train_segmentation.load_masked_slices(MANIFEST, "train", 8)
        test_images, _ = train_segmentation.load_masked_slices(MANIFEST, "test", 8)
        self.assertEqual((len(train_images), len(test_images)), (50, 48))


if __name__ == "__main__":
    absltest.main()
