"""Compression methods on tiny models (the chirp-vs-noise set of tests/tiny.py): each runs and changes what it
should, the MAC counter matches hand counts, and the whole chain (compress -> convert -> report) runs end to end.

The end-to-end test converts one pruned, folded student with the real onnx2tf (~40 s here); the rest takes seconds.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from tests.tiny import LABELS, SPEC, TINY_CONFIGS, make_tiny_checkpoint, make_tiny_clipset
from train.checkpoint import load_checkpoint
from train.compress import cli, report
from train.compress.bank import build_bank
from train.compress.chain import ChainSettings, parse_methods, run_chain
from train.compress.distill import DistillationLoss, DistillSettings, soft_target_loss
from train.compress.fold import fold_dscnn
from train.compress.macs import count_macs, gru_cell_macs
from train.compress.prune import prune_crnn, prune_step, site_widths_of, width_schedule
from train.compress.quality import au_fa_fr, frr_at_fa_per_hour, quality
from train.compress.quantize import dynamic_int8, state_dict_bytes
from train.compress.separable import dscnn_config
from train.compress.trainer import TrainSettings, train_student
from train.compress.uncertainty import paired_bootstrap
from train.models import build_model
from train.models.crnn import CRNN

FRAMES, MELS = SPEC.frames_per_clip, SPEC.n_mels
CPU = torch.device("cpu")
# Tiny students: a 1-frame stem with stride 4 like the deployed one, narrow enough to prune in a second.
TINY_WIDE = {"channels": 12, "stem_kernel": 1, "stem_stride": 4, "dilations": [1, 2], "block_channels": [8, 8]}
TINY_TARGET = {**TINY_WIDE, "channels": 8, "block_channels": [6, 6]}
TINY_FILTERED = {**TINY_WIDE, "stem_filter": 4}  # a depthwise-separable stem: 4-tap filter per mel bin, then 1x1
TINY_AVERAGED = {**TINY_FILTERED, "stem_average": True}  # the same filter fixed to a 4-frame moving average
TINY_LOW_RANK = {**TINY_WIDE, "stem_rank": 3}  # the mel bins projected onto 3 components, then the 1x1 stem
TINY_FLOOR = [8, 6, 6]
TINY_CRNN_TARGET = {"conv_channels": 2, "hidden_size": 8}
# int8 vs float32 TFLite of the tiny student: largest keyword-probability difference allowed (measured ~0.004).
INT8_TOLERANCE = 0.05


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("compress")
    clipset = make_tiny_clipset(root / "clips")
    teacher_path = make_tiny_checkpoint(root / "crnn.pt", "crnn", clipset)
    teacher, info = load_checkpoint(teacher_path)
    bank = build_bank(clipset, teacher, views=2, seed=0, device=CPU)
    return {"root": root, "clipset": clipset, "teacher_path": teacher_path, "teacher": teacher, "info": info,
            "bank": bank}


class _Windowed(nn.Module):
    """Runs `layer` on the counter's [1, frames, n_mels] probe, channels first for convolutions."""

    def __init__(self, layer: nn.Module, channels_first: bool) -> None:
        super().__init__()
        self.layer, self.channels_first = layer, channels_first

    def forward(self, x):
        return self.layer(x.transpose(1, 2) if self.channels_first else x)


def test_mac_counter_matches_hand_counts():
    conv = nn.Conv1d(4, 6, 3, stride=2)  # 11 frames -> 5 outputs, each 6 channels x 4 inputs x 3 taps
    assert count_macs(_Windowed(conv, True), frames=11, n_mels=4).total == 5 * 6 * 4 * 3
    depthwise = nn.Conv1d(6, 6, 3, dilation=2, groups=6)  # 11 -> 7 outputs, 6 channels x 1 input x 3 taps
    assert count_macs(_Windowed(depthwise, True), frames=11, n_mels=6).total == 7 * 6 * 3
    assert count_macs(_Windowed(nn.Linear(7, 3), False), frames=5, n_mels=7).total == 5 * 3 * 7
    gru = _Windowed(nn.GRU(5, 4, num_layers=2, batch_first=True), False)
    # thop: per step and layer 3 H (I + H) gate products + 13 H (biases, gate sums, r * (W h), the update).
    per_step = (3 * 4 * (5 + 4) + 13 * 4) + (3 * 4 * (4 + 4) + 13 * 4)
    assert gru_cell_macs(5, 4) == 3 * 4 * 9 + 13 * 4 and gru_cell_macs(5, 4, bias=False) == 3 * 4 * 9 + 7 * 4
    assert count_macs(gru, frames=6, n_mels=5).total == 6 * per_step
    norm = nn.BatchNorm1d(4)
    assert count_macs(_Windowed(norm, True), frames=9, n_mels=4).total == 9 * 4


