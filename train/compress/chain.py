"""The compression chain: which methods run, in which order, on which model. Each method alone is the same chain
with one method, which is how the ablation runs.

Order: separable -> distill -> prune -> quantize.
- separable: the student is a `CausalDSCNN` of the budget size (`separable.STUDENT`); without it, the student stays
  a CRNN (the teacher itself when pruning, a small CRNN when only distilling).
- distill: every training and fine-tuning of the student uses the distillation loss; otherwise labels only.
- prune: structured pruning in steps towards a floor, fine-tuned after each step, kept only while the val
  accuracy and ROC AUC stay close to the unpruned model's (a quality guard: pruning stops where it starts to cost).
- quantize: a DS-CNN is folded into its deployment form, which `python -m convert` quantizes to full int8 (the
  report scores that TFLite); a CRNN gets dynamic int8 (scored by the report from the float checkpoint).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from train.checkpoint import CheckpointInfo
from train.compress.bank import Bank
from train.compress.distill import DistillSettings
from train.compress.fold import fold_dscnn
from train.compress.prune import crnn_config, prune_step, site_widths_of, width_schedule
from train.compress.separable import PRUNE_FLOOR, STUDENT, dscnn_config
from train.compress.trainer import Trained, TrainSettings, keyword_scores, train_student
from train.evaluate.selection import ValStreams
from train.metrics import accuracy_threshold, detection_metrics
from train.models import build_model
from train.models.crnn import CRNN
from train.models.dscnn import CausalDSCNN
from train.spec_augment import SpecAugment

METHODS = ("separable", "distill", "prune", "quantize")
# The CRNN that distillation alone trains, and the smallest that pruning alone may reach: 4 conv channels (of 8),
# 24 hidden units (of 64) in each GRU layer and the attention.
CRNN_TARGET = {"conv_channels": 4, "hidden_size": 24}

# Row kinds: how the report measures a stage.
TORCH_FP32, TORCH_DYNAMIC_INT8, TFLITE_INT8 = "torch fp32", "torch dynamic int8", "tflite int8"


@dataclass(frozen=True)
class ChainSettings:
    """Epochs, losses and pruning limits of every training the chain does (defaults: ~8 min on 2 CPU cores)."""

    student_epochs: int = 120  # the DS-CNN at its budget size (the chain, and separable alone); 40 underfit
    prune_steps: int = 3  # pruning steps from the student's widths towards `prune_floor`, at most
    prune_epochs: int = 8  # fine-tuning after each DS-CNN pruning step
    crnn_epochs: int = 15  # the small CRNN trained from scratch (distillation alone)
    crnn_prune_epochs: int = 4  # fine-tuning after each CRNN pruning step (pruning alone)
    # A pruning step is kept only while the fine-tuned model's val accuracy and ROC AUC stay within these of the
    # unpruned model's; the first step that falls further ends pruning at the previous step.
    prune_accuracy_drop: float = 0.003
    prune_auc_drop: float = 0.001
    learning_rate: float = 3e-3
    finetune_learning_rate: float = 1e-3
    batch_size: int = 128
    temperature: float = 2.0
    alpha: float = 0.5
    hint_weight: float = 0.0
    false_accept_weight: float = 1.0  # weight of non-keyword windows in the hard-label loss (train.fit's option)
    # SpecAugment on the student's input (train.spec_augment): off, since it made the budget-size student worse
    # (val AUC 0.979 vs 0.988, test au_fa_fr 59.4 vs 43.7 on the default data): it underfits already.
    spec_augment: bool = False
    seed: int = 0
    student: dict = field(default_factory=lambda: dict(STUDENT))
    prune_floor: list = field(default_factory=lambda: list(PRUNE_FLOOR))
    crnn_target: dict = field(default_factory=lambda: dict(CRNN_TARGET))

    def distillation(self, methods: tuple[str, ...]) -> DistillSettings:
        if "distill" not in methods:
            return DistillSettings.labels_only(self.false_accept_weight)
        return DistillSettings(temperature=self.temperature, alpha=self.alpha, hint_weight=self.hint_weight,
                               false_accept_weight=self.false_accept_weight)

    def training(self, epochs: int, fine_tune: bool = False) -> TrainSettings:
        rate = self.finetune_learning_rate if fine_tune else self.learning_rate
        masks = SpecAugment() if self.spec_augment else None
        return TrainSettings(epochs, rate, batch_size=self.batch_size, seed=self.seed, spec_augment=masks)


@dataclass
class Stage:
    """One model the chain produced: a row of the report."""

    name: str
    methods: tuple[str, ...]
    kind: str
    model: nn.Module
    info: CheckpointInfo
    seconds: float
    note: str = ""


def parse_methods(text: str) -> tuple[str, ...]:
    """'prune,separable' -> ('separable', 'prune'): known names only, in chain order."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(names) - set(METHODS))
    if unknown or not names:
        raise ValueError(f"unknown methods {unknown or text!r}; choose from {', '.join(METHODS)} (comma-separated)")
    return tuple(method for method in METHODS if method in names)


