"""Training-time augmentation (numpy only), and the synthetic noise that feeds it.

`Augmenter.window` turns one stored utterance into a clip-long training window: a random time shift (the whole
utterance stays inside), background noise at a random SNR (sometimes none), and a random gain. `centered_window`
is the deterministic version for evaluation. About 0.1 ms per window on one core.
"""

from __future__ import annotations

import numpy as np

from edge_runtime.features import FeatureSpec

# Defaults of the random ranges (all uniform).
SNR_DB = (0.0, 30.0)  # speech power over noise power, measured over the utterance itself
NOISE_PROBABILITY = 0.8  # share of windows that get background noise
GAIN_DB = (-12.0, 6.0)  # applied last; the result is clipped to -1..1
# Noise level for utterances with (next to) no energy of their own, e.g. near-silence clips, where an SNR is
# meaningless.
QUIET_NOISE_DBFS = (-60.0, -30.0)
SILENT_POWER = 1e-8  # -80 dBFS: below this an utterance counts as silent

NOISE_COLOURS = ("white", "pink", "brown")
_COLOUR_EXPONENT = {"white": 0.0, "pink": 1.0, "brown": 2.0}  # power spectrum ~ 1 / f**exponent
NOISE_BANK_RMS = 0.1  # level of generated noise recordings (-20 dBFS); the Augmenter rescales them anyway
HUM_MAINS_HZ = (50.0, 60.0)
HUM_HARMONICS = 6
HUM_NOISE_SHARE = 0.05  # broadband noise under the hum, relative to its RMS


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64)))) if audio.size else 0.0


def _at_rms(audio: np.ndarray, rms: float) -> np.ndarray:
    level = _rms(audio)
    return (audio * (rms / level) if level > 0 else audio).astype(np.float32)


