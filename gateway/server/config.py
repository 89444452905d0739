"""How ``ovi-gateway serve`` runs (``ServerConfig``), and the owner id an API key is stored as."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.routing import Route

__all__ = ["ServerConfig", "owner_of"]


@dataclass
class ServerConfig:
    """How the server runs.

    Args:
        api_keys: the bearer keys clients may use; each key sees only its own videos.
        media_dir: where finished clips are stored for ``/content`` (a shared volume for replicas).
        poll_after_ms: the ``openai-poll-after-ms`` hint on unfinished videos (milliseconds).
        retry_window: seconds within which an SDK-retried create (no ``Idempotency-Key``) with the same
            body returns the same video.
        max_body_bytes: larger request bodies (by ``Content-Length`` or as streamed) are refused with 413.
        emulator: vendors are the built-in emulator (loopback callback URLs allowed).
        wall: Unix seconds now (for ``expires_at`` and refusing expired content; tests inject one).
        lose_create_answers: test fault: this many creates answer 502 *after* the intent, without
            ``x-should-retry`` (as a proxy that lost the answer would), to prove SDK retries bill once.
    """

    api_keys: tuple[str, ...]
    media_dir: Path
    poll_after_ms: int = 5000
    retry_window: float = 120.0
    max_body_bytes: int = 25 * 1024 * 1024
    emulator: bool = False
    lose_create_answers: int = 0
    wall: Callable[[], float] = time.time
    routes: list[Route] = field(default_factory=list)
    """Extra routes (the vendor webhook intake) mounted beside the API."""
    intake: Any = None
    """The webhook ``Intake`` (its delivery counters appear in ``/metrics``)."""
    callback_secret: str | None = None
    """``whsec_<base64 key>``: signs client callbacks (Standard Webhooks); without it ``callback_url`` is refused."""
    callback_transport: Any = None
    """How callbacks leave (an httpx transport; default real HTTP)."""
    callback_interval: float = 1.0
    """Seconds between outbox rounds."""
    rate_limit: float | None = None
    """Requests per second each API key may make (a token bucket in the store, shared by every replica);
    past it: 429 with ``Retry-After``. ``None``: no limit."""
    rate_burst: float | None = None
    """Requests a key may make at once before the rate applies (default: one second's worth, at least 1)."""


def owner_of(api_key: str) -> str:
    """The owner id stored for an API key: a SHA-256 digest, so the journal never holds the key."""
    return hashlib.sha256(b"ovi-gateway/api-key\0" + api_key.encode("utf-8")).hexdigest()[:32]
