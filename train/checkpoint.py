"""Checkpoints carry their own contract (architecture, config, feature spec, labels) so anything can rebuild them.

Loading uses `torch.load(weights_only=True)`: a checkpoint is data, never code to unpickle.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from edge_runtime.features import FeatureSpec
from train.models import build_model

CHECKPOINT_FORMAT = "kws-checkpoint/1"


@dataclass
class CheckpointInfo:
    architecture: str
    model_config: dict
    feature_spec: FeatureSpec
    labels: list[str]
    keyword: str
    threshold: float = 0.5
    metrics: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    epoch: int = 0

    @property
    def keyword_index(self) -> int:
        return self.labels.index(self.keyword)

    @property
    def left_out(self) -> list[str]:
        """Voice-group prefixes the model was trained without (`train.fit --leave-out`); empty when none."""
        return list(self.data.get("leave_out", [])) if isinstance(self.data, dict) else []


def save_checkpoint(path: Path, model: torch.nn.Module, info: CheckpointInfo) -> None:
    """Write atomically: a crash mid-write leaves the previous checkpoint intact."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "architecture": info.architecture,
        "model_config": info.model_config,
        "feature_spec": info.feature_spec.to_dict(),
        "labels": list(info.labels),
        "keyword": info.keyword,
        "threshold": float(info.threshold),
        "metrics": info.metrics,
        "data": info.data,
        "epoch": int(info.epoch),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path, device: str = "cpu") -> tuple[torch.nn.Module, CheckpointInfo]:
    """Rebuild the model in eval mode from a checkpoint file; ValueError with the reason if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises many types for truncated or foreign files
        raise ValueError(f"checkpoint {path} cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    info = CheckpointInfo(
        architecture=payload["architecture"],
        model_config=payload["model_config"],
        feature_spec=FeatureSpec.from_dict(payload["feature_spec"]),
        labels=list(payload["labels"]),
        keyword=payload["keyword"],
        threshold=payload["threshold"],
        metrics=payload["metrics"],
        data=payload["data"],
        epoch=payload["epoch"],
    )
    model = build_model(
        info.architecture, n_mels=info.feature_spec.n_mels, num_classes=len(info.labels), **info.model_config
    )
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), info
