"""From a stream of keyword probabilities to detections: smoothing, threshold, refractory period.

The probability is averaged over the last `smoothing_seconds` of outputs (a moving average, so one noisy output
does not fire). A detection fires when the smoothed probability rises to the threshold: at the first output at or
above it after an output below it, and at least `refractory_seconds` after the previous detection. A spoken
keyword stays in view for up to a window plus its own length (about 1.5 s), so the score can stay high longer
than the refractory period: needing it to fall below the threshold first is what makes one utterance one
detection. Firing at the crossing (not at the peak) keeps the latency down: the detection is reported as soon as
it is known.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .detector import TIME_TOLERANCE_S


@dataclass(frozen=True)
class DetectionPolicy:
    threshold: float
    refractory_seconds: float
    smoothing_seconds: float

    def problems(self) -> list[str]:
        found = []
        if not 0.0 <= self.threshold <= 1.0:
            found.append(f"threshold {self.threshold} must be in 0..1")
        if not self.refractory_seconds >= 0.0:
            found.append(f"refractory {self.refractory_seconds} s must be >= 0")
        if not self.smoothing_seconds >= 0.0:
            found.append(f"smoothing {self.smoothing_seconds} s must be >= 0")
        return found


@dataclass(frozen=True)
class StreamDetection:
    """A detection: stream time of the output that fired (seconds since the stream started), smoothed score."""

    time_s: float
    score: float


def smoothing_outputs(smoothing_seconds: float, output_period_s: float) -> int:
    """How many outputs the moving average spans."""
    return max(1, round(smoothing_seconds / output_period_s))


def smoothed_track(scores: np.ndarray, smoothing_seconds: float, output_period_s: float) -> np.ndarray:
    """What a fresh PostProcessor compares with the threshold, for a whole track at once (offline scoring)."""
    window = smoothing_outputs(smoothing_seconds, output_period_s)
    joined = np.concatenate([np.zeros(window - 1, np.float32), np.asarray(scores, np.float32)])
    return np.convolve(joined, np.full(window, 1.0 / window, np.float32), mode="valid") if window > 1 else joined


class MovingAverage:
    """The streaming form of `smoothed_track`: feed outputs in any pieces, get the same averages."""

    def __init__(self, smoothing_seconds: float, output_period_s: float) -> None:
        self.window = smoothing_outputs(smoothing_seconds, output_period_s)
        self._kernel = np.full(self.window, 1.0 / self.window, np.float32)
        self._recent = np.zeros(self.window - 1, np.float32)  # the silence the stream is primed with scores ~0

    def update(self, scores: np.ndarray) -> np.ndarray:
        joined = np.concatenate([self._recent, scores.astype(np.float32, copy=False)])
        if self.window == 1:
            return joined
        self._recent = joined[-(self.window - 1) :]
        return np.convolve(joined, self._kernel, mode="valid")

    def reset(self) -> None:
        self._recent[:] = 0.0


class RiseTrigger:
    """Fires when a value rises to the threshold, at least `refractory_seconds` after the last detection."""

    def __init__(self, threshold: float, refractory_seconds: float) -> None:
        self.threshold, self.refractory_seconds = threshold, refractory_seconds
        self._next_allowed_s = -math.inf
        self._armed = True  # the value was below the threshold since the last rise

    def update(self, times_s: np.ndarray, values: np.ndarray) -> list[StreamDetection]:
        above = values >= self.threshold
        if self._armed and not above.any():
            return []  # the common case, without a Python loop
        detections = []
        for index, is_above in enumerate(above.tolist()):
            if not is_above:
                self._armed = True
            elif self._armed:
                self._armed = False  # a rise: fires unless it is within the refractory period
                time_s = float(times_s[index])
                if time_s >= self._next_allowed_s - TIME_TOLERANCE_S:
                    detections.append(StreamDetection(time_s, float(values[index])))
                    self._next_allowed_s = time_s + self.refractory_seconds
        return detections

    def reset(self) -> None:
        self._next_allowed_s = -math.inf
        self._armed = True


class PostProcessor:
    """Feed it each step's output times and keyword probabilities; it returns the detections they make. `frames`
    (the step's new feature frames) is for a post-processor that reads them (`verifier.VerifiedPostProcessor`)."""

    def __init__(self, policy: DetectionPolicy, output_period_s: float) -> None:
        self.policy = policy
        self.average = MovingAverage(policy.smoothing_seconds, output_period_s)
        self.trigger = RiseTrigger(policy.threshold, policy.refractory_seconds)

    def values(self, times_s: np.ndarray, scores: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
        """What the threshold is compared with: the smoothed probability."""
        return self.average.update(scores)

    def step(self, times_s: np.ndarray, scores: np.ndarray, frames: np.ndarray | None = None):
        """(what the threshold is compared with, the detections it makes) for one step's outputs."""
        values = self.values(times_s, scores, frames)
        return values, self.trigger.update(times_s, values)

    def update(self, times_s: np.ndarray, scores: np.ndarray, frames: np.ndarray | None = None) -> list:
        return self.step(times_s, scores, frames)[1]

    def reset(self) -> None:
        self.average.reset()
        self.trigger.reset()
