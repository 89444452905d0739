"""One registry of secret values, and the redaction every outgoing text goes through.

Vendors and proxies echo what they were sent (an ``Authorization`` header in an error body, a URL
with a token in a redirect message), so any text that may carry a vendor's answer — error messages,
attempts, journal rows, log records, chained exceptions — is passed through ``redact`` before it is
kept or shown. ``redact`` replaces every *registered* value, in the forms an echo takes (as is,
percent-encoded, JSON-escaped), by ``***``.

API for every wing (register as soon as a secret is known, before it is ever sent)::

    from gateway import secrets

    secrets.register(value)          # any literal secret: a webhook signing secret or token, a server API key
    secrets.register_api_key(value)  # a vendor key; an ``id:secret`` key (fal) also registers each half
    secrets.register_shape(regex)    # a family of secrets by form (per-job URL tokens): registering each
                                     # of thousands of values would recompile the registry's pattern each time
    secrets.register_url(url)        # the password (and a token-like user) in a URL's userinfo, e.g.
                                     # ``postgresql://app:pw@db/ovi``; returns the URL with them masked
    secrets.redact(text)             # text with every registered value replaced by ``***``
    secrets.redact_url(url)          # a URL with its userinfo password masked (for display)
    secrets.scrub(exc)               # the exception's message and its __cause__/__context__ chain made safe
    @secrets.scrubbing               # decorator for public async entry points: whatever escapes is scrubbed
    secrets.is_registered(value)     # for tests

``register`` accepts ``str``, ``bytes`` or pydantic ``SecretStr``; ``None`` and empty values are
ignored. Values shorter than ``MIN_LENGTH`` characters are not redacted (replacing them would mangle
ordinary text; such a value is no secret anyway). The registry is process-wide and only grows: a
key registered by one ``Gateway`` is redacted from every text the process makes.

Logging: the first registration installs a log-record factory that redacts every record's message,
arguments and exception text, so handlers anywhere (the caller's too) never see a registered value.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import traceback
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, ParamSpec, TypeVar
from urllib.parse import quote, unquote, urlsplit, urlunsplit

__all__ = ["MASK", "MIN_LENGTH", "RedactedError", "contains_secret", "is_registered", "redact", "redact_url",
           "register", "register_api_key", "register_shape", "register_url", "scrub", "scrubbing"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

MASK = "***"
MIN_LENGTH = 6
"""Shortest value (characters) that is redacted."""

_lock = threading.Lock()
_values: set[str] = set()
_seen: set[str] = set()
"""Plain values ``register`` has already taken (adapters re-register their key on every call)."""
_pattern: re.Pattern[str] | None = None
_shapes: tuple[re.Pattern[str], ...] = ()
_factory_installed = False


def _forms(value: str, minimum: int = MIN_LENGTH) -> set[str]:
    """The ways an echo may spell ``value``: as is, percent-encoded, JSON-escaped."""
    forms = {value, quote(value, safe=""), quote(value, safe="/:"), json.dumps(value)[1:-1]}
    return {form for form in forms if len(form) >= minimum}


def register(value: Any) -> None:
    """Add one secret value (``str``, ``bytes`` or ``SecretStr``) to the registry."""
    text = _plain(value)
    if text in _seen or len(text) < MIN_LENGTH:  # the hot path: a key already known costs one lookup
        return
    global _pattern
    with _lock:
        _seen.add(text)
        new = _forms(text) - _values
        if not new:
            return
        _values.update(new)
        # Longest first, so a whole ``id:secret`` key is masked before its halves.
        _pattern = re.compile("|".join(re.escape(v) for v in sorted(_values, key=len, reverse=True)))
    _install_log_factory()


def register_shape(regex: str) -> None:
    """Redact every match of ``regex`` (a family of secrets by form, e.g. ``(?<=[?&]t=)[0-9a-f]{64}`` for the
    per-job webhook URL tokens). A server registers one token per job; as literal values each would
    recompile the registry's pattern over all of them (measured: 115 ms per job at 900 tokens)."""
    global _shapes
    compiled = re.compile(regex)
    with _lock:
        if all(shape.pattern != compiled.pattern for shape in _shapes):
            _shapes = (*_shapes, compiled)
    _install_log_factory()


def register_api_key(value: Any) -> None:
    """Register a vendor API key, and each half of an ``id:secret`` key (fal's ``FAL_KEY`` form)."""
    if type(value) is str and value in _api_keys:  # the hot path: every vendor call names its key again
        return
    text = _plain(value)
    if not text:
        return
    register(text)
    if ":" in text:
        for part in text.split(":"):
            register(part)
    if type(value) is str:
        _api_keys.add(value)  # only once it and its halves are in the registry


_api_keys: set[str] = set()
"""API key texts, as given, already registered with their halves (the registry never forgets one)."""


