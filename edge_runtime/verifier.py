"""A second stage: a larger window model confirms what the streaming student proposes.

The streaming student (stage 1) scores every 10 ms for a few hundred thousand MACs a second; a larger model would
miss fewer keywords at the same false-accept rate but costs far more per second of audio. A cascade gets most of
the larger model's accuracy for the student's cost: the student's smoothed probability opens a *gate* at
`gate`, a low level it reaches on nearly every keyword and, on audio without one, a fraction of a percent of the
time (about 20 openings an hour on the val streams). Only while the gate is open does the verifier (the CRNN
teacher, converted into its own int8 window bundle, `verifier/` beside the manifest) score 1 s windows, those
ending on a grid every `hop_frames` feature frames; the detector's value is then the verifier's mean keyword
probability over the windows that end within the smoothing span, and the threshold and refractory period apply
to that value. With the gate shut the value is 0.

Chosen on the val streams (2 h without the keyword, 200 keywords) and measured once on the test streams
(docs/quality.md, "Two stages"): the mean FRR at 0.5-5 FA/h on val went from 15.7% (the student alone) to 8.5%
(the teacher alone: 8.6%); on the test streams FRR at 0.5 / 0.1 FA/h from 25.2% / 30.5% to 17.5% / 20.0%, with
the gate open 0.4% of the time on speech without the keyword.

The verifier reads the frames the stream already computed (its feature contract must equal the bundle's, checked
on load), silence before the stream's start, and scores each grid window once (`Verifier` keeps its scores while
they can still be needed). The manifest section names the folder, the gate, the grid hop in seconds and the
threshold for the verifier's mean: `"verifier": {"folder": "verifier", "gate": 0.15, "hop_seconds": 0.1,
"threshold": 0.63}`. `detection.threshold` stays the student's own, for what scores the student alone (the window
scan of `detect`, the server).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import KwsError
from .features import FeatureSpec, silence_frames
from .interpreter import DEFAULT_THREADS
from .manifest import Bundle, _Fields, load_bundle
from .postprocess import DetectionPolicy, PostProcessor

SECTION = "verifier"


@dataclass(frozen=True)
class VerifierEntry:
    """The manifest's `verifier` section, checked, with the verifier's window bundle loaded."""

    bundle: Bundle
    gate: float
    hop_frames: int
    threshold: float  # what the verifier's mean must reach; `detection.threshold` is the student's own

    @property
    def architecture(self) -> str:
        """"crnn", or for an ensemble (train.ensemble) what it joins: "2 crnn (mean logit)"."""
        model = self.bundle.manifest["model"]
        members = model.get("members")
        if members:
            kinds = sorted(set(members))
            return f"{len(members)} {' + '.join(kinds)} (mean logit)"
        return str(model["architecture"])


def verifier_entry(
    manifest: dict, manifest_path: Path, spec: FeatureSpec, keyword: str, num_threads: int = DEFAULT_THREADS
) -> VerifierEntry | None:
    """The bundle's verifier, or None when its manifest has no `verifier` section."""
    if SECTION not in manifest:
        return None
    fields = _Fields(manifest_path)
    section = fields.get(manifest, SECTION, dict)
    folder = manifest_path.parent / fields.get(section, "folder", str, SECTION)
    gate = float(fields.get(section, "gate", (int, float), SECTION))
    hop_seconds = float(fields.get(section, "hop_seconds", (int, float), SECTION))
    threshold = float(fields.get(section, "threshold", (int, float), SECTION))
    problems = [f"{SECTION}.{name} must be in 0..1, found {value}"
                for name, value in (("gate", gate), ("threshold", threshold)) if not 0.0 <= value <= 1.0]  # fmt: skip
    hop_frames = spec.whole_hops(hop_seconds)
    if hop_frames is None:
        problems.append(f"{SECTION}.hop_seconds must be a positive multiple of the feature hop "
                        f"({spec.hop_ms / 1000.0} s), found {hop_seconds}")  # fmt: skip
    if problems:
        raise KwsError(f"manifest {manifest_path}: " + "; ".join(problems))
    try:
        bundle = load_bundle(folder, num_threads)
    except KwsError as error:
        raise KwsError(f"manifest {manifest_path}: its verifier does not load: {error}") from None
    if bundle.feature_spec != spec:
        raise KwsError(
            f"manifest {manifest_path}: the verifier in {folder} reads other features than the stream "
            f"({bundle.feature_spec.to_dict()} vs {spec.to_dict()})"
        )
    if bundle.keyword != keyword:
        raise KwsError(f"manifest {manifest_path}: the verifier spots '{bundle.keyword}', the bundle '{keyword}'")
    return VerifierEntry(bundle, gate, hop_frames, threshold)


