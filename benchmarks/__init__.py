"""Benchmarks for ovi-gateway, all against the in-process emulator: ``python -m benchmarks.run``.

Not tests: each benchmark measures figures side by side in one run and reports ratios or counts.
See ``benchmarks/README.md``.
"""
