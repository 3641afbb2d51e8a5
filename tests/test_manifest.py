"""`edge_runtime.manifest.load_bundle` on a real converted bundle, and on copies with one thing wrong each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.errors import KwsError
from edge_runtime.features import FeatureSpec
from edge_runtime.interpreter import softmax
from edge_runtime.manifest import MANIFEST_NAME, load_bundle
from tests.tiny import shared_dscnn_bundle


@pytest.fixture(scope="module")
def bundle_dir() -> Path:
    return shared_dscnn_bundle()


@pytest.fixture
def copy(bundle_dir, tmp_path) -> Path:
    target = tmp_path / "bundle"
    shutil.copytree(bundle_dir, target)
    return target


def edit_manifest(folder: Path, change) -> Path:
    path = folder / MANIFEST_NAME
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return path


def test_loads_from_folder_or_manifest_path(bundle_dir):
    for where in (bundle_dir, bundle_dir / MANIFEST_NAME):
        bundle = load_bundle(where)
        assert bundle.keyword == "sheila" and bundle.labels == ["_other_", "sheila"] and bundle.keyword_index == 1
        assert bundle.feature_spec == FeatureSpec()
        assert bundle.detection.threshold == 0.5 and bundle.detection.window_hop_seconds == 0.1
        assert bundle.model.input.shape == [1, 98, 40] and bundle.model.precision == "int8"


def test_tampered_model_is_refused_with_both_checksums(copy):
    model = copy / "model_int8.tflite"
    data = bytearray(model.read_bytes())
    data[-20] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(
        KwsError, match=r"is not the one in the manifest: expected sha256 [0-9a-f]{64} \(\d+ bytes\), found"
    ):
        load_bundle(copy)


def test_missing_model_file(copy):
    (copy / "model_int8.tflite").unlink()
    with pytest.raises(KwsError, match="model file .*model_int8.tflite does not exist"):
        load_bundle(copy)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda m: m.update(format="kws-edge-manifest/0"),
            "format must be 'kws-edge-manifest/1', found 'kws-edge-manifest/0'",
        ),
        (
            lambda m: m["feature_spec"].update(sample_rate=8000),
            "feature_spec is not usable: .*7600.0 Hz must lie within 0..4000",
        ),
        (
            lambda m: m["feature_spec"].update(clip_seconds=1.5),
            r"windows of shape \[1, 148, 40\] .* model.input.shape is \[1, 98, 40\]",
        ),
        (lambda m: m["feature_spec"].update(n_mels=32), r"windows of shape \[1, 98, 32\]"),
        (lambda m: m["feature_spec"].update(colour="blue"), r"unknown keys \['colour'\]"),
        (lambda m: m["model"]["input"].update(shape=[1, 99, 40]), r"model.input.shape is \[1, 99, 40\]"),
        (
            lambda m: m["model"]["output"].update(shape=[1, 3]),
            r"2 labels need model.output.shape \[1, 2\], found \[1, 3\]",
        ),
        (
            lambda m: m["model"]["input"].update(dtype="float32"),
            "the model's input: dtype expected 'float32', found 'int8'",
        ),
        (lambda m: m["model"]["output"].update(scale=0.5), r"the model's output: scale expected 0.5, found 0\.\d+"),
        (
            lambda m: m["model"]["output"].update(meaning="decibels"),
            "model.output.meaning is 'decibels'; allowed: 'class logits', 'class probabilities'",
        ),
        (lambda m: m["model"]["input"].update(zero_point=m["model"]["input"]["zero_point"] + 1), "zero_point expected"),
        (
            lambda m: m["model"].update(precision="float32"),
            "model.precision is 'float32' but the model's input is int8",
        ),
        (lambda m: m.update(keyword_index=0), "keyword_index 0 must point at 'sheila'"),
        (lambda m: m["detection"].update(window_hop_seconds=0.015), "positive multiple of the feature hop"),
        (lambda m: m["detection"].update(threshold=1.5), "threshold 1.5 must be in 0..1"),
        (lambda m: m.pop("detection"), "'detection' is missing"),
        (lambda m: m["model"].update(bytes="many"), "'model.bytes' must be int, found 'many'"),
    ],
    ids=[
        "format",
        "sample-rate",
        "clip-length",
        "n-mels",
        "unknown-spec-key",
        "input-shape",
        "output-shape",
        "input-dtype",
        "output-scale",
        "output-meaning",
        "zero-point",
        "precision",
        "keyword-index",
        "hop",
        "threshold",
        "missing-section",
        "wrong-type",
    ],
)
def test_each_mismatch_says_what_was_expected_and_found(copy, change, message):
    edit_manifest(copy, change)
    with pytest.raises(KwsError, match=message) as raised:
        load_bundle(copy)
    assert "\n" not in str(raised.value)


def test_the_output_meaning_decides_whether_the_runtime_applies_the_softmax(bundle_dir, copy):
    features = np.random.default_rng(0).normal(-6.0, 3.0, (98, 40)).astype(np.float32)
    converted = load_bundle(bundle_dir).model  # written now: logits, softmax in the runtime
    assert converted.output_meaning == "class logits"
    # A manifest from before the field existed describes a graph ending in a softmax: its output is read as is.
    edit_manifest(copy, lambda m: m["model"]["output"].pop("meaning"))
    older = load_bundle(copy).model
    assert older.output_meaning == "class probabilities"
    assert np.allclose(softmax(older.probabilities(features)), converted.probabilities(features))


def test_missing_or_invalid_manifest(tmp_path):
    with pytest.raises(KwsError, match="model bundle .* not found"):
        load_bundle(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(KwsError, match="is not valid JSON"):
        load_bundle(tmp_path)
