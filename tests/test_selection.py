"""Choosing checkpoints on long audio (train.evaluate.selection): one-pass stream scoring of the DS-CNN, FRR at a
false-accept rate through the streaming post-processing, and the trainer keeping the epoch with the fewest misses."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tests.test_compress import CPU, TINY_FILTERED, TINY_WIDE, tiny  # noqa: F401 (the module fixture)
from tests.tiny import SPEC, keyword_sound, other_sound
from train.compress import cli
from train.compress.distill import DistillSettings
from train.compress.fold import fold_dscnn
from train.compress.trainer import TrainSettings, train_student
from train.evaluate.selection import (
    VAL_STREAM_SEED,
    StreamSelection,
    ValStreams,
    quality_at,
    val_stream_config,
)
from train.evaluate.streams import Stream, StreamConfig
from train.models import build_model

PERIOD_S = 0.05  # output period of the constructed tracks


def _stream(kind: str, seconds: float, spans=()) -> Stream:
    return Stream(0, kind, "constructed", "none", seconds, list(spans), {}, "")


def _track(seconds: float, bumps: list[tuple[float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Scores of 0.01 with a plateau of `height` for 0.3 s starting at each `time`."""
    times = np.arange(1, round(seconds / PERIOD_S) + 1) * PERIOD_S
    scores = np.full(times.size, 0.01, np.float32)
    for time, height in bumps:
        scores[(times >= time) & (times < time + 0.3)] = height
    return times, scores


@pytest.mark.parametrize("config", [TINY_WIDE, TINY_FILTERED])
def test_one_pass_stream_logits_equal_the_window_model_at_every_stride(config):
    torch.manual_seed(0)
    model = build_model("dscnn", SPEC.n_mels, 2, **config).eval()
    with torch.no_grad():  # BatchNorm statistics that are not the identity, so the comparison means something
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    features = torch.randn(1, 350, SPEC.n_mels)
    window, stride = SPEC.frames_per_clip, model.stem_stride
    with torch.no_grad():
        folded, _ = fold_dscnn(model, window)
        for net in (model, folded.eval()):
            sliding = net.sliding_logits(features, window)
            windows = torch.stack([net(features[:, i * stride : i * stride + window])[0] for i in range(len(sliding))])
            assert len(sliding) == (350 - window) // stride + 1
            assert torch.allclose(sliding, windows, atol=1e-5)
        assert net.sliding_logits(features[:, : window - 1], window).shape == (0, 2)


def test_frr_at_a_target_rate_on_constructed_tracks():
    # Four keywords scoring 0.9, 0.8, 0.6 and 0.3; one hour of negatives with false peaks of 0.7 and 0.5.
    positive = [
        _stream("positive", 20.0, [(2.0, 2.5), (12.0, 12.5)]),
        _stream("positive", 20.0, [(5.0, 5.5), (15.0, 15.5)]),
    ]
    negative = [_stream("negative", 3600.0)]
    tracks = [
        _track(20, [(2.2, 0.9), (12.2, 0.3)]),
        _track(20, [(5.2, 0.8), (15.2, 0.6)]),
        _track(3600, [(100, 0.7), (900, 0.5)]),
    ]
    streams = positive + negative
    # At 1 FA/h one false peak may fire: the threshold sits just above 0.5 and only the 0.3 keyword is missed. At
    # 0.5 FA/h (no false accept in this hour) it must clear 0.7: the 0.6 and 0.3 keywords are missed.
    quality = quality_at(streams, tracks, PERIOD_S, (1.0, 0.5), 1.0, smoothing_seconds=0.1)  # inside the plateaus
    assert quality.frr == pytest.approx((0.25, 0.5)) and quality.mean_frr == pytest.approx(0.375)
    assert quality.thresholds == pytest.approx((0.5, 0.7), abs=1e-5) and quality.thresholds[0] > 0.5
    # A negative that scores 1.0 for good: no threshold keeps within any rate below one per hour.
    saturated = [_track(20, [(2.2, 0.9)]), _track(20, [(5.2, 0.8)]), _track(3600, [(100, 1.0)])]
    never = quality_at(streams, saturated, PERIOD_S, (0.5,), 1.0, smoothing_seconds=0.1)
    assert never.frr == (1.0,) and never.thresholds == (None,)


def test_val_streams_use_the_val_voices_and_honour_what_training_left_out():
    clips = SimpleNamespace(
        folder="clips",
        meta={
            "keyword": "sheila",
            "held_out": {"val": {"espeak_variants": ["m2", "zac"]}, "test": {"espeak_variants": ["f4"]}},
        },
    )
    config = val_stream_config(clips, StreamSelection(negative_hours=2.0), [])
    assert config.held_out_variants == ("m2", "zac") and config.seed == VAL_STREAM_SEED != StreamConfig.seed
    assert config.negative_hours == 2.0 and config.piper_positive_share > 0
    without_piper = val_stream_config(clips, StreamSelection(), ["piper"])
    assert without_piper.piper_positive_share == 0 and without_piper.piper_negative_hours == 0
    with pytest.raises(ValueError, match="takes eSpeak out of training"):
        val_stream_config(clips, StreamSelection(), ["espeak:en-gb"])
    with pytest.raises(ValueError, match="no held-out val voices"):
        val_stream_config(SimpleNamespace(folder="clips", meta={"keyword": "sheila"}), StreamSelection(), [])
    with pytest.raises(ValueError, match="cannot resolve"):
        StreamSelection(fa_per_hour=(0.1, 1.0), negative_hours=2.0)
    with pytest.raises(ValueError, match="0..<1"):
        StreamSelection(from_share=1.0)
    assert StreamSelection(from_share=0.5).first_candidate(120) == 61
    assert StreamSelection(from_share=0.0).first_candidate(8) == 1


