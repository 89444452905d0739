"""Budget scopes (issue 13): all spend, a named scope (a batch) and each caller (an API key), through the
store's one reservation path, with running totals per scope; on SQLite and PostgreSQL (slow tier)."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from gateway import Budget, BudgetExceeded, Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import InvalidRequest
from gateway.routing.pricing import budget_holds, scope_id
from gateway.store import open_store
from gateway.store.base import SqlStore
from gateway.store.journal import Journal
from gateway.store.records import request_hash

pytestmark = pytest.mark.anyio
REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0})
API_KEY_A = "sk-caller-a-5b1d9e"
API_KEY_B = "sk-caller-b-77c0aa"


@pytest.fixture
async def store(journal_target: str):
    s = open_store(journal_target)
    yield s
    await s.aclose()


def test_a_budget_has_one_scope_and_stores_only_digests() -> None:
    with pytest.raises(ValueError, match="one scope"):
        Budget(limit_usd="1", scope="batch-1", per_caller=True)
    caller = Budget(limit_usd="1", per_caller=True)
    assert caller.scope_for(API_KEY_A) == "caller:" + scope_id(API_KEY_A) != caller.scope_for(API_KEY_B)
    assert API_KEY_A not in caller.scope_for(API_KEY_A)
    assert caller.scope_for(None) == caller.scope_for("")  # anonymous callers share one cap
    assert Budget(limit_usd="1").scope_for(API_KEY_A) == ""  # all spend
    assert Budget(limit_usd="1", scope="b").scope_for() == Budget(limit_usd="1", clip_prefix="b").scope_for()
    checks, tags = budget_holds([Budget(limit_usd="2"), caller], scope_id(API_KEY_A))
    assert checks == [(Decimal(2), "day", ""), (Decimal(1), "day", caller.scope_for(API_KEY_A))]
    assert tags == [caller.scope_for(API_KEY_A)]


async def test_each_scope_has_its_own_cap_and_running_total(store: SqlStore) -> None:
    await store.open_clip("c1", REQ, request_hash(REQ))
    per_key = Budget(limit_usd="0.40", period="month", per_caller=True)
    overall = Budget(limit_usd="0.70", period="day")
    batch = Budget(limit_usd="0.20", period="total", scope="batch-9")
    n = iter(range(100))

    async def submit(caller: str | None, *budgets: Budget, quote: str = "0.20") -> None:
        checks, tags = budget_holds(list(budgets), None if caller is None else scope_id(caller))
        await store.intent(clip_key="c1", submit_key=f"s{next(n)}", provider="fal", quote_usd=Decimal(quote),
                           budget=checks, scopes=tags)

    await submit(API_KEY_A, per_key, overall)
    await submit(API_KEY_A, per_key, overall)
    with pytest.raises(BudgetExceeded, match=r"month spend in scope caller to \$0\.60, over the \$0\.40"):
        await submit(API_KEY_A, per_key, overall)  # A's own cap, though all spend is only $0.40
    await submit(API_KEY_B, per_key, overall)  # B has a cap of its own
    with pytest.raises(BudgetExceeded, match=r"day spend to \$0\.80, over the \$0\.70"):
        await submit(API_KEY_B, per_key, overall)  # B is under its cap; all spend is not
    await submit(None, batch, quote="0.10")
    with pytest.raises(BudgetExceeded, match="total spend in scope named"):
        await submit(None, batch, quote="0.11")
    month = per_key.since(datetime.now(UTC))
    assert await store.reserved_and_spent(since=month, scope=per_key.scope_for(API_KEY_A)) == Decimal("0.40")
    assert await store.reserved_and_spent(since=month, scope=per_key.scope_for(API_KEY_B)) == Decimal("0.20")
    assert await store.reserved_and_spent(scope=batch.scope_for()) == Decimal("0.10")
    assert await store.reserved_and_spent() == Decimal("0.70")
    refused = [s for s in await store.submits("c1") if s.state == "failed"]
    assert len(refused) == 3 and not any(s.may_be_billed for s in refused)
    # A vendor's refusal releases the hold in every scope the submit counted in.
    first = (await store.submits("c1"))[0]
    await store.failed(first.submit_key, error="refused", may_be_billed=False)
    assert await store.reserved_and_spent(since=month, scope=per_key.scope_for(API_KEY_A)) == Decimal("0.20")
    scan = datetime(2000, 1, 1, tzinfo=UTC)  # not a period start: a scan of the rows, which must agree
    assert await store.reserved_and_spent(since=scan, scope=per_key.scope_for(API_KEY_A)) == Decimal("0.20")
    assert await store.reserved_and_spent() == Decimal("0.50")
    await submit(API_KEY_A, per_key, overall)  # A's freed dollars are spendable again


@pytest.mark.slow
def test_twenty_sessions_racing_per_scope_never_overspend(journal_target: str) -> None:
    setup = Journal(journal_target)
    setup.open_clip("c", REQ, request_hash(REQ))
    setup.close()
    budgets = [Budget(limit_usd="0.60", per_caller=True), Budget(limit_usd="5.00")]
    barrier = threading.Barrier(20)
    granted: dict[str, int] = {API_KEY_A: 0, API_KEY_B: 0}
    lock = threading.Lock()

    def racer(n: int) -> None:
        caller = API_KEY_A if n % 2 else API_KEY_B
        checks, tags = budget_holds(budgets, scope_id(caller))
        journal = Journal(journal_target)  # its own connection: its own database session
        barrier.wait()
        for i in range(3):
            try:
                journal.intent(clip_key="c", submit_key=f"{n}-{i}", provider="fal", quote_usd=Decimal("0.15"),
                               budget=checks, scopes=tags)
                with lock:
                    granted[caller] += 1
            except BudgetExceeded:
                pass
        journal.close()

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert granted == {API_KEY_A: 4, API_KEY_B: 4}  # 4 × 0.15 fits each caller's 0.60; a 5th would not
    with Journal(journal_target) as journal:
        day = budgets[0].since()
        for caller in (API_KEY_A, API_KEY_B):
            assert journal.reserved_and_spent(since=day, scope=budgets[0].scope_for(caller)) == Decimal("0.60")
        assert journal.reserved_and_spent(since=day) == Decimal("1.20")


async def test_a_gateway_caps_each_caller_and_never_stores_the_key(journal_target: str) -> None:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, seed=4)
    gateway = Gateway(emulator=emulator, clock=clock, journal=journal_target, jitter_seed=4,
                      budget=[Budget(limit_usd="0.20", period="month", per_caller=True)])
    request = OviRequest(prompt="A knight. <S>Hold.<E>", image="https://example.com/k.png")
    await gateway.agenerate(request, provider="runware", budget_scope=API_KEY_A)
    with pytest.raises(BudgetExceeded, match=r"over the \$0\.20 budget"):
        await gateway.agenerate(request.model_copy(update={"seed": 2}), provider="runware", budget_scope=API_KEY_A)
    calls = emulator.ledger.calls("runware")
    job = await gateway.submit(request.model_copy(update={"seed": 3}), provider="runware", budget_scope=API_KEY_B)
    assert (await job.wait()).provider == "runware"  # another caller's cap is untouched
    assert emulator.ledger.calls("runware") > calls
    await gateway.agenerate(request.model_copy(update={"seed": 4}), provider="runware")  # the anonymous caller's
    many = [request.model_copy(update={"seed": s}) for s in (5, 6)]  # both in flight: one fits C's cap
    outcomes = [o async for o in gateway.agenerate_many(many, provider="runware", budget_scope="sk-caller-c")]
    assert sorted(type(o.error).__name__ for o in outcomes) == ["BudgetExceeded", "NoneType"]
    with pytest.raises(InvalidRequest, match="budget_scope must be a string"):
        await gateway.agenerate(request, budget_scope=7)  # type: ignore[arg-type]
    assert gateway.journal is not None
    rows = gateway.journal._query("SELECT budget_scope FROM submits")
    assert rows and all(API_KEY_A not in str(r) and API_KEY_B not in str(r) for r in rows)
    await gateway.aclose()
