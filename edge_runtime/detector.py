"""Keyword probabilities over a whole recording, and the detections they make.

Scoring: the log-mel front-end runs once over the file; a window of `frames_per_clip` frames slides over it by
`window_hop_seconds`, and the model gives the keyword probability of each window. A window's time is the time of
its last sample (when the model has heard it). A file shorter than one clip is zero-padded at the end to one
clip, and when the hop does not land on the end of the file a last window is added there, so no audio at the end
goes unscored.

Detection, kept simple: scanning windows in time order, a window with probability >= threshold starts a
detection unless it lies within `refractory_seconds` after the current detection's peak window. A later window
inside that span that scores higher becomes the new peak (and the span then runs from it), so each detection
reports the highest probability of its utterance and the time of that window, and one spoken keyword, which stays
in view for about a window length, gives one detection.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import LogMelFrontEnd
from .manifest import Bundle

# Window times come from float division; a window exactly `refractory_seconds` after a peak counts as outside.
TIME_TOLERANCE_S = 1e-9


@dataclass(frozen=True)
class WindowScores:
    """Keyword probability per window; `times_s` are window ends in seconds from the start of the file."""

    times_s: np.ndarray
    scores: np.ndarray

    @property
    def peak(self) -> float:
        return float(self.scores.max())


@dataclass
class Detection:
    """One detection: its peak window's end time and keyword probability."""

    time_s: float
    score: float


class KeywordScorer:
    """Scores recordings (mono float32 at the bundle's sample rate) with a loaded bundle."""

    def __init__(self, bundle: Bundle) -> None:
        self.bundle = bundle
        self.spec = bundle.feature_spec
        self.front_end = LogMelFrontEnd(self.spec)
        self.hop_frames = round(bundle.detection.window_hop_seconds * 1000.0 / self.spec.hop_ms)

    def window_scores(self, audio: np.ndarray) -> WindowScores:
        spec = self.spec
        audio = np.asarray(audio, dtype=np.float32)
        if audio.shape[0] < spec.clip_samples:
            audio = np.pad(audio, (0, spec.clip_samples - audio.shape[0]))
        frames = self.front_end.frames(audio)
        starts = window_starts(frames.shape[0], spec.frames_per_clip, self.hop_frames)
        model, keyword = self.bundle.model, self.bundle.keyword_index
        scores = np.array(
            [model.probabilities(frames[start : start + spec.frames_per_clip])[keyword] for start in starts],
            dtype=np.float32,
        )
        last_sample = (starts + spec.frames_per_clip - 1) * spec.hop_samples + spec.window_samples
        return WindowScores(times_s=last_sample / spec.sample_rate, scores=scores)


def window_starts(num_frames: int, window_frames: int, hop_frames: int) -> np.ndarray:
    """First frame of each window: every `hop_frames`, plus one flush with the end if the hop does not reach it."""
    last = num_frames - window_frames
    if last < 0:
        raise ValueError(f"{num_frames} frames are fewer than one window of {window_frames}")
    starts = np.arange(0, last + 1, hop_frames)
    return starts if starts[-1] == last else np.append(starts, last)


def find_detections(windows: WindowScores, threshold: float, refractory_seconds: float) -> list[Detection]:
    """Detections in time order (see the module docstring for the rule)."""
    detections: list[Detection] = []
    for time_s, score in zip(windows.times_s.tolist(), windows.scores.tolist(), strict=True):
        current = detections[-1] if detections else None
        if current is not None and time_s - current.time_s < refractory_seconds - TIME_TOLERANCE_S:
            if score > current.score:
                current.time_s, current.score = time_s, score
        elif score >= threshold:
            detections.append(Detection(time_s=time_s, score=score))
    return detections