def test_mac_counter_on_the_baseline_crnn():
    crnn = build_model("crnn", MELS, 2)  # default: conv 8 x (5, 20) stride (2, 8), GRU 2 x 64, attention
    count = count_macs(crnn, FRAMES, MELS)
    conv_out_freq, steps = (MELS - 5) // 2 + 1, (FRAMES - 20) // 8 + 1
    gru_in = 8 * conv_out_freq
    expected = {
        "input_norm": FRAMES * MELS,
        "conv.0": 8 * conv_out_freq * steps * 5 * 20,
        "gru": steps * (gru_cell_macs(gru_in, 64) + gru_cell_macs(64, 64)),
        "attention.energy.0": steps * 64 * 64,
        "attention.energy.2": steps * 64,
        "attention": steps * 64,
        "classifier": 64 * 2,
    }
    assert count.by_module == expected and count.total == sum(expected.values()) == 852_048


def test_quality_on_a_hand_example():
    # Negatives 0.1, 0.3; keywords 0.2, 0.9; windows of 1 s: 2 negative seconds = 1/1800 h, one FA = 1800 FA/h.
    scores, labels, hours = np.array([0.1, 0.3, 0.2, 0.9]), np.array([0, 0, 1, 1]), 2 / 3600
    # Thresholds 0, 0.1, 0.2, 0.3, 0.9, above: (FA/h, FRR) = (3600, 0) (3600, 0) (1800, 0) (1800, .5) (0, .5) (0, 1)
    assert au_fa_fr(scores, labels, hours) == pytest.approx(1800 * 0.5)
    assert frr_at_fa_per_hour(scores, labels, hours, 1800) == 0.0
    assert frr_at_fa_per_hour(scores, labels, hours, 1000) == 0.5
    perfect = quality(np.array([0.1, 0.2, 0.8, 0.9]), labels, 0.5, clip_seconds=1.0)
    assert perfect["au_fa_fr"] == 0.0 and perfect["accuracy"] == 1.0 and perfect["frr_at_fa_per_hour"] == 0.0


def test_distillation_loss_falls(tiny):
    assert soft_target_loss(torch.tensor([[1.0, -2.0]]), torch.tensor([[1.0, -2.0]]), 4.0).item() == pytest.approx(0)
    settings = DistillSettings(temperature=2.0, alpha=0.2, hint_weight=1.0)
    view = tiny["bank"].views[0]
    model = build_model("dscnn", MELS, len(LABELS), **TINY_TARGET)

    def soft_loss() -> float:
        with torch.no_grad():
            return soft_target_loss(model.eval()(view.features.float()), view.teacher_logits, 2.0).item()

    before = soft_loss()
    training = TrainSettings(epochs=15, learning_rate=0.02, batch_size=16)
    trained = train_student(model, tiny["bank"], settings, training, CPU, "kd")
    losses = [entry["loss"] for entry in trained.history]
    assert soft_loss() < 0.3 * before  # the student's soft outputs moved towards the teacher's
    assert losses[-1] < 0.5 * losses[0]  # the whole loss (labels + soft targets + hints) fell
    loss = DistillationLoss(settings, student_embedding=6, teacher_embedding=16)
    assert loss.projection.in_features == 6 and loss.projection.out_features == 16  # layer-wise: learned projection


def test_the_false_accept_weight_reaches_the_students_hard_label_loss():
    logits, labels = torch.tensor([[0.0, 2.0], [0.0, 2.0]]), torch.tensor([1, 0])  # the second: a false accept
    embedding = torch.zeros(2, 4)
    losses = {
        weight: DistillationLoss(DistillSettings.labels_only(weight), 4, 4)(logits, embedding, labels).item()
        for weight in (1.0, 3.0)
    }
    assert losses[3.0] > losses[1.0]
    chain = ChainSettings(false_accept_weight=3.0)
    assert chain.distillation(("separable", "distill")).false_accept_weight == 3.0
    assert chain.distillation(("separable",)).false_accept_weight == 3.0  # labels only, still weighted
    with pytest.raises(SystemExit):
        cli.main(["--teacher", "x.pt", "--out", "y", "--false-accept-weight", "-1"])


