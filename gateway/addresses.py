"""Which URLs the gateway hands to vendors or fetches itself: one rule, used by every wing.

* ``check_public_host(host)`` refuses names and addresses a vendor (or we) must not be pointed at:
  loopback, private, link-local and other non-global ranges, however they are spelled — shorthand and
  integer IPv4 (``127.1``, ``2130706433``, ``0x7f.1``), Unicode digits and dots (``１２７.０.０.１``, which
  IDNA folds to ASCII), IPv4-mapped (``::ffff:127.0.0.1``), NAT64 (``64:ff9b::/96``), 6to4 and Teredo
  forms of a private IPv4 address, IPv4-compatible (``::7f00:1``) and SIIT (``::ffff:0:7f00:1``) forms,
  local-use NAT64 (``64:ff9b:1::/48``) and site-local ``fec0::/10``, and names like ``localhost``,
  ``*.internal``, ``*.local`` or a bare single label.
* ``check_url(url, ...)`` parses strictly: no userinfo, no backslash (WHATWG parsers read
  ``http://127.0.0.1\\@public.com/`` as host 127.0.0.1, ``urllib`` as public.com), no whitespace or
  control characters, a host present; then applies ``check_public_host`` unless ``allow_local``.
* ``check_result_url(url)`` is the parse-time check for a video URL a vendor reports: ``https://`` or
  ``http://`` with a host, or a ``data:video/…`` URI — never ``file://`` or junk. Whether ``http://``
  and local addresses may be *fetched* is decided at download time (``gateway.media.download``), by an
  explicit gateway flag for the emulator, never inferred from the URL.

Names are checked as written (no DNS lookup: a vendor resolves image URLs itself); the downloader also
checks the address it actually connected to.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

__all__ = ["UnsafeURL", "check_public_address", "check_public_host", "check_result_url", "check_url"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Prefixes that embed an IPv4 address in their low 32 bits: IPv4-compatible (deprecated, RFC 4291 2.5.5.1)
# and SIIT IPv4-translated (RFC 2765); Python's properties do not look inside either.
_EMBEDS_LOW32 = (ipaddress.ip_network("::/96"), ipaddress.ip_network("::ffff:0:0:0/96"))
# Local-use NAT64 (RFC 8215) reaches whatever the operator's translator maps it to: never public.
_LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f\\]")
_LOCAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".home.arpa", ".lan", ".intranet")


class UnsafeURL(ValueError):
    """A URL the gateway will not send or fetch; the message says why and what is allowed."""


def check_public_address(address: IPAddress) -> None:
    """Raise ``UnsafeURL`` unless ``address`` (and any IPv4 address embedded in it) is globally routable."""
    embedded: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            embedded.append(address.ipv4_mapped)
        if address in _NAT64 or any(address in net for net in _EMBEDS_LOW32):
            # Python counts these global; what they reach is the IPv4 address inside
            embedded.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address in _LOCAL_NAT64 or address.is_site_local:  # site-local fec0::/10 is deprecated, never global
            raise UnsafeURL(f"address {address} is a local-use NAT64 or site-local address; use a public host")
        if address.sixtofour is not None:
            embedded.append(address.sixtofour)
        if address.teredo is not None:
            embedded.append(address.teredo[1])
    for candidate in (address, *embedded):
        if not candidate.is_global or candidate.is_multicast:
            raise UnsafeURL(f"address {address} is a private or reserved address (loopback, private, link-local "
                            "or special-purpose); use a public host")


def _as_address(host: str) -> IPAddress | None:
    numeric = _NUMERIC_HOST.fullmatch(host) is not None
    if not numeric and ":" not in host:
        return None  # a name: no IP literal lacks both a colon (IPv6) and this shape (ipaddress raises twice)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if numeric:
        import socket  # here, not at the top: only these odd hosts need it (start-up, issue 14)

        try:  # shorthand, integer, octal and hex IPv4 forms that C resolvers accept (127.1, 0x7f.1)
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


_NUMERIC_HOST = re.compile(r"[0-9a-fA-FxX.]+")
"""Every IPv4 form: dotted decimal, and the shorthand, integer, octal and hex forms C resolvers accept."""
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)+")
_DIGITS_AND_DOTS = re.compile(r"[0-9.]+")


def check_public_host(host: str) -> str:
    """The host in its ASCII (IDNA) form, when it is a public name or address; else ``UnsafeURL``."""
    raw = host.strip("[]")
    if not raw:
        raise UnsafeURL("the URL has no host")
    if "%" in raw:  # an IPv6 zone (fe80::1%eth0) names a local interface
        raise UnsafeURL(f"host {host!r} carries an interface zone; use a public host")
    try:
        ascii_host = raw if raw.isascii() else raw.encode("idna").decode("ascii")
    except UnicodeError:
        raise UnsafeURL(f"host {host!r} is not a valid domain name") from None
    ascii_host = ascii_host.rstrip(".").lower()
    address = _as_address(ascii_host)
    if address is not None:
        check_public_address(address)
        return ascii_host
    if ascii_host == "localhost" or ascii_host.endswith(_LOCAL_SUFFIXES):
        raise UnsafeURL(f"host {host!r} is a local name, not reachable from outside; use a public host")
    if not _NAME.fullmatch(ascii_host):  # lenient on labels, strict on shape
        raise UnsafeURL(f"host {host!r} is not a public domain name (letters, digits, hyphens and dots, "
                        "with at least one dot)")
    if _DIGITS_AND_DOTS.fullmatch(ascii_host):
        raise UnsafeURL(f"host {host!r} is no valid IPv4 address")
    return ascii_host


def _split(url: str, what: str) -> SplitResult:
    if not isinstance(url, str) or not url:
        raise UnsafeURL(f"{what} must be a non-empty URL string")
    if _BAD_CHARS.search(url):
        raise UnsafeURL(f"{what} holds whitespace, a control character or a backslash; pass a plain URL")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a port that is no number
    except ValueError as exc:
        raise UnsafeURL(f"{what} is not a valid URL ({exc})") from None
    return parts


def check_url(url: str, *, what: str = "URL", schemes: tuple[str, ...] = ("https",),
              allow_local: bool = False) -> SplitResult:
    """Parse ``url`` strictly and apply the rule above; returns its parts, raises ``UnsafeURL``."""
    parts = _split(url, what)
    if parts.scheme.lower() not in schemes:
        allowed = " or ".join(f"{s}://" for s in schemes)
        raise UnsafeURL(f"{what} scheme {parts.scheme or '(none)'!r} is not allowed; use {allowed}")
    if "@" in parts.netloc:
        raise UnsafeURL(f"{what} carries user information before '@'; pass the URL without it")
    if not parts.hostname:
        raise UnsafeURL(f"{what} has no host")
    if not allow_local:
        check_public_host(parts.hostname)
    return parts


_DATA_VIDEO = re.compile(r"^data:video/[\w.+-]+;base64,[A-Za-z0-9+/=\s]+$", re.DOTALL)


def check_result_url(url: object) -> str:
    """The video URL a vendor reported, if it can be a clip (``https``/``http`` with a host, or a
    ``data:video/...;base64`` URI); ``UnsafeURL`` for ``file://``, other schemes and junk."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeURL("the video URL is empty or not text")
    if url[:5].lower() == "data:":
        if not _DATA_VIDEO.match(url):
            raise UnsafeURL("the video data URI is not data:video/<type>;base64,<data>")
        return url
    check_url(url, what="video URL", schemes=("https", "http"), allow_local=True)
    return url
