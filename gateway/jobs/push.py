"""Push before poll: vendor webhooks wake a job's follower, and a verified push answers its status check.

``PushBox`` holds what the gateway needs for webhooks: the public URL vendors can reach, the secret
behind each job's URL token, the verified deliveries (``events``, shared through the journal file, so a
push received by one replica answers the status check of a follower on another), and one wake-up per
clip. The runner is unchanged: ``PushedProvider`` wraps an adapter so that

* ``submit`` asks the vendor for a webhook (``SubmitContext.webhook_url``) at
  ``{public_url}/webhooks/{provider}/{clip}/{submit}?t={token}``;
* ``status`` answers from a *trusted* (signed, verified) terminal push without calling the vendor, and
  otherwise calls the vendor as before — an unsigned push (Runware) only wakes the follower, whose one
  status call then confirms it;
* ``result`` returns the clip a trusted push carried;

and ``WakeableClock`` ends a follower's wait between polls as soon as a push for its clip arrives, so
detection is immediate while polling stays the slow fallback for pushes that come late or never.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import hashlib
import hmac
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol
from urllib.parse import quote

import gateway.secrets as secrets
from gateway.clock import Clock
from gateway.contract import JobHandle, JobStatus, ProviderOutput, SubmitContext, WebhookEvent
from gateway.request import OviRequest

__all__ = ["CURRENT_CLIP", "EventStore", "PushBox", "PushedProvider", "WakeableClock"]

CURRENT_CLIP: contextvars.ContextVar[str | None] = contextvars.ContextVar("ovi_current_clip", default=None)
"""The clip a follower task works on (set by the follower; read for webhook URLs and wake-ups)."""


class EventStore(Protocol):
    """Verified webhook deliveries (``gateway.webhooks.store.WebhookEvents``)."""

    def latest_trusted(self, vendor: str, job_id: str) -> bytes | None: ...

    def count(self, **where: Any) -> int: ...


TOKEN_SHAPE = (r"(?i)(?:(?<=[?&]t=)|(?<=%3ft%3d)|(?<=%26t%3d)|(?<=%253ft%253d)|(?<=%2526t%253d))"
               r"[0-9a-f]{64}")
"""A per-job URL token as echoed: the ``t`` query parameter as sent, percent-encoded once (fal-client puts the
webhook URL in a query parameter) or twice. Only a parameter named exactly ``t``: a vendor's clip URL with,
say, ``?digest=<64 hex>`` must reach the journal intact."""

_TRACKED = 10_000
"""Most jobs (and pushed clips) a box remembers: a job that ends without a final status seen here (deadline,
lease lost, cancel) or a push for a clip followed elsewhere must not grow a long-running server forever."""


def _remember(entries: dict[str, None], key: str) -> None:
    entries[key] = None
    if len(entries) > _TRACKED:
        del entries[next(iter(entries))]  # the oldest: its job has long ended or moved on


PUSH_FALLBACK_S = 90.0
"""With webhooks on, polling is the slow fallback: a job that asked for a push is first checked this late
(seconds after its submit, or the poll plan's own first check if later), unless a push wakes it first. An
Ovi clip takes 45–75 s, so the push comes first and fal and WaveSpeed jobs need no status call at all
(Runware's one ``getResponse`` confirms its unsigned push). A vendor whose push failed to come is polled
at the usual pace until one arrives again."""


class PushBox:
    """Webhook settings and state of one gateway.

    Args:
        public_url: where vendors reach this server (``https://…``), without a trailing slash.
        secret: key of the per-job URL tokens (stable across restarts and replicas).
        events: the verified deliveries.
    """

    def __init__(self, *, public_url: str, secret: bytes, events: EventStore,
                 fallback_s: float = PUSH_FALLBACK_S) -> None:
        self.public_url = public_url.rstrip("/")
        self.fallback_s = fallback_s
        """First status check of a job that asked for a push, at the earliest (seconds after the submit)."""
        self.missed: set[str] = set()
        """Vendors whose last job ended without the push it asked for: their jobs poll at the usual pace."""
        self._hinted: dict[str, None] = {}
        secrets.register(secret)  # the token key may come from a caller, not only webhook_secret()
        secrets.register_shape(TOKEN_SHAPE)
        self.secret = secret
        self.events = events
        self._wakers: dict[str, set[asyncio.Event]] = {}
        """The followers sleeping right now, by clip (each sleep removes its own entry when it ends)."""
        self._woken: dict[str, None] = {}
        """Clips a push arrived for while no follower here slept: the next sleep ends at once (bounded)."""
        self.relay: Callable[[str], None] | None = None
        """Tells the other replicas of a push no follower here sleeps on (``gateway.store.notify``: PostgreSQL
        ``NOTIFY``, set by the server); ``None``: this process alone."""
        self.pushed_answers = 0
        """Status checks answered from a push instead of the vendor (for metrics and tests)."""

    def token(self, provider: str, clip: str, submit: str) -> str:
        """The job's URL token: HMAC-SHA256 of ``provider/clip/submit`` under the secret (hex).

        Redacted by ``gateway.secrets`` by its form (``TOKEN_SHAPE``, registered once per box): the token alone
        lets anyone push for the job, and the webhook URL that carries it is echoed in vendor answers, errors
        and logs."""
        return hmac.new(self.secret, f"{provider}/{clip}/{submit}".encode(), hashlib.sha256).hexdigest()

    def url(self, provider: str, clip: str, submit: str) -> str:
        return (f"{self.public_url}/webhooks/{quote(provider, safe='')}/{quote(clip, safe='')}/"
                f"{quote(submit, safe='')}?t={self.token(provider, clip, submit)}")

    def wake(self, clip: str) -> None:
        """A push for ``clip`` arrived here: end its follower's current wait (or, if none sleeps here now, its
        next), and when none sleeps here, tell the other replicas (``relay``): one of them may follow it."""
        if not self.wake_here(clip) and self.relay is not None:
            self.relay(clip)

    def wake_here(self, clip: str) -> bool:
        """``wake`` in this process only (for a notice from another replica, never relayed back); whether
        a follower here was sleeping on ``clip``."""
        _remember(self._hinted, clip)
        sleeping = self._wakers.get(clip)
        if sleeping:
            for event in sleeping:
                event.set()
            return True
        _remember(self._woken, clip)  # the push came between two sleeps, or for a clip followed elsewhere
        return False

    def woken(self, clip: str) -> bool:
        """Whether a push for ``clip`` came while no follower here slept; clears it."""
        if clip not in self._woken:
            return False
        del self._woken[clip]
        return True

    async def wait(self, clip: str, sleep: Awaitable[None]) -> None:
        """Await ``sleep`` (a clock's), ending early when a push for ``clip`` arrives. The follower's
        entry lives only while it sleeps, so a job that ends without a push leaves nothing behind."""
        event = asyncio.Event()
        self._wakers.setdefault(clip, set()).add(event)
        sleeping = asyncio.ensure_future(sleep)
        woken = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({sleeping, woken}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (sleeping, woken):
                task.cancel()
            waiting = self._wakers.get(clip)
            if waiting is not None:
                waiting.discard(event)
                if not waiting:
                    del self._wakers[clip]

    def hinted(self, clip: str | None) -> bool:
        """Whether a push (signed or a bare hint) for ``clip`` has arrived since the last ask; clears it."""
        if clip is None or clip not in self._hinted:
            return False
        del self._hinted[clip]
        return True

    def forget(self, clip: str) -> None:
        self._woken.pop(clip, None)
        self._hinted.pop(clip, None)


class PushedProvider:
    """An adapter that asks for webhooks and answers status checks from verified pushes."""

    def __init__(self, inner: Any, box: PushBox) -> None:
        self._inner = inner
        self._box = box
        self._outputs: dict[str, ProviderOutput] = {}
        self._expecting: dict[str, None] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"PushedProvider({self._inner!r})"

    async def submit(self, request: OviRequest, ctx: SubmitContext) -> JobHandle:
        clip = CURRENT_CLIP.get()
        if clip is not None and ctx.webhook_url is None and hasattr(self._inner, "parse_webhook"):
            ctx = dataclasses.replace(ctx, webhook_url=self._box.url(self._inner.name, clip, ctx.idempotency_key))
        handle: JobHandle = await self._inner.submit(request, ctx)
        if ctx.webhook_url is not None:
            _remember(self._expecting, handle.job_id)
        return handle

    def push_fallback(self, handle: JobHandle) -> float:
        """Seconds to wait, at least, before the first status check of ``handle`` (0: no push expected)."""
        if handle.job_id not in self._expecting or self._inner.name in self._box.missed:
            return 0.0
        return self._box.fallback_s

    def _pushed(self, handle: JobHandle) -> WebhookEvent | None:
        body = self._box.events.latest_trusted(self._inner.name, handle.job_id)
        if body is None:
            return None
        event: WebhookEvent = self._inner.parse_webhook(body)
        return event if event.trusted and event.status.state.final else None

    async def status(self, handle: JobHandle) -> JobStatus:
        event = self._pushed(handle)
        hinted = self._box.hinted(CURRENT_CLIP.get())
        if event is not None:
            self._box.pushed_answers += 1
            self._box.missed.discard(self._inner.name)
            self._expecting.pop(handle.job_id, None)
            if event.output is not None:
                self._outputs[handle.job_id] = event.output
            return event.status
        status: JobStatus = await self._inner.status(handle)
        if status.state.final and handle.job_id in self._expecting:
            self._expecting.pop(handle.job_id, None)
            if hinted:  # an unsigned push (Runware) woke us: pushes arrive
                self._box.missed.discard(self._inner.name)
            else:  # the job ended and no push came: poll this vendor at the usual pace until one does
                self._box.missed.add(self._inner.name)
        return status

    async def result(self, handle: JobHandle, last: JobStatus) -> ProviderOutput:
        output = self._outputs.pop(handle.job_id, None)
        if output is not None:
            return output
        fetched: ProviderOutput = await self._inner.result(handle, last)
        return fetched


class WakeableClock:
    """A clock whose ``sleep`` in a follower ends early when a push for its clip arrives."""

    def __init__(self, inner: Clock, box: PushBox) -> None:
        self._inner = inner
        self._box = box

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def now(self) -> float:
        return self._inner.now()

    def timeout(self, seconds: float) -> AbstractAsyncContextManager[None]:
        return self._inner.timeout(seconds)

    async def sleep(self, seconds: float) -> None:
        clip = CURRENT_CLIP.get()
        if clip is None:
            return await self._inner.sleep(seconds)
        if self._box.woken(clip):
            return None
        await self._box.wait(clip, self._inner.sleep(seconds))
        return None


def wrap(providers: Mapping[str, Any], box: PushBox | None) -> dict[str, Any]:
    """``providers`` with each adapter that reads webhooks wrapped (as is when ``box`` is ``None``)."""
    if box is None:
        return dict(providers)
    return {name: PushedProvider(p, box) if hasattr(p, "parse_webhook") else p for name, p in providers.items()}
