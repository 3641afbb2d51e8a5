"""Scoring for the server: whole clips through the bundle's ONNX model (the student alone, against its own
`detection.threshold`), live audio through the edge runtime's own streaming detector (`StreamingScorer` and the
post-processor `python -m edge_runtime run` builds: with the bundle's verifier when it has one)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from edge_runtime.detector import window_starts
from edge_runtime.errors import KwsError
from edge_runtime.features import FeatureSpec, MelFrontEnd
from edge_runtime.interpreter import OUTPUT_LOGITS, softmax
from edge_runtime.manifest import output_meaning, read_manifest
from edge_runtime.postprocess import StreamDetection
from edge_runtime.runner import detection_policy
from edge_runtime.stream_manifest import StreamBundle, load_stream_bundle
from edge_runtime.streaming import StreamingScorer
from edge_runtime.verifier import make_post_processor

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


@dataclass(frozen=True)
class StreamUpdate:
    """What one push of audio produced: the highest detector value and keyword probability of the steps it
    completed (None if none), the stream time reached, and the detections."""

    value: float | None  # what the threshold is compared with: smoothed probability, or the verifier's mean
    probability: float | None  # the streaming student's own keyword probability
    time_s: float
    detections: list[StreamDetection]


class StreamSession:
    """One WebSocket's detector: the edge runtime's streaming scorer and post-processor with the manifest's
    policy, exactly as `run` builds them (two stages when the bundle has a verifier)."""

    def __init__(self, bundle: StreamBundle) -> None:
        self.bundle = bundle
        self.policy = detection_policy(MANIFEST_POLICY, bundle)
        self.scorer = StreamingScorer(bundle.stream, bundle.keyword_index)
        self.post = make_post_processor(self.policy, bundle.stream, bundle.verifier)

    @property
    def sample_rate(self) -> int:
        return self.bundle.spec.sample_rate

    @property
    def stream_time_s(self) -> float:
        return self.scorer.steps_done * self.scorer.seconds_per_step

    @property
    def verified_by(self) -> str | None:
        verifier = self.bundle.verifier
        return None if verifier is None else verifier.architecture

    def push(self, audio: np.ndarray) -> StreamUpdate:
        value = probability = None
        detections: list[StreamDetection] = []
        for step in self.scorer.push(audio):
            values, found = self.post.step(step.times_s, step.scores, step.frames)
            detections.extend(found)
            value = _highest(value, values)
            probability = _highest(probability, step.scores)
        return StreamUpdate(value, probability, self.stream_time_s, detections)


def _highest(current: float | None, new: np.ndarray) -> float | None:
    if new.size == 0:
        return current
    peak = float(new.max())
    return peak if current is None else max(current, peak)


def open_stream_bundle(entry: ZooEntry) -> StreamBundle:
    if not entry.streaming:
        raise KwsError(f"model '{entry.name}' has no streaming model; only a converted dscnn streams")
    return load_stream_bundle(entry.folder)
