"""What the pipeline costs: per-step times, rolling percentiles, real-time factor, CPU, memory, start-up time.

A step is one model call: `frames_per_step` feature hops of audio (100 ms by default). Times are recorded per
step (front-end, model, post-processing, total) and reported per 10 ms hop (the step's time divided by its hops),
so figures compare across step sizes. `rtf` is processing time per second of audio: 0.002 means the pipeline
keeps 0.2% of one core busy. Memory and CPU come from /proc and `os.times` (no extra package on the device).
"""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass, field

import numpy as np

PERCENTILES = (50, 95, 99)
STAGES = ("features", "model", "postprocess", "total")
NS_PER_US, NS_PER_S = 1_000, 1_000_000_000
BYTES_PER_MB = 1_000_000
KB = 1024


@dataclass
class StepTimes:
    """Per-step nanoseconds by stage, since the last `take()`."""

    ns: dict[str, list[int]] = field(default_factory=lambda: {stage: [] for stage in STAGES})

    def record(self, features_ns: int, model_ns: int, postprocess_ns: int) -> None:
        self.ns["features"].append(features_ns)
        self.ns["model"].append(model_ns)
        self.ns["postprocess"].append(postprocess_ns)
        self.ns["total"].append(features_ns + model_ns + postprocess_ns)

    def __len__(self) -> int:
        return len(self.ns["total"])

    def take(self) -> dict[str, np.ndarray]:
        taken = {stage: np.asarray(values, dtype=np.float64) for stage, values in self.ns.items()}
        for values in self.ns.values():
            values.clear()
        return taken


def percentiles_us(ns: np.ndarray, divisor: float = 1.0) -> dict[str, float]:
    """p50/p95/p99 of `ns / divisor` in microseconds (NaN-free: empty gives zeros)."""
    if ns.size == 0:
        return {f"p{p}": 0.0 for p in PERCENTILES}
    values = np.percentile(ns / divisor / NS_PER_US, PERCENTILES)
    return {f"p{p}": round(float(v), 3) for p, v in zip(PERCENTILES, values, strict=True)}


def stage_summary(times: dict[str, np.ndarray], hops_per_step: int) -> dict:
    return {
        "per_hop_us": {stage: percentiles_us(times[stage], hops_per_step) for stage in STAGES},
        "per_step_us": {stage: percentiles_us(times[stage]) for stage in STAGES},
    }


def rss_mb() -> dict[str, float]:
    """Current and peak resident memory of this process, MB."""
    values = {}
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(rest.split()[0]) * KB / BYTES_PER_MB
    except OSError:  # not Linux: the peak from getrusage (kilobytes on Linux, bytes on macOS) is all we have
        values["VmHWM"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * KB / BYTES_PER_MB
    peak = round(values.get("VmHWM", 0.0), 1)
    return {"current": round(values.get("VmRSS", peak), 1), "peak": peak}


def process_age_s() -> float | None:
    """Seconds since this process started (exec included), from /proc; None where /proc is missing."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as uptime:
            up = float(uptime.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    start_ticks = int(fields[19])  # field 22 of /proc/PID/stat; fields[0] here is field 3
    return round(up - start_ticks / os.sysconf("SC_CLK_TCK"), 3)


class CpuMeter:
    """This process's CPU time as a percentage of one core, between two `percent()` calls."""

    def __init__(self) -> None:
        self._last = self._now()

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.process_time(), time.monotonic()

    def percent(self) -> float:
        now = self._now()
        cpu, wall = now[0] - self._last[0], now[1] - self._last[1]
        self._last = now
        return round(100.0 * cpu / wall, 2) if wall > 0 else 0.0


def reference_ratio(rtf: float, per_hop_total_p50_us: float, reference: dict | None, rtf_key: str = "rtf") -> dict:
    """This device's figures over the workstation's (recorded at conversion): how many times slower. `rtf_key`:
    which of the reference's rtf figures is comparable (`rtf`: whole loop, `rtf_steps_only`: the timed stages)."""
    ratios = {}
    for name, entry in (reference or {}).items():
        if not isinstance(entry, dict) or rtf_key not in entry:
            continue
        base_rtf, base_p50 = entry.get(rtf_key), entry.get("per_hop_us", {}).get("total", {}).get("p50")
        ratios[name] = {
            "device": entry.get("device", "unknown"),
            "reference_rtf": base_rtf,
            "rtf_ratio": round(rtf / base_rtf, 2) if base_rtf else None,
            "per_hop_p50_ratio": round(per_hop_total_p50_us / base_p50, 2) if base_p50 else None,
        }
    return ratios
