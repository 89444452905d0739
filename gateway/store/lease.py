"""Lease owners and the heartbeat that keeps a lease live (the lease rule itself: ``Queries.claim_clip``).

A lease carries wall time: its holder renews it every ``HEARTBEAT_S`` seconds while the call is alive,
and it is stale once ``STALE_BEATS`` beats are missed — the same rule on every backend and machine.

A holder's process id proves nothing across containers (two containers may share a hostname, each
with its own PID 1234), so a PID is consulted only as a shortcut when it is *provably* ours to judge:
the owner name records the kernel's boot id and the PID namespace, and only an owner from this very
boot and namespace whose process is gone counts as dead before its lease runs out. Everyone else
waits for the missed beats.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from gateway.clock import cancel_and_wait
from gateway.lazy import LazyModule

if TYPE_CHECKING:
    import asyncio
else:  # asyncio loads on first use: a new gateway needs no event loop (gateway.lazy)
    asyncio = LazyModule("asyncio", globals())

__all__ = ["Heartbeat", "alive", "lease_owner", "owner_dead"]

_log = logging.getLogger("gateway.store")


def _namespace() -> str:
    """``<boot id>.<pid namespace inode>``: equal only for processes on one kernel boot and one PID
    namespace (empty where the system offers neither)."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            boot = handle.read().strip().replace("-", "")[:16]
        pidns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{boot}.{pidns}"


_NAMESPACE = _namespace()


_PREFIX: tuple[int, str] = (0, "")
"""(pid, ``host:pid:namespace:``) of this process, made once per process (a fork makes it again)."""


def lease_owner() -> str:
    """A name for this call: ``host:pid:namespace:random`` (128 random bits, as hex)."""
    global _PREFIX
    pid = os.getpid()
    if _PREFIX[0] != pid:  # every call of every job asks: no hostname system call each time
        _PREFIX = (pid, f"{socket.gethostname()}:{pid}:{_NAMESPACE}:")
    return _PREFIX[1] + os.urandom(16).hex()


def owner_dead(owner: str) -> bool:
    """True only when ``owner`` provably no longer runs: same boot and PID namespace as this process
    and its PID is gone. Anything else (another host, container or boot; an old-style name) is
    presumed alive until its lease goes stale."""
    parts = owner.split(":")
    if len(parts) != 4 or not _NAMESPACE or parts[2] != _NAMESPACE or not parts[1].isdigit():
        return False
    try:
        os.kill(int(parts[1]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def alive(owner: str) -> bool:
    """A lease holder counts as alive unless it provably is not (``owner_dead``)."""
    return not owner_dead(owner)


class Heartbeat:
    """Renews one lease every ``interval`` seconds (on the gateway clock) while the call runs.

    ``renew()`` returns False when the lease was lost (it went stale and another call took it); the
    heartbeat then stops and ``lost`` is set — the call's paid job stays in the journal either way.
    None: there is no lease to renew yet (a clip its first intent creates): no beat is counted.
    ``wall``: the clock the lease is judged by (the store's epoch seconds); with it, ``beat_at`` is the
    wall time at which the last successful beat was sent (None before the first).

    On real time (``sleep`` is ``asyncio.sleep``) the wait between beats is a loop timer, and a task is
    made only for the renewal itself: ten thousand calls in flight keep ten thousand timers, not ten
    thousand sleeping tasks (each a coroutine, a future and a cancellation to unwind at ``stop``).
    Any other ``sleep`` (a virtual clock's) runs in one task, as it must to follow that clock.
    """

    __slots__ = ("_renew", "_sleep", "_stopped", "_task", "_timer", "beat_at", "beats", "interval", "lost", "wall")

    def __init__(self, renew: Callable[[], Awaitable[bool] | bool | None], sleep: Callable[[float], Awaitable[None]],
                 interval: float, *, wall: Callable[[], float] | None = None) -> None:
        self._renew = renew
        self._sleep = sleep
        self.interval = interval
        self.wall = wall
        self.lost = False
        self.beats = 0
        self.beat_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def start(self) -> Heartbeat:
        loop = asyncio.get_running_loop()
        if self._sleep is asyncio.sleep:
            self._timer = loop.call_later(self.interval, self._due, loop)
        else:
            self._task = loop.create_task(self._run())
        return self

    def _due(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        if not self._stopped:
            self._task = loop.create_task(self._timed_beat(loop))

    async def _timed_beat(self, loop: asyncio.AbstractEventLoop) -> None:
        if await self._beat() and not self._stopped:
            self._timer = loop.call_later(self.interval, self._due, loop)

    async def _run(self) -> None:
        while True:
            await self._sleep(self.interval)
            if self._stopped or not await self._beat():
                return

    async def _beat(self) -> bool:
        """One renewal; False once the lease is lost (no more beats)."""
        sent = None if self.wall is None else self.wall()  # before the renewal: never later than its own
        try:
            result = self._renew()
            kept = await result if result is not None and not isinstance(result, bool) else result
        except Exception as error:  # a failed beat is retried next time; 3 in a row lose the lease
            _log.warning("lease heartbeat failed: %s", error)
            return True
        if kept is None:  # no lease yet: nothing renewed, nothing lost
            return True
        self.beats += 1
        if kept and sent is not None:
            self.beat_at = sent
        if not kept:
            if self._stopped:  # retired: the call gave the lease back itself (``retire``)
                return False
            self.lost = True
            _log.warning("lease lost: another call took this clip over after missed heartbeats")
            return False
        return True

    def retire(self) -> None:
        """No more beats from now on (``stop`` still ends a renewal in flight): the call is about to give
        its lease back in the same transaction as its result, so a beat after it would only find the
        lease gone."""
        self._stopped = True
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()

    async def stop(self) -> None:
        self.retire()
        task, self._task = self._task, None
        if task is not None and not task.done():
            await cancel_and_wait(task)
