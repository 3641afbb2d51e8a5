"""The verifier's ensemble (train.ensemble): tiny CRNNs trained from different seeds joined into one checkpoint
whose logits are their mean, scored on the val and test windows, converted by the real pipeline as a verifier, and
members that do not share a contract refused with one line."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from convert.pipeline import ConversionOptions, run_conversion
from convert.verifier import VERIFIER_FOLDER
from convert.windows import WindowMaker
from edge_runtime.interpreter import TfliteModel
from edge_runtime.stream_manifest import load_stream_bundle
from tests.tiny import REPO, SPEC, make_tiny_checkpoint, make_tiny_clipset
from train.checkpoint import load_checkpoint, save_checkpoint
from train.data.clipset import ClipSet
from train.ensemble import main as ensemble_main


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("ensemble")
    clipset = make_tiny_clipset(root / "clips")
    paths = [make_tiny_checkpoint(root / f"crnn-{seed}.pt", "crnn", clipset, steps=20, seed=seed) for seed in (0, 1)]
    assert ensemble_main(["--members", *map(str, paths), "--data", str(clipset), "--out", str(root / "verifier")]) == 0
    return {"root": root, "clips": clipset, "members": paths, "ensemble": root / "verifier" / "best.pt"}


def test_the_ensemble_outputs_the_mean_of_its_members_logits_and_keeps_their_contract(members):
    ensemble, info = load_checkpoint(members["ensemble"])
    loaded = [load_checkpoint(path) for path in members["members"]]
    windows = torch.from_numpy(WindowMaker(ClipSet.load(members["clips"]), SPEC).split("test").features)
    with torch.no_grad():
        each = [model(windows) for model, _ in loaded]
        joined = ensemble(windows)
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # the seeds made different models
    torch.testing.assert_close(joined, (each[0] + each[1]) / 2, atol=1e-5, rtol=1e-5)
    first = loaded[0][1]
    assert info.architecture == "ensemble" and len(info.model_config["members"]) == 2
    assert (info.feature_spec, info.labels, info.keyword) == (first.feature_spec, first.labels, first.keyword)
    assert info.data["members"] == [str(path.resolve()) for path in members["members"]]
    # Its threshold was chosen on val, and the val and test metrics beside it are at that threshold.
    assert 0.0 < info.threshold < 1.0
    assert info.metrics["val"]["threshold"] == info.metrics["test"]["threshold"] == pytest.approx(info.threshold)
    written = json.loads((members["ensemble"].parent / "metrics.json").read_text())
    assert written["test"] == info.metrics["test"] and written["parameters"] == 2 * sum(
        p.numel() for p in loaded[0][0].parameters()
    )
    assert info.metrics["test"]["roc_auc"] > 0.9  # the chirps are easy; a broken join would not rank them


@pytest.fixture(scope="module")
def bundle(members) -> dict:
    """A tiny dscnn converted with the ensemble as its verifier (two real onnx2tf conversions)."""
    student = make_tiny_checkpoint(members["root"] / "dscnn.pt", "dscnn", members["clips"])
    out = members["root"] / "edge"
    manifest = run_conversion(
        ConversionOptions(checkpoint=student, out=out, calibration_windows=40, verifier=members["ensemble"]),
        say=print,
    )
    return {"out": out, "manifest": manifest}


def test_the_ensemble_converts_as_the_verifier_and_its_int8_model_agrees_with_torch(members, bundle):
    out, manifest = bundle["out"], bundle["manifest"]
    verifier_manifest = json.loads((out / VERIFIER_FOLDER / "manifest.json").read_text())
    assert verifier_manifest["model"]["architecture"] == "ensemble"
    assert verifier_manifest["model"]["members"] == ["crnn", "crnn"]
    assert load_stream_bundle(out).verifier.architecture == "2 crnn (mean logit)"  # what the runtime's log says
    _, info = load_checkpoint(members["ensemble"])
    assert manifest["verifier"]["threshold"] == pytest.approx(info.threshold)
    # The float32 TFLite is the torch ensemble; the int8 one ranks the test windows as it does.
    windows = WindowMaker(ClipSet.load(members["clips"]), SPEC).split("test")
    ensemble, _ = load_checkpoint(members["ensemble"])
    with torch.no_grad():
        reference = torch.softmax(ensemble(torch.from_numpy(windows.features)), 1)[:, 1].numpy()
    float32 = TfliteModel(out / VERIFIER_FOLDER / "model_float32.tflite")
    scores = np.array([float32.probabilities(window)[1] for window in windows.features])
    np.testing.assert_allclose(scores, reference, atol=1e-4)
    metrics = verifier_manifest["metrics"]["test"]
    assert metrics["tflite_int8"]["roc_auc"] == pytest.approx(metrics["torch"]["roc_auc"], abs=0.02)


def test_members_that_do_not_share_a_contract_are_refused_with_one_line(members, tmp_path):
    model, info = load_checkpoint(members["members"][1])
    other_keyword = tmp_path / "other.pt"
    save_checkpoint(other_keyword, model, dataclasses.replace(info, keyword="_other_"))
    for argv, expected in (
        ([str(members["members"][0]), str(other_keyword)], "differs from"),
        ([str(members["members"][0])], "at least two"),
        ([str(members["members"][0]), str(tmp_path / "missing.pt")], "does not exist"),
        ([str(members["members"][0]), str(members["ensemble"])], "an ensemble itself"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "train.ensemble", "--members", *argv, "--data", str(members["clips"]),
             "--out", str(tmp_path / "out")],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], result.stderr
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_the_run_summary_lists_the_joined_verifier_beside_the_trained_models(members, bundle, tmp_path, capsys):
    from train.summary import main as summary_main

    (tmp_path / "data_path.txt").write_text(f"{members['clips']}\n")
    (tmp_path / "edge").symlink_to(bundle["out"], target_is_directory=True)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "verifier").symlink_to(members["ensemble"].parent, target_is_directory=True)
    assert summary_main(["--artifacts", str(tmp_path), "--edge-python", sys.executable]) == 0
    printed = capsys.readouterr().out
    assert "joined   2 checkpoints" in printed and "into their mean logit" in printed
    assert "edge runtime scores on held-out keyword samples" in printed
    written = json.loads((members["ensemble"].parent / "metrics.json").read_text())["data"]
    assert written["cache_key"] == ClipSet.load(members["clips"]).meta["cache_key"]
    assert "its own; test split from there" not in printed  # the run's own data set: nothing to point out


def test_the_run_summary_names_the_data_set_of_a_model_trained_on_another(members, bundle, tmp_path, capsys):
    from train.summary import main as summary_main

    (tmp_path / "data_path.txt").write_text(f"{members['clips']}\n")
    (tmp_path / "edge").symlink_to(bundle["out"], target_is_directory=True)
    verifier = tmp_path / "train" / "verifier"
    verifier.mkdir(parents=True)
    metrics = json.loads((members["ensemble"].parent / "metrics.json").read_text())
    metrics["data"] = {"clipset": "/data/synthetic-sheila-twice", "cache_key": "another"}
    (verifier / "metrics.json").write_text(json.dumps(metrics))
    assert summary_main(["--artifacts", str(tmp_path), "--edge-python", sys.executable]) == 0
    lines = capsys.readouterr().out.splitlines()
    note = "/data/synthetic-sheila-twice (its own; test split from there)"
    named = [i for i, line in enumerate(lines) if note in line]
    assert len(named) == 1 and "test (torch fp32)" in lines[named[0] + 1]
