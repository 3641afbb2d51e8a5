"""Training-time augmentation: window length, placement, SNR, gain, determinism, speed; generated noise colours."""

import time

import numpy as np
import pytest

from edge_runtime.features import FeatureSpec
from tests.tiny import make_tiny_clipset
from train.data.augment import Augmenter, coloured_noise, synthetic_noise_bank
from train.data.clipset import ClipSet

SPEC = FeatureSpec()
# The base behaviours (placement, SNR, gain) are tested without pseudo-speakers, rooms or channels, whatever the
# module's defaults for those are; tests/test_quality_training.py tests those.
PLAIN = {"speed_probability": 0.0, "room_probability": 0.0, "channel_probability": 0.0, "vtlp_probability": 0.0}


def tone(seconds: float, amplitude: float = 0.3, hz: float = 440.0) -> np.ndarray:
    t = np.arange(round(seconds * SPEC.sample_rate)) / SPEC.sample_rate
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def power_db(audio: np.ndarray) -> float:
    return 10 * np.log10(np.mean(np.square(audio, dtype=np.float64)))


def noise_bank(seed: int = 0) -> list[np.ndarray]:
    return synthetic_noise_bank(SPEC, np.random.default_rng(seed), seconds=2.0)


def test_window_is_one_clip_long_and_keeps_the_whole_utterance():
    utterance = np.full(4000, 0.5, dtype=np.float32)
    augmenter = Augmenter(
        SPEC, noise_bank(), np.random.default_rng(0), noise_probability=0.0, gain_db=(0.0, 0.0), **PLAIN
    )
    offsets = set()
    for _ in range(50):
        window = augmenter.window(utterance)
        assert window.shape == (SPEC.clip_samples,) and window.dtype == np.float32
        inside = np.flatnonzero(window)
        assert inside.size == utterance.size and inside[-1] - inside[0] == utterance.size - 1
        assert np.allclose(window[inside], 0.5)
        offsets.add(int(inside[0]))
    assert len(offsets) > 40  # the shift really is random
    assert max(offsets) <= SPEC.clip_samples - utterance.size


def test_noise_is_mixed_at_the_requested_snr():
    utterance = tone(1.0)  # a full clip: the placement offset is 0, so the noise is window - utterance
    for snr in (0.0, 10.0, 25.0):
        augmenter = Augmenter(
            SPEC, noise_bank(), np.random.default_rng(1), snr_db=(snr, snr), noise_probability=1.0,
            gain_db=(0.0, 0.0), **PLAIN,
        )  # fmt: skip
        for _ in range(5):
            noise = augmenter.window(utterance) - utterance
            assert power_db(utterance) - power_db(noise) == pytest.approx(snr, abs=0.3)


def test_silent_utterances_get_noise_at_an_absolute_level():
    augmenter = Augmenter(
        SPEC, noise_bank(), np.random.default_rng(2), noise_probability=1.0, gain_db=(0.0, 0.0),
        quiet_noise_dbfs=(-40.0, -40.0), **PLAIN,
    )  # fmt: skip
    window = augmenter.window(np.zeros(SPEC.clip_samples, dtype=np.float32))
    assert power_db(window) == pytest.approx(-40.0, abs=0.3)


def test_gain_stays_in_range_and_output_is_clipped():
    utterance = tone(0.5, amplitude=0.25)
    augmenter = Augmenter(SPEC, [], np.random.default_rng(3), gain_db=(-12.0, 6.0), **PLAIN)
    gains_db = [20 * np.log10(np.abs(augmenter.window(utterance)).max() / 0.25) for _ in range(200)]
    assert -12.01 <= min(gains_db) < -10 and 4 < max(gains_db) <= 6.01
    loud = Augmenter(SPEC, [], np.random.default_rng(3), gain_db=(20.0, 20.0), **PLAIN).window(utterance)
    assert np.abs(loud).max() == pytest.approx(1.0)


def test_same_seed_same_windows_and_different_seed_different_windows():
    utterance = tone(0.4)
    first, second, other = (Augmenter(SPEC, noise_bank(), np.random.default_rng(seed)) for seed in (7, 7, 8))
    a = [first.window(utterance) for _ in range(10)]
    b = [second.window(utterance) for _ in range(10)]
    c = [other.window(utterance) for _ in range(10)]
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, z) for x, z in zip(a, c, strict=True))


