"""The one place the evaluation meets the edge runtime: a detector that scores audio and makes detections.

An evaluation scores each stream once (`score`) and then asks for the detections at many thresholds (`detect`),
which is how the whole FRR / FA-per-hour curve comes from one pass. `WindowDetector` wraps the window scanner
(`edge_runtime.detector`, what `detect` uses); `StreamingDetector` wraps the streaming model and post-processing of
`python -m edge_runtime run` (the service) and is the default (`DEFAULT_DETECTOR`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_runtime.detector import KeywordScorer, WindowScores, find_detections
from edge_runtime.manifest import Bundle, load_bundle


@dataclass(frozen=True)
class ScoreTrack:
    """Keyword probability over time: `times_s` when each score is known (seconds from the stream start)."""

    times_s: np.ndarray
    scores: np.ndarray


class WindowDetector:
    """The deployed int8 window model, scanned with the bundle's hop and refractory period. Every detector has
    `spec` (FeatureSpec), `keyword`, `manifest` (dict), `score(audio)`, `decision_values(track)` and
    `detect(track, threshold)`."""

    name = "window"
    precision = "int8"  # the bundle's window model is always the full-int8 TFLite

    def __init__(self, bundle: str | Path | Bundle) -> None:
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
        self.spec, self.keyword, self.manifest = self.bundle.feature_spec, self.bundle.keyword, self.bundle.manifest
        self.scorer = KeywordScorer(self.bundle)
        self.refractory_seconds = self.bundle.detection.refractory_seconds
        self.sample_rate = self.bundle.feature_spec.sample_rate

    def score(self, audio: np.ndarray) -> ScoreTrack:
        windows = self.scorer.window_scores(audio)
        return ScoreTrack(windows.times_s, windows.scores)

    def decision_values(self, track: ScoreTrack) -> np.ndarray:
        """What the threshold is compared with: the window scores themselves."""
        return track.scores

    def detect(self, track: ScoreTrack, threshold: float) -> np.ndarray:
        """Detection times at `threshold`. Windows below the threshold can neither start a detection nor move a
        detection's peak (a peak is >= threshold), so dropping them first gives the same detections, faster."""
        keep = track.scores >= threshold
        windows = WindowScores(times_s=track.times_s[keep], scores=track.scores[keep])
        return np.array([d.time_s for d in find_detections(windows, threshold, self.refractory_seconds)])


class StreamingDetector:
    """The deployed int8 streaming model (`python -m edge_runtime run`): per-step keyword probabilities, smoothed,
    fired on a rise to the threshold, with the refractory period (`edge_runtime.postprocess`). Needs a bundle
    converted with its streaming model."""

    name = "streaming"

    def __init__(self, bundle: str | Path) -> None:
        from edge_runtime.runner import output_period
        from edge_runtime.stream_manifest import load_stream_bundle

        self.bundle = load_stream_bundle(bundle)
        self.spec, self.keyword, self.manifest = self.bundle.spec, self.bundle.keyword, self.bundle.manifest
        self.output_period = output_period(self.bundle)
        self.precision = self.bundle.stream.precision  # int8, or float32 where the int8 step failed its check
        self.refractory_seconds = self.bundle.detection.refractory_seconds
        self.smoothing_seconds = self.bundle.stream.smoothing_seconds

    def score(self, audio: np.ndarray) -> ScoreTrack:
        from edge_runtime.streaming import StreamingScorer

        scorer = StreamingScorer(self.bundle.stream, self.bundle.keyword_index)
        steps = scorer.push(audio) + scorer.flush()  # a stream's end is a file's end: score its last partial step
        if not steps:
            return ScoreTrack(np.zeros(0), np.zeros(0, np.float32))
        return ScoreTrack(np.concatenate([s.times_s for s in steps]), np.concatenate([s.scores for s in steps]))

    def decision_values(self, track: ScoreTrack) -> np.ndarray:
        """What the threshold is compared with: the smoothed probability."""
        from edge_runtime.postprocess import smoothed_track

        return smoothed_track(track.scores, self.smoothing_seconds, self.output_period)

    def detect(self, track: ScoreTrack, threshold: float) -> np.ndarray:
        from edge_runtime.postprocess import DetectionPolicy, PostProcessor

        policy = DetectionPolicy(threshold, self.refractory_seconds, self.smoothing_seconds)
        post = PostProcessor(policy, self.output_period)
        return np.array([d.time_s for d in post.update(track.times_s, track.scores)])


DETECTORS = {"window": WindowDetector, "streaming": StreamingDetector}
# The deployed path: `python -m edge_runtime run` and the service stream; every bundle carries the streaming model.
DEFAULT_DETECTOR = "streaming"


def make_detector(bundle: str | Path, kind: str = DEFAULT_DETECTOR):
    if kind not in DETECTORS:
        raise ValueError(f"detector must be one of {sorted(DETECTORS)}, got {kind!r}")
    return DETECTORS[kind](bundle)
