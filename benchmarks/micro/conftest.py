"""Micro-benchmarks (pytest-benchmark): ``pytest benchmarks/micro --benchmark-only``.

Outside tests/, so CI's ``pytest -q tests`` never collects them. Groups (``benchmark.group``)
name the op and the size, so ``--benchmark-compare`` reads one table per op and size.
"""
