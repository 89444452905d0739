"""``resume()`` claims clips listed by an earlier ``unfinished()`` read. A clip whose result commits between
that read and the claim (another call delivered it) must be skipped — not followed, nothing POSTed, its
lease given back — on SQLite and PostgreSQL (slow tier). Review finding: on PostgreSQL the claim took
such a clip and resent its other open submit, a Runware submit beside a delivered result (possible only
under ``failover_on_unknown``); Runware dedupes the ``taskUUID``, but no call may reach a delivered clip's
vendors at all. The race is replayed deterministically: the result commits inside the listing's await.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.store.intake import stored_request
from gateway.store.records import request_hash

pytestmark = pytest.mark.anyio
RUNWARE_KEY = "0b5c3a52-9d8e-4f1a-8c3e-2f6d7a9b1c40"  # a Runware taskUUID


async def test_resume_skips_a_clip_delivered_after_it_was_listed(journal_target: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=3)
    gateway = Gateway(emulator=emulator, clock=clock, journal=journal_target, jitter_seed=3)
    store = gateway.store
    assert store is not None
    request_json, image = stored_request(OviRequest(prompt="A knight. <S>Hold.<E>", image="https://example.com/k.png"))
    # A call crashed after its Runware intent (no answer recorded); a later call with failover_on_unknown
    # submitted the clip to fal, which accepted it; that call's result is about to commit.
    await store.open_and_claim("k", request_json, request_hash(request_json), "crashed", image=image)
    await store.intent(clip_key="k", submit_key=RUNWARE_KEY, provider="runware", quote_usd=Decimal("0.14"))
    await store.intent(clip_key="k", submit_key="s-fal", provider="fal", quote_usd=Decimal("0.20"))
    await store.accepted("s-fal", {"provider": "fal", "job_id": "fal-1"})
    await store.release_clip("k", "crashed")
    listed = store.unfinished

    async def delivered_after_listing() -> Any:
        records = await listed()
        await store.finish("k", '{"job_id": "fal-1"}', "s-fal", cost_usd=Decimal("0.20"), cost_source="reported")
        return records

    store.unfinished = delivered_after_listing  # type: ignore[method-assign]
    assert await gateway.aresume() == []
    assert emulator.ledger.calls() == 0  # neither the Runware resend nor a poll of anything
    assert await store.lease_holder("k") is None
    assert [(s.submit_key, s.state) for s in await store.submits("k")] == [(RUNWARE_KEY, "intent"),
                                                                           ("s-fal", "succeeded")]
    await gateway.aclose()
