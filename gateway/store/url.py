"""Where the store lives: a path, ``":memory:"``, or a ``postgresql://`` URL — and that URL's secret.

The password in a database URL is a secret: ``register_password`` hands it to the secrets registry
(``gateway.secrets``), so every text the gateway keeps or shows has it redacted, and ``redact``
shows the URL with it masked (in the userinfo and in a ``?password=`` parameter).
"""

from __future__ import annotations

import os
from urllib.parse import unquote, urlsplit, urlunsplit

import gateway.secrets as secrets

__all__ = ["DATABASE_URL_ENV", "is_postgres", "redact", "register_password"]

DATABASE_URL_ENV = "OVI_GATEWAY_DATABASE_URL"
_SCHEMES = ("postgresql://", "postgres://", "postgresql+psycopg://")


def is_postgres(target: object) -> bool:
    """True for a PostgreSQL URL (``postgresql://``, ``postgres://``)."""
    return isinstance(target, str) and target.lower().startswith(_SCHEMES)


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (also in ``?password=`` query parameters)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable database URL>"
    netloc = parts.netloc
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    query = "&".join("password=***" if pair.lower().startswith("password=") else pair
                     for pair in parts.query.split("&")) if parts.query else ""
    return secrets.redact(urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment)))


def register_password(url: str) -> None:
    """Register the URL's password (userinfo or ``?password=``) with the secrets registry."""
    # Not secrets.register_url: that also registers a bare user name (a token in https://TOKEN@host),
    # and a database user name ("postgres") is not a secret — masking it would mangle every text.
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    values = [parts.password] + [pair.partition("=")[2] for pair in parts.query.split("&")
                                 if pair.lower().startswith("password=")]
    for value in values:
        if value:
            secrets.register(value)
            secrets.register(unquote(value))


def from_env() -> str | None:
    """``$OVI_GATEWAY_DATABASE_URL`` when set and not empty."""
    return os.environ.get(DATABASE_URL_ENV) or None
