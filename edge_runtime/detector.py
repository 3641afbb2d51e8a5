"""Keyword probabilities over a whole recording, and the detections they make.

Scoring: the mel front-end runs once over the file; a window of `frames_per_clip` frames slides over it by
`window_hop_seconds`, and the model gives the keyword probability of each window. A window's time is the time of
its last sample (when the model has heard it). A file shorter than one clip is zero-padded at the end to one
clip, and when the hop does not land on the end of the file a last window is added there, so no audio at the end
goes unscored. `stream_windows` does this on a signal arriving in blocks (`score`/`detect` read files that way),
keeping only the samples and frames the next windows need; the windows, times and probabilities do not depend on
how the signal is cut (the front-end's frames do not). `window_scores` is the same on a signal held whole.

Detection, kept simple: scanning windows in time order, a window with probability >= threshold starts a
detection unless it lies within `refractory_seconds` after the current detection's peak window. A later window
inside that span that scores higher becomes the new peak (and the span then runs from it), so each detection
reports the highest probability of its utterance and the time of that window, and one spoken keyword, which stays
in view for about a window length, gives one detection.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .features import MelFrontEnd, SmootherState
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
        self.front_end = MelFrontEnd(self.spec)
        self.hop_frames = self.spec.whole_hops(bundle.detection.window_hop_seconds)  # checked on load

    def window_scores(self, audio: np.ndarray) -> WindowScores:
        """Every window of a signal held whole (`stream_windows` with one block)."""
        pairs = list(self.stream_windows([audio]))
        return WindowScores(
            times_s=np.array([time_s for time_s, _ in pairs]), scores=np.array([p for _, p in pairs], np.float32)
        )

    def stream_windows(self, blocks: Iterable[np.ndarray]) -> Iterator[tuple[float, float]]:
        """(time_s, keyword probability) of each window, in time order, for a signal given as consecutive blocks:
        the same windows and values as `window_scores` on the blocks joined, in memory bounded by a block plus a
        window."""
        spec, window, hop = self.spec, self.spec.frames_per_clip, self.hop_frames
        pending = np.zeros(0, np.float32)  # samples no frame has started at yet
        frames = np.zeros((0, spec.n_mels), np.float32)  # frames from index `first` on
        first = next_start = total_samples = 0
        smoother = SmootherState()  # PCEN's running average across blocks (each frame is computed once, in order)

        def add_frames(audio: np.ndarray) -> np.ndarray:
            nonlocal frames
            if first + frames.shape[0] == 0 and audio.shape[0] < spec.clip_samples:
                return audio  # the first frames wait for the first clip: PCEN's smoother starts from all of it
            count = spec.num_frames(audio.shape[0])
            if count:
                used = spec.frame_end_sample(count - 1)
                frames = np.concatenate([frames, self.front_end.frames(audio[:used], smoother)])
            return audio[count * spec.hop_samples :]

        def score(start: int) -> tuple[float, float]:
            chunk = frames[start - first : start - first + window]
            probability = self.bundle.model.probabilities(chunk)[self.bundle.keyword_index]
            end_sample = spec.frame_end_sample(start + window - 1)
            return end_sample / spec.sample_rate, float(np.float32(probability))

        def due() -> Iterator[tuple[float, float]]:
            nonlocal next_start, frames, first
            while next_start + window <= first + frames.shape[0]:
                yield score(next_start)
                next_start += hop
            keep_from = min(next_start, first + frames.shape[0] - window)  # the last window may end the file
            if keep_from > first:
                frames, first = frames[keep_from - first :], keep_from

        for block in blocks:
            block = np.asarray(block, dtype=np.float32)
            total_samples += block.shape[0]
            pending = add_frames(np.concatenate([pending, block]))
            yield from due()
        if total_samples < spec.clip_samples:  # shorter than one clip: zero-padded to one, as `window_scores` does
            pending = add_frames(np.concatenate([pending, np.zeros(spec.clip_samples - total_samples, np.float32)]))
            yield from due()
        last = first + frames.shape[0] - window
        if next_start - hop != last:  # the hop did not land on the end of the signal: one window flush with it
            yield score(last)


def window_starts(num_frames: int, window_frames: int, hop_frames: int) -> np.ndarray:
    """First frame of each window: every `hop_frames`, plus one flush with the end if the hop does not reach it."""
    last = num_frames - window_frames
    if last < 0:
        raise ValueError(f"{num_frames} frames are fewer than one window of {window_frames}")
    starts = np.arange(0, last + 1, hop_frames)
    return starts if starts[-1] == last else np.append(starts, last)


def find_detections(windows: WindowScores, threshold: float, refractory_seconds: float) -> list[Detection]:
    """Detections in time order (see the module docstring for the rule)."""
    pairs = zip(windows.times_s.tolist(), windows.scores.tolist(), strict=True)
    return list(iter_detections(pairs, threshold, refractory_seconds))


def iter_detections(
    windows: Iterable[tuple[float, float]], threshold: float, refractory_seconds: float
) -> Iterator[Detection]:
    """`find_detections` over (time_s, probability) pairs in time order; each detection is yielded once no later
    window can change it (a window outside its refractory span, or the end)."""
    current: Detection | None = None
    for time_s, score in windows:
        if current is not None and time_s - current.time_s < refractory_seconds - TIME_TOLERANCE_S:
            if score > current.score:
                current.time_s, current.score = time_s, score
        elif score >= threshold:
            if current is not None:
                yield current
            current = Detection(time_s=time_s, score=score)
    if current is not None:
        yield current
