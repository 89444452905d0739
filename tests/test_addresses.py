"""Embedded and deprecated IPv6 forms of private addresses are refused (review finding 14)."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.addresses import UnsafeURL, check_public_address, check_url


@pytest.mark.parametrize("url", [
    "https://[::7f00:1]/a.png",              # IPv4-compatible 127.0.0.1 (deprecated ::/96)
    "https://[::a9fe:a9fe]/a.png",           # IPv4-compatible 169.254.169.254
    "https://[::ffff:0:7f00:1]/a.png",       # SIIT IPv4-translated 127.0.0.1
    "https://[64:ff9b:1::a9fe:a9fe]/a.png",  # local-use NAT64 (RFC 8215)
    "https://[64:ff9b:1::808:808]/a.png",    # local-use NAT64, even around a public IPv4
    "https://[fec0::1]/a.png",               # site-local (deprecated)
])
def test_embedded_and_deprecated_forms_are_refused(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url)


@pytest.mark.parametrize("address", ["::7f00:1", "::ffff:0:a00:1", "64:ff9b:1::1", "fec0::1"])
def test_the_connected_peer_check_refuses_them_too(address: str) -> None:
    with pytest.raises(UnsafeURL):
        check_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("url", ["https://[2606:4700:4700::1111]/a.png", "https://[64:ff9b::808:808]/a.png",
                                 "https://8.8.8.8/a.png"])
def test_public_addresses_still_pass(url: str) -> None:
    check_url(url)
