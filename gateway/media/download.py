"""Fetching a finished clip to disk: safe, bounded, streamed, atomically renamed into place.

The rules (issue 9, item 9), checked for the first URL and again for every redirect target:

* ``https://`` and a public address only (``gateway.addresses``), and the address actually connected
  to must be public too (when httpx reports it and no proxy is configured). ``allow_local=True`` (set
  by the gateway only for an explicit emulator flag, never from the URL) admits ``http://`` and
  loopback/private hosts.
* Size is capped while streaming (``max_bytes``, default 512 MiB), counted on the *decoded* bytes, and
  ``gzip``/``deflate`` bodies are inflated in bounded steps (never more than one chunk at a time), so
  a compression bomb stops at the cap instead of filling the disk. ``Content-Length`` is compared with
  the bytes on the wire, so an honest gzip response is accepted.
* The body must be a video: an ISO-BMFF box (``ftyp``/``moov``/…: MP4, MOV) or EBML (WebM/Matroska).
* The whole download is bounded by ``timeout`` seconds on ``clock`` (async: ``Clock.timeout``; sync:
  checked between reads), so a host sending one byte a second cannot hold the caller; httpx's own
  timeouts stay as the real-time backstop for a stalled read.
* Written to a temporary file beside the target and renamed into place; a failure leaves no file and
  keeps an older one.

``download()`` returns the path (as it always did); ``fetch()``/``afetch()`` return a ``Downloaded``
with the facts a verifier needs (path, sha256, size, container). Every failure is ``DownloadFailed``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import os
import urllib.request
import uuid
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx

from gateway.addresses import UnsafeURL, check_public_address, check_url
from gateway.clock import Clock, RealClock, bounded
from gateway.errors import DownloadFailed

__all__ = ["DEFAULT_MAX_BYTES", "DEFAULT_TIMEOUT", "MAX_REDIRECTS", "Downloaded", "adownload", "afetch",
           "download", "fetch", "sniff_video"]

DEFAULT_MAX_BYTES = 512 * 1024 * 1024
"""Largest clip written, decoded (bytes). A 5 s Ovi clip is a few MB."""
DEFAULT_TIMEOUT = 300.0
"""Seconds the whole download may take, redirects included."""
MAX_REDIRECTS = 5
_SNIFF = 12


@dataclass(frozen=True, slots=True)
class Downloaded:
    """A clip on disk. ``sha256`` is of the bytes written; ``container`` is ``mp4`` (ISO-BMFF: MP4),
    ``mov`` (QuickTime brand) or ``webm`` (EBML); ``url`` is the last URL fetched (after redirects)."""

    path: Path
    sha256: str
    size: int
    container: str
    content_type: str | None
    url: str


def sniff_video(head: bytes) -> str | None:
    """The container of a body from its first bytes: ``mp4``, ``mov``, ``webm``, or ``None``."""
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "webm"
    box = head[4:8]
    if box == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if box in (b"moov", b"mdat", b"wide", b"free", b"skip"):  # QuickTime files without an ftyp box
        return "mov"
    return None


class _Sink:
    """Decodes, bounds, sniffs, hashes and writes one body to a temporary file beside ``target``."""

    def __init__(self, target: Path, *, max_bytes: int, encoding: str, content_type: str | None, url: str,
                 step: int = 1 << 16) -> None:
        self.target = target
        self.step = max(1024, step)
        self.max_bytes = max_bytes
        self.content_type = content_type
        self.url = url
        self.raw = 0
        self.size = 0
        self.pending = b""  # the first bytes, held until there are enough to sniff
        self.container: str | None = None
        self.digest = hashlib.sha256()
        self.inflate = _decoder(encoding)
        self.encoding = encoding
        target.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}.part"
        # O_EXCL on a fresh name, mode 0666 less the umask: the saved clip gets normal permissions.
        fd = os.open(self.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self.out: IO[bytes] = os.fdopen(fd, "wb")

    def feed(self, raw: bytes) -> None:
        self.raw += len(raw)
        if self.inflate is None:
            self._write(raw)
            return
        data = raw
        while data:
            try:
                piece = self.inflate.decompress(data, self.step)  # bounded: a bomb inflates a chunk at a time
            except zlib.error as exc:
                raise DownloadFailed(f"the {self.encoding} body of {self.url} is corrupt ({exc})",
                                     reason="encoding") from None
            self._write(piece)
            data = self.inflate.unconsumed_tail
            if not data and self.inflate.eof and self.inflate.unused_data:
                data, self.inflate = self.inflate.unused_data, _decoder(self.encoding)  # next gzip member

    def _write(self, data: bytes) -> None:
        if not data:
            return
        if self.size + len(data) > self.max_bytes:
            raise DownloadFailed(f"{self.url} is larger than the {self.max_bytes}-byte cap; stopped while "
                                 "streaming (pass max_bytes= to allow more)", reason="too-large")
        self.size += len(data)
        self.digest.update(data)
        if self.container is None:
            self.pending += data
            if len(self.pending) < _SNIFF:
                return
            self._sniff(self.pending)
            data, self.pending = self.pending, b""
        self.out.write(data)

    def _sniff(self, head: bytes) -> None:
        self.container = sniff_video(head) if len(head) >= _SNIFF else None
        if self.container is None:
            shown = head[:_SNIFF].decode("latin-1").encode("unicode_escape").decode("ascii")
            raise DownloadFailed(f"{self.url} is not a video (MP4, MOV or WebM): it starts with {shown!r} "
                                 f"(content-type {self.content_type or 'unset'})", reason="not-video")

    def finish(self, expected: str | None) -> Downloaded:
        if self.inflate is not None:
            self._write(self.inflate.flush())
            if not self.inflate.eof:
                raise DownloadFailed(f"the {self.encoding} body of {self.url} ended early", reason="truncated")
        if self.container is None:
            self._sniff(self.pending)  # fewer bytes than a video's first box: raises
        if expected is not None and expected.strip().isdigit() and self.raw != int(expected):
            raise DownloadFailed(f"download of {self.url} stopped at {self.raw} of {expected} bytes",
                                 reason="truncated")
        self.out.close()
        os.replace(self.tmp, self.target)
        assert self.container is not None
        return Downloaded(self.target, self.digest.hexdigest(), self.size, self.container, self.content_type,
                          self.url)

    def abort(self) -> None:
        self.out.close()
        self.tmp.unlink(missing_ok=True)


def _decoder(encoding: str) -> Any:
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return zlib.decompressobj()
    raise DownloadFailed(f"Content-Encoding {encoding!r} is not supported (gzip, deflate or none)",
                         reason="encoding")


def _check(url: str, allow_local: bool) -> str:
    try:
        check_url(url, what="video URL", schemes=("https", "http") if allow_local else ("https",),
                  allow_local=allow_local)
    except UnsafeURL as exc:
        raise DownloadFailed(f"refusing to fetch {url!r}: {exc}", reason="refused") from None
    return url


def _check_peer(response: httpx.Response, allow_local: bool) -> None:
    """The address we really connected to (defeats DNS answers pointing at private ranges)."""
    if allow_local or urllib.request.getproxies():  # through a proxy the peer is the proxy
        return
    stream = response.extensions.get("network_stream")
    peer = stream.get_extra_info("server_addr") if stream is not None else None
    if not peer:
        return
    try:
        check_public_address(ipaddress.ip_address(str(peer[0]).split("%")[0]))
    except (UnsafeURL, ValueError) as exc:
        raise DownloadFailed(f"refusing {response.request.url}: connected to {peer[0]} ({exc})",
                             reason="refused") from None


def _next_hop(response: httpx.Response, allow_local: bool, hops: int) -> str | None:
    """The checked redirect target, or ``None`` when ``response`` is the body; raises on errors."""
    if response.is_redirect:
        if hops >= MAX_REDIRECTS:
            raise DownloadFailed(f"more than {MAX_REDIRECTS} redirects from {response.request.url}",
                                 reason="refused")
        location = response.headers.get("location", "")
        return _check(str(response.request.url.join(location)), allow_local)
    if response.status_code >= 400 or response.status_code < 200:
        raise DownloadFailed(f"fetching {response.request.url} answered HTTP {response.status_code}",
                             reason="http", status_code=response.status_code)
    return None


def _sink(response: httpx.Response, target: Path, max_bytes: int, step: int) -> _Sink:
    # An in-memory answer (an httpx MockTransport's) was read, and decoded, when it was built.
    encoding = "" if response.is_stream_consumed else response.headers.get("content-encoding", "").strip().lower()
    return _Sink(target, max_bytes=max_bytes, encoding=encoding, content_type=response.headers.get("content-type"),
                 url=str(response.request.url), step=step)


def _wire_length(response: httpx.Response) -> str | None:
    """The ``Content-Length`` to hold the raw bytes to (none for an answer already read and decoded)."""
    encoded = response.headers.get("content-encoding", "").strip().lower() not in ("", "identity")
    return None if response.is_stream_consumed and encoded else response.headers.get("content-length")


_HEADERS = {"accept": "video/*", "accept-encoding": "gzip, deflate"}


def _from_data_uri(url: str, target: Path, max_bytes: int) -> Downloaded:
    """A clip the vendor returned inline (Runware's ``videoDataURI``)."""
    header, _, data = url.partition(",")
    if not header.lower().startswith("data:video/") or not header.lower().endswith(";base64"):
        raise DownloadFailed("a video data URI must be data:video/<type>;base64,<data>", reason="refused")
    if len(data) * 3 // 4 > max_bytes + 3:
        raise DownloadFailed(f"the inline video is larger than the {max_bytes}-byte cap", reason="too-large")
    try:
        body = base64.b64decode("".join(data.split()), validate=True)
    except (binascii.Error, ValueError):
        raise DownloadFailed("the inline video is not valid base64", reason="not-video") from None
    sink = _Sink(target, max_bytes=max_bytes, encoding="", content_type=header[5:].split(";")[0], url="data:")
    try:
        sink.feed(body)
        return sink.finish(None)
    except BaseException:
        sink.abort()
        raise


# ---- sync ------------------------------------------------------------------------------------------

def download(url: str, path: str | os.PathLike[str], *, client: httpx.Client | None = None,
             chunk_size: int = 1 << 16, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float | None = DEFAULT_TIMEOUT,
             allow_local: bool = False, clock: Clock | None = None) -> Path:
    """Stream the clip at ``url`` to ``path`` under the rules above; returns ``path``.

    Args:
        client: an httpx client to use (its transport; redirects are followed here, one checked hop at
            a time, whatever the client's own setting).
        chunk_size: the most bytes inflated from a compressed body at a time (reads are taken as they
            arrive, so a slow body is never waited on to fill a chunk).
        max_bytes: the size cap on the decoded clip (bytes).
        timeout: seconds the whole download may take (``None``: only httpx's per-read timeouts).
        allow_local: admit ``http://`` and loopback/private hosts (the emulator; never for real vendors).
        clock: where ``timeout`` is measured (default: the monotonic clock).

    Raises:
        DownloadFailed: refused, HTTP error, too large, not a video, truncated, too slow.
    """
    return fetch(url, path, client=client, chunk_size=chunk_size, max_bytes=max_bytes, timeout=timeout,
                 allow_local=allow_local, clock=clock).path


def fetch(url: str, path: str | os.PathLike[str], *, client: httpx.Client | None = None,
          chunk_size: int = 1 << 16, max_bytes: int = DEFAULT_MAX_BYTES, timeout: float | None = DEFAULT_TIMEOUT,
          allow_local: bool = False, clock: Clock | None = None) -> Downloaded:
    """``download``, returning the ``Downloaded`` facts (path, sha256, size, container)."""
    target = Path(path)
    if url[:5].lower() == "data:":
        return _from_data_uri(url, target, max_bytes)
    now = (clock or RealClock()).now
    deadline = None if timeout is None else now() + timeout

    def left() -> None:
        if deadline is not None and now() > deadline:
            raise DownloadFailed(f"download of {url} took longer than {timeout:g} s", reason="timeout")

    current = _check(url, allow_local)
    with _sync_client(client, timeout) as http:
        for hops in range(MAX_REDIRECTS + 1):
            try:
                with http.stream("GET", current, headers=_HEADERS, follow_redirects=False) as response:
                    _check_peer(response, allow_local)
                    following = _next_hop(response, allow_local, hops)
                    if following is not None:
                        current = following
                        left()
                        continue
                    sink = _sink(response, target, max_bytes, chunk_size)
                    try:
                        for raw in [response.content] if response.is_stream_consumed else response.iter_raw():
                            sink.feed(raw)
                            left()
                        return sink.finish(_wire_length(response))
                    except BaseException:
                        sink.abort()
                        raise
            except httpx.HTTPError as exc:
                raise _transport_failure(current, exc) from None
    raise AssertionError("unreachable: _next_hop raises past MAX_REDIRECTS")


@contextmanager
def _sync_client(client: httpx.Client | None, timeout: float | None) -> Iterator[httpx.Client]:
    if client is not None:
        yield client
        return
    read = 60.0 if timeout is None else min(60.0, timeout)
    with httpx.Client(timeout=httpx.Timeout(read, connect=10.0)) as owned:
        yield owned


# ---- async -----------------------------------------------------------------------------------------

async def adownload(url: str, path: str | os.PathLike[str], *, client: httpx.AsyncClient | None = None,
                    chunk_size: int = 1 << 16, max_bytes: int = DEFAULT_MAX_BYTES,
                    timeout: float | None = DEFAULT_TIMEOUT, allow_local: bool = False,
                    clock: Clock | None = None) -> Path:
    """Async ``download``: the whole download bounded by ``clock.timeout(timeout)``."""
    return (await afetch(url, path, client=client, chunk_size=chunk_size, max_bytes=max_bytes, timeout=timeout,
                         allow_local=allow_local, clock=clock)).path


async def afetch(url: str, path: str | os.PathLike[str], *, client: httpx.AsyncClient | None = None,
                 chunk_size: int = 1 << 16, max_bytes: int = DEFAULT_MAX_BYTES,
                 timeout: float | None = DEFAULT_TIMEOUT, allow_local: bool = False,
                 clock: Clock | None = None) -> Downloaded:
    """Async ``fetch``: the same rules, bounded in ``clock``'s time (virtual under ``VirtualClock``)."""
    target = Path(path)
    if url[:5].lower() == "data:":
        return _from_data_uri(url, target, max_bytes)
    current = _check(url, allow_local)
    try:
        async with bounded(clock or RealClock(), timeout), _async_client(client, timeout) as http:
            for hops in range(MAX_REDIRECTS + 1):
                try:
                    async with http.stream("GET", current, headers=_HEADERS, follow_redirects=False) as response:
                        _check_peer(response, allow_local)
                        following = _next_hop(response, allow_local, hops)
                        if following is not None:
                            current = following
                            continue
                        sink = _sink(response, target, max_bytes, chunk_size)
                        try:
                            if response.is_stream_consumed:
                                sink.feed(response.content)
                            else:
                                async for raw in response.aiter_raw():  # as it arrives: never wait to fill a chunk
                                    sink.feed(raw)
                            return sink.finish(_wire_length(response))
                        except BaseException:
                            sink.abort()
                            raise
                except httpx.HTTPError as exc:
                    raise _transport_failure(current, exc) from None
    except TimeoutError:
        raise DownloadFailed(f"download of {current} took longer than {timeout:g} s", reason="timeout") from None
    raise AssertionError("unreachable: _next_hop raises past MAX_REDIRECTS")


@asynccontextmanager
async def _async_client(client: httpx.AsyncClient | None, timeout: float | None) -> AsyncIterator[httpx.AsyncClient]:
    if client is not None:
        yield client
        return
    read = 60.0 if timeout is None else min(60.0, timeout)
    async with httpx.AsyncClient(timeout=httpx.Timeout(read, connect=10.0)) as owned:
        yield owned


def _transport_failure(url: object, exc: httpx.HTTPError) -> DownloadFailed:
    """An httpx failure of a download as ``DownloadFailed``: a timeout, or another transport error."""
    if isinstance(exc, httpx.TimeoutException):
        return DownloadFailed(f"download of {url} timed out ({type(exc).__name__})", reason="timeout")
    return DownloadFailed(f"download of {url} failed ({type(exc).__name__}: {exc})", reason="transport")
