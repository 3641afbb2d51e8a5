"""The feature contract: numpy front-end (edge) and torch mirror (training) agree, and the spec validates."""

import dataclasses

import numpy as np
import pytest
import torch

from edge_runtime.features import (
    PCEN,
    PCEN_BIAS,
    PCEN_EPS,
    PCEN_GAIN,
    PCEN_INPUT_SCALE,
    PCEN_POWER,
    PCEN_V1,
    FeatureSpec,
    MelFrontEnd,
    SmootherState,
    mel_filterbank,
    pcen_smoothing,
    silence_frames,
)
from train.features_torch import TorchMelFrontEnd

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
    features = MelFrontEnd(spec).frames(np.zeros(spec.clip_samples, dtype=np.float32))
    assert features.shape == (98, 40)
    # Silence sits exactly at the log floor.
    assert np.allclose(features, np.log(spec.log_floor))


def test_numpy_and_torch_front_ends_agree():
    spec = FeatureSpec()
    audio = np.stack([chirp_with_noise(spec, 1.0, seed) for seed in range(4)])
    reference = np.stack([MelFrontEnd(spec).frames(a) for a in audio])
    mirrored = TorchMelFrontEnd(spec)(torch.from_numpy(audio)).numpy()
    assert mirrored.shape == reference.shape == (4, 98, 40)
    assert np.abs(mirrored - reference).max() < AGREEMENT_BOUND
    # Not trivially equal: the features span a real range.
    assert reference.max() - reference.min() > 10


def test_a_tone_lights_up_the_mel_band_that_contains_it():
    spec = FeatureSpec()
    t = np.arange(spec.clip_samples) / spec.sample_rate
    features = MelFrontEnd(spec).frames((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32))
    loudest_band = int(features.mean(axis=0).argmax())
    filterbank = mel_filterbank(spec)
    bin_of_1khz = round(1000 * spec.n_fft / spec.sample_rate)
    assert loudest_band == int(filterbank[bin_of_1khz].argmax())


def test_short_audio_gives_no_frames_and_frame_count_formula_holds():
    spec = FeatureSpec()
    front_end = MelFrontEnd(spec)
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


# ---- PCEN (per-channel energy normalization), the second front-end ----

PCEN_SPEC = dataclasses.replace(FeatureSpec(), front_end=PCEN)


def naive_pcen(mel_power: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """PCEN by its definition, one frame at a time: M[t] = (1 - s) M[t - 1] + s E[t], with M[-1] the mean of the
    first clip's E (pcen-v2) or E[0] (pcen-v1)."""
    energy = mel_power.astype(np.float64) * PCEN_INPUT_SCALE
    start = energy[0] if spec.front_end == PCEN_V1 else energy[: spec.frames_per_clip].mean(axis=0)
    s, smoothed, out = pcen_smoothing(spec), start.copy(), np.empty_like(energy)
    for t, frame in enumerate(energy):
        smoothed = (1 - s) * smoothed + s * frame
        out[t] = (frame / (PCEN_EPS + smoothed) ** PCEN_GAIN + PCEN_BIAS) ** PCEN_POWER - PCEN_BIAS**PCEN_POWER
    return out


@pytest.mark.parametrize("front_end_name", [PCEN, PCEN_V1])
def test_pcen_follows_its_definition_across_smoother_blocks(front_end_name):
    spec = dataclasses.replace(PCEN_SPEC, front_end=front_end_name)
    audio = chirp_with_noise(spec, 3.0)  # 298 frames: more than two of the smoother's blocks
    front_end = MelFrontEnd(spec)
    features = front_end.frames(audio)
    assert features.shape == (298, 40)
    np.testing.assert_allclose(features, naive_pcen(front_end.mel_power(audio), spec), atol=1e-5)
    assert 0.0 < pcen_smoothing(spec) < 0.05  # a 0.4 s time constant at 10 ms frames
    assert features.max() - features.min() > 1.0


def test_pcen_v2_starts_from_the_first_clip_where_v1_starts_from_the_first_frame():
    # Silence, then a loud tone: v1's average starts at silence's level and the tone's onset is divided by almost
    # nothing; v2's starts at the clip's mean level, so the onset looks like the rest of the tone.
    audio = np.zeros(PCEN_SPEC.clip_samples, np.float32)
    audio[4000:] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(audio.size - 4000) / PCEN_SPEC.sample_rate)
    onset = PCEN_SPEC.num_frames(4000 + PCEN_SPEC.window_samples)  # the first frame wholly in the tone
    v2 = MelFrontEnd(PCEN_SPEC).frames(audio)
    v1 = MelFrontEnd(dataclasses.replace(PCEN_SPEC, front_end=PCEN_V1)).frames(audio)
    assert v1[onset].max() > 3 * v2[onset].max()  # 3.89 against 1.00 measured
    assert v1[onset].max() > 5 * v1[-1].max() and v2[onset].max() < 2 * v2[-1].max()  # v2: near the tone's level
    # Starting from the first clip only: a longer signal's first clip has the same frames as that clip alone.
    longer = np.concatenate([audio, audio[::-1]])
    np.testing.assert_allclose(MelFrontEnd(PCEN_SPEC).frames(longer)[: v2.shape[0]], v2, atol=1e-5)


