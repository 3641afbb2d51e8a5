"""The one training loop every compression method uses: a student on the bank's views, with a `DistillationLoss`.

AdamW with a one-cycle schedule, one bank view per epoch (cycled), validation on the centred val windows after each
epoch; the best epoch (by val ROC AUC, then accuracy) is kept and the decision threshold is chosen on val, as in
`train.fit`. Given val streams (`train.evaluate.selection`), a DS-CNN's epochs are ranked first by the false-reject
rate on them (the mean over a few false-accept rates), among the epochs of the schedule's later part: long audio,
scored as the streaming detector scores it.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from train.compress.bank import Bank, Windows
from train.compress.distill import DistillationLoss, DistillSettings, captured_embedding
from train.evaluate.selection import ValStreams
from train.metrics import accuracy_threshold, detection_metrics
from train.models.dscnn import CausalDSCNN
from train.spec_augment import SpecAugment


@dataclass(frozen=True)
class TrainSettings:
    epochs: int
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    batch_size: int = 128
    seed: int = 0
    spec_augment: SpecAugment | None = None  # masks the student's input (the teacher's logits saw it whole)


@dataclass
class Trained:
    model: torch.nn.Module
    threshold: float
    val: dict
    best_epoch: int
    history: list[dict] = field(default_factory=list)
    val_streams: dict | None = None  # the best epoch on the val streams, when they chose it


@torch.no_grad()
def keyword_scores(model: torch.nn.Module, windows: Windows, device: torch.device, batch_size: int = 1024):
    model.eval()
    scores = []
    for start in range(0, len(windows), batch_size):
        logits = model(windows.features[start : start + batch_size].to(device)).float()
        scores.append(torch.softmax(logits, dim=1)[:, 1].cpu().numpy())
    return np.concatenate(scores)


def evaluate(model: torch.nn.Module, windows: Windows, threshold: float, device: torch.device) -> dict:
    return detection_metrics(keyword_scores(model, windows, device), windows.labels == 1, threshold)


def log_loss(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy of keyword probabilities: breaks ties between epochs of equal AUC and accuracy (on an
    easy val split every epoch may reach AUC 1), preferring the more confident model."""
    probabilities = np.clip(np.where(labels, scores, 1.0 - scores), 1e-7, 1.0)
    return float(-np.mean(np.log(probabilities)))


def _prefixed(metrics: dict) -> dict:
    return {f"val_{key}": metrics[key] for key in ("roc_auc", "accuracy", "threshold")}


def train_student(
    model: torch.nn.Module,
    bank: Bank,
    distill: DistillSettings,
    settings: TrainSettings,
    device: torch.device,
    desc: str,
    streams: ValStreams | None = None,
) -> Trained:
    """Train `model` (in place, then restored to its best epoch: val ROC AUC, then accuracy, then val loss; with
    `streams` and a DS-CNN, only epochs from the selection's share of the schedule on, by their mean FRR on the
    streams first) and return it with its val threshold."""
    torch.manual_seed(settings.seed)
    generator = torch.Generator().manual_seed(settings.seed)
    model = model.to(device)
    with torch.no_grad(), captured_embedding(model) as captured:
        model.eval()(bank.val.features[:1].to(device))
    loss_fn = DistillationLoss(distill, captured[0].shape[1], bank.teacher_embedding_size).to(device)
    parameters = [*model.parameters(), *loss_fn.parameters()]
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    steps = [-(-len(bank.views[e % len(bank.views)]) // settings.batch_size) for e in range(settings.epochs)]
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=settings.learning_rate, total_steps=sum(steps))
    best_key, best_state, best_epoch, history, best_streams, quality = None, None, 0, [], None, None
    streams = streams if isinstance(model, CausalDSCNN) else None  # a CRNN has no one-pass stream scoring

    for epoch in range(settings.epochs):
        view = bank.views[epoch % len(bank.views)]
        order = torch.randperm(len(view), generator=generator)
        model.train()
        total, seen = 0.0, 0
        bar = tqdm(total=len(order), desc=f"{desc} epoch {epoch + 1}/{settings.epochs}", unit="clip", disable=None)
        with bar:
            for start in range(0, len(order), settings.batch_size):
                chosen = order[start : start + settings.batch_size]
                features = view.features[chosen].float()
                features = (settings.spec_augment(features) if settings.spec_augment else features).to(device)
                labels = view.labels[chosen].to(device)
                with captured_embedding(model) as captured:
                    logits = model(features)
                loss = loss_fn(
                    logits,
                    captured[0],
                    labels,
                    view.teacher_logits[chosen].to(device),
                    view.teacher_embedding[chosen].to(device),
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                total += loss.item() * len(chosen)
                seen += len(chosen)
                bar.update(len(chosen))
        scores = keyword_scores(model, bank.val, device)
        val = detection_metrics(scores, bank.val.labels == 1, accuracy_threshold(scores, bank.val.labels == 1))
        val_loss = log_loss(scores, bank.val.labels == 1)
        history.append({"epoch": epoch + 1, "loss": total / seen, "val_loss": val_loss, **_prefixed(val)})
        key = (val["roc_auc"], val["accuracy"], -val_loss)
        if streams is not None:  # candidates only from the selection's share of the schedule on, ranked first
            candidate = epoch + 1 >= streams.selection.first_candidate(settings.epochs)
            quality = streams.measure(model, bank.keyword_index, device) if candidate else None
            if quality is not None:
                history[-1]["val_stream_mean_frr"] = quality.mean_frr
            key = (candidate, -quality.mean_frr if quality is not None else 0.0, *key)
        if best_key is None or key > best_key:
            best_key, best_epoch = key, epoch + 1
            best_state = copy.deepcopy(model.state_dict())
            best_streams = quality.to_dict() if quality is not None else None
    model.load_state_dict(best_state)
    model.eval()
    scores = keyword_scores(model, bank.val, device)
    threshold = accuracy_threshold(scores, bank.val.labels == 1)
    val = detection_metrics(scores, bank.val.labels == 1, threshold)
    return Trained(model, threshold, val, best_epoch, history, best_streams)
