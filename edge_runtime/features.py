"""The feature contract: one mel front-end, named once, shared by training, conversion and the device.

Every model carries a `FeatureSpec` in its manifest. Training computes the same features with the torch mirror
in `train/features_torch.py` (checked against this module by `tests/test_features.py`); the edge runtime builds
`MelFrontEnd` from the manifest it loads, so a model and its front-end can never silently disagree.

Framing is "valid" (no centre padding): frame i covers samples [i*hop, i*hop + window). That makes the front-end
streamable sample by sample and makes a 1 s clip exactly `frames_per_clip` frames.

The front-ends, named by `FeatureSpec.front_end`:
- "log-mel-v1": the log of the mel power, floored at `log_floor` (what a spec that names no front-end means);
- "pcen-v2", what new models are trained on (`MODEL_FRONT_END`): per-channel energy normalization (Wang et al.,
  "Trainable frontend for robust and far-field keyword spotting", ICASSP 2017) of the same floored mel power: each
  bin divided by a slow average of itself (an automatic gain control per bin), then root-compressed. It cancels a
  fixed channel gain and flattens stationary noise, which the log only shifts. The average is a one-pole smoother
  with state, so a stream carries it from call to call (`SmootherState`). It starts at the mean energy of the
  signal's first clip (all of it, if shorter), as if that level had lasted forever: a 1 s training window is then
  normalized by its own level from its first frame on, which is what a stream's long-running average gives. A
  stream's first call must therefore hold its first clip; `StreamingFrontEnd` and the window detector make it so.
- "pcen-v1": the same, started at the first frame alone. Superseded by pcen-v2 (its students missed a quarter more
  keywords on long audio; docs/quality.md) and kept so models trained on it still run.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import cached_property

import numpy as np

LOG_MEL = "log-mel-v1"
PCEN = "pcen-v2"
PCEN_V1 = "pcen-v1"  # superseded: the smoother starts at the first frame
FRONT_ENDS = (LOG_MEL, PCEN, PCEN_V1)
PCEN_FRONT_ENDS = (PCEN, PCEN_V1)
# What `train.fit` gives a new model unless told otherwise (measured through the deployed int8 streaming detector,
# three seeds, five stem phases pooled: 35.1% FRR at 0.5 FA/h against log-mel's 40.6%; docs/quality.md). A spec's
# own field default stays log-mel-v1: it is what a manifest, checkpoint or clip set written before PCEN means.
MODEL_FRONT_END = PCEN

# PCEN, fixed by its name (a model trained on it is only valid with these): the constants of Wang et al. 2017
# and librosa's `pcen`, with the mel power scaled as if the audio were 16-bit integers, so the `PCEN_EPS` floor of
# the denominator sits far below any real signal.
PCEN_TIME_CONSTANT_S = 0.4  # the smoother's time constant
PCEN_GAIN = 0.98  # alpha: how much of the smoothed energy is divided out
PCEN_BIAS = 2.0  # delta
PCEN_POWER = 0.5  # r: root compression
PCEN_EPS = 1e-6
PCEN_INPUT_SCALE = 2.0**30  # (2**15)**2: mel power of audio in -1..1 on the scale of int16 audio
PCEN_BLOCK_FRAMES = 128  # the smoother runs as one matrix product per block of frames


@dataclass(frozen=True)
class FeatureSpec:
    """Base quantities of the front-end; everything else is derived from these."""

    sample_rate: int = 16000
    window_ms: float = 25.0
    hop_ms: float = 10.0
    n_fft: int = 512
    n_mels: int = 40
    f_min_hz: float = 20.0
    f_max_hz: float = 7600.0
    log_floor: float = 1e-6
    clip_seconds: float = 1.0
    front_end: str = LOG_MEL

    def __post_init__(self) -> None:
        problems = []
        if self.front_end not in FRONT_ENDS:
            problems.append(f"front_end '{self.front_end}' is unknown (allowed: {', '.join(FRONT_ENDS)})")
        if not 8000 <= self.sample_rate <= 48000:
            problems.append(f"sample_rate {self.sample_rate} is outside 8000..48000 Hz")
        if self.window_samples > self.n_fft:
            problems.append(f"window of {self.window_samples} samples is longer than n_fft {self.n_fft}")
        if self.hop_samples < 1 or self.hop_samples > self.window_samples:
            problems.append(f"hop of {self.hop_samples} samples must be in 1..window ({self.window_samples})")
        if not 0 <= self.f_min_hz < self.f_max_hz <= self.sample_rate / 2:
            problems.append(f"mel band {self.f_min_hz}..{self.f_max_hz} Hz must lie within 0..{self.sample_rate / 2}")
        if self.n_mels < 1 or self.log_floor <= 0 or self.clip_seconds * 1000 < self.window_ms:
            problems.append("n_mels must be >= 1, log_floor > 0 and the clip at least one window long")
        if problems:
            raise ValueError("invalid feature spec: " + "; ".join(problems))

    @property
    def window_samples(self) -> int:
        return round(self.sample_rate * self.window_ms / 1000)

    @property
    def hop_samples(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def clip_samples(self) -> int:
        return round(self.sample_rate * self.clip_seconds)

    @property
    def frames_per_clip(self) -> int:
        return self.num_frames(self.clip_samples)

    def num_frames(self, num_samples: int) -> int:
        """Frames that fit in `num_samples` with valid framing (0 if shorter than one window)."""
        if num_samples < self.window_samples:
            return 0
        return 1 + (num_samples - self.window_samples) // self.hop_samples

    def frame_end_sample(self, frame_index):
        """The sample just after frame `frame_index` (an int or an integer array): a score of the window that ends
        with that frame is known from there on."""
        return frame_index * self.hop_samples + self.window_samples

    def frame_ending_at(self, times_s: np.ndarray) -> np.ndarray:
        """The frame whose end is at each of `times_s` (seconds; the inverse of `frame_end_sample`)."""
        return np.rint((np.asarray(times_s) * self.sample_rate - self.window_samples) / self.hop_samples).astype(int)

    def whole_hops(self, seconds: float) -> int | None:
        """`seconds` as a whole number (>= 1) of feature hops, or None when it is not one: windows and score grids
        slide by whole frames."""
        hops = seconds * 1000.0 / self.hop_ms
        return round(hops) if hops >= 1 and abs(hops - round(hops)) <= 1e-6 else None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> FeatureSpec:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"feature spec has unknown keys {unknown}; allowed: {sorted(known)}")
        return cls(**values)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale."""
    return 2595.0 * np.log10(1.0 + np.asarray(hz, dtype=np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    return 700.0 * (10.0 ** (np.asarray(mel, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(spec: FeatureSpec) -> np.ndarray:
    """Triangular HTK-mel filters, shape [n_fft // 2 + 1, n_mels], float32 (no area normalisation)."""
    n_bins = spec.n_fft // 2 + 1
    bin_hz = np.linspace(0.0, spec.sample_rate / 2, n_bins)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(spec.f_min_hz), hz_to_mel(spec.f_max_hz), spec.n_mels + 2))
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bin_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bin_hz[:, None]) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0.0, None).astype(np.float32)


def analysis_window(spec: FeatureSpec) -> np.ndarray:
    """Periodic Hann window of `window_samples`, float32."""
    n = spec.window_samples
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)).astype(np.float32)


