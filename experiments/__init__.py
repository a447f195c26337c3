"""Experiment scripts (absl flags) and the glue that joins ccfl_jax with the ledger."""
