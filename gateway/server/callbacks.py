"""Client callbacks: a video's ``callback_url`` is POSTed once its job ends, signed as Standard Webhooks,
from a durable outbox that every replica drains.

* **Which URLs.** ``check_callback_url``: a public ``https://`` address only (``gateway.addresses`` — the
  rule vendor-facing URLs follow, so a caller cannot point the server at its own network); loopback
  (``http`` or ``https``) only when the server runs on the emulator.
* **The event.** ``{id, object: "event", type, created_at, data}`` with ``type`` ``video.completed`` or
  ``video.failed`` (OpenAI's video event names) and ``data`` the ``Video`` object as ``GET
  /v1/videos/{id}`` shows it (status, error, ``usage.cost``). The event id (``evt_<video>_<status>``)
  is the ``webhook-id`` and stays the same across retries, so receivers dedupe on it.
* **The signature** [Standard Webhooks spec; openai@3.57.0 lib/_webhooks.py; standardwebhooks 1.1.0]:
  ``webhook-id``, ``webhook-timestamp`` (integer Unix seconds, fresh per attempt) and ``webhook-signature:
  v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``, keyed with the base64-decoded part of a
  ``whsec_`` secret — what openai's ``webhooks.verify_signature`` and the ``standardwebhooks`` package
  verify.
* **Durability.** Any replica notices an ended video (``callbacks_due``) and queues its event in the
  store once (unique event id) in the same transaction that marks the video queued; drainers claim due
  rows with a lease (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), POST, and record the answer. A non-2xx
  answer, a timeout or a refused connection is retried with doubling backoff (``RETRY_BASE_S`` up to
  ``RETRY_MAX_S``) for ``attempts`` tries, then given up (kept, with the last error). A drainer killed
  mid-delivery leaves a claim that runs out (``LEASE_S``): the row is sent again — at-least-once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx

import gateway.secrets as secrets
from gateway.addresses import UnsafeURL, check_public_address, check_url
from gateway.clock import cancel_and_wait
from gateway.errors import ConfigurationError
from gateway.server.forms import BadField
from gateway.store.server_rows import OutboxRow

__all__ = ["CALLBACK_SECRET_ENV", "Callbacks", "check_callback_url", "parse_secret", "sign"]

CALLBACK_SECRET_ENV = "OVI_GATEWAY_CALLBACK_SECRET"
LEASE_S = 60.0
"""Seconds a drainer holds a claimed callback; a dead drainer's rows are due again after it."""
RETRY_BASE_S = 5.0
RETRY_MAX_S = 3600.0
ATTEMPTS = 10
"""Tries before a callback is given up: 5 s doubling to 1 h between them (about 43 minutes in all)."""
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_log = logging.getLogger("gateway.server.callbacks")
_Event = tuple[str, dict[str, Any]]


def check_callback_url(url: Any, *, emulator: bool) -> str:
    """``url`` if callbacks may go there, else ``BadField`` naming ``callback_url`` and what is allowed."""
    if not isinstance(url, str) or not url.strip() or len(url) > 2048:
        raise BadField("callback_url must be an https:// URL of at most 2048 characters", param="callback_url")
    try:
        check_url(url, what="callback_url", schemes=("https",))
        return url
    except UnsafeURL as unsafe:
        refusal = str(unsafe)
    if emulator:
        try:
            parts = check_url(url, what="callback_url", schemes=("https", "http"), allow_local=True)
        except UnsafeURL:
            parts = None
        if parts is not None and parts.hostname in _LOOPBACK:
            return url
    allowed = "a public https:// address" + (" or a loopback address (emulator mode)" if emulator else "")
    raise BadField(f"{refusal}; callback_url must be {allowed}", param="callback_url", code="invalid_callback_url")


def parse_secret(text: str) -> bytes:
    """The HMAC key of a ``whsec_<base64>`` secret (24 to 64 bytes, as Standard Webhooks recommends);
    registered with ``gateway.secrets`` so it never shows in logs or errors."""
    secrets.register(text)
    if not text.startswith("whsec_"):
        raise ConfigurationError("the callback secret must look like whsec_<base64 key> (Standard Webhooks)")
    body = text.removeprefix("whsec_")
    secrets.register(body)
    try:
        key = base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError("the callback secret's part after whsec_ is not base64") from None
    if not 24 <= len(key) <= 64:
        raise ConfigurationError(f"the callback secret's key is {len(key)} bytes; use 24 to 64 random bytes")
    return key


def sign(key: bytes, event_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for one delivery of ``body``."""
    mac = hmac.new(key, f"{event_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return {"webhook-id": event_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(), "content-type": "application/json"}


@dataclass(frozen=True)
class _Target:
    """One callback POST: the URL to connect to, extra headers (``Host``) and httpx extensions (SNI)."""

    url: str
    headers: dict[str, str]
    extensions: dict[str, Any]


async def _resolve(host: str, port: int) -> list[str]:
    """``host``'s addresses from the system resolver (``OSError`` when it has none)."""
    found = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(address[0]) for *_, address in found]


