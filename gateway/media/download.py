"""Fetching a finished clip to disk: streamed, size-checked, atomically renamed into place."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import httpx

__all__ = ["download"]


def download(url: str, path: str | os.PathLike[str], *, client: httpx.Client | None = None,
             chunk_size: int = 1 << 16) -> Path:
    """Stream the clip at ``url`` to ``path``: written to a temporary file beside it, size-checked
    against ``Content-Length``, then renamed into place, so a broken download never leaves a partial file.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    owned = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0), follow_redirects=True)
    tmp_name = str(target.parent / f".{target.name}.{uuid.uuid4().hex}.part")
    # O_EXCL on a fresh name, mode 0666 less the umask: the saved clip gets normal permissions.
    fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out, http.stream("GET", url) as response:
            response.raise_for_status()
            expected = response.headers.get("content-length")
            written = 0
            for chunk in response.iter_bytes(chunk_size):
                out.write(chunk)
                written += len(chunk)
        if expected is not None and written != int(expected):
            raise OSError(f"download of {url} stopped at {written} of {expected} bytes")
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    finally:
        if owned:
            http.close()
    return target