def test_centered_window_is_deterministic_and_centred():
    augmenter = Augmenter(SPEC, noise_bank(), np.random.default_rng(0))
    utterance = np.full(6000, 0.5, dtype=np.float32)
    window = augmenter.centered_window(utterance)
    inside = np.flatnonzero(window)
    assert window.shape == (SPEC.clip_samples,)
    assert inside[0] == (SPEC.clip_samples - 6000) // 2 and inside.size == 6000
    assert np.array_equal(window, augmenter.centered_window(utterance))
    long = tone(1.5)
    assert np.array_equal(augmenter.centered_window(long), long[4000 : 4000 + SPEC.clip_samples])


@pytest.mark.parametrize(
    ("settings", "bound_s"),
    [(PLAIN, 5.0), ({"speed_probability": 0.5, "room_probability": 0.5, "channel_probability": 0.25}, 40.0)],
)
def test_ten_thousand_windows_take_seconds(settings, bound_s):
    augmenter = Augmenter(SPEC, noise_bank(), np.random.default_rng(0), **settings)
    utterance = tone(0.6)
    augmenter.window(utterance)  # draws the room bank
    count = 2000
    started = time.perf_counter()
    for _ in range(count):
        augmenter.window(utterance)
    per_window = (time.perf_counter() - started) / count
    # Typically ~0.1 ms plain and ~0.7 ms with speakers, rooms and channels here; the bounds leave room for a
    # loaded machine.
    assert per_window * 10_000 < bound_s


def test_noise_colours_have_the_expected_spectral_tilt():
    rng = np.random.default_rng(0)
    low_share = {}
    for colour in ("white", "pink", "brown"):
        noise = coloured_noise(colour, SPEC.sample_rate * 2, rng)
        assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-3)
        spectrum = np.abs(np.fft.rfft(noise)) ** 2
        low_share[colour] = spectrum[: spectrum.size // 8].sum() / spectrum.sum()  # below 1 kHz
    assert low_share["white"] == pytest.approx(1 / 8, abs=0.02)
    assert low_share["white"] < low_share["pink"] < low_share["brown"]


def test_bad_arguments_are_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match="noise_probability"):
        Augmenter(SPEC, [], np.random.default_rng(0), noise_probability=1.5)
    with pytest.raises(ValueError, match="low <= high"):
        Augmenter(SPEC, [], np.random.default_rng(0), snr_db=(30.0, 0.0))
    with pytest.raises(ValueError, match="Generator"):
        Augmenter(SPEC, [], rng=0)
    with pytest.raises(ValueError, match="white"):
        coloured_noise("purple", 100, np.random.default_rng(0))


def test_speech_context_fills_the_space_around_the_utterance_a_pause_away():
    utterance = np.full(4000, 0.5, dtype=np.float32)
    other = tone(2.0, amplitude=0.1)  # longer than a clip: only its end (before) or start (after) fits
    augmenter = Augmenter(
        SPEC, [], np.random.default_rng(4), gain_db=(0.0, 0.0), context_speech=lambda rng: other,
        context_probability=1.0, **PLAIN,
    )  # fmt: skip
    rate = SPEC.sample_rate
    for _ in range(30):
        window = augmenter.window(utterance)
        start = int(np.flatnonzero(np.isclose(window, 0.5))[0])
        assert np.allclose(window[start : start + utterance.size], 0.5)  # the utterance itself is untouched
        before, after = window[:start], window[start + utterance.size :]
        for side, gap in ((before[::-1], before), (after, after)):
            if gap.size > 0.5 * rate:  # room for the longest pause and some speech: context is there
                spoken = np.flatnonzero(side)
                assert spoken.size > 0
                assert 0.05 * rate - 2 <= spoken[0] <= 0.5 * rate + 2  # a pause of 0.05-0.5 s from the utterance
                level_db = 20 * np.log10(np.sqrt(np.mean(side[spoken[0] :] ** 2)) / 0.5)
                assert -6.5 <= level_db <= 3.5  # at about the utterance's level


def test_speech_context_is_off_without_a_source_and_drawn_from_non_keyword_speech(tmp_path):
    utterance = np.full(4000, 0.5, dtype=np.float32)
    plain = Augmenter(SPEC, [], np.random.default_rng(4), gain_db=(0.0, 0.0), **PLAIN)
    assert plain.context_probability == 0.0
    assert np.count_nonzero(plain.window(utterance)) == utterance.size
    with pytest.raises(ValueError, match="context_probability"):
        Augmenter(SPEC, [], np.random.default_rng(0), context_speech=lambda rng: utterance, context_probability=2.0)

    clips = ClipSet.load(make_tiny_clipset(tmp_path / "clips"))
    draw = clips.sampler("train", label=0)
    others = {clips.utterance(int(i)).tobytes() for i in clips.indices("train", label=0)}
    rng = np.random.default_rng(0)
    drawn = [draw(rng).tobytes() for _ in range(50)]
    assert set(drawn) <= others and len(set(drawn)) > 1  # training speech that is not the keyword, at random
    with pytest.raises(ValueError, match="split must be one of"):
        clips.sampler("nowhere", label=0)


