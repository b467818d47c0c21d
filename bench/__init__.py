"""Benchmarks of the loyalty platform: `make bench` (or `python -m bench`), see bench/README.md.

Scenarios live in `bench/scenarios/` and register themselves with `bench.registry.scenario`; the
harness (`bench.harness`) starts PostgreSQL and NATS, runs the selected scenarios and the raw
ceilings they are compared against, and reports throughput, latency and ratios.
"""
