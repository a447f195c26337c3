"""Named errors of ccfl_jax.

Every error subclasses :class:`CcflError` and the builtin it refines (``ValueError``, ...), so
``except ValueError`` still works. A message names the file or value, says what is wrong and
what to do about it. One section per subpackage; add new errors to your section only.
"""


class CcflError(Exception):
    """Base class of every error raised by ccfl_jax."""


# --- data: ingest, normalization, hospitals ------------------------------------------------

# --- models -------------------------------------------------------------------------------

# --- train and metrics --------------------------------------------------------------------

# --- federated: rounds, aggregation, privacy, checkpoints ---------------------------------