def run_chain(
    methods: tuple[str, ...],
    teacher: CRNN,
    teacher_info: CheckpointInfo,
    bank: Bank,
    settings: ChainSettings,
    device: torch.device,
    say: Callable[[str], None],
    label: str = "chain",
    streams: ValStreams | None = None,
) -> list[Stage]:
    """Apply `methods` in chain order; returns the stages (the last is what the chain ends with). With `streams`,
    every DS-CNN training picks its epoch on them (`train.evaluate.selection`)."""
    distill = settings.distillation(methods)
    stages: list[Stage] = []

    def record(name: str, kind: str, model: nn.Module, started: float, trained: Trained, note="") -> None:
        info = _info(bank, model, trained)
        seconds = time.monotonic() - started
        stages.append(Stage(f"{label}: {name}", methods, kind, model.cpu().eval(), info, seconds, note))
        val = f", val AUC {trained.val['roc_auc']:.4f} accuracy {trained.val['accuracy']:.4f}" if trained.val else ""
        say(f"{label}: {name} done in {time.monotonic() - started:.0f} s{val}")

    started = time.monotonic()
    if "separable" in methods:
        torch.manual_seed(settings.seed)
        model = build_model("dscnn", bank.spec.n_mels, len(bank.labels), **settings.student)
        epochs = settings.training(settings.student_epochs)
        trained = train_student(model, bank, distill, epochs, device, f"{label} dscnn", streams)
        how = "distilled from the teacher" if "distill" in methods else "trained on labels only"
        record(f"DS-CNN {site_widths_of(trained.model)}, {how}", TORCH_FP32, trained.model, started, trained)
    elif "prune" in methods:
        trained = validated(copy.deepcopy(teacher), bank, device)
    elif "distill" in methods:
        torch.manual_seed(settings.seed)
        config = {**crnn_config(teacher), **settings.crnn_target}
        model = build_model("crnn", bank.spec.n_mels, len(bank.labels), **config)
        trained = train_student(model, bank, distill, settings.training(settings.crnn_epochs), device, f"{label} crnn")
        record(f"CRNN {site_widths_of(trained.model)}, distilled from the teacher", TORCH_FP32, trained.model,
               started, trained)
    else:
        trained = Trained(teacher, teacher_info.threshold, {}, 0)

    if "prune" in methods:
        started = time.monotonic()
        before = site_widths_of(trained.model)
        trained, kept, rejected = _prune(trained, bank, settings, distill, device, label, say, streams)
        if rejected is not None:  # the frontier: what the first step that was not kept would have cost
            candidate, step, why = rejected
            record(f"pruning step {step} to {site_widths_of(candidate.model)} (not kept)", TORCH_FP32,
                   candidate.model, started, candidate, note=why)
        what = "DS-CNN" if isinstance(trained.model, CausalDSCNN) else "CRNN"
        record(f"{what} pruned {before} -> {site_widths_of(trained.model)}", TORCH_FP32, trained.model, started,
               trained, note=f"{kept} of {settings.prune_steps} pruning steps kept (val guard)")

    if "quantize" in methods:
        started = time.monotonic()
        if isinstance(trained.model, CausalDSCNN):
            folded, _ = fold_dscnn(trained.model, bank.spec.frames_per_clip)
            same = Trained(folded, trained.threshold, trained.val, trained.best_epoch, val_streams=trained.val_streams)
            record("BatchNorms folded (deployment form, fp32)", TORCH_FP32, folded, started, same,
                   note="quantized to int8 by python -m convert")
        else:
            record("dynamic int8 (GRU, Linear)", TORCH_DYNAMIC_INT8, trained.model, started, trained,
                   note="the checkpoint holds the float weights; the report quantizes them")
    return stages


