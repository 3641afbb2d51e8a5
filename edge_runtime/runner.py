"""`python -m edge_runtime run`: the live detector. Audio source -> streaming scorer -> post-processing -> outputs.

Outputs:
- stdout: one JSON line per detection, `{"time_s", "keyword", "score", "latency_ms", "utc"}`, flushed at once
  (journald keeps it when this runs as a service). `time_s` is stream time (seconds of audio since the start) of
  the output that fired; `latency_ms` the processing time from the arrival of the audio that completed that step
  to the line being written.
- `--log-file`: the same lines appended; `--on-detect CMD ARG...`: a command started per detection, no shell.
- stderr: a start line, warnings, and a latency summary every `--summary-seconds` of audio and at exit;
  `--latency-log`: the summaries as JSON lines.
SIGTERM and SIGINT stop the loop between steps: the source is closed, the last summary written, files flushed,
exit status 0.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np

from .errors import KwsError
from .latency import NS_PER_S, CpuMeter, StepTimes, reference_ratio, rss_mb, stage_summary
from .logfile import AppendOnlyLog
from .postprocess import DetectionPolicy, PostProcessor, StreamDetection
from .sources import AudioSource, StdinSource, WavSource
from .stream_manifest import StreamBundle, load_stream_bundle
from .streaming import StreamingScorer
from .verifier import deployed_threshold, make_post_processor

SCORE_DECIMALS, TIME_DECIMALS, LATENCY_DECIMALS = 4, 3, 3
NS_PER_MS = 1_000_000
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
ON_DETECT_WAIT_S = 5.0


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def utc_now() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def detection_policy(settings: dict, bundle: StreamBundle) -> DetectionPolicy:
    def pick(key: str, manifest_value: float) -> float:
        return manifest_value if settings[key] is None else settings[key]

    policy = DetectionPolicy(
        threshold=pick("threshold", deployed_threshold(bundle)),
        refractory_seconds=pick("refractory_seconds", bundle.detection.refractory_seconds),
        smoothing_seconds=pick("smoothing_seconds", bundle.stream.smoothing_seconds),
    )
    problems = policy.problems()
    if problems:
        raise KwsError("; ".join(problems))
    return policy


def verifier_note(bundle: StreamBundle) -> str:
    verifier = bundle.verifier
    if verifier is None:
        return ""
    hop_ms = verifier.hop_frames * bundle.spec.hop_ms
    return (f"; verified by {verifier.architecture} when the smoothed score reaches "
            f"{verifier.gate:g} (windows every {hop_ms:g} ms; the threshold applies to its mean)")  # fmt: skip


def open_source(settings: dict, bundle: StreamBundle, chunk_samples: int) -> AudioSource:
    rate = bundle.spec.sample_rate
    if settings["wav"]:
        return WavSource(settings["wav"], rate, chunk_samples)
    if settings["stdin"]:
        stdin_rate = settings["stdin_rate"] or rate
        return StdinSource(stdin_rate, settings["stdin_channels"], rate, chunk_samples)
    from .microphone import MicrophoneSource  # pyaudio only when the microphone is used

    return MicrophoneSource(
        settings["device"],
        rate,
        chunk_samples,
        log,
        forced_rate=settings["mic_rate"],
        retry_initial_s=settings["retry_initial_seconds"],
        retry_max_s=settings["retry_max_seconds"],
    )


class DetectionOutput:
    """Writes detections to stdout and the log file, and starts the on-detect command."""

    def __init__(self, keyword: str, log_file: str | None, command: list[str]) -> None:
        self.keyword, self.command = keyword, command
        self.count = 0
        self._children: list[subprocess.Popen] = []
        if command and shutil.which(command[0]) is None:
            raise KwsError(f"--on-detect command '{command[0]}' not found or not executable")
        try:
            self._log = AppendOnlyLog(log_file, "--log-file")
        except OSError as error:
            raise KwsError(f"cannot append to --log-file {log_file} ({error.strerror})") from None

    def emit(self, detection: StreamDetection, latency_ns: int) -> None:
        utc = utc_now()
        record = {
            "time_s": round(detection.time_s, TIME_DECIMALS),
            "keyword": self.keyword,
            "score": round(detection.score, SCORE_DECIMALS),
            "latency_ms": round(latency_ns / NS_PER_MS, LATENCY_DECIMALS),
            "utc": utc,
        }
        line = json.dumps(record)
        print(line, flush=True)
        self._log.write_line(line)
        self.count += 1
        if self.command:
            self._start(record)

    def _start(self, record: dict) -> None:
        self._children = [child for child in self._children if child.poll() is None]
        env = dict(
            os.environ,
            KWS_KEYWORD=self.keyword,
            KWS_SCORE=str(record["score"]),
            KWS_TIME_S=str(record["time_s"]),
            KWS_UTC=record["utc"],
        )
        try:
            self._children.append(subprocess.Popen(self.command, env=env, stdin=subprocess.DEVNULL))
        except OSError as error:
            log(f"warning: --on-detect command {self.command[0]} failed to start ({error.strerror})")

    def close(self) -> None:
        """Give running on-detect commands a moment to finish (they are left running after that)."""
        deadline = time.monotonic() + ON_DETECT_WAIT_S
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=max(0.0, deadline - time.monotonic()))
        self._log.close()


class LatencyReporter:
    """Rolling per-step times; a summary line on stderr (and JSON line in the latency log) per period and at exit."""

    def __init__(self, scorer: StreamingScorer, period_s: float, path: str | None, reference: dict | None) -> None:
        self.scorer, self.period_s, self.reference = scorer, period_s, reference
        self.times = StepTimes()
        self.cpu = CpuMeter()
        self._period_start_s = 0.0
        try:
            self._log = AppendOnlyLog(path, "--latency-log")
        except OSError as error:
            raise KwsError(f"cannot append to --latency-log {path} ({error.strerror})") from None

    def record(self, features_ns: int, model_ns: int, postprocess_ns: int, audio_s: float) -> bool:
        """Record one step; True when a periodic summary is due."""
        self.times.record(features_ns, model_ns, postprocess_ns)
        return self.period_s > 0 and audio_s - self._period_start_s >= self.period_s

    def summary(self, audio_s: float, source: AudioSource, detections: int, final: bool = False) -> dict:
        period_audio_s = audio_s - self._period_start_s
        times = self.times.take()
        stages = stage_summary(times, self.scorer.entry.frames_per_step)
        rtf = float(times["total"].sum()) / NS_PER_S / period_audio_s if period_audio_s > 0 else 0.0
        record = {
            "type": "final summary" if final else "summary",
            "utc": utc_now(),
            "audio_s": round(audio_s, TIME_DECIMALS),
            "period_audio_s": round(period_audio_s, TIME_DECIMALS),
            "steps": int(times["total"].size),
            "rtf": round(rtf, 6),
            **stages,
            "cpu_percent": self.cpu.percent(),
            "rss_mb": rss_mb(),
            "overflows": source.overflows,
            "dropped_samples": source.dropped_samples,
            "detections": detections,
            "reference": reference_ratio(rtf, stages["per_hop_us"]["total"]["p50"], self.reference, "rtf_steps_only"),
        }
        self._period_start_s = audio_s
        log(summary_line(record))
        self._log.write_line(json.dumps(record))
        return record

    def close(self) -> None:
        self._log.close()


def summary_line(record: dict) -> str:
    hop, rss = record["per_hop_us"], record["rss_mb"]
    total = hop["total"]
    line = (
        f"{record['type']}: {record['audio_s']:.1f} s audio, rtf {record['rtf']:.5f}, per 10 ms hop "
        f"p50/p95/p99 {total['p50']:.1f}/{total['p95']:.1f}/{total['p99']:.1f} us (features "
        f"{hop['features']['p50']:.1f}, model {hop['model']['p50']:.1f}), cpu {record['cpu_percent']:.1f}%, rss "
        f"{rss['current']:.0f} MB (peak {rss['peak']:.0f}), overflows {record['overflows']}, dropped "
        f"{record['dropped_samples']} samples, detections {record['detections']}"
    )
    for name, ratio in record["reference"].items():
        if ratio["rtf_ratio"] is not None:
            line += f"; {ratio['rtf_ratio']:g}x the rtf of the workstation {name} ({ratio['device']})"
    return line


def run(settings: dict) -> int:
    bundle = load_stream_bundle(settings["model"], with_verifier=not settings["no_verifier"])
    policy = detection_policy(settings, bundle)
    scorer = StreamingScorer(bundle.stream, bundle.keyword_index, settings["threads"])
    output = DetectionOutput(bundle.keyword, settings["log_file"], settings["on_detect"] or [])
    reporter = LatencyReporter(
        scorer, settings["summary_seconds"], settings["latency_log"], bundle.manifest.get("reference_latency")
    )
    source = None
    try:
        source = open_source(settings, bundle, scorer.front_end.new_samples_per_call)
        stop = threading.Event()
        with stop_on_signals(stop):
            log(
                f"listening: {source.description}; keyword '{bundle.keyword}', threshold {policy.threshold:g}, "
                f"refractory {policy.refractory_seconds:g} s, smoothing {policy.smoothing_seconds:g} s; "
                f"{bundle.stream.path.name} ({bundle.stream.precision}, {scorer.seconds_per_step * 1000:g} ms steps)"
                + verifier_note(bundle)
            )
            detect_loop(
                scorer,
                source,
                make_post_processor(policy, bundle.stream, bundle.verifier),
                output,
                reporter,
                stop,
                settings["duration_seconds"],
            )
    finally:
        audio_s = scorer.audio_seconds
        if source is not None:
            source.close()
            reporter.summary(audio_s, source, output.count, final=True)
        output.close()
        reporter.close()
    return 0


def detect_loop(
    scorer: StreamingScorer,
    source: AudioSource,
    post: PostProcessor,
    output: DetectionOutput,
    reporter: LatencyReporter,
    stop: threading.Event,
    duration_s: float | None,
) -> None:
    """Until the source ends, `stop` is set or `duration_s` of audio is done: score, detect, emit, record.

    When a finite source (file, standard input) ends, its last partial step is scored too, followed by silence for
    the smoothing span (`StreamingScorer.flush`), so a keyword at the very end of the input is not lost; a stop by
    signal or `duration_s` does not flush."""
    max_steps = None if duration_s is None else int(np.ceil(duration_s / scorer.seconds_per_step - 1e-9))

    def handle(steps: list, arrived: int) -> bool:
        """Post-process, emit and record `steps`; True when `duration_s` is reached."""
        for step in steps:
            started = time.perf_counter_ns()
            detections = post.update(step.times_s, step.scores, step.frames)
            for detection in detections:
                output.emit(detection, time.perf_counter_ns() - arrived)
            audio_s = scorer.audio_seconds
            if reporter.record(step.features_ns, step.model_ns, time.perf_counter_ns() - started, audio_s):
                reporter.summary(audio_s, source, output.count)
            if max_steps is not None and scorer.steps_done >= max_steps:
                return True
        return False

    for chunk in source.chunks(stop):
        arrived = time.perf_counter_ns()
        if handle(scorer.push(chunk), arrived) or stop.is_set():
            return
    if not stop.is_set():  # the input ended (a microphone never does)
        arrived = time.perf_counter_ns()
        handle(scorer.flush(tail_seconds=post.policy.smoothing_seconds), arrived)


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set `stop` instead of killing the process; the previous handlers come back afterwards."""
    previous = {sig: signal.signal(sig, lambda signum, frame: stop.set()) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
