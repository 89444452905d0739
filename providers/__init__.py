"""Vendor adapters, one package per vendor, each declared as an ``ovi_gateway.providers`` entry point."""

import logging

# A library logs, the application decides where to: silent by default (``providers.<vendor>`` loggers).
logging.getLogger("providers").addHandler(logging.NullHandler())
