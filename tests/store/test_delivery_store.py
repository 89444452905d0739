"""Download facts go into the journal through its async store (``Delivery.record``): the event loop
never runs the journal's SQL itself, and the media row and the clip's file are one transaction."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import gateway.store.sqlite as sqlite_backend
from gateway.jobs.delivery import Delivery
from gateway.media.verify import MediaFacts
from gateway.store.journal import Journal
from gateway.store.records import request_hash

pytestmark = pytest.mark.anyio
REQ = json.dumps({"prompt": "a cat <S>hello<E>", "seed": 0})


async def test_a_download_is_recorded_through_the_async_store(tmp_path: Path, monkeypatch) -> None:
    journal = Journal(str(tmp_path / "journal.sqlite3"))
    store = journal.store(offload=True)
    await store.open_clip("c1", REQ, request_hash(REQ))

    def no_sync_face(**kwargs: Any) -> bool:
        raise AssertionError("the sync journal face was used on the event loop")

    monkeypatch.setattr(journal, "record_download", no_sync_face)
    seen: list[list[str]] = []
    original = sqlite_backend.SqliteEngine.batch

    def batch(engine: Any, ops: list[Any], **kw: Any) -> Any:
        seen.append([op[1].__name__ for op in ops])
        return original(engine, ops, **kw)

    monkeypatch.setattr(sqlite_backend.SqliteEngine, "batch", batch)
    facts = MediaFacts(sha256="ab" * 32, verified=True, size_bytes=1234, duration_s=5.0)
    await Delivery(journal=journal).record("c1", "fal", "job-1", "https://cdn.example/c1.mp4",
                                           tmp_path / "c1.mp4", facts)
    assert seen == [["record_download"]]  # one transaction: the media row and the clip's file
    [row] = journal.downloads("c1")
    assert row.verdict == "ok" and row.sha256 == "ab" * 32 and row.saved_to == str(tmp_path / "c1.mp4")
    clip = journal.get_clip("c1")
    assert clip is not None and clip.media is not None and clip.media["size"] == 1234
    journal.close()


async def test_a_clip_from_elsewhere_is_not_recorded(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path / "journal.sqlite3"))
    store = journal.store(offload=True)
    facts = MediaFacts(sha256="cd" * 32, verified=True, size_bytes=1)
    assert await store.record_download(clip_key="gone", provider="fal", job_id="j", video_url="u",
                                       saved_to=None, facts=facts) is False
    assert journal.downloads("gone") == []
    journal.close()
