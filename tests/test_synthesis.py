"""The two offline speech engines: eSpeak NG (ctypes) and Piper (joe voice)."""

import subprocess
import sys

import numpy as np
import pytest

from edge_runtime.features import FeatureSpec
from tests.tiny import REPO
from train.data.clipset import resample, trim_silence
from train.data.espeak import (
    SENTENCE_RANGE_CAPS,
    EspeakEngine,
    EspeakParams,
    EspeakVoice,
    english_languages,
    sentence_safe,
    voice_variants,
)
from train.data.piper_voice import PiperEngine, PiperParams
from train.data.synthetic import Request, synthesize_all

SPEC = FeatureSpec()
WORD = "sheila"


def spoken_seconds(audio: np.ndarray, engine_rate: int) -> float:
    """Duration at the feature rate once leading and trailing silence is gone."""
    return trim_silence(resample(audio, engine_rate, SPEC), SPEC).size / SPEC.sample_rate


def rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


@pytest.fixture(scope="module")
def espeak():
    return EspeakEngine.shared()


@pytest.fixture(scope="module")
def piper():
    return PiperEngine(seed=0)


def test_bundled_espeak_data_has_english_voices_and_variants():
    assert {"en", "en-us", "en-gb-scotland", "en-029"} <= set(english_languages())
    assert "en-shaw" not in english_languages()  # Shavian alphabet, not Latin text
    assert {"", "f3", "m1", "klatt"} <= set(voice_variants()) and len(voice_variants()) > 50


def test_espeak_speaks_a_word_at_16_khz(espeak):
    audio = espeak.synthesize(WORD, EspeakVoice("en-us", "f3"), EspeakParams())
    assert espeak.sample_rate == 22050 and audio.dtype == np.float32
    at_16k = resample(audio, espeak.sample_rate, SPEC)
    assert at_16k.size == pytest.approx(audio.size * SPEC.sample_rate / espeak.sample_rate, abs=2)
    assert rms(at_16k) > 0.02 and np.abs(at_16k).max() <= 1.0
    assert 0.25 < spoken_seconds(audio, espeak.sample_rate) < 1.0


def test_espeak_rate_changes_duration(espeak):
    voice = EspeakVoice("en-gb-x-rp", "m3")
    slow = spoken_seconds(espeak.synthesize(WORD, voice, EspeakParams(rate=100)), espeak.sample_rate)
    fast = spoken_seconds(espeak.synthesize(WORD, voice, EspeakParams(rate=300)), espeak.sample_rate)
    assert slow > 1.8 * fast


def median_pitch_hz(audio: np.ndarray, rate: int) -> float:
    """Autocorrelation pitch of the loud 40 ms frames, searched over 60..400 Hz."""
    frame, shortest, longest = round(0.04 * rate), rate // 400, rate // 60
    estimates = []
    for start in range(0, audio.size - frame, frame):
        piece = audio[start : start + frame] - audio[start : start + frame].mean()
        if rms(piece) < 0.3 * rms(audio):
            continue
        correlation = np.correlate(piece, piece, mode="full")[frame - 1 :]
        estimates.append(rate / (shortest + int(np.argmax(correlation[shortest:longest]))))
    return float(np.median(estimates))


def test_espeak_variants_sound_different(espeak):
    female = espeak.synthesize(WORD, EspeakVoice("en-us", "f3"), EspeakParams())
    male = espeak.synthesize(WORD, EspeakVoice("en-us", "m3"), EspeakParams())
    assert female.size != male.size or not np.array_equal(female, male)
    assert median_pitch_hz(female, espeak.sample_rate) > 1.3 * median_pitch_hz(male, espeak.sample_rate)


def test_espeak_same_request_in_fresh_processes_gives_identical_audio():
    request = Request(0, "espeak", WORD, WORD + "!", 1, "train", "espeak:en-us+f3", EspeakParams(rate=150),
                      EspeakVoice("en-us", "f3"))  # fmt: skip
    first = synthesize_all([request], SPEC, seed=0, workers=1, progress=False)[0]
    second = synthesize_all([request], SPEC, seed=0, workers=1, progress=False)[0]
    assert first.dtype == np.int16 and first.size > 0
    assert np.array_equal(first, second)


def test_sentences_in_the_variant_that_crashes_the_library_are_spoken_with_a_capped_range():
    # In a fresh process: with the drawn range (99) this sentence kills the process inside libespeak-ng.
    code = (
        "from train.data.espeak import EspeakEngine, EspeakParams, EspeakVoice, sentence_safe\n"
        "voice = EspeakVoice('en-us', 'Demonic')\n"
        "params = sentence_safe(voice, EspeakParams(rate=200, pitch=16, pitch_range=99, word_gap=3))\n"
        "audio = EspeakEngine.shared().synthesize('can contain nested compound statements', voice, params)\n"
        "print(params.pitch_range, audio.size)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    capped, samples = map(int, done.stdout.split())
    assert capped == SENTENCE_RANGE_CAPS["Demonic"] and samples > SPEC.sample_rate  # over a second of speech
    untouched = EspeakParams(pitch=16, pitch_range=99)
    assert sentence_safe(EspeakVoice("en-us", "m2"), untouched) == untouched


def test_espeak_rejects_unknown_voices_and_out_of_range_parameters(espeak):
    with pytest.raises(ValueError, match="variant 'nosuchvariant' not found"):
        espeak.synthesize(WORD, EspeakVoice("en-us", "nosuchvariant"), EspeakParams())
    with pytest.raises(ValueError, match="available: en"):
        espeak.synthesize(WORD, EspeakVoice("xx"), EspeakParams())
    with pytest.raises(ValueError, match="80..450"):
        EspeakParams(rate=500)


def test_piper_speaks_and_length_scale_changes_duration(piper):
    normal = piper.synthesize(WORD, PiperParams(length_scale=1.0))
    assert piper.sample_rate == 22050 and rms(normal) > 0.02
    fast = spoken_seconds(piper.synthesize(WORD, PiperParams(length_scale=0.75)), piper.sample_rate)
    slow = spoken_seconds(piper.synthesize(WORD, PiperParams(length_scale=1.35)), piper.sample_rate)
    assert slow > 1.3 * fast


def test_piper_engines_with_the_same_seed_agree():
    params = PiperParams(noise_scale=0.8)
    first = PiperEngine(seed=5).synthesize(WORD, params)
    second = PiperEngine(seed=5).synthesize(WORD, params)
    other = PiperEngine(seed=6).synthesize(WORD, params)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)


def test_piper_rejects_out_of_range_scales():
    with pytest.raises(ValueError, match="length_scale 3.0 is outside"):
        PiperParams(length_scale=3.0)
