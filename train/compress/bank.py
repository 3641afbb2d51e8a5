"""What every compression method of one run trains and is scored on, built once.

- `views`: augmented training epochs (the same sampling and augmentation as `train.fit`: all negatives plus
  resampled keyword clips, random shift, noise and gain), as log-mel windows, each window with the teacher's
  logits and penultimate embedding (the input of its classifier). Student training cycles through the views, so
  distillation, every pruning fine-tune and every ablation share one augmentation and one teacher pass per window
  instead of paying for them on each epoch.
- `val` and `test`: the centred windows through the device's numpy front-end (`convert.windows.WindowMaker`),
  the same windows `python -m convert` scores the TFLite models on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from convert.windows import WindowMaker
from edge_runtime.features import FeatureSpec
from train.compress.distill import logits_and_embedding
from train.data.batches import BANK_VIEW, AugmentedBatches, worker_count
from train.data.clipset import ClipSet
from train.features_torch import TorchMelFrontEnd
from train.fit import clipset_spec, epoch_indices, training_augmenter

FEATURE_BATCH = 512  # windows per log-mel + teacher batch while building

@dataclass
class View:
    """One augmented epoch. Features are stored as float16 (half the memory; cast back per batch)."""

    features: torch.Tensor  # [n, frames, n_mels] float16
    labels: torch.Tensor  # [n] int64 class index (1 = keyword)
    teacher_logits: torch.Tensor  # [n, classes] float32
    teacher_embedding: torch.Tensor  # [n, teacher embedding size] float32

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Windows:
    """Fixed evaluation windows of one split."""

    features: torch.Tensor  # [n, frames, n_mels] float32
    labels: np.ndarray  # [n] int64, 1 = keyword

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Bank:
    views: list[View]
    val: Windows
    test: Windows
    spec: FeatureSpec
    labels: list[str]
    keyword: str
    clipset: Path
    cache_key: str
    leave_out: list[str] = field(default_factory=list)  # the teacher's (train.fit --leave-out)

    @property
    def keyword_index(self) -> int:
        return self.labels.index(self.keyword)

    @property
    def teacher_embedding_size(self) -> int:
        return int(self.views[0].teacher_embedding.shape[1])

    def data_info(self) -> dict:
        """The `data` entry of checkpoints trained on this bank (what `python -m convert` reads)."""
        left_out = {"leave_out": list(self.leave_out)} if self.leave_out else {}
        return {"clipset": str(self.clipset), "cache_key": self.cache_key, **left_out}


def build_bank(
    clipset_path: Path,
    teacher: torch.nn.Module,
    views: int,
    seed: int,
    device: torch.device,
    positive_fraction: float = 0.35,
    speech_context: float = 0.0,
    whisper: float = 0.0,
    vtlp: float = 0.0,
    leave_out: list[str] | None = None,
    workers: int | None = None,
    teacher_spec: FeatureSpec | None = None,
) -> Bank:
    """`workers`: augmentation processes (train.data.batches; None: auto); the bank is the same for any count.
    `teacher_spec`: the teacher checkpoint's features (None: the clip set's)."""
    clips = ClipSet.load(clipset_path)
    clips.leave_out(leave_out or [])
    # The student reads what the teacher read (its logits are computed on these features): the teacher's spec.
    spec = teacher_spec or clipset_spec(clips)
    labels, keyword = list(clips.meta["labels"]), clips.meta["keyword"]
    if labels.index(keyword) != 1:
        raise ValueError(f"clip set {clipset_path} must list the keyword second in its labels, got {labels}")
    rng = np.random.default_rng(seed)
    augmenter = training_augmenter(clips, spec, rng, speech_context, whisper, vtlp)
    front_end = TorchMelFrontEnd(spec).to(device)
    teacher = teacher.to(device).eval()
    built = []
    with AugmentedBatches(clips, augmenter, seed, worker_count(workers, device.type)) as batches:
        for index in range(views):
            order = epoch_indices(clips, positive_fraction, rng)
            made = batches.batches(order, FEATURE_BATCH, stream=(BANK_VIEW, index))
            built.append(_view(made, len(order), front_end, teacher, device, f"view {index + 1}/{views}"))
    maker = WindowMaker(clips, spec)
    val, test = maker.split("val"), maker.split("test")
    if len(val) == 0 or len(test) == 0:
        raise ValueError(f"clip set {clipset_path} needs val and test clips")
    return Bank(
        views=built,
        val=Windows(torch.from_numpy(val.features), val.labels),
        test=Windows(torch.from_numpy(test.features), test.labels),
        spec=spec,
        labels=labels,
        keyword=keyword,
        clipset=Path(clipset_path).resolve(),
        cache_key=str(clips.meta.get("cache_key", "")),
        leave_out=list(leave_out or []),
    )


@torch.no_grad()
def _view(batches, size, front_end, teacher, device, desc) -> View:
    features, labels, logits, embeddings = [], [], [], []
    with tqdm(total=size, desc=f"bank {desc}", unit="clip", disable=None) as bar:
        for audio, batch_labels in batches:
            batch = front_end(torch.from_numpy(audio).to(device))
            teacher_logits, teacher_embedding = logits_and_embedding(teacher, batch)
            features.append(batch.half().cpu())
            logits.append(teacher_logits.float().cpu())
            embeddings.append(teacher_embedding.float().cpu())
            labels.append(torch.from_numpy(batch_labels))
            bar.update(len(batch_labels))
    return View(
        features=torch.cat(features),
        labels=torch.cat(labels),
        teacher_logits=torch.cat(logits),
        teacher_embedding=torch.cat(embeddings),
    )