def test_pruned_dscnn_has_fewer_channels_and_still_trains(tiny):
    model = build_model("dscnn", MELS, len(LABELS), **TINY_WIDE)
    pruned, config = prune_step(model, [8, 6, 5], tiny["bank"], CPU)
    assert site_widths_of(pruned) == [8, 6, 5] and config["block_channels"] == [6, 5]
    assert pruned.stem[0].out_channels == 8 and pruned.blocks[1].depthwise.in_channels == 6
    assert pruned.classifier.in_features == 5
    assert count_macs(pruned, FRAMES, MELS).total < count_macs(model, FRAMES, MELS).total
    features, labels = tiny["bank"].views[0].features[:16].float(), tiny["bank"].views[0].labels[:16]
    optimizer = torch.optim.SGD(pruned.parameters(), lr=0.1)
    before = pruned.stem[0].weight.detach().clone()
    pruned.train()
    loss = nn.functional.cross_entropy(pruned(features), labels)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss) and not torch.equal(before, pruned.stem[0].weight)


def test_pruning_the_crnn_removes_gru_units(tiny):
    teacher: CRNN = tiny["teacher"]
    everything = [torch.arange(n) for n in site_widths_of(teacher)]
    same, _ = prune_crnn(teacher, everything[0], everything[1:-1], everything[-1])
    probe = tiny["bank"].test.features[:4]
    assert torch.allclose(same.eval()(probe), teacher(probe), atol=1e-6)  # keeping every unit changes nothing
    pruned, config = prune_step(teacher, [2, 8, 8], tiny["bank"], CPU)
    assert config["conv_channels"] == 2 and config["hidden_size"] == 8
    assert pruned.gru.weight_hh_l0.shape == (3 * 8, 8) and pruned.attention.energy[0].weight.shape == (8, 8)
    assert pruned.eval()(probe).shape == (4, 2)


@pytest.mark.parametrize(
    "config",
    [TINY_WIDE, TINY_FILTERED, TINY_AVERAGED, TINY_LOW_RANK, {**TINY_FILTERED, "stem_rank": 3}],
    ids=["stem", "stem-filter", "stem-average", "stem-rank", "stem-filter-and-rank"],
)
def test_folding_is_exact_and_removes_every_norm(tiny, config):
    model = build_model("dscnn", MELS, len(LABELS), **config)
    train_student(model, tiny["bank"], DistillSettings.labels_only(), TrainSettings(epochs=3), CPU, "fold")
    folded, folded_config = fold_dscnn(model, FRAMES)
    probe = tiny["bank"].test.features
    assert folded_config == {**dscnn_config(model), "folded": True}
    assert not any(isinstance(m, nn.BatchNorm1d) for m in folded.modules())
    assert torch.allclose(folded(probe), model.eval()(probe), atol=1e-4)
    norm_elements = count_macs(model, FRAMES, MELS).by_module
    norms = sum(v for k, v in norm_elements.items() if k.endswith("norm") or k in ("stem.1", "stem_filter.1"))
    assert count_macs(folded, FRAMES, MELS).total == count_macs(model, FRAMES, MELS).total - norms