class Callbacks:
    """The outbox's producer and drainer in one server process.

    Args:
        journal: the shared store (``Journal`` faces of ``gateway.store.server_rows``).
        key: the HMAC key (``parse_secret``).
        event: builds ``(status, data)`` for an ended video, or ``None`` while it is not final.
        owner: this drainer's lease name (unique per process).
        sleep: the server clock's sleep (virtual in tests); ``interval``: seconds between rounds.
        transport: how callbacks leave (default: real HTTP).
        attempts: tries before giving up.
        resolve: a host's addresses (default: the system resolver); each delivery resolves once and
            connects to the address it checked.
    """

    def __init__(self, journal: Any, key: bytes, event: Callable[[str, str], Awaitable[_Event | None]],
                 *, owner: str, sleep: Callable[[float], Awaitable[None]], interval: float = 1.0,
                 transport: httpx.AsyncBaseTransport | None = None, attempts: int = ATTEMPTS,
                 timeout: float = 10.0, allow_local: bool = False,
                 resolve: Callable[[str, int], Awaitable[list[str]]] | None = None) -> None:
        self.journal = journal
        self.key = key
        self.event = event
        self.owner = owner
        self.sleep = sleep
        self.interval = interval
        self.attempts = attempts
        self.allow_local = allow_local
        self._resolve = resolve or _resolve
        # No kept-alive connections: a pooled one is keyed by address, so a second name pinned to the
        # same address would reuse a TLS session whose certificate was checked for the first name.
        self._http = httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False,
                                       limits=httpx.Limits(max_keepalive_connections=0))
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def start(self) -> None:
        """Drain in the background until ``close``."""
        self._task = asyncio.create_task(self._loop(), name="ovi-callbacks")

    async def _loop(self) -> None:
        while True:
            try:
                await self.round()
            except Exception as failure:  # storage hiccup: the rows stay, the next round retries
                _log.warning("callback round failed: %s", secrets.redact(str(failure)))
            await self.sleep(self.interval)

    async def round(self) -> int:
        """Queue the events of ended videos, then deliver what is due; returns deliveries tried."""
        for video_id, owner, url in self.journal.callbacks_due():
            made = await self.event(owner, video_id)
            if made is None:
                continue
            status, data = made
            event_id = f"evt_{video_id}_{status}"
            body = json.dumps({"id": event_id, "object": "event", "type": f"video.{status}",
                               "created_at": int(self.journal.wall()), "data": data}, separators=(",", ":"))
            self.journal.outbox_put(event_id=event_id, clip_key=video_id, url=url, body=body)
        rows = self.journal.outbox_claim(self.owner, lease=LEASE_S)
        await asyncio.gather(*(self._deliver(row) for row in rows))
        return len(rows)

    async def _target(self, url: str) -> _Target | str:
        """Where to POST ``url``: its host resolved once, every address checked public, and the POST sent to
        the first of them (``_Target``); or why it must never be called (a non-public address). Connecting
        to the checked address closes the DNS-rebinding window that a second lookup at connect time would
        open (a name answering public to the check, then private to the connect). ``OSError``: unresolvable
        now (retried later, nothing sent)."""
        if self.allow_local:  # the emulator's loopback receivers: nothing to protect, nothing pinned
            return _Target(url, {}, {})
        parts = httpx.URL(url)
        host = parts.host
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:  # a name: resolved below
            literal = None
        if literal is not None:  # an address as written: no lookup, nothing to rebind
            try:
                check_public_address(literal)
            except UnsafeURL as unsafe:
                return f"refused: {host} is not a public address ({unsafe})"
            return _Target(url, {}, {})
        addresses = await self._resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        if not addresses:
            raise OSError(f"{host} resolves to no address")
        try:
            for address in addresses:
                check_public_address(ipaddress.ip_address(address.split("%")[0]))
        except UnsafeURL as unsafe:
            return f"refused: {host} resolves to a non-public address ({unsafe})"
        # The Host header names the site as written, and TLS uses the name for SNI and for checking the
        # certificate (httpcore's sni_hostname becomes ssl's server_hostname), while the socket goes to
        # the address checked above.
        extensions = {"sni_hostname": host} if parts.scheme == "https" else {}
        return _Target(str(parts.copy_with(host=addresses[0])), {"host": parts.netloc.decode("ascii")}, extensions)

    async def _deliver(self, row: OutboxRow) -> None:
        headers = sign(self.key, row.event_id, int(self.journal.wall()), row.body)
        try:
            target = await self._target(row.url)
            if isinstance(target, str):  # never sent there, now or later
                self.failed += 1
                self.journal.outbox_retry(row.id, self.owner, error=target, next_at=None)
                return
            answer = await self._http.post(target.url, content=row.body.encode(), headers={**headers, **target.headers},
                                           extensions=target.extensions)
            problem = None if 200 <= answer.status_code < 300 else f"HTTP {answer.status_code}"
        except httpx.HTTPError as failure:
            problem = f"{type(failure).__name__}: {secrets.redact(str(failure))}"
        except OSError as failure:  # the name does not resolve now: nothing was sent, retried later
            problem = f"DNS: {secrets.redact(str(failure))}"
        if problem is None:
            self.delivered += 1
            self.journal.outbox_delivered(row.id, self.owner)
            return
        self.failed += 1
        tried = row.attempts + 1
        next_at = None if tried >= self.attempts else self.journal.wall() + min(RETRY_MAX_S,
                                                                               RETRY_BASE_S * 2 ** (tried - 1))
        self.journal.outbox_retry(row.id, self.owner, error=problem, next_at=next_at)

    async def close(self) -> None:
        """Stop draining and hand this process's claims back (due at once for another replica)."""
        task, self._task = self._task, None
        await cancel_and_wait(task)
        await self._http.aclose()
        try:
            self.journal.outbox_release(self.owner)
        except Exception as failure:  # the claims run out by themselves after LEASE_S
            _log.warning("could not hand back callback claims: %s", secrets.redact(str(failure)))
