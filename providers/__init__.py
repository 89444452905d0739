"""Vendor adapters, one package per vendor, each declared as an ``ovi_gateway.providers`` entry point."""

import logging

# A library logs, the application decides where to: silent by default (``providers.<vendor>`` loggers).
logging.getLogger("providers").addHandler(logging.NullHandler())


def _check_not_shadowed() -> None:
    """ovi-gateway installs ``gateway`` beside ``providers``: a user's own ``gateway/`` package earlier on
    ``sys.path`` (often the current directory) would hide it, and every adapter would fail obscurely."""
    from pathlib import Path

    import gateway

    ours = Path(__file__).resolve().parent.parent / "gateway"
    found = [Path(p).resolve() for p in getattr(gateway, "__path__", [])]
    if ours.is_dir() and ours not in found:
        where = found[0] if found else getattr(gateway, "__file__", "?")
        raise ImportError(f"the 'gateway' package Python imports is {where}, not ovi-gateway's own ({ours}): a "
                          "folder named 'gateway' earlier on sys.path hides it; rename that folder or run from "
                          "another directory")


_check_not_shadowed()
