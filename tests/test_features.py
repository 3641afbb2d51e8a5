"""The feature contract: numpy front-end (edge) and torch mirror (training) agree, and the spec validates."""

import numpy as np
import pytest
import torch

from edge_runtime.features import FeatureSpec, LogMelFrontEnd, mel_filterbank
from train.features_torch import TorchLogMel

# Both compute float32 power spectra and a float32 matmul; on real speech-like signals the log-mel values
# (range about -14..+10) differ by a few 1e-5 at most. 1e-3 is the bound we hold them to.
AGREEMENT_BOUND = 1e-3


def chirp_with_noise(spec: FeatureSpec, seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(spec.sample_rate * seconds)) / spec.sample_rate
    tone = 0.3 * np.sin(2 * np.pi * (200 + 1500 * t) * t)
    return (tone + 0.01 * rng.standard_normal(t.shape)).astype(np.float32)


def test_one_second_clip_has_the_contract_frame_count():
    spec = FeatureSpec()
    assert spec.window_samples == 400 and spec.hop_samples == 160
    assert spec.frames_per_clip == 98
    features = LogMelFrontEnd(spec).frames(np.zeros(spec.clip_samples, dtype=np.float32))
    assert features.shape == (98, 40)
    # Silence sits exactly at the log floor.
    assert np.allclose(features, np.log(spec.log_floor))


def test_numpy_and_torch_front_ends_agree():
    spec = FeatureSpec()
    audio = np.stack([chirp_with_noise(spec, 1.0, seed) for seed in range(4)])
    reference = np.stack([LogMelFrontEnd(spec).frames(a) for a in audio])
    mirrored = TorchLogMel(spec)(torch.from_numpy(audio)).numpy()
    assert mirrored.shape == reference.shape == (4, 98, 40)
    assert np.abs(mirrored - reference).max() < AGREEMENT_BOUND
    # Not trivially equal: the features span a real range.
    assert reference.max() - reference.min() > 10


def test_a_tone_lights_up_the_mel_band_that_contains_it():
    spec = FeatureSpec()
    t = np.arange(spec.clip_samples) / spec.sample_rate
    features = LogMelFrontEnd(spec).frames((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    loudest_band = int(features.mean(axis=0).argmax())
    filterbank = mel_filterbank(spec)
    bin_of_1khz = round(1000 * spec.n_fft / spec.sample_rate)
    assert loudest_band == int(filterbank[bin_of_1khz].argmax())


def test_short_audio_gives_no_frames_and_frame_count_formula_holds():
    spec = FeatureSpec()
    front_end = LogMelFrontEnd(spec)
    assert front_end.frames(np.zeros(spec.window_samples - 1, dtype=np.float32)).shape == (0, 40)
    for samples in (400, 559, 560, 16000, 24321):
        assert front_end.frames(np.zeros(samples, dtype=np.float32)).shape[0] == 1 + (samples - 400) // 160


def test_spec_round_trips_and_rejects_bad_values():
    spec = FeatureSpec()
    assert FeatureSpec.from_dict(spec.to_dict()) == spec
    with pytest.raises(ValueError, match="sample_rate"):
        FeatureSpec(sample_rate=4000)
    with pytest.raises(ValueError, match="n_fft"):
        FeatureSpec(window_ms=64.0)
    with pytest.raises(ValueError, match="unknown keys"):
        FeatureSpec.from_dict({**spec.to_dict(), "hop": 3})
    with pytest.raises(ValueError, match="front_end"):
        FeatureSpec(front_end="mfcc-v9")
