"""Learners behind one interface: `get_learner(name, params).fit(confidence, ...) -> Factors`.

Library objects (implicit, lightfm) stay inside each wrapper; only numpy arrays come out.
"""

from training.learners.base import (
    LEARNER_NAMES,
    Factors,
    Learner,
    LearnerConfigError,
    ModelFitError,
    factor_neighbours,
    get_learner,
    with_neighbours,
)

__all__ = [
    "LEARNER_NAMES",
    "Factors",
    "Learner",
    "LearnerConfigError",
    "ModelFitError",
    "factor_neighbours",
    "get_learner",
    "with_neighbours",
]
