"""A wait/cancel/GET that checks whether a clip's holder is alive uses the lease rule every claim uses.

Review finding (session 3): ``Gateway._claimable`` judged holders by hostname and PID alone. A process in
another container with the same hostname (its PID not visible here) was taken for dead, its live lease
taken and released, and a second follower started here, while the holder, trusting a beat under half a
heartbeat old, could still record a verdict or submit to the next vendor.
"""

from __future__ import annotations

import os
import socket

import pytest

from gateway import Gateway
from gateway.store.lease import lease_owner

pytestmark = pytest.mark.anyio


def _gone_pid() -> int:
    pid = 4_000_000
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return pid
        except PermissionError:
            pass
        pid -= 1


async def test_a_holder_in_another_pid_namespace_with_our_hostname_keeps_its_lease(tmp_path) -> None:
    gateway = Gateway(journal=str(tmp_path / "journal.sqlite3"))
    store = gateway.store
    await store.open_clip("k", "{}", "h")
    # Same hostname, a PID that does not exist here, another boot/PID namespace: alive until it goes stale.
    holder = f"{socket.gethostname()}:{_gone_pid()}:otherboot.4026531836:{'a' * 32}"
    assert await store.claim_clip("k", holder, heartbeat=30.0) is None
    assert await gateway._claimable("k") is False
    assert await store.lease_holder("k") == holder
    await gateway.aclose()


async def test_a_holder_of_this_namespace_whose_process_is_gone_is_dead_at_once(tmp_path) -> None:
    gateway = Gateway(journal=str(tmp_path / "journal.sqlite3"))
    store = gateway.store
    await store.open_clip("k", "{}", "h")
    mine = lease_owner().split(":")
    holder = ":".join([mine[0], str(_gone_pid()), mine[2], "b" * 32])  # this boot and namespace, PID gone
    assert await store.claim_clip("k", holder, heartbeat=30.0) is None
    assert await gateway._claimable("k") is True
    await gateway.aclose()
