"""Several trained models of the same contract scored as one: the mean of their logits.

The detector's verifier runs a fraction of a percent of the time (behind the streaming model's gate), so it can
afford two or three CRNNs where one would have to do on its own. Trainings that differ only in their seed make
different mistakes on voices they never heard; their mean logit is steadier than any one of them (docs/quality.md,
"A verifier of two teachers"). It is one module, so it exports, converts and quantizes as one model.
"""

from __future__ import annotations

import torch
from torch import nn


class LogitMean(nn.Module):
    """[batch, frames, n_mels] -> [batch, num_classes]: the mean of the members' logits.

    `members` lists each member as {"architecture": name, "config": its model config}, as a checkpoint stores it;
    the members' weights are the submodules `members.0`, `members.1`, ..."""

    def __init__(self, n_mels: int, num_classes: int, members: list[dict]) -> None:
        super().__init__()
        from train.models import build_model  # the registry imports this module

        if len(members) < 2:
            raise ValueError(f"an ensemble needs at least two members, got {len(members)}")
        self.members = nn.ModuleList(
            build_model(member["architecture"], n_mels=n_mels, num_classes=num_classes, **member.get("config", {}))
            for member in members
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.stack([member(features) for member in self.members]).mean(dim=0)
