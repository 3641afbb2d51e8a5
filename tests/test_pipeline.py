"""The whole path at tiny scale, through the same commands `make train-and-convert` runs: synthetic speech from
eSpeak NG and Piper -> training -> ONNX -> onnx2tf int8 TFLite -> the edge CLI in `.venv-edge` scoring a WAV."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from edge_runtime.detector import KeywordScorer
from edge_runtime.features import MODEL_FRONT_END, FeatureSpec
from edge_runtime.manifest import load_bundle, sha256_of
from train.data.augment import Augmenter
from train.data.clipset import ClipSet, build_dataset
from train.data.synthetic import SplitCounts, SyntheticSource

REPO = Path(__file__).resolve().parents[1]
EDGE_PYTHON = REPO / ".venv-edge" / "bin" / "python"
TINY = SplitCounts(keyword_espeak=30, keyword_piper=6, other_espeak=40, other_piper=6, noise=6)
TINY_EVAL = SplitCounts(keyword_espeak=8, keyword_piper=2, other_espeak=10, other_piper=2, noise=2)


def run(*command: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, f"{command[:3]} failed:\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    if not EDGE_PYTHON.exists():
        pytest.fail(f"{EDGE_PYTHON} is missing: run `make venvs`")
    root = tmp_path_factory.mktemp("pipeline")
    source = SyntheticSource("sheila", counts={"train": TINY, "val": TINY_EVAL, "test": TINY_EVAL}, progress=False)
    data = build_dataset(source, FeatureSpec(), root / "data", seed=1)
    run(sys.executable, "-m", "train.fit", "--data", str(data), "--model", "dscnn", "--epochs", "8",
        "--batch-size", "32", "--out", str(root / "train"))
    run(sys.executable, "-m", "convert", "--checkpoint", str(root / "train" / "best.pt"), "--out", str(root / "edge"),
        "--calibration-windows", "40", "--min-agreement", "0.8")
    return root, data


def test_pipeline_leaves_a_checked_int8_bundle(pipeline):
    root, _ = pipeline
    manifest = json.loads((root / "edge" / "manifest.json").read_text())
    model = manifest["model"]
    assert model["precision"] == "int8" and model["architecture"] == "dscnn"
    assert model["input"]["dtype"] == "int8" and model["output"]["dtype"] == "int8"
    assert model["input"]["shape"] == [1, 98, 40]
    assert model["sha256"] == sha256_of(root / "edge" / model["file"])
    # The data's spec with the front-end new models get (train.fit's default), carried into the manifest.
    assert manifest["feature_spec"] == dataclasses.replace(FeatureSpec(), front_end=MODEL_FRONT_END).to_dict()
    assert MODEL_FRONT_END == "pcen-v2"
    for name in ("torch", "onnx", "tflite_float32", "tflite_int8"):
        assert 0.0 <= manifest["metrics"]["test"][name]["accuracy"] <= 1.0
    assert manifest["metrics"]["int8_vs_float32"]["decision_agreement"] >= 0.8


def score_with_edge_cli(bundle: Path, *wavs: Path) -> list[dict]:
    result = subprocess.run(
        [str(EDGE_PYTHON), "-m", "edge_runtime", "score", "--model", str(bundle), *map(str, wavs)],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_edge_cli_scores_generated_speech_as_the_bundle_does_in_process(pipeline, tmp_path):
    root, data = pipeline
    clips = ClipSet.load(data)
    augmenter = Augmenter(FeatureSpec(), clips.noise_bank(), np.random.default_rng(0))
    window = augmenter.centered_window(clips.utterance(clips.indices("test", label=1)[0]))
    native, resampled = tmp_path / "keyword_16k.wav", tmp_path / "keyword_44k_stereo.wav"
    soundfile.write(native, window, 16000, subtype="FLOAT")
    # The same speech at 44.1 kHz stereo: the edge runtime must resample and downmix it.
    soundfile.write(resampled, np.stack([soxr.resample(window, 16000, 44100)] * 2, axis=1), 44100, subtype="FLOAT")

    scored = score_with_edge_cli(root / "edge", native, resampled)
    assert [record["file"] for record in scored] == [str(native), str(resampled)]
    in_process = KeywordScorer(load_bundle(root / "edge")).window_scores(window).peak
    output_step = load_bundle(root / "edge").model.output.scale  # one int8 step of the probability output
    assert abs(scored[0]["score"] - in_process) <= output_step + 1e-6
    assert abs(scored[1]["score"] - in_process) <= 8 * output_step
