"""The training loop on a tiny learnable task: it must learn it, keep the best checkpoint and report metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.tiny import make_tiny_clipset
from train.checkpoint import load_checkpoint
from train.data.augment import Augmenter
from train.data.clipset import ClipSet
from train.features_torch import TorchMelFrontEnd
from train.fit import FitConfig, fit, keyword_scores
from train.losses import class_weights

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    clipset = make_tiny_clipset(root / "clips")
    # The tiny keyword is a chirp, not a voice: no vocal tract to perturb (VTLP, on by default, is tested below).
    config = FitConfig(
        data=clipset, out=root / "run", model="dscnn", epochs=4, batch_size=16, seed=0, device="cpu", vtlp=0.0
    )
    return config, fit(config)


def test_training_learns_the_tiny_task_and_writes_metrics(trained):
    config, metrics = trained
    written = json.loads((config.out / "metrics.json").read_text())
    assert written["test"] == metrics["test"]
    assert [row["epoch"] for row in written["history"]] == [1, 2, 3, 4]
    # Which clip set the test split is from: the summary names it when it is not the run's (the verifier's teachers).
    assert written["data"]["cache_key"] == ClipSet.load(config.data).meta["cache_key"]
    assert Path(written["data"]["clipset"]).resolve() == Path(config.data).resolve()
    # Chirp vs noise is easy: a model that trained at all separates it.
    assert metrics["test"]["roc_auc"] > 0.95 and metrics["test"]["accuracy"] > 0.9
    assert metrics["history"][-1]["train_loss"] < metrics["history"][0]["train_loss"]
    assert 0.0 < metrics["test"]["threshold"] < 1.0


def test_best_checkpoint_reproduces_the_reported_test_metrics(trained):
    config, metrics = trained
    model, info = load_checkpoint(config.out / "best.pt")
    assert info.epoch == metrics["best_epoch"] and info.threshold == metrics["test"]["threshold"]
    assert info.metrics["test"] == metrics["test"]
    clips = ClipSet.load(config.data)
    augmenter = Augmenter(info.feature_spec, clips.noise_bank(), np.random.default_rng(0))
    test = clips.indices("test")
    windows = np.stack([augmenter.centered_window(clips.utterance(i)) for i in test])
    front_end = TorchMelFrontEnd(info.feature_spec)
    scores = keyword_scores(model, front_end, windows, info.keyword_index, torch.device("cpu"))
    accuracy = float(((scores >= info.threshold) == (clips.labels[test] == 1)).mean())
    assert accuracy == pytest.approx(metrics["test"]["accuracy"])


def test_cli_reports_bad_data_in_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "train.fit", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error:") and len(result.stderr.strip().splitlines()) == 1


def test_interrupted_training_resumes_to_the_same_result(tmp_path):
    """Also with augmentation workers after the break: the worker count changes the speed, not the model."""
    clipset = make_tiny_clipset(tmp_path / "clips")
    common = {"data": clipset, "model": "dscnn", "epochs": 3, "batch_size": 16, "seed": 1, "device": "cpu"}
    uninterrupted = fit(FitConfig(out=tmp_path / "straight", **common))
    assert fit(FitConfig(out=tmp_path / "split", stop_after_epochs=1, **common)) == {"stopped_after_epoch": 1}
    assert (tmp_path / "split" / "last.pt").exists() and not (tmp_path / "split" / "metrics.json").exists()
    resumed = fit(FitConfig(out=tmp_path / "split", resume=True, workers=2, **common))
    assert [row["epoch"] for row in resumed["history"]] == [1, 2, 3]
    assert [row["train_loss"] for row in resumed["history"]] == [row["train_loss"] for row in uninterrupted["history"]]
    assert resumed["test"] == uninterrupted["test"] and resumed["best_epoch"] == uninterrupted["best_epoch"]
    straight, _ = load_checkpoint(tmp_path / "straight" / "best.pt")
    split, _ = load_checkpoint(tmp_path / "split" / "best.pt")
    for (name, a), (_, b) in zip(straight.state_dict().items(), split.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_resume_ignores_a_state_from_other_settings(tmp_path, capsys):
    clipset = make_tiny_clipset(tmp_path / "clips")
    common = {"data": clipset, "model": "dscnn", "batch_size": 16, "seed": 1, "device": "cpu", "out": tmp_path / "run"}
    fit(FitConfig(epochs=2, stop_after_epochs=1, **common))
    metrics = fit(FitConfig(epochs=3, resume=True, **common))
    printed = capsys.readouterr().out
    assert "not resuming" in printed and "other settings (epochs)" in printed
    assert [row["epoch"] for row in metrics["history"]] == [1, 2, 3]


def test_vtlp_changes_the_training_windows_and_is_checked_on_the_command_line(tmp_path):
    clipset = make_tiny_clipset(tmp_path / "clips")
    common = {"data": clipset, "model": "dscnn", "epochs": 1, "batch_size": 16, "seed": 1, "device": "cpu"}
    without = fit(FitConfig(out=tmp_path / "plain", vtlp=0.0, **common))
    with_vtlp = fit(FitConfig(out=tmp_path / "vtlp", vtlp=1.0, **common))
    assert with_vtlp["history"][0]["train_loss"] != without["history"][0]["train_loss"]
    assert 0.0 <= with_vtlp["test"]["accuracy"] <= 1.0
    result = subprocess.run(
        [sys.executable, "-m", "train.fit", "--data", str(clipset), "--out", str(tmp_path / "x"), "--vtlp", "-0.1"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2 and "--vtlp must be within 0..1, got -0.1" in result.stderr


def test_formant_warp_changes_the_training_windows_resumes_only_alike_and_is_checked_on_the_command_line(
    tmp_path, capsys
):
    clipset = make_tiny_clipset(tmp_path / "clips")
    common = {"data": clipset, "model": "dscnn", "epochs": 1, "batch_size": 16, "seed": 1, "device": "cpu"}
    without = fit(FitConfig(out=tmp_path / "plain", vtlp=0.0, **common))
    warped = fit(FitConfig(out=tmp_path / "warped", vtlp=0.0, formant_warp=1.0, **common))
    assert warped["history"][0]["train_loss"] != without["history"][0]["train_loss"]
    # A run without the warp does not continue a state trained with it.
    fit(FitConfig(out=tmp_path / "warped", vtlp=0.0, resume=True, **common))
    printed = capsys.readouterr().out
    assert "not resuming" in printed and "formant_warp" in printed
    result = subprocess.run(
        [sys.executable, "-m", "train.fit", "--data", str(clipset), "--out", str(tmp_path / "x"),
         "--formant-warp", "2"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2 and "--formant-warp must be within 0..1, got 2.0" in result.stderr


def test_a_model_config_sizes_the_architecture_travels_in_the_checkpoint_and_is_checked(tmp_path, capsys):
    """`--model-config` makes a wider CRNN (as for a larger verifier); the checkpoint rebuilds it with the same width
    and the same scores, and a setting the architecture does not take is one error line."""
    clipset = make_tiny_clipset(tmp_path / "clips")
    wide = {"hidden_size": 12, "conv_channels": 3, "kernel_size": [5, 8], "stride": [2, 4]}
    config = FitConfig(data=clipset, out=tmp_path / "wide", model="crnn", model_config=wide, epochs=1,
                       batch_size=16, seed=0, device="cpu", vtlp=0.0)
    metrics = fit(config)
    model, info = load_checkpoint(tmp_path / "wide" / "best.pt")
    assert info.model_config == wide and model.gru.hidden_size == 12 and model.conv[0].out_channels == 3
    assert metrics["parameters"] == sum(p.numel() for p in model.parameters())
    # Another width in the same folder with --resume starts afresh instead of continuing the wide state.
    fit(FitConfig(**{**vars(config), "model_config": dict(wide, hidden_size=6), "resume": True}))
    printed = capsys.readouterr().out
    assert "not resuming" in printed and "other settings (model_config)" in printed
    small, _ = load_checkpoint(tmp_path / "wide" / "best.pt")
    assert small.gru.hidden_size == 6
    assert sum(p.numel() for p in model.parameters()) > sum(p.numel() for p in small.parameters())
    result = subprocess.run(
        [sys.executable, "-m", "train.fit", "--data", str(clipset), "--out", str(tmp_path / "x"), "--model", "crnn",
         "--model-config", '{"hiden_size": 128}'],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "crnn takes no hiden_size; it takes conv_channels, gru_layers, hidden_size, kernel_size, stride" \
        in result.stderr
    result = subprocess.run(
        [sys.executable, "-m", "train.fit", "--data", str(clipset), "--out", str(tmp_path / "x"), "--model", "crnn",
         "--model-config", '{"hidden_size": 0}'],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2 and "crnn cannot be built with --model-config" in result.stderr
    for text, why in (("{oops", "not JSON"), ("[128]", "must be a JSON object of keyword arguments, got '[128]'")):
        result = subprocess.run(
            [sys.executable, "-m", "train.fit", "--data", str(clipset), "--out", str(tmp_path / "x"),
             "--model-config", text],
            cwd=REPO, capture_output=True, text=True, check=False,
        )
        assert result.returncode == 2 and f"argument --model-config: {why}" in result.stderr


def test_speech_context_changes_the_training_windows_and_is_checked_on_the_command_line(tmp_path):
    clipset = make_tiny_clipset(tmp_path / "clips")
    common = {"data": clipset, "model": "dscnn", "epochs": 1, "batch_size": 16, "seed": 1, "device": "cpu"}
    plain = fit(FitConfig(out=tmp_path / "plain", **common))
    with_context = fit(FitConfig(out=tmp_path / "context", speech_context=1.0, **common))
    # Same seed, same order: only the windows differ, so the loss does too; the run still trains and scores.
    assert with_context["history"][0]["train_loss"] != plain["history"][0]["train_loss"]
    assert 0.0 <= with_context["test"]["accuracy"] <= 1.0
    result = subprocess.run(
        [sys.executable, "-m", "train.fit", "--data", str(clipset), "--out", str(tmp_path / "x"),
         "--speech-context", "1.5"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2 and "--speech-context must be within 0..1, got 1.5" in result.stderr


def test_leaving_a_voice_group_out_keeps_it_from_train_and_val_only(tmp_path):
    clips = ClipSet.load(make_tiny_clipset(tmp_path / "clips"))
    before = {split: len(clips.indices(split)) for split in ("train", "val", "test")}
    assert clips.leave_out(["chirp:0"]) == 8 + 2  # a third of 24 train and 6 val keyword clips
    groups = clips.groups.astype(str)
    for split in ("train", "val"):
        assert not any(group.startswith("chirp:0") for group in groups[clips.indices(split)])
        assert len(clips.indices(split)) < before[split]
    assert len(clips.indices("test")) == before["test"]  # the family is measured where it was never trained on
    with pytest.raises(ValueError, match="'piper' matches no train or val utterance; groups start with e.g. chirp"):
        clips.leave_out(["piper"])
    with pytest.raises(ValueError, match="leaves the train split without keyword or other utterances"):
        clips.leave_out(["chirp"])
    assert len(clips.indices("train", label=1)) == 16  # a refused leave-out changes nothing


def test_a_left_out_group_travels_with_the_checkpoint_and_is_checked_on_the_command_line(tmp_path):
    clipset = make_tiny_clipset(tmp_path / "clips")
    common = {"data": clipset, "model": "dscnn", "epochs": 1, "batch_size": 16, "seed": 1, "device": "cpu"}
    fit(FitConfig(out=tmp_path / "run", leave_out=["noise:1"], **common))
    _, info = load_checkpoint(tmp_path / "run" / "best.pt")
    assert info.data["leave_out"] == ["noise:1"]
    result = subprocess.run(
        [sys.executable, "-m", "train.fit", "--data", str(clipset), "--out", str(tmp_path / "x"), "--leave-out", "sc:"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --leave-out 'sc:' matches no train or val utterance; groups start with e.g. chirp:0, chirp:1, "
        "chirp:2, noise:0, noise:1, noise:2"
    ]


def test_a_false_accept_weight_makes_missed_negatives_cost_more_and_is_checked(tmp_path):
    logits = torch.tensor([[0.0, 2.0], [0.0, 2.0]])  # both called keyword: one right, one a false accept
    labels = torch.tensor([1, 0])
    plain = torch.nn.functional.cross_entropy(logits, labels, weight=class_weights(1.0, logits))
    weighted = torch.nn.functional.cross_entropy(logits, labels, weight=class_weights(3.0, logits))
    assert class_weights(1.0, logits) is None and class_weights(3.0, logits).tolist() == [3.0, 1.0]
    assert weighted > plain  # the false accept now carries 3 of the 4 weight units
    clipset = make_tiny_clipset(tmp_path / "clips")
    common = {"data": clipset, "model": "dscnn", "epochs": 1, "batch_size": 16, "seed": 1, "device": "cpu"}
    base = fit(FitConfig(out=tmp_path / "plain", **common))
    heavier = fit(FitConfig(out=tmp_path / "weighted", false_accept_weight=3.0, **common))
    assert heavier["history"][0]["train_loss"] != base["history"][0]["train_loss"]
    result = subprocess.run(
        [sys.executable, "-m", "train.fit", "--data", str(clipset), "--out", str(tmp_path / "x"),
         "--false-accept-weight", "0"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2 and "--false-accept-weight must be > 0, got 0.0" in result.stderr


def test_a_pcen_teacher_travels_with_its_front_end_and_its_student_reads_the_same(tmp_path):
    clipset = make_tiny_clipset(tmp_path / "clips")
    common = {"data": clipset, "model": "dscnn", "epochs": 2, "batch_size": 16, "seed": 1, "device": "cpu"}
    metrics = fit(FitConfig(out=tmp_path / "pcen", front_end="pcen-v2", **common))
    model, info = load_checkpoint(tmp_path / "pcen" / "best.pt")
    assert info.feature_spec.front_end == "pcen-v2"
    assert metrics["test"]["roc_auc"] > 0.9  # the tiny task is learnable on PCEN features too
    # The checkpoint scores its test windows as reported only through its own front-end, not the clip set's.
    from train.compress.bank import build_bank

    bank = build_bank(clipset, model, views=1, seed=0, device=torch.device("cpu"), teacher_spec=info.feature_spec)
    assert bank.spec == info.feature_spec
    log_mel_bank = build_bank(clipset, model, views=1, seed=0, device=torch.device("cpu"))
    assert log_mel_bank.spec.front_end == "log-mel-v1"
    assert not torch.allclose(bank.test.features, log_mel_bank.test.features)
    result = subprocess.run(
        [sys.executable, "-m", "train.fit", "--data", str(clipset), "--out", str(tmp_path / "x"),
         "--front-end", "mfcc"],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 2 and "argument --front-end: invalid choice: 'mfcc'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
