"""Single-thread CPU latency per 1 s window, measured side by side for every row of the report.

All models run in one process pinned to one core, with one thread (torch `set_num_threads(1)`, TFLite
interpreters built with one thread), on the same feature window. The rounds interleave the models (each round
times every model in turn), so a burst of load from elsewhere on the machine hits all of them alike; the figure
is the median of all timed calls. What is timed is one call from features to class probabilities: for torch,
`model(features)` in inference mode; for TFLite, the edge runtime's `TfliteModel.probabilities` (int8 input
quantization and output dequantization included), i.e. exactly what the device runs per window.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator

import numpy as np
import torch

WARMUP_CALLS = 30
DEFAULT_ROUNDS = 20
DEFAULT_CALLS_PER_ROUND = 50


@contextlib.contextmanager
def one_core_one_thread() -> Iterator[int | None]:
    """Pin this process to its lowest allowed core and torch to one thread; both restored afterwards."""
    threads = torch.get_num_threads()
    previous = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    torch.set_num_threads(1)
    if previous is not None:
        os.sched_setaffinity(0, {min(previous)})
    try:
        yield min(previous) if previous is not None else None
    finally:
        torch.set_num_threads(threads)
        if previous is not None:
            os.sched_setaffinity(0, previous)


def measure(
    calls: dict[str, Callable[[], object]], rounds: int = DEFAULT_ROUNDS, per_round: int = DEFAULT_CALLS_PER_ROUND
) -> dict[str, dict]:
    """Median and 90th percentile (microseconds) of each callable, interleaved round by round."""
    timings: dict[str, list[int]] = {name: [] for name in calls}
    with one_core_one_thread() as core, torch.inference_mode():
        for call in calls.values():
            for _ in range(WARMUP_CALLS):
                call()
        for _ in range(rounds):
            for name, call in calls.items():
                samples = timings[name]
                for _ in range(per_round):
                    started = time.perf_counter_ns()
                    call()
                    samples.append(time.perf_counter_ns() - started)
    return {
        name: {
            "median_us": round(float(np.median(ns)) / 1000.0, 2),
            "p90_us": round(float(np.percentile(ns, 90)) / 1000.0, 2),
            "calls": len(ns),
            "core": core,
        }
        for name, ns in timings.items()
    }