def test_a_stem_filter_reads_every_frame_for_few_macs_and_survives_pruning(tiny):
    plain = build_model("dscnn", MELS, len(LABELS), **TINY_WIDE)
    filtered = build_model("dscnn", MELS, len(LABELS), **TINY_FILTERED)
    frames = torch.zeros(1, FRAMES, MELS)
    frames[0, 1] = 5.0  # a frame the plain stride-4 stem (kernel 1) never reads
    for model in (plain, filtered):
        model.eval()
    plain_moved = not torch.allclose(plain(frames), plain(torch.zeros_like(frames)))
    filtered_moved = not torch.allclose(filtered(frames), filtered(torch.zeros_like(frames)))
    assert filtered_moved and not plain_moved
    filter_macs = count_macs(filtered, FRAMES, MELS).by_module["stem_filter.0"]
    assert filter_macs == MELS * TINY_FILTERED["stem_filter"] * ((FRAMES - TINY_FILTERED["stem_filter"]) // 4 + 1)
    pruned, config = prune_step(filtered, [8, 6, 5], tiny["bank"], CPU)
    assert config["stem_filter"] == 4 and site_widths_of(pruned) == [8, 6, 5]
    assert torch.equal(pruned.stem_filter[0].weight, filtered.stem_filter[0].weight)  # the filter is kept whole
    with pytest.raises(ValueError, match="stem_kernel 1"):
        build_model("dscnn", MELS, len(LABELS), **{**TINY_FILTERED, "stem_kernel": 3})


def test_a_low_rank_stem_costs_fewer_macs_and_survives_pruning(tiny):
    full = build_model("dscnn", MELS, len(LABELS), **TINY_WIDE)
    low_rank = build_model("dscnn", MELS, len(LABELS), **TINY_LOW_RANK)
    outputs = (FRAMES - 1) // TINY_WIDE["stem_stride"] + 1
    full_stem = count_macs(full, FRAMES, MELS).by_module["stem.0"]
    low_rank_macs = count_macs(low_rank, FRAMES, MELS).by_module
    assert full_stem == outputs * MELS * TINY_WIDE["channels"]
    assert low_rank_macs["stem_project"] == outputs * MELS * 3
    assert low_rank_macs["stem.0"] == outputs * 3 * TINY_WIDE["channels"]
    assert low_rank_macs["stem_project"] + low_rank_macs["stem.0"] < full_stem
    trained = train_student(low_rank, tiny["bank"], DistillSettings.labels_only(), TrainSettings(epochs=2), CPU, "r")
    assert dscnn_config(trained.model)["stem_rank"] == 3 and "stem_rank" not in dscnn_config(full)
    pruned, config = prune_step(trained.model, [8, 6, 5], tiny["bank"], CPU)
    assert config["stem_rank"] == 3 and site_widths_of(pruned) == [8, 6, 5]
    assert torch.equal(pruned.stem_project.weight, trained.model.stem_project.weight)  # the projection is kept whole
    assert pruned.eval()(tiny["bank"].test.features[:2]).shape == (2, 2)
    with pytest.raises(ValueError, match="stem_rank must be 0 .* stem_kernel 1"):
        build_model("dscnn", MELS, len(LABELS), **{**TINY_LOW_RANK, "stem_kernel": 3})


def test_an_averaging_stem_filter_stays_an_average_through_training_and_pruning(tiny):
    model = build_model("dscnn", MELS, len(LABELS), **TINY_AVERAGED)
    trained = train_student(model, tiny["bank"], DistillSettings.labels_only(), TrainSettings(epochs=2), CPU, "avg")
    weight = trained.model.stem_filter[0].weight
    assert torch.equal(weight, torch.full_like(weight, 0.25))  # 4 taps of 1/4, untouched by the optimiser
    assert dscnn_config(trained.model)["stem_average"] is True and "stem_average" not in dscnn_config(
        build_model("dscnn", MELS, len(LABELS), **TINY_FILTERED))
    pruned, config = prune_step(trained.model, [8, 6, 5], tiny["bank"], CPU)
    assert config["stem_average"] is True and not pruned.stem_filter[0].weight.requires_grad
    with pytest.raises(ValueError, match="stem_average .* needs stem_filter > 0"):
        build_model("dscnn", MELS, len(LABELS), **{**TINY_WIDE, "stem_average": True})


def test_dynamic_int8_teacher_is_smaller_and_agrees(tiny):
    teacher, probe = tiny["teacher"], tiny["bank"].test.features
    quantized = dynamic_int8(teacher)
    with torch.no_grad():
        difference = (torch.softmax(quantized(probe), 1) - torch.softmax(teacher(probe), 1)).abs().max().item()
    assert difference < 0.05
    assert state_dict_bytes(quantized) < state_dict_bytes(teacher)


def test_width_schedule_and_methods():
    assert width_schedule([32, 24], [20, 12], 2) == [[25, 17], [20, 12]]
    with pytest.raises(ValueError, match="cannot grow"):
        width_schedule([8], [9], 1)
    assert parse_methods("quantize, separable") == ("separable", "quantize")
    with pytest.raises(ValueError, match="unknown methods"):
        parse_methods("separable,magic")


def test_each_method_alone_on_the_teacher(tiny):
    settings = ChainSettings(crnn_epochs=2, crnn_prune_epochs=1, prune_steps=1, crnn_target=TINY_CRNN_TARGET,
                             prune_accuracy_drop=1.0, prune_auc_drop=1.0)
    teacher, info, bank = tiny["teacher"], tiny["info"], tiny["bank"]
    pruned = run_chain(("prune",), teacher, info, bank, settings, CPU, print, "prune alone")[-1]
    assert pruned.info.model_config["hidden_size"] == 8 and pruned.info.architecture == "crnn"
    quantized = run_chain(("quantize",), teacher, info, bank, settings, CPU, print, "quantize alone")[-1]
    assert quantized.kind == "torch dynamic int8" and quantized.model is teacher
    distilled = run_chain(("distill",), teacher, info, bank, settings, CPU, print, "distill alone")[-1]
    assert distilled.info.model_config["hidden_size"] == 8 and distilled.info.architecture == "crnn"


def test_pruning_stops_where_val_quality_falls(tiny):
    # Limits below zero reject every step: the chain keeps the unpruned student and says so.
    settings = ChainSettings(student=TINY_WIDE, student_epochs=2, prune_steps=2, prune_epochs=1,
                             prune_floor=TINY_FLOOR, prune_accuracy_drop=-1.0)
    stages = run_chain(("separable", "prune"), tiny["teacher"], tiny["info"], tiny["bank"], settings, CPU, print)
    assert [s.info.model_config["block_channels"] for s in stages] == [[8, 8], [7, 7], [8, 8]]
    assert "(not kept)" in stages[1].name and stages[1].note.startswith("not kept: val accuracy fell by")
    assert stages[-1].note.startswith("0 of 2 pruning steps kept")


def test_bad_input_is_one_error_line(tiny, tmp_path, capsys):
    assert cli.main(["--teacher", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "out")]) == 2
    assert cli.main(["--teacher", str(tiny["teacher_path"]), "--out", str(tmp_path), "--methods", "magic"]) == 2
    student = make_tiny_checkpoint(tmp_path / "dscnn.pt", "dscnn", tiny["clipset"], steps=1)
    assert cli.main(["--teacher", str(student), "--out", str(tmp_path / "out")]) == 2
    assert report.main(["--compression", str(tmp_path / "nothing")]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("error: ") for line in lines), lines
    assert "needs the CRNN" in lines[2] and "run python -m train.compress first" in lines[3]
    with pytest.raises(SystemExit):
        cli.main(["--teacher", "x", "--out", "y", "--student", "{not json"])
    capsys.readouterr()
    with pytest.raises(SystemExit):
        cli.main(["--teacher", "x", "--out", "y", "--speech-context", "1.5"])
    assert "--speech-context must be within 0..1, got 1.5" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["--teacher", "x", "--out", "y", "--vtlp", "1.5"])
    assert "--vtlp must be within 0..1, got 1.5" in capsys.readouterr().err
    assert TINY_CONFIGS["crnn"]["gru_layers"] == 1  # the fixture teacher the chain tests prune