class Verifier:
    """The verifier's mean keyword probability over grid windows, on the frames of one stream.

    Frames arrive with `add_frames` (the stream's frames in order, the first being frame 0); `mean_at(last)` is
    the mean over the windows whose last frame lies on the grid (a multiple of `hop_frames`) within the
    `span_frames` frames ending at frame `last`. Frames before the stream's start are silence. Only the newest
    `keep_frames` frames are kept; a window older than that cannot be asked for.
    """

    def __init__(self, entry: VerifierEntry, span_frames: int, keep_frames: int) -> None:
        spec = entry.bundle.feature_spec
        self.model, self.keyword_index = entry.bundle.model, entry.bundle.keyword_index
        self.hop_frames, self.span_frames = entry.hop_frames, max(1, span_frames)
        self.window = spec.frames_per_clip
        self.keep_frames = keep_frames
        self._silence = silence_frames(self.window, spec)
        self._frames = np.zeros((0, spec.n_mels), np.float32)
        self._first = 0  # stream index of self._frames[0]
        self._scores: dict[int, float] = {}  # grid frame -> probability of the window ending there
        self.windows_scored = 0

    def add_frames(self, frames: np.ndarray) -> None:
        self._frames = np.concatenate([self._frames, np.asarray(frames, np.float32)])
        if self._frames.shape[0] > self.keep_frames:
            drop = self._frames.shape[0] - self.keep_frames
            self._frames, self._first = self._frames[drop:], self._first + drop
            self._scores = {g: p for g, p in self._scores.items() if g - self.window + 1 >= self._first}

    def window_score(self, last: int) -> float:
        """Keyword probability of the window whose last frame is stream frame `last`."""
        if last not in self._scores:
            start = last - self.window + 1
            if (last >= 0 and max(start, 0) < self._first) or last >= self._first + self._frames.shape[0]:
                raise ValueError(f"verifier: the window ending at frame {last} is not among the frames kept "
                                 f"({self._first}..{self._first + self._frames.shape[0] - 1})")  # fmt: skip
            before = min(self.window, max(0, -start))  # silence before the stream's start
            kept = self._frames[max(start, 0) - self._first : max(last + 1, 0) - self._first]
            chunk = np.concatenate([self._silence[:before], kept])
            probabilities = self.model.probabilities(chunk)
            self._scores[last] = float(probabilities[self.keyword_index])
            self.windows_scored += 1
        return self._scores[last]

    def mean_at(self, last: int) -> float:
        """Mean keyword probability of the grid windows ending within the span that ends at frame `last`."""
        grid = grid_window_ends(last, self.span_frames, self.hop_frames)
        return float(np.mean([self.window_score(g) for g in grid])) if len(grid) else 0.0


def smoothing_span_frames(smoothing_seconds: float, spec: FeatureSpec) -> int:
    """Feature frames in the smoothing span: the verified value of an output is the mean over the grid windows
    ending within this many frames of it."""
    return round(smoothing_seconds * 1000.0 / spec.hop_ms)


def grid_window_ends(last: int, span_frames: int, hop_frames: int) -> range:
    """The last frames of the verifier's grid windows (multiples of `hop_frames`) within the `span_frames` frames
    ending at frame `last`: the windows whose mean is the verified value of an output ending there."""
    first = -(-(last - max(1, span_frames) + 1) // hop_frames) * hop_frames
    return range(first, last + 1, hop_frames)


class VerifiedPostProcessor(PostProcessor):
    """`postprocess.PostProcessor` with the verifier between the smoothing and the threshold: feed it each step's
    output times, keyword probabilities and new feature frames; it returns the detections they make."""

    def __init__(
        self,
        policy: DetectionPolicy,
        output_period_s: float,
        entry: VerifierEntry,
        frames_per_step: int,
    ) -> None:
        super().__init__(policy, output_period_s)
        self.entry, self.gate, self.spec = entry, entry.gate, entry.bundle.feature_spec
        self.span_frames = smoothing_span_frames(policy.smoothing_seconds, self.spec)
        # Enough for the oldest output of a step (up to a step and a stride older than its newest frame).
        self.keep_frames = self.spec.frames_per_clip + self.span_frames + 2 * frames_per_step
        self.verifier = Verifier(entry, self.span_frames, self.keep_frames)
        self.gate_outputs = 0  # outputs the gate was open for

    def values(self, times_s: np.ndarray, scores: np.ndarray, frames: np.ndarray | None = None) -> np.ndarray:
        """What the threshold is compared with: the verifier's mean where the gate is open, else 0."""
        return self.values_and_gate(times_s, scores, frames)[0]

    def values_and_gate(
        self, times_s: np.ndarray, scores: np.ndarray, frames: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """`values`, and beside them the smoothed probability the gate compares with (an evaluation sweeping the
        gate keeps it: the verifier's mean at an output does not depend on the gate, only whether it is asked)."""
        if frames is None:
            raise ValueError("a verified post-processor needs each step's feature frames")
        self.verifier.add_frames(frames)
        smoothed = self.average.update(scores)
        values = np.zeros(smoothed.shape, np.float32)
        open_outputs = np.flatnonzero(smoothed >= self.gate)
        if open_outputs.size:
            last_frames = self.spec.frame_ending_at(times_s[open_outputs])
            for index, last in zip(open_outputs.tolist(), last_frames.tolist(), strict=True):
                values[index] = self.verifier.mean_at(last)
            self.gate_outputs += open_outputs.size
        return values, smoothed

    def reset(self) -> None:
        super().reset()
        self.verifier = Verifier(self.entry, self.span_frames, self.keep_frames)
        self.gate_outputs = 0


def deployed_threshold(bundle) -> float:
    """The manifest's threshold for what `bundle` (a `StreamBundle`) deploys: the verifier's when it has one."""
    return bundle.detection.threshold if bundle.verifier is None else bundle.verifier.threshold


def make_post_processor(policy: DetectionPolicy, stream, verifier: VerifierEntry | None):
    """The post-processing of a streaming model (`StreamingEntry`): with the bundle's verifier when it has one."""
    if verifier is None:
        return PostProcessor(policy, stream.output_period_s)
    return VerifiedPostProcessor(policy, stream.output_period_s, verifier, stream.frames_per_step)