def _vowel(seconds: float, pitch_hz: float = 120.0) -> np.ndarray:
    """A voiced vowel: a pulse train at `pitch_hz` through two formant resonances (700 and 1200 Hz)."""
    rate = SPEC.sample_rate
    pulses = np.zeros(round(seconds * rate))
    pulses[:: round(rate / pitch_hz)] = 1.0
    out = pulses
    for formant_hz in (700.0, 1200.0):  # two-pole resonators
        radius, theta = 0.97, 2 * np.pi * formant_hz / rate
        filtered = np.zeros_like(out)
        for i in range(out.size):
            filtered[i] = out[i] + 2 * radius * np.cos(theta) * filtered[i - 1] - radius**2 * filtered[i - 2]
        out = filtered
    return (0.2 * out / np.abs(out).max()).astype(np.float32)


def _pitch_peak(audio: np.ndarray, pitch_hz: float) -> float:
    """Normalised autocorrelation at the pitch period: near 1 for a voiced sound, near 0 for noise."""
    lag = round(SPEC.sample_rate / pitch_hz)
    x = audio - audio.mean()
    return float(np.dot(x[:-lag], x[lag:]) / np.dot(x, x))


def test_whispered_keeps_length_level_and_envelope_and_removes_the_voice():
    from edge_runtime.features import MelFrontEnd
    from train.data.augment import whispered

    vowel = _vowel(0.6)
    whisper = whispered(vowel, SPEC, np.random.default_rng(0))
    assert whisper.shape == vowel.shape and whisper.dtype == np.float32
    assert power_db(whisper) == pytest.approx(power_db(vowel), abs=0.01)
    assert _pitch_peak(vowel, 120.0) > 0.8 and abs(_pitch_peak(whisper, 120.0)) < 0.2
    # The formants stay where they were: the long-term mel spectra follow each other.
    front_end = MelFrontEnd(SPEC)
    spectra = [front_end.frames(a)[5:-5].mean(axis=0) for a in (vowel, whisper)]
    assert np.corrcoef(*spectra)[0, 1] > 0.9
    assert whispered(np.zeros(0, np.float32), SPEC, np.random.default_rng(0)).size == 0


def test_whisper_share_of_windows_follows_its_probability():
    vowel = _vowel(0.5)
    settings = {**PLAIN, "noise_probability": 0.0, "gain_db": (0.0, 0.0)}
    for probability, low, high in ((0.0, 0, 0), (0.5, 12, 28), (1.0, 40, 40)):
        augmenter = Augmenter(SPEC, [], np.random.default_rng(1), whisper_probability=probability, **settings)
        peaks = [_pitch_peak(w[w != 0], 120.0) for w in (augmenter.window(vowel) for _ in range(40))]
        assert low <= sum(peak < 0.3 for peak in peaks) <= high
    with pytest.raises(ValueError, match="whisper_probability"):
        Augmenter(SPEC, [], np.random.default_rng(1), whisper_probability=1.5)


def _formant_centre_hz(audio: np.ndarray) -> float:
    """Power-weighted mean frequency between 200 and 3000 Hz: where the vowel's formants sit."""
    power = np.abs(np.fft.rfft(audio * np.hanning(audio.size))) ** 2
    frequency = np.fft.rfftfreq(audio.size, 1 / SPEC.sample_rate)
    band = (frequency > 200) & (frequency < 3000)
    return float((power[band] * frequency[band]).sum() / power[band].sum())


def test_vocal_tract_warping_moves_the_formants_and_keeps_the_pitch_length_and_level():
    from train.data.augment import vocal_tract_warped

    vowel = _vowel(0.6)
    centre = _formant_centre_hz(vowel)
    for factor, low, high in ((0.75, 0.75, 0.86), (1.3, 1.2, 1.32)):
        warped = vocal_tract_warped(vowel, SPEC, factor)
        assert warped.shape == vowel.shape and warped.dtype == np.float32
        assert power_db(warped) == pytest.approx(power_db(vowel), abs=0.01)
        assert low < _formant_centre_hz(warped) / centre < high, factor  # the formants follow the factor
        assert _pitch_peak(warped, 120.0) > 0.9  # still voiced, at the same pitch
    np.testing.assert_array_equal(vocal_tract_warped(vowel, SPEC, 1.0), vowel)
    with pytest.raises(ValueError, match="factor must be > 0"):
        vocal_tract_warped(vowel, SPEC, 0.0)


