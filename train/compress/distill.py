"""Knowledge distillation from the CRNN teacher (Hinton et al. 2015; FitNets-style hints, Romero et al. 2015).

Loss per batch:
    alpha * CE(student, labels)
  + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))      logit distillation
  + hint_weight * MSE(P(student embedding), teacher embedding)                 layer-wise distillation

The embeddings are each model's penultimate layer, the input of its `classifier` (the teacher's attention-pooled
GRU state, the student's time-averaged last block). Their sizes differ, so a learned linear projection P maps the
student's into the teacher's space (trained with the student, dropped afterwards: it is not part of the model).
With `alpha = 1` and `hint_weight = 0` this is plain cross-entropy training on the labels.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from train.losses import class_weights


@dataclass(frozen=True)
class DistillSettings:
    temperature: float = 4.0
    alpha: float = 0.3  # weight of the hard-label cross-entropy; the rest goes to the teacher's soft targets
    hint_weight: float = 0.0  # weight of the layer-wise (embedding) term; 0 switches it off
    # Weight of non-keyword windows in the hard-label term (the keyword's is 1): above 1 a false accept costs more.
    false_accept_weight: float = 1.0

    @classmethod
    def labels_only(cls, false_accept_weight: float = 1.0) -> DistillSettings:
        return cls(temperature=1.0, alpha=1.0, hint_weight=0.0, false_accept_weight=false_accept_weight)

    @property
    def uses_teacher(self) -> bool:
        return self.alpha < 1.0 or self.hint_weight > 0.0


@contextlib.contextmanager
def captured_embedding(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """While active, each forward of `model` appends the input of `model.classifier` to the yielded list."""
    captured: list[torch.Tensor] = []
    handle = model.classifier.register_forward_pre_hook(lambda _module, args: captured.append(args[0]))
    try:
        yield captured
    finally:
        handle.remove()


def logits_and_embedding(model: nn.Module, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with captured_embedding(model) as captured:
        logits = model(features)
    return logits, captured[-1]


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(teacher || student) at temperature T, averaged over the batch."""
    return (
        F.kl_div(
            F.log_softmax(student_logits / temperature, dim=1),
            F.log_softmax(teacher_logits / temperature, dim=1),
            reduction="batchmean",
            log_target=True,
        )
        * temperature**2
    )


class DistillationLoss(nn.Module):
    """The loss above; its only parameters are the hint projection's (give them to the optimiser too)."""

    def __init__(self, settings: DistillSettings, student_embedding: int, teacher_embedding: int) -> None:
        super().__init__()
        self.settings = settings
        self.projection = nn.Linear(student_embedding, teacher_embedding) if settings.hint_weight > 0 else None

    def forward(
        self,
        student_logits: torch.Tensor,
        student_embedding: torch.Tensor,
        labels: torch.Tensor,
        teacher_logits: torch.Tensor | None = None,
        teacher_embedding: torch.Tensor | None = None,
    ) -> torch.Tensor:
        s = self.settings
        loss = s.alpha * F.cross_entropy(student_logits, labels, weight=class_weights(s.false_accept_weight,
                                                                                   student_logits))
        if s.alpha < 1.0:
            loss = loss + (1.0 - s.alpha) * soft_target_loss(student_logits, teacher_logits, s.temperature)
        if self.projection is not None:
            loss = loss + s.hint_weight * F.mse_loss(self.projection(student_embedding), teacher_embedding)
        return loss
