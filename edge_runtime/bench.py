"""`python -m edge_runtime bench`: what the whole edge pipeline (front-end, int8 streaming model, post-processing)
costs on this machine, as JSON with a top-level `rtf` (processing seconds per second of audio).

The audio (a WAV file, or generated noise) is fed in chunks of one model step, as the microphone delivers it.
`rtf` is the wall-clock time of the whole processing loop over the audio's duration (Python overhead between
steps included); the per-hop and per-step percentiles split it by stage. By default the process is pinned to one
core and the interpreter uses one thread, the setting of the issue's target (rtf <= 0.002). The conversion
records the same measurement on the workstation in the manifest (`reference_latency`); the ratio is reported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .audio_io import read_audio
from .cli_parser import positive_int
from .errors import KwsError
from .interpreter import DEFAULT_THREADS
from .latency import NS_PER_S, StepTimes, process_age_s, reference_ratio, rss_mb, stage_summary
from .postprocess import DetectionPolicy
from .stream_manifest import StreamBundle, StreamingEntry, load_stream_bundle
from .streaming import StreamingScorer
from .verifier import VerifiedPostProcessor, VerifierEntry, deployed_threshold, make_post_processor

DEFAULT_GENERATED_SECONDS = 60.0
GENERATED_LEVEL = 0.05  # RMS of the generated noise, about -26 dBFS: a quiet room through a cheap microphone
GENERATED_SEED = 0
INTERPRETER_PACKAGES = ("ai-edge-litert", "tflite-runtime")
RTF_DECIMALS = 6


def generated_audio(seconds: float, sample_rate: int, seed: int = GENERATED_SEED) -> np.ndarray:
    """Deterministic low-level noise: the pipeline's cost does not depend on what it hears."""
    audio = np.random.default_rng(seed).standard_normal(round(seconds * sample_rate), dtype=np.float32)
    audio *= GENERATED_LEVEL  # in place: no float64 copy inflating the peak RSS the benchmark reports
    return audio


