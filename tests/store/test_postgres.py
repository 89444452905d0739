"""PostgreSQL specifics: migrations under an advisory lock with a reader floor, an unreachable database,
the password kept secret, atomic budgets under 20 racing sessions, and a Gateway on a shared journal."""

from __future__ import annotations

import threading
from decimal import Decimal

import psycopg
import pytest

import gateway.secrets as secrets
from gateway import Gateway, OviRequest
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.errors import BudgetExceeded, ConfigurationError, StoreUnavailable
from gateway.store.journal import Journal
from gateway.store.migrate import newest
from gateway.store.records import request_hash
from gateway.store.url import redact


def test_redact_masks_the_password_everywhere_in_a_url() -> None:
    assert redact("postgresql://app:s3cr%40t@db.internal:5432/ovi") == "postgresql://app:***@db.internal:5432/ovi"
    assert redact("postgresql://db/ovi?user=app&password=hunter2&sslmode=require") == (
        "postgresql://db/ovi?user=app&password=***&sslmode=require")
    assert redact("postgresql://app@db/ovi") == "postgresql://app@db/ovi"


def test_an_unreachable_database_is_a_clear_error_before_any_submit() -> None:
    url = "postgresql://app:hunter2@127.0.0.1:1/ovi"
    with pytest.raises(StoreUnavailable) as caught:
        Gateway(journal=url, emulator=Emulator(seed=1))
    text = str(caught.value)
    assert "unreachable" in text and "127.0.0.1:1" in text and "hunter2" not in text
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained text carrying it
    assert secrets.is_registered("hunter2") and not secrets.is_registered("app")  # a user name is no secret


@pytest.mark.slow
def test_replicas_starting_at_once_migrate_once(pg_url: str) -> None:
    journals: list[Journal] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            journals.append(Journal(pg_url))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and {j.schema_version for j in journals} == {newest("postgresql")}
    with psycopg.connect(pg_url) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations ORDER BY version")]
        meta = dict(conn.execute("SELECT key, value FROM schema_meta").fetchall())
    assert versions == list(range(1, newest("postgresql") + 1))
    assert meta == {"version": str(newest("postgresql")), "min_reader": "8"}
    for j in journals:
        j.close()


@pytest.mark.slow
def test_a_newer_schema_is_used_while_this_code_can_still_read_it(pg_url: str) -> None:
    Journal(pg_url).close()
    with psycopg.connect(pg_url) as conn:  # a newer replica applied migration N+1, readable by N
        conn.execute("INSERT INTO schema_migrations VALUES (%s, 'future', 'now')", (newest("postgresql") + 1,))
    with Journal(pg_url) as old:
        assert old.schema_version == newest("postgresql") + 1
    with psycopg.connect(pg_url) as conn:  # then one that old code cannot read
        conn.execute("UPDATE schema_meta SET value = %s WHERE key = 'min_reader'", (str(newest("postgresql") + 1),))
    with pytest.raises(ConfigurationError, match="readable only by ovi-gateway"):
        Journal(pg_url)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_twenty_sessions_racing_for_the_last_dollar_never_overspend(backend: str, request, tmp_path) -> None:
    target = str(tmp_path / "j.sqlite3") if backend == "sqlite" else request.getfixturevalue("pg_url")
    setup = Journal(target)
    req = '{"prompt": "race"}'
    setup.open_clip("c", req, request_hash(req))
    setup.close()
    budget = (Decimal("1.00"), "day", "")
    barrier = threading.Barrier(20)
    granted: list[str] = []

    def racer(n: int) -> None:
        journal = Journal(target)  # its own connection: its own database session
        barrier.wait()
        for i in range(3):
            try:
                journal.intent(clip_key="c", submit_key=f"{n}-{i}", provider="fal", quote_usd=Decimal("0.15"),
                               budget=budget)
                granted.append(f"{n}-{i}")
            except BudgetExceeded:
                pass
        journal.close()

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Journal(target) as journal:
        held = journal.reserved_and_spent()
        states = [s.state for s in journal.submits("c")]
    assert len(granted) == 6 and held == Decimal("0.90")  # 6 × 0.15 fits in 1.00, a 7th would not
    assert states.count("intent") == 6 and states.count("failed") == 54


@pytest.mark.slow
async def test_a_gateway_runs_on_a_postgresql_journal(pg_url: str) -> None:
    clock = VirtualClock()
    gateway = Gateway(emulator=Emulator(clock=clock, seed=2), clock=clock, journal=pg_url)
    result = await gateway.agenerate(OviRequest(prompt="A cat. <S>Hello.<E>"), idempotency_key="pg-1")
    again = await gateway.agenerate(OviRequest(prompt="A cat. <S>Hello.<E>"), idempotency_key="pg-1")
    assert again.job_id == result.job_id
    assert "postgresql://postgres@" in gateway.journal.path
    await gateway.aclose()


pytestmark = pytest.mark.anyio
