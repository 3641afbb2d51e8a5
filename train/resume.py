"""Resumable training: the whole training state after each epoch, written atomically to `last.pt`.

An interrupted run (Ctrl-C, a killed job, a pre-empted GPU) continues with `--resume` from the last finished
epoch and ends with the same weights as an uninterrupted run: model, optimiser, LR schedule, AMP scaler, the
augmentation RNG and torch's RNG are all restored. A state written by a run with other settings is not resumed.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

RESUME_FILE = "last.pt"
STATE_FORMAT = "kws-training-state/1"


def save_training_state(path: Path, *, settings: dict, epoch: int, model, optimizer, scheduler, scaler,
                        rng: np.random.Generator, history: list, best_key, best_epoch: int) -> None:
    payload = {
        "format": STATE_FORMAT,
        "settings": settings,
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "numpy_rng": rng.bit_generator.state,
        "torch_rng": torch.get_rng_state(),
        "history": history,
        "best_key": list(best_key) if best_key is not None else None,
        "best_epoch": best_epoch,
    }
    partial = path.with_name(path.name + ".partial")
    torch.save(payload, partial)
    os.replace(partial, path)


def load_training_state(path: Path, settings: dict) -> dict | None:
    """The saved state if it exists and was written with the same settings; None (and why) otherwise."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated file from a crash mid-write of an older version, or a foreign file
        print(f"not resuming: {path} cannot be read ({type(error).__name__})", flush=True)
        return None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        print(f"not resuming: {path} is not a {STATE_FORMAT} file", flush=True)
        return None
    if state["settings"] != settings:
        saved = state["settings"]
        changed = sorted(k for k in set(settings) | set(saved) if settings.get(k) != saved.get(k))
        print(f"not resuming: {path} was written with other settings ({', '.join(changed)})", flush=True)
        return None
    return state


def restore(state: dict, *, model, optimizer, scheduler, scaler, rng: np.random.Generator) -> None:
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    rng.bit_generator.state = state["numpy_rng"]
    torch.set_rng_state(state["torch_rng"])