def cpu_name() -> str:
    """The CPU's marketing name (x86 'model name', Raspberry Pi 'Model'), else the architecture."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            lines = cpuinfo.read().splitlines()
    except OSError:
        lines = []
    for key in ("model name", "Model", "Hardware"):
        for line in lines:
            name, _, value = line.partition(":")
            if name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def device_info() -> dict:
    from importlib import metadata  # here, not at the top: it costs 2.6 MB of RSS that `run` does not need

    interpreter = "none"
    for package in INTERPRETER_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            interpreter = f"{package} {metadata.version(package)}"
            break
    return {
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "interpreter": interpreter,
    }


@contextlib.contextmanager
def pinned(cpu: int | None) -> Iterator[int | None]:
    """Run the block on one core (Linux), then restore the previous affinity; None: leave it alone."""
    if cpu is None or not hasattr(os, "sched_setaffinity"):
        yield None
        return
    previous = os.sched_getaffinity(0)
    if cpu not in previous:
        raise KwsError(f"--cpu {cpu} is not available to this process; allowed: {sorted(previous)}")
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, previous)


def measure(
    entry: StreamingEntry,
    keyword_index: int,
    policy: DetectionPolicy,
    audio: np.ndarray,
    threads: int = DEFAULT_THREADS,
    verifier: VerifierEntry | None = None,
) -> dict:
    """Run the pipeline over `audio` (mono float32 at the model rate) step by step and time it; with `verifier`
    (the bundle's second stage) its windows count in the post-processing time."""
    loading = time.perf_counter_ns()
    scorer = StreamingScorer(entry, keyword_index, threads)
    load_ns = time.perf_counter_ns() - loading
    post = make_post_processor(policy, entry, verifier)
    chunk = scorer.front_end.new_samples_per_call
    times, detections, first_inference_s = StepTimes(), 0, None
    started = time.perf_counter_ns()
    for start in range(0, audio.shape[0], chunk):
        for step in scorer.push(audio[start : start + chunk]):
            post_started = time.perf_counter_ns()
            detections += len(post.update(step.times_s, step.scores, step.frames))
            times.record(step.features_ns, step.model_ns, time.perf_counter_ns() - post_started)
            if first_inference_s is None:
                first_inference_s = process_age_s()
    wall_ns = time.perf_counter_ns() - started
    audio_s = scorer.steps_done * scorer.seconds_per_step
    if audio_s <= 0:
        raise KwsError(f"the audio is shorter than one model step ({scorer.seconds_per_step:g} s)")
    taken = times.take()
    return {
        "rtf": round(wall_ns / NS_PER_S / audio_s, RTF_DECIMALS),
        "rtf_steps_only": round(float(taken["total"].sum()) / NS_PER_S / audio_s, RTF_DECIMALS),
        "audio_seconds": round(audio_s, 3),
        "steps": scorer.steps_done,
        "hops_per_step": entry.frames_per_step,
        **stage_summary(taken, entry.frames_per_step),
        "model_load_ms": round(load_ns / 1e6, 3),
        "first_inference_s": first_inference_s,
        "detections": detections,
        "threads": threads,
        **({} if verifier is None else {"verifier": verifier_usage(post, scorer)}),
    }


def verifier_usage(post: VerifiedPostProcessor, scorer: StreamingScorer) -> dict:
    """How often the second stage ran on this audio."""
    outputs = scorer.steps_done * scorer.entry.outputs_per_step * scorer.entry.phases
    return {
        "gate": post.gate,
        "gate_open_share": round(post.gate_outputs / outputs, 6) if outputs else 0.0,
        "windows_scored": post.verifier.windows_scored,
    }


def bench(bundle: StreamBundle, audio: np.ndarray, audio_name: str, threads: int, cpu: int | None) -> dict:
    policy = DetectionPolicy(
        deployed_threshold(bundle), bundle.detection.refractory_seconds, bundle.stream.smoothing_seconds
    )
    with pinned(cpu) as core:
        result = measure(bundle.stream, bundle.keyword_index, policy, audio, threads, bundle.verifier)
    reference = bundle.manifest.get("reference_latency")
    ratio = reference_ratio(result["rtf"], result["per_hop_us"]["total"]["p50"], reference)
    return {
        **result,
        "audio": audio_name,
        "pinned_cpu": core,
        "rss_mb": rss_mb(),
        "device": device_info(),
        "model": {
            "file": bundle.stream.path.name,
            "precision": bundle.stream.precision,
            "sha256": bundle.manifest["streaming"]["sha256"],
        },
        "reference": reference,
        "ratio_to_reference": ratio,
    }


def add_parser(commands) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        "bench",
        help="measure the edge pipeline's cost on this machine (JSON with a top-level rtf)",
        description=__doc__.split("\n\n")[0].replace("`python -m edge_runtime bench`: ", "").capitalize()
        + " Also: per-hop and per-step p50/p95/p99 by stage, peak RSS, first-inference time after process start, "
        "and the ratio to the workstation figures recorded in the manifest.",
    )
    parser.add_argument("--model", required=True, metavar="BUNDLE", help="model bundle folder or manifest.json")
    parser.add_argument(
        "--wav", metavar="FILE", default=None, help="audio to process (default: generated noise, see --seconds)"
    )
    parser.add_argument(
        "--seconds",
        type=_positive_float,
        default=DEFAULT_GENERATED_SECONDS,
        metavar="S",
        help=f"length of the generated audio (default: {DEFAULT_GENERATED_SECONDS:g})",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=DEFAULT_THREADS,
        help=f"interpreter threads (default: {DEFAULT_THREADS})",
    )
    parser.add_argument(
        "--cpu",
        type=_non_negative_int,
        default=None,
        metavar="CORE",
        help="pin to this core (default: the lowest core this process may use)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin to one core (default: pinned)")
    parser.add_argument(
        "--out", type=Path, default=None, metavar="FILE", help="also write the JSON to this file (default: stdout only)"
    )
    return parser


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(args: argparse.Namespace) -> int:
    bundle = load_stream_bundle(args.model)
    rate = bundle.spec.sample_rate
    if args.wav:
        audio, name = read_audio(args.wav, rate), str(args.wav)
    else:
        audio = generated_audio(args.seconds, rate)
        name = f"generated: {args.seconds:g} s of noise at {GENERATED_LEVEL} RMS (seed {GENERATED_SEED})"
    cpu = None
    if not args.no_pin and hasattr(os, "sched_getaffinity"):
        cpu = min(os.sched_getaffinity(0)) if args.cpu is None else args.cpu
    result = bench(bundle, audio, name, args.threads, cpu)
    text = json.dumps(result, indent=2)
    if args.out is not None:
        try:
            args.out.write_text(text + "\n", encoding="utf-8")
        except OSError as error:
            raise KwsError(f"cannot write --out {args.out} ({error.strerror})") from None
    print(text, flush=True)
    print(bench_line(result), file=sys.stderr, flush=True)
    return 0


def bench_line(result: dict) -> str:
    total, rss = result["per_hop_us"]["total"], result["rss_mb"]
    line = (
        f"bench: rtf {result['rtf']:.5f} over {result['audio_seconds']:g} s, per 10 ms hop p50/p95/p99 "
        f"{total['p50']:.1f}/{total['p95']:.1f}/{total['p99']:.1f} us, peak rss {rss['peak']:.0f} MB, first "
        f"inference {result['first_inference_s']} s after start"
    )
    for name, ratio in result["ratio_to_reference"].items():
        if ratio["rtf_ratio"] is not None:
            line += f"; {ratio['rtf_ratio']:g}x the workstation {name} ({ratio['device']})"
    return line