def coloured_noise(colour: str, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """White, pink or brown Gaussian noise with unit RMS, float32 [num_samples]."""
    if colour not in _COLOUR_EXPONENT:
        raise ValueError(f"noise colour must be one of {NOISE_COLOURS}, got {colour!r}")
    white = rng.standard_normal(num_samples)
    if colour == "white" or num_samples < 2:
        return _at_rms(white, 1.0)
    spectrum = np.fft.rfft(white)
    frequency = np.arange(spectrum.size, dtype=np.float64)
    frequency[0] = frequency[1]  # no infinite DC gain
    shaped = np.fft.irfft(spectrum / frequency ** (_COLOUR_EXPONENT[colour] / 2), n=num_samples)
    return _at_rms(shaped - shaped.mean(), 1.0)


def mains_hum(mains_hz: float, num_samples: int, spec: FeatureSpec, rng: np.random.Generator) -> np.ndarray:
    """Mains hum: harmonics of `mains_hz` with random phases and falling levels, over a little white noise."""
    t = np.arange(num_samples) / spec.sample_rate
    hum = np.zeros(num_samples)
    for harmonic in range(1, HUM_HARMONICS + 1):
        hum += np.sin(2 * np.pi * mains_hz * harmonic * t + rng.uniform(0, 2 * np.pi)) / harmonic
    hum = _at_rms(hum, 1.0) + HUM_NOISE_SHARE * rng.standard_normal(num_samples)
    return _at_rms(hum, 1.0)


def babble_noise(utterances: list[np.ndarray], voices: int, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Several voices talking at once: `voices` tracks of random utterances back to back, summed."""
    if not utterances:
        raise ValueError("babble needs at least one utterance")
    mix = np.zeros(num_samples, dtype=np.float64)
    for _ in range(voices):
        position = int(rng.integers(0, num_samples // 4 + 1))
        while position < num_samples:
            piece = np.asarray(utterances[rng.integers(len(utterances))], dtype=np.float64)
            piece = piece[: num_samples - position]
            mix[position : position + piece.size] += _at_rms(piece, 1.0)
            position += piece.size + int(rng.integers(0, piece.size // 2 + 1))
    return _at_rms(mix, NOISE_BANK_RMS)


def synthetic_noise_bank(spec: FeatureSpec, rng: np.random.Generator, seconds: float = 10.0) -> list[np.ndarray]:
    """Two recordings of each noise colour and one hum per mains frequency, at NOISE_BANK_RMS."""
    num_samples = round(seconds * spec.sample_rate)
    bank = [
        _at_rms(coloured_noise(colour, num_samples, rng), NOISE_BANK_RMS) for colour in NOISE_COLOURS for _ in range(2)
    ]
    bank += [_at_rms(mains_hum(hz, num_samples, spec, rng), NOISE_BANK_RMS) for hz in HUM_MAINS_HZ]
    return bank


def _check_range(name: str, limits: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(value) for value in limits)
    if low > high:
        raise ValueError(f"{name} range must be (low, high) with low <= high, got {limits}")
    return low, high


class Augmenter:
    """Random clip-long windows from stored utterances; all randomness comes from `rng`."""

    def __init__(
        self,
        spec: FeatureSpec,
        noise_bank: list[np.ndarray],
        rng: np.random.Generator,
        snr_db: tuple[float, float] = SNR_DB,
        noise_probability: float = NOISE_PROBABILITY,
        gain_db: tuple[float, float] = GAIN_DB,
        quiet_noise_dbfs: tuple[float, float] = QUIET_NOISE_DBFS,
    ) -> None:
        if not isinstance(rng, np.random.Generator):
            raise ValueError(f"rng must be a numpy Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
        if not 0.0 <= noise_probability <= 1.0:
            raise ValueError(f"noise_probability must be within 0..1, got {noise_probability}")
        self.spec = spec
        self.rng = rng
        self.snr_db = _check_range("snr_db", snr_db)
        self.gain_db = _check_range("gain_db", gain_db)
        self.quiet_noise_dbfs = _check_range("quiet_noise_dbfs", quiet_noise_dbfs)
        self.noise_probability = noise_probability
        self.noise_bank = [np.asarray(noise, dtype=np.float32) for noise in noise_bank if np.size(noise) > 0]
        if any(noise.ndim != 1 for noise in self.noise_bank):
            raise ValueError("noise bank recordings must be mono arrays of shape [samples]")

    def window(self, utterance: np.ndarray) -> np.ndarray:
        """float32 [clip_samples]: shifted utterance + noise at a random SNR (sometimes none), random gain."""
        length = self.spec.clip_samples
        utterance = np.asarray(utterance, dtype=np.float32)
        if utterance.size > length:  # stored utterances never are; a random clip-long piece otherwise
            start = int(self.rng.integers(0, utterance.size - length + 1))
            utterance = utterance[start : start + length]
        offset = int(self.rng.integers(0, length - utterance.size + 1))
        window = np.zeros(length, dtype=np.float32)
        window[offset : offset + utterance.size] = utterance
        if self.noise_bank and self.rng.random() < self.noise_probability:
            window += self._noise_for(utterance)
        gain = 10 ** (self.rng.uniform(*self.gain_db) / 20)
        return np.clip(window * np.float32(gain), -1.0, 1.0)

    def _noise_for(self, utterance: np.ndarray) -> np.ndarray:
        segment = self._noise_segment()
        noise_power = float(np.mean(np.square(segment, dtype=np.float64)))
        if noise_power <= 0:
            return np.zeros_like(segment)
        speech_power = float(np.mean(np.square(utterance, dtype=np.float64))) if utterance.size else 0.0
        if speech_power > SILENT_POWER:
            target_power = speech_power / 10 ** (self.rng.uniform(*self.snr_db) / 10)
        else:
            target_power = 10 ** (self.rng.uniform(*self.quiet_noise_dbfs) / 10)
        return segment * np.float32(np.sqrt(target_power / noise_power))

    def _noise_segment(self) -> np.ndarray:
        length = self.spec.clip_samples
        noise = self.noise_bank[int(self.rng.integers(len(self.noise_bank)))]
        if noise.size < length:
            return np.resize(noise, length)
        start = int(self.rng.integers(0, noise.size - length + 1))
        return noise[start : start + length]

    def centered_window(self, utterance: np.ndarray) -> np.ndarray:
        """float32 [clip_samples]: the utterance centred (its middle kept if too long), no noise, no gain."""
        length = self.spec.clip_samples
        utterance = np.asarray(utterance, dtype=np.float32)
        if utterance.size > length:
            start = (utterance.size - length) // 2
            utterance = utterance[start : start + length]
        window = np.zeros(length, dtype=np.float32)
        offset = (length - utterance.size) // 2
        window[offset : offset + utterance.size] = utterance
        return window
