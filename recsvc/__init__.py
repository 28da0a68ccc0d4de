"""recsvc: one model, one API, the same personalised selection on every channel."""

__version__ = "0.1.0"