def test_vtlp_changes_only_the_windows_it_warps_and_follows_its_probability():
    vowel = _vowel(0.5)
    plain = {key: value for key, value in PLAIN.items() if key != "vtlp_probability"}
    windows = {}
    for probability in (0.0, 0.5, 1.0):
        augmenter = Augmenter(SPEC, noise_bank(), np.random.default_rng(7), vtlp_probability=probability, **plain)
        windows[probability] = [augmenter.window(vowel) for _ in range(60)]
    # Its draws leave the other draws alone: a window it does not warp is the window without VTLP, bit for bit.
    same = [np.array_equal(a, b) for a, b in zip(windows[0.0], windows[0.5], strict=True)]
    assert 15 <= sum(same) <= 45
    assert not any(np.array_equal(a, b) for a, b in zip(windows[0.0], windows[1.0], strict=True))
    with pytest.raises(ValueError, match="vtlp_probability"):
        Augmenter(SPEC, [], np.random.default_rng(0), vtlp_probability=1.5)


def _band_centre_hz(audio: np.ndarray, low_hz: float, high_hz: float) -> float:
    power = np.abs(np.fft.rfft(audio * np.hanning(audio.size))) ** 2
    frequency = np.fft.rfftfreq(audio.size, 1 / SPEC.sample_rate)
    band = (frequency > low_hz) & (frequency < high_hz)
    return float((power[band] * frequency[band]).sum() / power[band].sum())


def test_formant_warping_moves_each_formant_region_by_its_own_factor():
    from train.data.augment import formant_warped, vocal_tract_warped

    vowel = _vowel(0.6)  # formants at 700 and 1200 Hz, between the neutral F1 (500 Hz) and F2 (1500 Hz) knots
    # One factor for all is VTLP by that factor, to the sample.
    np.testing.assert_allclose(formant_warped(vowel, SPEC, [0.8] * 4), vocal_tract_warped(vowel, SPEC, 0.8), atol=1e-6)
    lowered = formant_warped(vowel, SPEC, [0.5, 1.0, 1.0, 1.0])
    assert lowered.shape == vowel.shape and lowered.dtype == np.float32
    assert power_db(lowered) == pytest.approx(power_db(vowel), abs=0.01)
    assert _pitch_peak(lowered, 120.0) > 0.9  # still voiced, at the same pitch
    # F1's knot at half: the envelope's 700 Hz peak lands at 500, its 1200 Hz one at 1125 (linear between the
    # moved knots 250 and 1500 Hz); the harmonics stay where they are, so their power-weighted centre moves less.
    # F2's knot moved too, and both peaks go further down.
    centre = _band_centre_hz(vowel, 200, 3000)
    assert 0.85 < _band_centre_hz(lowered, 200, 3000) / centre < 0.95
    assert _band_centre_hz(formant_warped(vowel, SPEC, [0.5, 0.5, 1.0, 1.0]), 200, 3000) / centre < 0.65
    # Moving only the third and fourth formants up leaves the vowel's two formants where they were...
    upper = formant_warped(vowel, SPEC, [1.0, 1.0, 1.5, 1.5])
    assert _band_centre_hz(upper, 200, 1600) / _band_centre_hz(vowel, 200, 1600) == pytest.approx(1.0, abs=0.02)
    # ...and stretches what lies above 1500 Hz upwards.
    assert _band_centre_hz(upper, 1600, 7000) > _band_centre_hz(vowel, 1600, 7000) * 1.05
    np.testing.assert_array_equal(formant_warped(vowel, SPEC, [1.0] * 4), vowel)
    for bad in ([1.0, 1.0], [1.0, 0.0, 1.0, 1.0]):
        with pytest.raises(ValueError, match="factors must be 4 numbers > 0"):
            formant_warped(vowel, SPEC, bad)


def test_formant_targets_keep_their_order_and_gap():
    from train.data.augment import FORMANT_MIN_GAP_HZ, formant_targets_hz

    np.testing.assert_allclose(formant_targets_hz([0.5, 1.0, 1.2, 1.0]), [250.0, 1500.0, 3000.0, 3500.0])
    crossed = formant_targets_hz([1.5, 0.5, 0.5, 0.5])  # 750, 750, 1250, 1750 Hz before the gap is kept
    np.testing.assert_allclose(crossed, [750.0, 750.0 + FORMANT_MIN_GAP_HZ, 1250.0, 1750.0])
    assert np.all(np.diff(crossed) >= FORMANT_MIN_GAP_HZ)


