"""A base install (no ``server`` extra) loads every adapter: optional packages are imported only where used."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import json, sys
    sys.modules["cryptography"] = None  # as if the server extra were not installed
    from gateway.registry import Registry
    registry = Registry.load()
    print(json.dumps({"classes": sorted(registry.classes), "failures": registry.failures}))
""")


def test_every_adapter_loads_without_the_server_extra():
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    assert loaded["failures"] == {}
    assert {"fal", "runware", "wavespeed"} <= set(loaded["classes"])


def test_verifying_a_fal_webhook_without_cryptography_says_what_to_install(monkeypatch):
    import pytest

    from gateway.errors import ConfigurationError
    from providers.fal import webhooks

    monkeypatch.setitem(sys.modules, "cryptography", None)
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.asymmetric", None)
    with pytest.raises(ConfigurationError, match=r"ovi-gateway\[server\]"):
        webhooks.public_keys({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA"}]})
