"""The standing randomized test (issue 9 §13): seeded fault worlds from every fault kind, then resume();
judged from the emulator's ledger (see tests/random_worlds.py for what one world is and what ``check``
asserts). Fast tier, virtual time: 2,000+ clips over 300+ worlds in well under a minute.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from gateway import Gateway, GatewayError, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import InvalidRequest
from gateway.jobs import fate
from gateway.jobs.fate import Answer, Phase
from tests import random_worlds
from tests.random_worlds import World, all_kinds, run_many

WORLDS = range(1000, 1300)
MIN_DRAWS = 10
"""Each fault kind must be drawn at least this often over the worlds (the coverage table)."""


def test_random_worlds_never_pay_twice_unreported_nor_lose_a_paid_clip() -> None:
    changed: list[str] = []

    def note(world: World) -> None:  # what the same key + same path + other bytes got
        files = [c for c in world.calls if (c.key or "").endswith("-file")]
        if len(files) == 2:
            second = files[1]
            changed.append("new clip" if second.result else type(second.error).__name__)

    problems, drawn, clips, calls, peak = run_many(WORLDS, world_hook=note)
    print(f"\nsame key, same path, other image bytes: {dict(Counter(changed))}")
    assert len(changed) >= 20
    table = "\n".join(f"  {kind:16} {drawn[kind]:5}" for kind in sorted(all_kinds()))
    print(f"\n{len(WORLDS)} worlds, {clips} clips, {calls} calls, up to {peak} in flight; kinds drawn:\n{table}")
    assert len(WORLDS) >= 300 and clips >= 2000 and peak >= 4
    rare = {kind: drawn[kind] for kind in all_kinds() if drawn[kind] < MIN_DRAWS}
    assert not rare, f"fault kinds drawn fewer than {MIN_DRAWS} times: {rare}"
    assert problems == [], "\n".join(problems[:20])


def test_the_worlds_catch_an_old_bug_a_poll_404_read_as_the_jobs_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Self-test: restore the old reading of a 404 on a status check (the job's end) and the same
    checks must fail — the paid job is dropped, or bought again elsewhere."""
    real = fate.answer_of

    def old_reading(error: GatewayError, phase: Phase) -> Answer:
        if phase in (Phase.FOLLOW, Phase.RESULT) and error.status_code == 404:
            return Answer.JOB_FAILED
        return real(error, phase)

    monkeypatch.setattr(fate, "answer_of", old_reading)
    drawing = random_worlds.kinds_for  # status faults in these worlds are 404s, so few worlds suffice
    monkeypatch.setattr(random_worlds, "kinds_for", lambda op: ["404"] if op == "status" else drawing(op))
    problems, drawn, _, _, _ = run_many(range(1000, 1020))
    assert drawn["404"] > 0
    assert problems, "the random worlds did not notice a 404 ending a paid job"
    print(f"\nwith a poll 404 read as the end: {len(problems)} broken promises, e.g. {problems[0]}")


@pytest.mark.anyio
async def test_same_key_same_path_changed_image_bytes_is_not_the_old_clip(tmp_path: Path) -> None:
    from tests.conftest import PNG_BYTES

    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4)
    gateway = Gateway(emulator=emulator, clock=clock, journal=":memory:", allow_local_media=True)
    image = tmp_path / "frame.png"
    image.write_bytes(PNG_BYTES)
    request = OviRequest(prompt="A frame. <S>Move.<E>", image=image)
    first = await gateway.agenerate(request, provider="runware", idempotency_key="k")
    image.write_bytes(PNG_BYTES + b"\x00changed")  # same path, other bytes: another request
    try:
        again = await gateway.agenerate(OviRequest(prompt="A frame. <S>Move.<E>", image=image),
                                        provider="runware", idempotency_key="k")
    except InvalidRequest:
        return  # refused as a different request under a used key: right
    finally:
        await gateway.aclose()
    assert again.job_id != first.job_id, "the caller received the clip of the old image"
    counts = Counter(j.clip for j in emulator.ledger.billable())
    assert len(counts) == 2