def test_formant_warp_changes_only_the_windows_it_warps_and_follows_its_probability():
    vowel = _vowel(0.5)
    windows = {}
    for probability in (0.0, 0.5, 1.0):
        augmenter = Augmenter(
            SPEC, noise_bank(), np.random.default_rng(7), formant_warp_probability=probability, **PLAIN
        )
        windows[probability] = [augmenter.window(vowel) for _ in range(60)]
    # Side draws, as VTLP's: a window it does not warp is the window without it, bit for bit.
    same = [np.array_equal(a, b) for a, b in zip(windows[0.0], windows[0.5], strict=True)]
    assert 15 <= sum(same) <= 45
    assert not any(np.array_equal(a, b) for a, b in zip(windows[0.0], windows[1.0], strict=True))
    with pytest.raises(ValueError, match="formant_warp_probability"):
        Augmenter(SPEC, [], np.random.default_rng(0), formant_warp_probability=-0.1)


def _talker_tones(rng: np.random.Generator) -> np.ndarray:
    """A 'talker' whose every utterance is a 0.4 s tone at one of 8 frequencies (250-2000 Hz): a stand-in for
    speech whose sources can be told apart in the spectrum."""
    return tone(0.4, hz=250.0 * int(rng.integers(1, 9)))


def test_fresh_babble_has_every_talker_speaking_from_its_first_sample_at_the_bank_level():
    from train.data.augment import NOISE_BANK_RMS, fresh_babble

    rng = np.random.default_rng(3)
    for talkers in (1, 4, 8):
        babble = fresh_babble(_talker_tones, talkers, SPEC.clip_samples, rng)
        assert babble.shape == (SPEC.clip_samples,) and babble.dtype == np.float32
        assert np.sqrt(np.mean(np.square(babble, dtype=np.float64))) == pytest.approx(NOISE_BANK_RMS, rel=1e-4)
        # Cut from the middle of a longer mix: sound within the first 50 ms (a track starting within the window
        # would leave its start silent). With gaps of up to half an utterance a lone talker can pause there.
        if talkers > 1:
            assert np.abs(babble[: SPEC.sample_rate // 20]).max() > 0.01
    # More talkers: more distinct tones in one window (counted as spectral peaks at the 8 frequencies).
    def tones_heard(audio):
        spectrum = np.abs(np.fft.rfft(audio))
        bins = [round(250.0 * k * audio.size / SPEC.sample_rate) for k in range(1, 9)]
        return sum(spectrum[b] > 0.05 * spectrum.max() for b in bins)

    one = np.mean([tones_heard(fresh_babble(_talker_tones, 1, SPEC.clip_samples, rng)) for _ in range(20)])
    eight = np.mean([tones_heard(fresh_babble(_talker_tones, 8, SPEC.clip_samples, rng)) for _ in range(20)])
    assert eight > one + 2


def test_fresh_babble_replaces_the_bank_noise_in_its_share_of_windows_and_changes_no_other_draw():
    utterance = tone(0.5, hz=3100.0)
    windows = {}
    for probability in (0.0, 0.5, 1.0):
        augmenter = Augmenter(
            SPEC, noise_bank(), np.random.default_rng(11), noise_probability=1.0, gain_db=(0.0, 0.0), snr_db=(0.0, 0.0),
            context_speech=_talker_tones, context_probability=0.0, babble_probability=probability, **PLAIN,
        )  # fmt: skip
        windows[probability] = [augmenter.window(utterance) for _ in range(40)]
    same = [np.array_equal(a, b) for a, b in zip(windows[0.0], windows[0.5], strict=True)]
    assert 8 <= sum(same) <= 32
    # The noise of every window of probability 1 is the talkers' tones instead of the bank's broadband noise: the
    # window's power outside the utterance's own tone lies near the talkers' frequencies.
    def share_near_talkers(window):
        power = np.abs(np.fft.rfft(window)) ** 2  # 1 Hz bins
        power[3100 - 10 : 3100 + 11] = 0.0  # the utterance
        near = sum(power[max(250 * k - 10, 0) : 250 * k + 11].sum() for k in range(1, 9))
        return near / power.sum()

    assert min(share_near_talkers(window) for window in windows[1.0]) > 0.8
    assert np.median([share_near_talkers(window) for window in windows[0.0]]) < 0.5
    # Without a source of speech there is no babble, whatever the probability.
    quiet = Augmenter(SPEC, noise_bank(), np.random.default_rng(11), noise_probability=1.0, babble_probability=1.0)
    assert quiet.babble_probability == 0.0
    with pytest.raises(ValueError, match="babble_probability"):
        Augmenter(SPEC, [], np.random.default_rng(0), babble_probability=-0.1)
