"""Named training errors. The CLI prints the message (one actionable line) and exits non-zero."""

from __future__ import annotations


class TrainingError(Exception):
    """Base of every error the training job raises on purpose."""


class DataError(TrainingError):
    """Input data that cannot be used: a missing file or column, too many rejected rows."""


class ConfigError(TrainingError):
    """A setting or argument that cannot work (bad value, contradictory options)."""
