"""Scoring for the server: whole clips through the bundle's ONNX model, live audio through the edge runtime's own
streaming detector (`StreamingScorer` + `PostProcessor`, as `python -m edge_runtime run` uses them)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from edge_runtime.detector import window_starts
from edge_runtime.errors import KwsError
from edge_runtime.features import FeatureSpec, MelFrontEnd
from edge_runtime.interpreter import OUTPUT_LOGITS, softmax
from edge_runtime.manifest import output_meaning, read_manifest
from edge_runtime.postprocess import PostProcessor, StreamDetection
from edge_runtime.runner import detection_policy
from edge_runtime.stream_manifest import StreamBundle, load_stream_bundle
from edge_runtime.streaming import StreamingScorer

from .providers import open_session
from .zoo import ZooEntry

# The manifest's detection overrides `run` takes; None keeps the manifest's values.
MANIFEST_POLICY = {"threshold": None, "refractory_seconds": None, "smoothing_seconds": None}


@dataclass(frozen=True)
class ClipScore:
    probability: float
    times_s: list[float]
    scores: list[float]


class OnnxScorer:
    """The bundle's ONNX model over sliding windows of the numpy mel front-end (the manifest's spec)."""

    def __init__(self, entry: ZooEntry) -> None:
        manifest = read_manifest(entry.folder / "manifest.json")
        self.entry = entry
        self.spec = FeatureSpec.from_dict(manifest["feature_spec"])
        self.keyword_index = int(manifest["keyword_index"])
        self.logits = output_meaning(manifest.get("model", {}), entry.folder / "manifest.json") == OUTPUT_LOGITS
        self.hop_frames = max(1, round(float(manifest["detection"]["window_hop_seconds"]) * 1000.0 / self.spec.hop_ms))
        self.front_end = MelFrontEnd(self.spec)
        self.session, self.provider = open_session(entry.folder / entry.onnx_file)
        self.input_name = self.session.get_inputs()[0].name
        self._lock = threading.Lock()

    def score(self, audio: np.ndarray) -> ClipScore:
        """Keyword probability of every window of mono float32 audio at the spec's rate; the clip's is the peak."""
        spec = self.spec
        if audio.shape[0] < spec.clip_samples:
            audio = np.pad(audio, (0, spec.clip_samples - audio.shape[0]))
        frames = self.front_end.frames(audio)
        starts = window_starts(frames.shape[0], spec.frames_per_clip, self.hop_frames)
        scores = []
        with self._lock:
            for start in starts:
                window = frames[None, start : start + spec.frames_per_clip].astype(np.float32)
                output = self.session.run(None, {self.input_name: window})[0][0]
                scores.append(float((softmax(output) if self.logits else output)[self.keyword_index]))
        ends = spec.frame_end_sample(starts + spec.frames_per_clip - 1) / spec.sample_rate
        return ClipScore(max(scores), [round(float(t), 3) for t in ends], [round(s, 4) for s in scores])


class StreamSession:
    """One WebSocket's detector: the edge runtime's streaming scorer and post-processor, with the manifest's policy."""

    def __init__(self, bundle: StreamBundle) -> None:
        self.bundle = bundle
        self.policy = detection_policy(MANIFEST_POLICY, bundle)
        self.scorer = StreamingScorer(bundle.stream, bundle.keyword_index)
        self.post = PostProcessor(self.policy, bundle.stream.output_period_s)

    @property
    def sample_rate(self) -> int:
        return self.bundle.spec.sample_rate

    @property
    def stream_time_s(self) -> float:
        return self.scorer.steps_done * self.scorer.seconds_per_step

    def push(self, audio: np.ndarray) -> tuple[float | None, float, list[StreamDetection]]:
        """Feed audio; returns the highest keyword probability of the steps it completed (None if none), the
        stream time reached, and the detections."""
        peak, detections = None, []
        for step in self.scorer.push(audio):
            step_peak = float(step.scores.max())
            peak = step_peak if peak is None else max(peak, step_peak)
            detections.extend(self.post.update(step.times_s, step.scores))
        return peak, self.stream_time_s, detections


def open_stream_bundle(entry: ZooEntry) -> StreamBundle:
    if not entry.streaming:
        raise KwsError(f"model '{entry.name}' has no streaming model; only a converted dscnn streams")
    return load_stream_bundle(entry.folder)
