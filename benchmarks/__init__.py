"""Latency, throughput, memory, size and accuracy of every artifact the pipeline makes, as one report.

`python -m benchmarks` measures each backend in its own subprocess (its own peak RSS, one pinned core, one
thread) and writes `benchmarks/report/`: report.json (validated against schema.json), report.md and PNG plots.
"""