def test_chain_compress_convert_report(tiny, capsys):
    from train.compress.quantize import convert_student

    out, bundle = tiny["root"] / "compression", tiny["root"] / "edge"
    arguments = [
        "--teacher", str(tiny["teacher_path"]), "--out", str(out), "--no-ablation", "--views", "2",
        "--student-epochs", "30", "--prune-steps", "2", "--prune-epochs", "8", "--learning-rate", "0.02",
        "--finetune-learning-rate", "0.01", "--student", json.dumps(TINY_WIDE), "--prune-floor", json.dumps(TINY_FLOOR),
        "--prune-accuracy-drop", "1", "--prune-auc-drop", "1",  # the tiny val split is too small to guard on
    ]
    assert cli.main(arguments) == 0
    stages = json.loads((out / "stages.json").read_text())
    names = [stage["name"] for stage in stages["stages"]]
    assert len(names) == 3 and stages["final"] == names[-1] and "folded" in names[-1]
    wide, pruned, folded = stages["stages"]
    assert pruned["parameters"] < wide["parameters"] and folded["macs"] < pruned["macs"]
    student, info = load_checkpoint(out / "student.pt")  # a normal checkpoint: the pruned, folded DS-CNN
    assert info.architecture == "dscnn" and info.model_config == {**TINY_TARGET, "kernel_size": 3, "folded": True}

    manifest = convert_student(out / "student.pt", bundle, calibration_windows=40)
    agreement = manifest["metrics"]["int8_vs_float32"]
    assert agreement["decision_agreement"] >= 0.97 and agreement["max_abs_probability_difference"] <= INT8_TOLERANCE
    assert manifest["model"]["precision"] == "int8"

    assert report.main(["--compression", str(out), "--bundle", str(bundle), "--rounds", "2", "--calls", "5"]) == 0
    written = json.loads((out / "report.json").read_text())
    for key in ("speed_up_rate_macs", "compression_rate_bytes", "speed_up_rate_latency"):
        assert written[key] > 0 and key in written["targets_met"]
    rows = {row["name"]: row for row in written["rows"]}
    deployed = rows[written["deployed"]]
    assert deployed["kind"] == "tflite int8" and deployed["bytes"] == manifest["model"]["bytes"]
    assert deployed["macs"] == folded["macs"] and rows[report.BASELINE]["bytes_of"] == "state_dict"
    assert {"au_fa_fr", "frr_at_fa_per_hour", "accuracy"} <= set(deployed["test"])
    assert deployed["latency"]["median_us"] > 0
    assert "speed_up_rate_macs" in (out / "report.md").read_text()
    spread = written["no_worse_uncertainty"]["accuracy_points"]
    measured = 100 * (deployed["test"]["accuracy"] - rows[report.BASELINE]["test"]["accuracy"])
    assert spread["difference"] == pytest.approx(measured, abs=1e-3)
    assert spread["interval_95"][0] <= spread["difference"] <= spread["interval_95"][1]
    assert "How sure the two verdicts are" in (out / "report.md").read_text()