def _tiny_val_streams(selection: StreamSelection) -> ValStreams:
    """Chirp keywords between noise bursts (positive) and 60 s of noise bursts alone (negative)."""
    rng = np.random.default_rng(5)
    gap = np.zeros(SPEC.sample_rate // 2, np.float32)
    pieces, spans, length = [], [], 0
    for _ in range(6):
        for piece, is_keyword in ((other_sound(rng), False), (gap, False), (keyword_sound(rng), True), (gap, False)):
            if is_keyword:
                spans.append((length / SPEC.sample_rate, (length + piece.size) / SPEC.sample_rate))
            pieces.append(piece)
            length += piece.size
    positive = np.concatenate(pieces)
    negative = np.concatenate([np.concatenate([other_sound(rng), gap]) for _ in range(60)])
    streams = [
        Stream(0, "positive", "chirp", "tiny", positive.size / SPEC.sample_rate, spans, {}, ""),
        Stream(1, "negative", "noise", "tiny", negative.size / SPEC.sample_rate, [], {}, ""),
    ]
    return ValStreams(streams, [positive, negative], SPEC, selection)


def test_the_trainer_keeps_the_later_epoch_with_the_fewest_false_rejects_on_val_streams(tiny):  # noqa: F811
    selection = StreamSelection(fa_per_hour=(60.0, 120.0), negative_hours=1 / 60, from_share=0.5)
    streams = _tiny_val_streams(selection)
    assert streams.keywords == 6 and streams.hours == pytest.approx(1 / 60)
    torch.manual_seed(0)
    model = build_model("dscnn", SPEC.n_mels, 2, **TINY_WIDE)
    untrained = streams.measure(model, 1, CPU)
    settings = TrainSettings(epochs=8, learning_rate=0.02, seed=0)
    trained = train_student(model, tiny["bank"], DistillSettings(), settings, CPU, "test", streams)
    # Epochs 1-4 are not candidates and are not measured; 5-8 are, and the one with the fewest misses is kept.
    assert ["val_stream_mean_frr" in entry for entry in trained.history] == [False] * 4 + [True] * 4
    misses = [entry["val_stream_mean_frr"] for entry in trained.history[4:]]
    assert trained.best_epoch >= 5 and trained.val_streams["mean_frr"] == min(misses)
    assert trained.history[trained.best_epoch - 1]["val_stream_mean_frr"] == min(misses)
    assert trained.val_streams["fa_per_hour"] == [60.0, 120.0]
    # The model comes back at that epoch: measured again, it misses as many.
    assert streams.measure(trained.model, 1, CPU).mean_frr == trained.val_streams["mean_frr"]
    assert min(misses) < untrained.mean_frr  # training taught it the chirp, and the streams see it


def test_compress_refuses_stream_selection_it_cannot_do_in_one_line(tiny, capsys):  # noqa: F811
    base = ["--teacher", str(tiny["teacher_path"]), "--out", str(tiny["root"] / "refused"), "--no-ablation",
            "--student", json.dumps(TINY_WIDE), "--prune-floor", "[8, 6, 6]", "--select-on", "streams"]  # fmt: skip
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*base, "--val-stream-hours", "1", "--select-fa-per-hour", "0.5,2"])
    assert exit_info.value.code == 2 and "cannot resolve" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*base, "--select-fa-per-hour", "1,two"])
    assert exit_info.value.code == 2 and "comma-separated numbers" in capsys.readouterr().err
    # The tiny clip set is not synthetic: it has no held-out val voices to build streams from.
    assert cli.main([*base, "--views", "1", "--student-epochs", "1"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert error[-1].startswith("error:") and "no held-out val voices" in error[-1]


def test_auto_selection_falls_back_to_windows_where_there_are_no_val_voices(tiny, capsys):  # noqa: F811
    out = tiny["root"] / "auto"
    arguments = ["--teacher", str(tiny["teacher_path"]), "--out", str(out), "--no-ablation", "--views", "1",
                 "--student", json.dumps(TINY_WIDE), "--prune-floor", "[8, 6, 6]", "--student-epochs", "2",
                 "--prune-steps", "1", "--prune-epochs", "1"]  # fmt: skip
    assert cli.main([*arguments, "--select-on", "auto"]) == 0
    assert "epochs picked on val windows (the clip set lists no held-out val voices" in capsys.readouterr().err
    stages = json.loads((out / "stages.json").read_text())
    assert stages["settings"]["select_on"] == "windows" and "selection" not in stages["settings"]
