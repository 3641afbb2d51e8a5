"""Fuzzing the edge runtime's boundaries: the WAV reader and the bundle manifest.

Whatever bytes or JSON come in, the only outcomes allowed are a clean result or `KwsError` (one line, shown to the
user as `error: ...`): no other exception, no NaN audio, no hang. Case counts are fixed per test (see FUZZ_CASES)
and derandomised, so a run is reproducible and CI sees the same cases every time.
"""

from __future__ import annotations

import io
import json
import shutil

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_runtime.audio_io import read_audio
from edge_runtime.errors import KwsError
from edge_runtime.features import FeatureSpec
from edge_runtime.manifest import load_bundle
from tests.tiny import shared_dscnn_bundle

FUZZ_CASES = 300
FUZZ = settings(max_examples=FUZZ_CASES, derandomize=True, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SPEC = FeatureSpec()


def valid_wav_bytes(rate: int = 22050, channels: int = 2, subtype: str = "PCM_24") -> bytes:
    t = np.arange(rate // 4) / rate
    audio = np.stack([0.3 * np.sin(2 * np.pi * 440 * (c + 1) * t) for c in range(channels)], axis=1)
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, subtype=subtype, format="WAV")
    return buffer.getvalue()


VALID_WAVS = [valid_wav_bytes(), valid_wav_bytes(8000, 1, "PCM_U8"), valid_wav_bytes(48000, 1, "FLOAT")]


def assert_clean_or_kws_error(path) -> None:
    try:
        audio = read_audio(path, SPEC.sample_rate)
    except KwsError as error:
        message = str(error)
        assert message and "\n" not in message and str(path) in message
        return
    assert audio.dtype == np.float32 and audio.ndim == 1 and audio.size > 0
    assert np.isfinite(audio).all()


@FUZZ
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes_never_crash_the_wav_reader(tmp_path, data):
    path = tmp_path / "fuzz.wav"
    path.write_bytes(data)
    assert_clean_or_kws_error(path)


@FUZZ
@given(
    which=st.integers(0, len(VALID_WAVS) - 1),
    cut=st.integers(0, 200),
    flips=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 255)), max_size=6),
)
def test_truncated_and_corrupted_wav_headers_give_one_error_line(tmp_path, which, cut, flips):
    data = bytearray(VALID_WAVS[which])
    for position, value in flips:  # the first 80 bytes hold the RIFF, fmt and data headers
        data[position] = value
    if cut:
        data = data[: max(0, len(data) - cut * 37)]
    path = tmp_path / "mutated.wav"
    path.write_bytes(bytes(data))
    assert_clean_or_kws_error(path)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=8,
)


def paths_of(value, prefix=()):
    """Every key path inside a nested manifest, for picking what to mutate."""
    yield prefix
    if isinstance(value, dict):
        for key, child in value.items():
            yield from paths_of(child, (*prefix, key))


@pytest.fixture(scope="module")
def bundle_copy(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-bundle") / "edge"
    shutil.copytree(shared_dscnn_bundle(), folder)
    return folder, json.loads((folder / "manifest.json").read_text())


@FUZZ
@given(data=st.data())
def test_mutated_manifests_load_or_say_what_is_wrong(bundle_copy, data):
    folder, original = bundle_copy
    manifest = json.loads(json.dumps(original))
    candidates = [p for p in paths_of(manifest) if p]
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(candidates))
        parent = manifest
        for key in path[:-1]:
            if not isinstance(parent, dict) or key not in parent:
                break
            parent = parent[key]
        else:
            if isinstance(parent, dict):
                if data.draw(st.booleans()):
                    parent.pop(path[-1], None)
                else:
                    parent[path[-1]] = data.draw(JSON_VALUES)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    try:
        bundle = load_bundle(folder)
    except KwsError as error:
        assert str(error) and "\n" not in str(error)
        return
    # Whatever loaded must still be a usable, self-consistent bundle.
    assert bundle.labels[bundle.keyword_index] == bundle.keyword
    assert bundle.model.input.shape == [1, bundle.feature_spec.frames_per_clip, bundle.feature_spec.n_mels]


@FUZZ
@given(values=st.dictionaries(st.sampled_from(sorted(FeatureSpec().to_dict())), JSON_VALUES, max_size=4))
def test_feature_spec_from_arbitrary_values_is_valid_or_refused(values):
    try:
        spec = FeatureSpec.from_dict(values)
    except (TypeError, ValueError):
        return
    assert spec.frames_per_clip >= 1 and spec.hop_samples >= 1