def test_the_paired_bootstrap_tells_a_real_gap_from_a_tie():
    rng = np.random.default_rng(0)
    labels = np.arange(1000) % 4 == 0  # 250 keyword windows, 750 others
    perfect = np.where(labels, rng.uniform(0.6, 1.0, 1000), rng.uniform(0.0, 0.4, 1000))
    flawed = perfect.copy()
    flawed[np.flatnonzero(labels)[:50]] = 0.1  # 50 missed keywords: 5 points of accuracy, a larger au_fa_fr
    tie = paired_bootstrap(perfect, 0.5, perfect, 0.5, labels, 1.0, resamples=200)
    assert tie["accuracy_points"] == {"difference": 0.0, "interval_95": [0.0, 0.0], "share_no_worse": 1.0}
    better = paired_bootstrap(flawed, 0.5, perfect, 0.5, labels, 1.0, resamples=200)
    assert better["accuracy_points"]["difference"] == pytest.approx(5.0)
    assert better["accuracy_points"]["interval_95"][0] > 3.0 and better["accuracy_points"]["share_no_worse"] == 1.0
    assert better["au_fa_fr"]["difference"] < 0 and better["au_fa_fr"]["share_no_worse"] == 1.0
    worse = paired_bootstrap(perfect, 0.5, flawed, 0.5, labels, 1.0, resamples=200)
    assert worse["accuracy_points"]["share_no_worse"] == 0.0 and worse["au_fa_fr"]["share_no_worse"] == 0.0
    with pytest.raises(ValueError, match="same keyword and non-keyword windows"):
        paired_bootstrap(perfect, 0.5, perfect[:10], 0.5, labels, 1.0)


def test_the_bank_leaves_out_what_the_teacher_left_out(tiny):
    left_out = build_bank(tiny["clipset"], tiny["teacher"], views=1, seed=0, device=CPU, leave_out=["noise:2"])
    bank = tiny["bank"]
    # A third of the other clips: 8 of 24 from each training view, 2 of 6 from val; the test split is whole.
    assert (left_out.views[0].labels == 0).sum() == (bank.views[0].labels == 0).sum() - 8
    assert len(left_out.val) == len(bank.val) - 2 and len(left_out.test) == len(bank.test)
    assert left_out.data_info()["leave_out"] == ["noise:2"] and "leave_out" not in bank.data_info()


def test_named_students_build_their_sizes_and_anything_else_is_refused():
    import argparse

    from train.compress.separable import STUDENT, STUDENTS

    sizes = {}
    for name in ("budget", "quality"):
        model = build_model("dscnn", SPEC.n_mels, 2, **cli._student_config(name))
        macs = count_macs(model, SPEC.frames_per_clip, SPEC.n_mels).total
        sizes[name] = (sum(p.numel() for p in model.parameters()), macs)
    assert sizes["budget"] == (2_190, 37_060)  # docs/compression.md, before folding
    assert sizes["quality"] == (16_530, 224_720) and 852_048 / sizes["quality"][1] > 3.7  # the CRNN: 852,048 MACs
    assert cli._student_config("budget") == STUDENT and set(STUDENTS) == {"budget", "quality"}
    assert cli._student_config('{"channels": 32}') == {"channels": 32}
    for bad in ("large", "[1, 2]"):
        with pytest.raises(argparse.ArgumentTypeError, match="budget, quality"):
            cli._student_config(bad)
