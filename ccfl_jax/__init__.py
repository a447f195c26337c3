"""ccfl_jax: federated COVID-19 detection on chest CT with capsule networks, DP and a ledger.

Subpackages: ``data`` (ingest, normalize, hospitals), ``models``, ``train``, ``federated``.
The ledger lives in the separate top-level package ``ledger`` and knows nothing of JAX.
"""

__version__ = "0.1.0"
