"""One try on one vendor, as results and errors report it (``gateway.result`` re-exports ``Attempt``).

Kept below both ``gateway.errors`` and ``gateway.result`` so that errors can carry attempts while
results (which download through ``gateway.media``) raise errors, without an import cycle.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from gateway.secrets import redact

__all__ = ["Attempt", "Outcome"]

Outcome = Literal["succeeded", "failed", "retried", "skipped", "unknown"]


class Attempt(BaseModel):
    """One try on one vendor: what happened, how long it took, and whether it may have been billed."""

    # defer_build: the validator is built on first use, once, not at import (start-up, issue 14)
    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, defer_build=True)

    provider: str
    outcome: Outcome
    error_type: str | None = None
    error: str | None = None
    elapsed_s: float = 0.0
    may_be_billed: bool = False
    job_id: str | None = None

    @field_validator("error", "error_type")
    @classmethod
    def _redact(cls, value: str | None) -> str | None:
        # The error text may quote a vendor's answer, which may echo a key.
        return None if value is None else redact(value)
