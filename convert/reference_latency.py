"""Reference latencies recorded in the manifest at conversion, for the device to compare itself with.

- `cpu`: the edge pipeline exactly as the device runs it (`edge_runtime.bench.measure`: numpy front-end, int8
  streaming TFLite with one interpreter thread, post-processing), pinned to one core of this workstation.
- `gpu`: the same streaming step in torch (float32, model only) on this workstation's CUDA device when it has
  one; otherwise `{"status": "not measured: no CUDA device"}`.
Both name their device, so a ratio on the device says against what.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

from convert.stream_model import StreamingDSCNN
from edge_runtime.bench import cpu_name, device_info, generated_audio, measure, pinned
from edge_runtime.latency import percentiles_us
from edge_runtime.postprocess import DetectionPolicy
from edge_runtime.stream_manifest import StreamingEntry

REFERENCE_SECONDS = 30.0  # of generated audio: 300 steps of 100 ms, enough for a stable p99
GPU_WARMUP_STEPS, GPU_TIMED_STEPS = 50, 500
NO_GPU = "not measured: no CUDA device"


def reference_latency(entry: StreamingEntry, keyword_index: int, policy: DetectionPolicy, stream: StreamingDSCNN):
    audio = generated_audio(REFERENCE_SECONDS, entry.spec.sample_rate)
    core = min(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    with pinned(core):
        cpu = measure(entry, keyword_index, policy, audio)
    info = device_info()
    return {
        "cpu": {
            "device": info["cpu"],
            "what": "edge pipeline: numpy log-mel + int8 streaming TFLite (1 thread) + post-processing, 1 pinned core",
            "interpreter": info["interpreter"],
            "audio_seconds": cpu["audio_seconds"],
            "rtf": cpu["rtf"],
            "rtf_steps_only": cpu["rtf_steps_only"],
            "per_hop_us": cpu["per_hop_us"],
            "per_step_us": cpu["per_step_us"],
        },
        "gpu": gpu_reference(stream),
    }


def gpu_reference(stream: StreamingDSCNN) -> dict:
    """Per-step time of the torch streaming step on the GPU (synchronised after each step)."""
    if not torch.cuda.is_available():
        return {"status": NO_GPU}
    device = torch.device("cuda")
    model = stream.to(device).eval()
    frames = torch.zeros(1, stream.frames_per_step * stream.layout.n_mels, device=device)
    state = stream.zero_state().to(device)
    timings = []
    with torch.no_grad():
        for index in range(GPU_WARMUP_STEPS + GPU_TIMED_STEPS):
            torch.cuda.synchronize()
            started = time.perf_counter_ns()
            _, state = model(frames, state)
            torch.cuda.synchronize()
            if index >= GPU_WARMUP_STEPS:
                timings.append(time.perf_counter_ns() - started)
    stream.to("cpu")
    ns = np.asarray(timings, dtype=np.float64)
    seconds_per_step = stream.frames_per_step * stream.spec.hop_ms / 1000.0
    rtf = round(float(ns.mean()) / 1e9 / seconds_per_step, 6)
    return {
        "device": torch.cuda.get_device_name(device),
        "cpu_host": cpu_name(),
        "what": "torch float32 streaming step on the GPU (model only, batch 1, synchronised per step)",
        "rtf": rtf,
        "rtf_steps_only": rtf,
        "per_hop_us": {"model": percentiles_us(ns, stream.frames_per_step)},
        "per_step_us": {"model": percentiles_us(ns)},
    }