def pcen_smoothing(spec: FeatureSpec) -> float:
    """The smoother's weight per frame, s in M[t] = (1 - s) M[t - 1] + s E[t], for PCEN_TIME_CONSTANT_S (librosa's
    formula: the one-pole filter whose impulse response has that time constant in frames)."""
    frames = PCEN_TIME_CONSTANT_S * 1000.0 / spec.hop_ms
    return float((np.sqrt(1.0 + 4.0 * frames**2) - 1.0) / (2.0 * frames**2))


def smoother_matrices(spec: FeatureSpec, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The smoother over `block` frames as M = weights @ E + carry[:, None] * M_before: weights [block, block] is
    lower triangular with s (1 - s)^(t - k), carry [block] is (1 - s)^(t + 1). float64."""
    s = pcen_smoothing(spec)
    steps = np.arange(block)
    lags = steps[:, None] - steps[None, :]
    weights = np.where(lags >= 0, s * (1.0 - s) ** np.maximum(lags, 0), 0.0)
    return weights, (1.0 - s) ** (steps + 1)


def pcen_from_smoothed(energy, smoothed):
    """PCEN of scaled mel power `energy` given its smoothed version (numpy or torch, any shape alike)."""
    return (energy / (PCEN_EPS + smoothed) ** PCEN_GAIN + PCEN_BIAS) ** PCEN_POWER - PCEN_BIAS**PCEN_POWER


def smoother_start(energy, spec: FeatureSpec):
    """Where a signal's smoother starts, per bin, from its scaled mel power [..., frames, n_mels] (numpy or torch):
    the mean of its first clip for pcen-v2, its first frame for pcen-v1. Shape [..., n_mels]."""
    if spec.front_end == PCEN_V1:
        return energy[..., 0, :]
    return energy[..., : spec.frames_per_clip, :].mean(-2)


class SmootherState:
    """PCEN's smoothed energy per mel bin between calls on one stream; None until its first call, which must hold
    the stream's first clip (or all of a shorter stream) for the start to be the one the model was trained with."""

    def __init__(self) -> None:
        self.smoothed: np.ndarray | None = None

    def reset(self) -> None:
        self.smoothed = None


class MelFrontEnd:
    """numpy mel features (log-mel or PCEN, as the spec names) for signals: [num_samples] float32 in -1..1 ->
    [num_frames, n_mels]."""

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec

    @cached_property
    def _window(self) -> np.ndarray:
        return analysis_window(self.spec)

    @cached_property
    def _filterbank(self) -> np.ndarray:
        return mel_filterbank(self.spec)

    @cached_property
    def _smoother(self) -> tuple[np.ndarray, np.ndarray]:
        return smoother_matrices(self.spec, PCEN_BLOCK_FRAMES)

    def frames(self, audio: np.ndarray, state: SmootherState | None = None) -> np.ndarray:
        """Feature frames of a mono signal at the spec's sample rate. For PCEN, `state` carries the smoother from
        the previous call on the same stream (updated in place); without it the signal is taken whole."""
        mel = self.mel_power(audio)
        if self.spec.front_end == LOG_MEL:
            return np.log(mel).astype(np.float32)
        return self._pcen(mel, state if state is not None else SmootherState())

    def _pcen(self, mel: np.ndarray, state: SmootherState) -> np.ndarray:
        energy = mel.astype(np.float64) * PCEN_INPUT_SCALE
        if energy.shape[0] == 0:
            return np.zeros(mel.shape, np.float32)
        previous = state.smoothed if state.smoothed is not None else smoother_start(energy, self.spec)
        weights, carry = self._smoother
        smoothed = np.empty_like(energy)
        for start in range(0, energy.shape[0], PCEN_BLOCK_FRAMES):
            block = energy[start : start + PCEN_BLOCK_FRAMES]
            count = block.shape[0]
            smoothed[start : start + count] = weights[:count, :count] @ block + carry[:count, None] * previous
            previous = smoothed[start + count - 1]
        state.smoothed = previous
        return pcen_from_smoothed(energy, smoothed).astype(np.float32)

    def mel_power(self, audio: np.ndarray) -> np.ndarray:
        """Mel power frames of a mono signal, floored at the spec's `log_floor`, float32 [num_frames, n_mels]."""
        audio = np.asarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise ValueError(f"expected mono audio of shape [samples], got shape {audio.shape}")
        spec = self.spec
        count = spec.num_frames(audio.shape[0])
        if count == 0:
            return np.zeros((0, spec.n_mels), dtype=np.float32)
        framed = np.lib.stride_tricks.sliding_window_view(audio, spec.window_samples)[:: spec.hop_samples][:count]
        power = np.abs(np.fft.rfft(framed * self._window, n=spec.n_fft, axis=-1)) ** 2
        mel = power.astype(np.float32) @ self._filterbank
        return np.maximum(mel, np.float32(spec.log_floor))


def silence_frames(count: int, spec: FeatureSpec) -> np.ndarray:
    """`count` feature frames of digital silence, float32 [count, n_mels]: every mel bin at the floor (for PCEN,
    a smoother settled on that floor)."""
    silence = MelFrontEnd(spec).frames(np.zeros(spec.window_samples, np.float32))
    return np.repeat(silence, count, axis=0)
