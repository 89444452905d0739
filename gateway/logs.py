"""Logging the library way: loggers under ``gateway.*`` (and ``providers.<vendor>`` for each adapter),
silent unless the application configures logging (a ``NullHandler`` on the ``gateway`` and ``providers``
roots, as the logging HOWTO asks of libraries).

What is logged: at INFO, a job submitted, accepted, finished, failed over — with the vendor, the vendor's
job id and our idempotency key (``extra`` carries them as ``vendor``, ``job_id``, ``idempotency_key``,
``clip_key`` for log processors); at DEBUG, each status check. Never an API key (the secrets registry
redacts them from every message anyway), never an image's bytes, never a prompt.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

__all__ = ["ROOTS", "configure_cli_logging", "level_for"]

ROOTS = ("gateway", "providers")
"""The library's root loggers."""


def install_null_handlers() -> None:
    """A ``NullHandler`` on each root: no "no handlers could be found" output, no records by default."""
    for name in ROOTS:
        root = logging.getLogger(name)
        if not any(isinstance(h, logging.NullHandler) for h in root.handlers):
            root.addHandler(logging.NullHandler())


def level_for(verbose: int, quiet: int) -> int:
    """The CLI's level: WARNING by default, ``-v`` INFO, ``-vv`` DEBUG; ``-q`` ERROR, ``-qq`` CRITICAL."""
    steps = [logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL]
    return steps[max(0, min(len(steps) - 1, 2 - verbose + quiet))]


_CLI_HANDLER_NAME = "ovi-gateway-cli"


def configure_cli_logging(verbose: int, quiet: int) -> Callable[[], None]:
    """For the command line only (a library never configures logging): records of the library's loggers
    at the chosen level go to stderr, one line each. Returns the undo — the roots' levels and handlers as
    they were — which the CLI runs when its command ends, so a command run in-process (tests, a script
    calling ``cli.main``) leaves the library's logging as it found it."""
    level = level_for(verbose, quiet)
    saved = {name: (logging.getLogger(name).level, list(logging.getLogger(name).handlers)) for name in ROOTS}
    for name in ROOTS:
        root = logging.getLogger(name)
        root.setLevel(level)
        for old in [h for h in root.handlers if h.get_name() == _CLI_HANDLER_NAME]:
            root.removeHandler(old)
        handler = logging.StreamHandler(sys.stderr)
        handler.set_name(_CLI_HANDLER_NAME)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(handler)

    def restore() -> None:
        for name, (before, handlers) in saved.items():
            root = logging.getLogger(name)
            root.setLevel(before)
            root.handlers[:] = handlers

    return restore
