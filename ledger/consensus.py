"""The consensus rule: validators' MAE scores combined with the threshold gamma (Eq. 17-18).

References:
  Kumar et al. 2020, arXiv 2007.06537, Sec. II-C, consensus steps 1-5 and Eq. 17-18: each
  local model is scored by its mean absolute error; hospitals vote, and the leader's block
  is approved before the round's global model is stored.

The equations' exact text was not at hand when this was written (only the paper's summary:
local models scored by MAE, hospitals vote, a threshold gamma). This module fixes one
precise reading, identically here and in the contract; check it against Eq. 17-18 of the
paper and change both places together if they differ:

* Eq. 17, per validator v and update i:
  ``MAE_v(i) = (1 / n_v) * sum_j |y_j - p_j|``, where ``p_j`` is the probability of the
  positive class that the updated model ``theta_{r-1} + delta_i`` gives to the j-th of
  validator v's ``n_v`` held-out scans and ``y_j`` in {0, 1} is its label. On chain the
  score is the integer ``round(MAE_v(i) * SCORE_SCALE)``.
* Eq. 18, with gamma in [0, 1]: a vote passes when ``MAE_v(i) <= gamma``, and update i is
  accepted when at least ``quorum`` votes on it pass:
  ``accepted(i) = [ sum_v 1{score_v(i) <= round(gamma * SCORE_SCALE)} >= quorum ]``.
  A validator never votes on its own update.
"""

from collections.abc import Iterable, Sequence

SCORE_SCALE = 1_000_000


def mean_absolute_error(labels: Sequence[float], probabilities: Sequence[float]) -> float:
    """MAE of predicted probabilities against 0/1 labels (Eq. 17).

    Examples:
      >>> mean_absolute_error([1, 0, 1, 0], [0.9, 0.2, 0.6, 0.0])
      0.175
    """
    if len(labels) != len(probabilities) or not labels:
        raise ValueError(
            f"{len(labels)} labels and {len(probabilities)} probabilities: MAE needs the "
            "same, non-zero number of each."
        )
    total = sum(abs(y - p) for y, p in zip(labels, probabilities, strict=True))
    return round(total / len(labels), 12)  # Eq. 17


def to_score(value: float) -> int:
    """A non-negative float (MAE, loss) as the contract's integer, value * SCORE_SCALE.

    Examples:
      >>> to_score(0.1234567)
      123457
    """
    if not value >= 0.0 or value == float("inf"):
        raise ValueError(
            f"score {value!r}: expected a finite non-negative MAE or loss; check the "
            "evaluation that produced it."
        )
    return int(round(value * SCORE_SCALE))


def vote_passes(score: int, gamma: float) -> bool:
    """Whether one validator's integer score passes the threshold gamma (Eq. 18).

    Examples:
      >>> vote_passes(to_score(0.30), gamma=0.35), vote_passes(to_score(0.40), gamma=0.35)
      (True, False)
    """
    return score <= to_score(gamma)  # Eq. 18


def is_accepted(scores: Iterable[int], gamma: float, quorum: int) -> bool:
    """Whether an update with these validators' scores is accepted (Eq. 18).

    Args:
      scores: the integer scores that the validators (other than its author) cast.
      gamma: the largest passing MAE.
      quorum: the number of passing votes needed.

    Examples:
      >>> is_accepted([to_score(0.2), to_score(0.5), to_score(0.3)], gamma=0.35, quorum=2)
      True
    """
    return sum(vote_passes(s, gamma) for s in scores) >= quorum  # Eq. 18
