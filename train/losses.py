"""Loss pieces shared by `train.fit` (the teacher, or a model trained on its own) and `train.compress` (students)."""

from __future__ import annotations

import torch


def class_weights(false_accept_weight: float, logits: torch.Tensor) -> torch.Tensor | None:
    """Cross-entropy class weights for [other, keyword] (the keyword is class 1), or None when equal."""
    if false_accept_weight == 1.0:
        return None
    weights = torch.full((logits.shape[1],), float(false_accept_weight), device=logits.device)
    weights[1] = 1.0
    return weights
