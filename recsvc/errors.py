"""Named errors. The HTTP layer maps each to the contract's JSON error shape; the CLI prints its message."""

from __future__ import annotations


class RecsvcError(Exception):
    """Base of every error recsvc raises on purpose."""

    code = "error"
    status = 500

    def __init__(self, message: str, details: list[dict] | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or []


class ArtifactError(RecsvcError):
    """A model folder that cannot be trusted: bad checksum, missing array, wrong format version."""

    code = "invalid_artifact"


class RegistryError(RecsvcError):
    """Unknown model or alias, or a refused promotion."""

    code = "registry_error"
    status = 404


class PromotionRefused(RegistryError):
    code = "promotion_refused"
    status = 409


class StoreUnavailable(RecsvcError):
    """Live state cannot be reached (Redis down or slow)."""

    code = "store_unavailable"
    status = 503
