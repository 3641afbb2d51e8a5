"""Tiny real inputs shared by the tests: a chirp-vs-noise clip set, few-step checkpoints, one converted bundle.

Each conversion runs the real onnx2tf (about 10 s here), so the edge runtime tests share one bundle per session.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from convert.pipeline import ConversionOptions, run_conversion
from edge_runtime.features import FeatureSpec
from train.checkpoint import CheckpointInfo, save_checkpoint
from train.data.clipset import ClipSetWriter
from train.models import build_model

REPO = Path(__file__).resolve().parents[1]
SPEC = FeatureSpec()
KEYWORD = "sheila"
LABELS = ["_other_", KEYWORD]
TINY_CONFIGS = {
    "dscnn": {"channels": 16, "dilations": [1, 2]},
    "crnn": {"conv_channels": 4, "hidden_size": 16, "gru_layers": 1},
}
UTTERANCES_PER_CLASS = {"train": 24, "val": 6, "test": 10}


def keyword_sound(rng: np.random.Generator, seconds: float = 0.5) -> np.ndarray:
    """A rising chirp (600 -> 1800 Hz): the tiny set's stand-in for the keyword."""
    t = np.arange(int(SPEC.sample_rate * seconds)) / SPEC.sample_rate
    frequency = 600 + 1200 * t / seconds
    phase = 2 * np.pi * np.cumsum(frequency) / SPEC.sample_rate
    return (rng.uniform(0.2, 0.5) * np.sin(phase + rng.uniform(0, 6))).astype(np.float32)


def other_sound(rng: np.random.Generator, seconds: float = 0.5) -> np.ndarray:
    """Low-pass-ish noise bursts: anything that is not the keyword."""
    noise = rng.standard_normal(int(SPEC.sample_rate * seconds))
    return (rng.uniform(0.05, 0.2) * np.convolve(noise, np.ones(8) / 8, mode="same")).astype(np.float32)


def make_tiny_clipset(folder: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    writer = ClipSetWriter(SPEC)
    for split, count in UTTERANCES_PER_CLASS.items():
        for index in range(count):
            writer.add(keyword_sound(rng), label=1, split=split, group=f"chirp:{index % 3}", text=KEYWORD, trim=False)
            writer.add(other_sound(rng), label=0, split=split, group=f"noise:{index % 3}", text="", trim=False)
    meta = {"keyword": KEYWORD, "labels": LABELS, "feature_spec": SPEC.to_dict(), "cache_key": f"tiny-{seed}"}
    return writer.write(folder, meta)


def make_tiny_checkpoint(
    path: Path, architecture: str, clipset: Path, steps: int = 40, spec: FeatureSpec = SPEC, seed: int = 0
) -> Path:
    """A tiny model trained a few full-batch steps on centred training windows, so its scores mean something;
    `seed` draws its initial weights."""
    from convert.windows import WindowMaker
    from train.data.clipset import ClipSet

    torch.manual_seed(seed)
    model = build_model(architecture, SPEC.n_mels, len(LABELS), **TINY_CONFIGS[architecture])
    train = WindowMaker(ClipSet.load(clipset), spec).split("train")
    features, labels = torch.from_numpy(train.features), torch.from_numpy(train.labels)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(features), labels).backward()
        optimizer.step()
    info = CheckpointInfo(
        architecture=architecture,
        model_config=TINY_CONFIGS[architecture],
        feature_spec=spec,
        labels=LABELS,
        keyword=KEYWORD,
        threshold=0.5,
        data={"clipset": str(clipset)},
    )
    save_checkpoint(path, model.eval(), info)
    return path


def convert_tiny(root: Path, architecture: str, spec: FeatureSpec = SPEC) -> tuple[Path, Path, dict]:
    """Clip set + checkpoint + conversion under `root`; returns (checkpoint, bundle folder, manifest)."""
    clipset = root / "clips" if (root / "clips").is_dir() else make_tiny_clipset(root / "clips")
    name = architecture if spec == SPEC else f"{architecture}-{spec.front_end}"
    checkpoint = make_tiny_checkpoint(root / f"{name}.pt", architecture, clipset, spec=spec)
    out = root / f"edge-{name}"
    manifest = run_conversion(ConversionOptions(checkpoint=checkpoint, out=out, calibration_windows=40), say=print)
    return checkpoint, out, manifest


@functools.cache
def shared_dscnn_bundle() -> Path:
    """One converted tiny dscnn bundle per test session for the edge runtime tests (removed at exit)."""
    root = Path(tempfile.mkdtemp(prefix="kws-tiny-bundle-"))
    atexit.register(shutil.rmtree, root, True)
    return convert_tiny(root, "dscnn")[1]