def test_pcen_numpy_and_torch_front_ends_agree():
    audio = np.stack([chirp_with_noise(PCEN_SPEC, 1.0, seed) for seed in range(4)])
    reference = np.stack([MelFrontEnd(PCEN_SPEC).frames(a) for a in audio])
    mirrored = TorchMelFrontEnd(PCEN_SPEC)(torch.from_numpy(audio)).numpy()
    assert mirrored.shape == reference.shape == (4, 98, 40)
    assert np.abs(mirrored - reference).max() < AGREEMENT_BOUND
    longer = chirp_with_noise(PCEN_SPEC, 2.5)[None]  # longer than a clip: the torch smoother extends itself
    np.testing.assert_allclose(
        TorchMelFrontEnd(PCEN_SPEC)(torch.from_numpy(longer)).numpy()[0], MelFrontEnd(PCEN_SPEC).frames(longer[0]),
        atol=AGREEMENT_BOUND,
    )


def test_pcen_cancels_a_fixed_gain_that_log_mel_only_shifts():
    audio = chirp_with_noise(PCEN_SPEC, 2.0)
    quiet = audio * np.float32(0.1)  # -20 dB
    log_shift = FeatureSpec()
    log_change = np.abs(MelFrontEnd(log_shift).frames(quiet) - MelFrontEnd(log_shift).frames(audio))
    pcen_change = np.abs(MelFrontEnd(PCEN_SPEC).frames(quiet) - MelFrontEnd(PCEN_SPEC).frames(audio))
    pcen_range = np.ptp(MelFrontEnd(PCEN_SPEC).frames(audio))
    assert np.median(log_change) > 4.0  # log(0.01) = -4.6 in every bin that is above the floor
    assert np.median(pcen_change) < 0.01 < 0.1 * pcen_range  # the gain divides out (0.0006 measured)


def test_pcen_fed_in_pieces_with_its_state_equals_the_whole_signal():
    audio = chirp_with_noise(PCEN_SPEC, 2.0, seed=5)
    front_end, state, pieces = MelFrontEnd(PCEN_SPEC), SmootherState(), []
    hop, window = PCEN_SPEC.hop_samples, PCEN_SPEC.window_samples
    total = PCEN_SPEC.num_frames(audio.size)
    # The first call holds the first clip (where the smoother starts from), then 13 frames a call, as a stream
    # would hand them over.
    for first in [0, *range(PCEN_SPEC.frames_per_clip, total, 13)]:
        last = min(total, first + (13 if first else PCEN_SPEC.frames_per_clip)) - 1
        pieces.append(front_end.frames(audio[first * hop : last * hop + window], state))
    np.testing.assert_allclose(np.concatenate(pieces), front_end.frames(audio), atol=1e-5)
    state.reset()
    restarted = front_end.frames(audio[: PCEN_SPEC.clip_samples], state)
    np.testing.assert_allclose(restarted, front_end.frames(audio)[: PCEN_SPEC.frames_per_clip], atol=1e-6)


def test_silence_frames_are_the_front_ends_view_of_zeros():
    log_silence = silence_frames(3, FeatureSpec())
    assert log_silence.shape == (3, 40) and np.allclose(log_silence, np.log(FeatureSpec().log_floor))
    pcen_silence = silence_frames(2, PCEN_SPEC)
    # A settled smoother on a constant floor: E / E^0.98 then the root compression, the same in every bin.
    floor = PCEN_SPEC.log_floor * PCEN_INPUT_SCALE
    expected = (floor / (PCEN_EPS + floor) ** PCEN_GAIN + PCEN_BIAS) ** PCEN_POWER - PCEN_BIAS**PCEN_POWER
    np.testing.assert_allclose(pcen_silence, expected, rtol=1e-5)
    np.testing.assert_allclose(MelFrontEnd(PCEN_SPEC).frames(np.zeros(16000, np.float32)), expected, rtol=1e-5)


def test_an_unknown_front_end_is_refused_with_the_allowed_ones():
    with pytest.raises(ValueError, match="front_end 'mfcc' is unknown \\(allowed: log-mel-v1, pcen-v2, pcen-v1\\)"):
        FeatureSpec(front_end="mfcc")
    assert FeatureSpec.from_dict(PCEN_SPEC.to_dict()) == PCEN_SPEC
