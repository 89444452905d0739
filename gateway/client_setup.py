"""What ``Gateway.__init__`` and ``Gateway.offline`` check and open: keys, base URLs, the journal, leases."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from gateway.contract import Provider
from gateway.errors import ConfigurationError
from gateway.registry import Registry
from gateway.store.lease import alive

__all__ = ["UNSET", "alive", "check_base_urls", "keys_for", "random_key", "recovery_for"]

UNSET: Any = object()
"""The default of ``journal=``: the user's journal (or, emulated, the separate offline one)."""

def keys_for(classes: Mapping[str, type[Provider]], keys: Mapping[str, str] | None, emulator: Any) -> dict[str, str]:
    found = {}
    for name, cls in classes.items():
        value = (keys or {}).get(name) or (None if emulator is not None else os.environ.get(cls.env_key))
        if emulator is not None and not value:
            value = "emulator-key"
        if value:
            found[name] = value
    return found


def random_key() -> str:
    """A random UUID4 string, as ``str(uuid.uuid4())`` makes it: 16 bytes of ``os.urandom`` (one read per
    key, so no two processes or threads can share one) with the version nibble 4 and the RFC 4122 variant
    bits set. Written out because every clip and every submit takes one, and ``uuid.UUID``'s checks and
    formatting cost as much again as the random bytes."""
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:]}"


_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}
"""A hex digit with its top two bits set to ``10`` (the RFC 4122 variant), keeping its low two random bits."""


def check_base_urls(classes: Mapping[str, type[Provider]], registry: Registry,
                     base_urls: Mapping[str, str] | None, *, allow_http: bool = False) -> dict[str, str]:
    """``base_urls`` checked: each names an enabled vendor whose adapter takes a ``base_url`` option, and is
    ``https://`` — an API key never travels in clear text — unless the gateway's explicit emulator flag
    (``allow_local_media``, or an emulator) admits ``http://`` for a loopback emulator."""
    checked: dict[str, str] = {}
    for name, url in (base_urls or {}).items():
        if name not in classes:
            registry.get(name)  # raises, naming the installed vendors or why this one failed to load
            raise ConfigurationError(f"base_urls names {name!r}, which is installed but not enabled here")
        if "base_url" not in getattr(classes[name], "accepted_options", frozenset()):
            raise ConfigurationError(f"the {name} adapter takes no base_url option", provider=name)
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigurationError(f"base_urls[{name!r}] must be an http(s) URL, got {url!r}", provider=name)
        if url.startswith("http://") and not allow_http:
            raise ConfigurationError(f"base_urls[{name!r}] is plain http ({url}): the API key would travel in "
                                     "clear text; use https://, or pass allow_local_media=True for a loopback "
                                     "emulator", provider=name)
        checked[name] = url
    return checked


def recovery_for(gateway: Any) -> Any:
    """``gateway.recovery``: re-attaches to its journal's unfinished jobs. Imported here, when a gateway
    has a journal: the recovery module loads the runner, which ``Gateway(journal=None)`` does not need."""
    from gateway.jobs.recovery import Recovery

    return Recovery(gateway.store, lambda: gateway._limited(gateway._providers()),
                    lambda name: name in gateway.classes and name in gateway._keys, gateway.clock)

