"""Executes notebooks/federated_round_walkthrough.ipynb headless on tiny settings.

The stored notebook has no outputs; the test injects a cell with tiny parameters right after the
cell tagged ``parameters``, runs every cell with nbclient from the repository root, and checks
what the cells printed: the round's accepted mask (a subset of the sampled hospitals), its
epsilon (against dp-accounting called directly) and the model hash put on chain.
"""

import os
import pathlib
import re

import dp_accounting
import nbclient
import nbformat
from absl.testing import absltest
from dp_accounting import pld, rdp

ROOT = pathlib.Path(__file__).parents[2]
NOTEBOOK = ROOT / "notebooks" / "federated_round_walkthrough.ipynb"
NUM_HOSPITALS = 5
TINY = {
    "IMAGE_SIZE": 32,
    "LOCAL_STEPS": 1,
    "BATCH_SIZE": 4,
    "MAX_PER_HOSPITAL": 8,
    "HOSPITALS_PER_ROUND": 3,
    "NOISE_MULTIPLIER": 0.7,
    "BOOTSTRAP": 20,
    "CACHE_DIR": "",
}


def _stream_text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", ()) if o.output_type == "stream")


def _run_tiny_notebook():
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    index = next(
        i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", ())
    )
    overrides = "\n".join(f"{name} = {value!r}" for name, value in TINY.items())
    notebook.cells.insert(index + 1, nbformat.v4.new_code_cell(overrides))
    env = dict(os.environ, JAX_DISABLE_MOST_OPTIMIZATIONS="1")
    env.pop("MPLBACKEND", None)  # the kernel's inline backend turns figures into outputs
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute(env=env)
    return notebook


class StoredNotebookTest(absltest.TestCase):
    def test_stored_without_outputs(self):
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                self.assertEqual(cell.outputs, [], cell.source[:80])
                self.assertIsNone(cell.execution_count)

    def test_colab_install_is_guarded_and_parameters_are_tagged(self):
        notebook = nbformat.read(NOTEBOOK, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        self.assertIn('if "google.colab" in sys.modules:', code[0].source)
        self.assertIn("pip install", code[0].source)
        tagged = [c for c in code if "parameters" in c.metadata.get("tags", ())]
        self.assertLen(tagged, 1)
        for name in TINY:
            self.assertRegex(tagged[0].source, rf"(?m)^{name} = ")


class ExecutedNotebookTest(absltest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.notebook = _run_tiny_notebook()
        cls.code = [c for c in cls.notebook.cells if c.cell_type == "code"]

    def _cell_printing(self, marker: str) -> str:
        texts = [_stream_text(c) for c in self.code if marker in _stream_text(c)]
        self.assertLen(texts, 1, f"no single cell printed {marker!r}")
        return texts[0]

    def test_no_cell_raised(self):
        errors = [o for c in self.code for o in c.outputs if o.output_type == "error"]
        self.assertEmpty(errors)

    def test_shows_slices(self):
        images = [o for c in self.code for o in c.outputs if "image/png" in o.get("data", {})]
        self.assertLen(images, 2)  # the Eq. 1 window, and one training slice per hospital

    def test_window_maps_into_unit_interval(self):
        text = self._cell_printing("HU range")
        low, high = map(float, re.search(r"-> \[(\S+), (\S+)\]", text).groups())
        self.assertGreaterEqual(low, -0.5)
        self.assertLessEqual(high, 0.5)
        self.assertLess(low, high)

    def test_accepted_mask_is_within_the_sampled_hospitals(self):
        sampling = self._cell_printing("sampled=")
        sampled = [s == "True" for s in re.findall(r"sampled=(True|False)", sampling)]
        self.assertLen(sampled, NUM_HOSPITALS)
        self.assertEqual(sum(sampled), TINY["HOSPITALS_PER_ROUND"])
        final = _stream_text(self.code[-1])
        accepted = re.search(r"accepted mask: \[([01, ]+)\]", final).group(1)
        mask = [int(a) for a in accepted.split(",")]
        self.assertLen(mask, NUM_HOSPITALS)
        for is_accepted, is_sampled in zip(mask, sampled, strict=True):
            self.assertLessEqual(is_accepted, int(is_sampled))

    def test_votes_are_scores_in_unit_interval(self):
        text = self._cell_printing("validators:")
        scores = [float(m) for m in re.findall(r"score=([0-9.]+)", text)]
        self.assertNotEmpty(scores)  # an MAE, or its increase, lies in [0, 1]
        for score in scores:
            self.assertBetween(score, 0.0, 1.0)

    def test_epsilon_matches_dp_accounting(self):
        final = _stream_text(self.code[-1])
        eps = float(re.search(r"epsilon: ([0-9.]+) \(delta=([0-9.e-]+)\)", final).group(1))
        delta = float(re.search(r"\(delta=([0-9.e-]+)\)", final).group(1))
        q = TINY["HOSPITALS_PER_ROUND"] / NUM_HOSPITALS
        event = dp_accounting.PoissonSampledDpEvent(
            q, dp_accounting.GaussianDpEvent(TINY["NOISE_MULTIPLIER"])
        )
        rdp_eps = rdp.RdpAccountant().compose(event).get_epsilon(delta)
        pld_eps = pld.PLDAccountant().compose(event).get_epsilon(delta)
        self.assertLessEqual(pld_eps, eps + 1e-3)  # PLD is the tighter bound
        self.assertAlmostEqual(eps, rdp_eps, delta=0.05 * rdp_eps)  # other RDP orders

    def test_round_hash_was_printed(self):
        final = _stream_text(self.code[-1])
        self.assertRegex(final, r"model hash on chain: [0-9a-f]{64}")
        self.assertIn("pooled test: roc_auc=", self._cell_printing("pooled test:"))


if __name__ == "__main__":
    absltest.main()