def validated(model: nn.Module, bank: Bank, device: torch.device) -> Trained:
    """An already trained model with its val metrics at its val accuracy threshold (as `train_student` returns)."""
    scores = keyword_scores(model.to(device), bank.val, device)
    threshold = accuracy_threshold(scores, bank.val.labels == 1)
    return Trained(model, threshold, detection_metrics(scores, bank.val.labels == 1, threshold), 0)


def prune_floor_widths(model: nn.Module, settings: ChainSettings) -> list[int]:
    """The widths pruning may not go below (never above the model's own: then there is nothing to prune)."""
    if isinstance(model, CausalDSCNN):
        floor = list(settings.prune_floor)
    else:
        config = {**crnn_config(model), **settings.crnn_target}
        hidden = config["hidden_size"]
        floor = [config["conv_channels"], *([hidden] * model.gru.num_layers), hidden]
    return [min(f, w) for f, w in zip(floor, site_widths_of(model), strict=True)]


def _prune(trained: Trained, bank, settings: ChainSettings, distill, device, label, say, streams=None):
    """Prune step by step towards the floor, fine-tuning after each step, while val quality holds. Returns the last
    kept model, the number of steps kept and the first rejected step (candidate, step, reason) or None."""
    reference, model = trained.val, trained.model
    epochs = settings.prune_epochs if isinstance(model, CausalDSCNN) else settings.crnn_prune_epochs
    floor = prune_floor_widths(model, settings)
    if floor == site_widths_of(model):
        say(f"{label}: the model is at the pruning floor {floor} already; nothing to prune")
        return trained, 0, None
    schedule = width_schedule(site_widths_of(model), floor, settings.prune_steps)
    for step, widths in enumerate(schedule, start=1):
        candidate, _ = prune_step(trained.model, widths, bank, device)
        say(f"{label}: pruning step {step}/{len(schedule)} -> widths {widths}, fine-tuning {epochs} epochs")
        candidate = train_student(candidate, bank, distill, settings.training(epochs, fine_tune=True), device,
                                  f"{label} prune {step}", streams)
        drop_accuracy = reference["accuracy"] - candidate.val["accuracy"]
        drop_auc = reference["roc_auc"] - candidate.val["roc_auc"]
        if drop_accuracy > settings.prune_accuracy_drop or drop_auc > settings.prune_auc_drop:
            why = (f"not kept: val accuracy fell by {drop_accuracy:.4f} (limit {settings.prune_accuracy_drop}), "
                   f"ROC AUC by {drop_auc:.4f} (limit {settings.prune_auc_drop})")
            say(f"{label}: step {step} {why}")
            return trained, step - 1, (candidate, step, why)
        trained = candidate
    return trained, len(schedule), None


def _info(bank: Bank, model: nn.Module, trained: Trained) -> CheckpointInfo:
    if isinstance(model, CausalDSCNN):
        architecture, config = "dscnn", dscnn_config(model)
    else:
        architecture, config = "crnn", crnn_config(model)
    return CheckpointInfo(
        architecture=architecture,
        model_config=config,
        feature_spec=bank.spec,
        labels=list(bank.labels),
        keyword=bank.keyword,
        threshold=trained.threshold,
        metrics={**({"val": trained.val} if trained.val else {}),
                 **({"val_streams": trained.val_streams} if trained.val_streams else {})},
        data=bank.data_info(),
        epoch=trained.best_epoch,
    )
