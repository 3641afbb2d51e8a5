"""Model zoo: every architecture is built by name from a plain config dict that travels in the checkpoint."""

from __future__ import annotations

import torch

from train.models.crnn import CRNN
from train.models.dscnn import CausalDSCNN
from train.models.ensemble import LogitMean

# "ensemble": the mean logit of trained members (python -m train.ensemble), built from {"members": [...]}.
ARCHITECTURES: dict[str, type[torch.nn.Module]] = {"crnn": CRNN, "dscnn": CausalDSCNN, "ensemble": LogitMean}


def build_model(name: str, n_mels: int, num_classes: int, **config) -> torch.nn.Module:
    """Build an architecture by name; `config` overrides its defaults (stored in checkpoints to rebuild it)."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown model '{name}'; choose one of: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[name](n_mels=n_mels, num_classes=num_classes, **config)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
