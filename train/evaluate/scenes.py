"""The acoustics of an evaluation stream: room, channel, background noise and level, drawn per stream.

Noise is generated with this module's own seeds (never the training noise bank's), babble is made from held-out
voices saying evaluation text, and "music" (synthetic notes) is a kind training never hears.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge_runtime.features import FeatureSpec
from train.data.augment import band_limit, coloured_noise, mains_hum, reverberate, synthetic_rir

NOISE_KINDS = ("white", "pink", "brown", "babble", "hum", "music")
SPEECH_NOISE_KINDS = ("pink", "brown", "white", "babble", "babble", "music", "hum")  # babble twice: most common
SNR_DB = (5.0, 25.0)  # speech (while speaking) over noise
REVERB_PROBABILITY = 0.8
RT60_S = (0.2, 0.8)
DRR_DB = (0.0, 10.0)
CHANNEL_PROBABILITY = 0.3
CHANNEL_LOW_HZ = (80.0, 400.0)
CHANNEL_HIGH_HZ = (3400.0, 7500.0)
CHANNEL_TILT_DB = (-6.0, 6.0)
SPEECH_LEVEL_DBFS = (-38.0, -16.0)  # RMS of the speech while speaking, after everything
NOISE_ONLY_LEVEL_DBFS = (-55.0, -20.0)
NOISE_LOOP_SECONDS = 30.0  # generated noise is this long and loops (from a random point) over longer streams
MUSIC_NOTE_S = (0.12, 0.6)
MUSIC_HARMONICS = 4


@dataclass(frozen=True)
class Scene:
    """One stream's acoustics; stored with the stream so every result can be broken down by condition."""

    noise: str
    snr_db: float
    rt60_s: float  # 0: no reverberation
    drr_db: float
    low_hz: float  # 0: no channel filter
    high_hz: float
    tilt_db: float
    level_dbfs: float

    def to_dict(self) -> dict:
        return {key: round(value, 3) if isinstance(value, float) else value for key, value in asdict(self).items()}


def draw_scene(rng: np.random.Generator, noise_only: bool = False) -> Scene:
    kinds = NOISE_KINDS if noise_only else SPEECH_NOISE_KINDS
    reverb = not noise_only and rng.random() < REVERB_PROBABILITY
    channel = rng.random() < CHANNEL_PROBABILITY
    return Scene(
        noise=kinds[int(rng.integers(len(kinds)))],
        snr_db=float(rng.uniform(*SNR_DB)),
        rt60_s=float(rng.uniform(*RT60_S)) if reverb else 0.0,
        drr_db=float(rng.uniform(*DRR_DB)),
        low_hz=float(rng.uniform(*CHANNEL_LOW_HZ)) if channel else 0.0,
        high_hz=float(rng.uniform(*CHANNEL_HIGH_HZ)),
        tilt_db=float(rng.uniform(*CHANNEL_TILT_DB)),
        level_dbfs=float(rng.uniform(*(NOISE_ONLY_LEVEL_DBFS if noise_only else SPEECH_LEVEL_DBFS))),
    )


def music(num_samples: int, spec: FeatureSpec, rng: np.random.Generator) -> np.ndarray:
    """Notes of a few harmonics with decaying envelopes, two voices, unit RMS."""
    out = np.zeros(num_samples, dtype=np.float64)
    for _ in range(2):
        position = 0
        while position < num_samples:
            length = min(num_samples - position, int(rng.uniform(*MUSIC_NOTE_S) * spec.sample_rate))
            t = np.arange(length) / spec.sample_rate
            pitch = 110.0 * 2 ** (int(rng.integers(0, 36)) / 12)
            note = sum(np.sin(2 * np.pi * pitch * h * t) / h**1.5 for h in range(1, MUSIC_HARMONICS + 1))
            out[position : position + length] += note * np.exp(-t * rng.uniform(2, 8))
            position += length
    return (out / max(np.sqrt(np.mean(out**2)), 1e-9)).astype(np.float32)


def noise_track(kind: str, num_samples: int, spec: FeatureSpec, rng: np.random.Generator, babble: list) -> np.ndarray:
    """`num_samples` of noise of `kind` at unit RMS (generated NOISE_LOOP_SECONDS long, then looped)."""
    loop = min(num_samples, round(NOISE_LOOP_SECONDS * spec.sample_rate))
    if kind in ("white", "pink", "brown"):
        base = coloured_noise(kind, loop, rng)
    elif kind == "hum":
        base = mains_hum(float(rng.choice([50.0, 60.0])), loop, spec, rng)
    elif kind == "music":
        base = music(loop, spec, rng)
    elif kind == "babble":
        if not babble:
            raise ValueError("babble noise needs babble recordings")
        base = np.asarray(babble[int(rng.integers(len(babble)))], dtype=np.float32)
    else:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    start = int(rng.integers(0, base.size))
    track = np.resize(np.roll(base, -start), num_samples)
    return (track / max(float(np.sqrt(np.mean(np.square(track, dtype=np.float64)))), 1e-9)).astype(np.float32)


def render(
    speech: np.ndarray, speaking: np.ndarray, scene: Scene, spec: FeatureSpec, rng: np.random.Generator, babble: list
) -> np.ndarray:
    """The stream as a device hears it: speech (with `speaking` marking where someone talks) through the room and
    channel, noise at the scene's SNR, scaled to its level. float32 in -1..1."""
    audio = np.asarray(speech, dtype=np.float32)
    if scene.rt60_s > 0:
        audio = reverberate(audio, synthetic_rir(spec, rng, scene.rt60_s, scene.drr_db))
    active = audio[speaking] if speaking.any() else audio
    speech_power = float(np.mean(np.square(active, dtype=np.float64))) if active.size else 0.0
    noise = noise_track(scene.noise, audio.size, spec, rng, babble)
    if speech_power > 0:
        audio = audio + noise * np.float32(np.sqrt(speech_power / 10 ** (scene.snr_db / 10)))
        reference = speech_power
    else:  # noise only: the level applies to the noise itself
        audio, reference = noise, 1.0
    if scene.low_hz > 0:
        audio = band_limit(audio, spec, scene.low_hz, scene.high_hz, scene.tilt_db)
    gain = np.sqrt(10 ** (scene.level_dbfs / 10) / reference)
    return np.clip(audio * np.float32(gain), -1.0, 1.0)
