"""Vendor adapters, one package per vendor, each declared as an ``ovi_gateway.providers`` entry point."""