def register_url(url: str) -> str:
    """Register the secrets in ``url``'s userinfo (the password; a user too when there is no password,
    as in ``https://TOKEN@host``); returns the URL with them masked."""
    parts = urlsplit(url)
    if parts.password:
        register(parts.password)
        register(unquote(parts.password))
    elif parts.username:
        register(parts.username)
        register(unquote(parts.username))
    return redact_url(url)


def redact_url(url: str) -> str:
    """``url`` with its userinfo secret masked (``postgresql://app:***@db/ovi``), and redacted."""
    parts = urlsplit(url)
    if parts.password or (parts.username and not parts.password):
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        if parts.port is not None:
            host = f"{host}:{parts.port}"
        user = f"{parts.username}:{MASK}" if parts.password else MASK
        url = urlunsplit((parts.scheme, f"{user}@{host}", parts.path, parts.query, parts.fragment))
    return redact(url)


def is_registered(value: Any) -> bool:
    """Whether ``value`` would be redacted."""
    text = _plain(value)
    return bool(text) and text in _values


def redact(text: str, extra: Iterable[Any] = ()) -> str:
    """``text`` with every registered secret (and every value in ``extra``) replaced by ``***``."""
    if not isinstance(text, str):
        text = str(text)
    for value in extra:
        plain = _plain(value)
        if plain:  # explicit values: the caller knows they are secrets, so shorter ones count too
            for form in sorted(_forms(plain, 4), key=len, reverse=True):
                text = text.replace(form, MASK)
    pattern = _pattern
    if pattern is not None:
        text = pattern.sub(MASK, text)
    for shape in _shapes:
        text = shape.sub(MASK, text)
    return text


def contains_secret(text: str) -> bool:
    """Whether ``text`` holds a registered value."""
    pattern = _pattern
    return ((pattern is not None and pattern.search(text) is not None)
            or any(shape.search(text) is not None for shape in _shapes))


class RedactedError(Exception):
    """Stands in, in an exception chain, for an exception whose text held a secret."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"{type(original).__module__}.{type(original).__qualname__}: "
                         + redact(_text_of(original)))
        self.original_type: type[BaseException] = type(original)


def scrub(exc: BaseException) -> BaseException:
    """Make ``exc`` safe to show: its own message redacted, and every link of its ``__cause__`` /
    ``__context__`` chain whose text holds a secret replaced by a ``RedactedError`` carrying the
    redacted text. Returns ``exc`` (changed in place)."""
    _scrub(exc, set())
    return exc


def scrubbing(function: Callable[_P, Coroutine[Any, Any, _T]]) -> Callable[_P, Coroutine[Any, Any, _T]]:
    """Wrap a public async entry point so any exception leaving it is ``scrub``-bed first."""

    @functools.wraps(function)
    async def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return await function(*args, **kwargs)
        except BaseException as exc:
            scrub(exc)
            raise

    return wrapper


def _scrub(exc: BaseException, seen: set[int]) -> None:
    if id(exc) in seen:
        return
    seen.add(id(exc))
    _redact_own(exc)
    for attr in ("__cause__", "__context__"):
        link = getattr(exc, attr)
        if link is None:
            continue
        if contains_secret(_text_of(link)) and not _redact_own(link):
            stand_in = RedactedError(link)
            stand_in.__cause__ = link.__cause__
            stand_in.__context__ = link.__context__
            stand_in.__suppress_context__ = link.__suppress_context__
            stand_in.__traceback__ = link.__traceback__
            setattr(exc, attr, stand_in)
            link = stand_in
        _scrub(link, seen)


def _redact_own(exc: BaseException) -> bool:
    """Redact ``exc``'s message in place where it lives in ``args`` (and ``message``); ``True`` when
    its text is clean afterwards."""
    if exc.args and any(isinstance(a, str) and contains_secret(a) for a in exc.args):
        try:
            exc.args = tuple(redact(a) if isinstance(a, str) else a for a in exc.args)
        except (AttributeError, TypeError):
            return False
    message = getattr(exc, "message", None)
    if isinstance(message, str) and contains_secret(message):
        try:
            exc.message = redact(message)  # type: ignore[attr-defined]
        except (AttributeError, TypeError):
            return False
    return not contains_secret(_text_of(exc))


def _text_of(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # an exception whose __str__ fails says nothing
        return type(exc).__name__


def _plain(value: Any) -> str:
    if value is None:
        return ""
    getter = getattr(value, "get_secret_value", None)
    if callable(getter):
        value = getter()
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("utf-8", "replace")
    return value.strip() if isinstance(value, str) else ""


def _install_log_factory() -> None:
    """Wrap the log-record factory once, so every record is redacted where it is made."""
    global _factory_installed
    with _lock:
        if _factory_installed:
            return
        _factory_installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it to the handler to report
            return record
        if contains_secret(message):
            record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[1] is not None:
            text = "".join(traceback.format_exception(*record.exc_info))
            if contains_secret(text):
                record.exc_text = redact(text).rstrip("\n")
        return record

    logging.setLogRecordFactory(factory)
