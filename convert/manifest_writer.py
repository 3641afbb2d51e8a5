"""Writes the bundle's `manifest.json` (format `kws-edge-manifest/1`, read back by `edge_runtime.manifest`).

Input/output details come from the interpreter's view of the converted file, never from what we asked onnx2tf
for, so the manifest describes the file as it is.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from edge_runtime.interpreter import OUTPUT_LOGITS, TfliteModel
from edge_runtime.manifest import MANIFEST_FORMAT, MANIFEST_NAME, sha256_of
from train.checkpoint import CheckpointInfo

DEFAULT_REFRACTORY_SECONDS = 1.0  # about one keyword long: one utterance gives one detection
DEFAULT_WINDOW_HOP_SECONDS = 0.1
VERSIONED_PACKAGES = ("torch", "onnx", "onnxruntime", "onnx2tf", "tensorflow", "ai-edge-litert")


@dataclass(frozen=True)
class BundleFiles:
    int8_tflite: Path
    float32_tflite: Path
    onnx: Path
    onnx_opset: int


@dataclass(frozen=True)
class SourceInfo:
    checkpoint: Path
    clipset: Path


def package_versions() -> dict[str, str]:
    versions = {}
    for name in VERSIONED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def build_manifest(
    info: CheckpointInfo,
    files: BundleFiles,
    source: SourceInfo,
    metrics: dict,
    refractory_seconds: float = DEFAULT_REFRACTORY_SECONDS,
    window_hop_seconds: float = DEFAULT_WINDOW_HOP_SECONDS,
    extra: dict | None = None,
) -> dict:
    """The manifest; `extra`: further sections (`streaming`, `reference_latency`) added as they are."""
    deployed = TfliteModel(files.int8_tflite)
    return {
        "format": MANIFEST_FORMAT,
        "keyword": info.keyword,
        "labels": list(info.labels),
        "keyword_index": info.keyword_index,
        "feature_spec": info.feature_spec.to_dict(),
        "model": {
            "file": files.int8_tflite.name,
            "sha256": sha256_of(files.int8_tflite),
            "bytes": files.int8_tflite.stat().st_size,
            "precision": deployed.precision,
            "architecture": info.architecture,
            # An ensemble (train.ensemble) names its members' architectures, in order.
            **({"members": [member["architecture"] for member in info.model_config["members"]]}
               if "members" in info.model_config else {}),  # fmt: skip
            "input": deployed.input.to_dict(),
            "output": deployed.output.to_dict() | {"meaning": OUTPUT_LOGITS},
        },
        "detection": {
            "threshold": float(info.threshold),
            "refractory_seconds": float(refractory_seconds),
            "window_hop_seconds": float(window_hop_seconds),
        },
        "artifacts": {
            "float32_tflite": _artifact(files.float32_tflite),
            "onnx": _artifact(files.onnx) | {"opset": files.onnx_opset},
        },
        "source": {
            "checkpoint": str(source.checkpoint),
            "checkpoint_sha256": sha256_of(source.checkpoint),
            "clipset": str(source.clipset),
            # Voice groups the model was trained without (train.fit --leave-out): unseen families in evaluations.
            **({"leave_out": info.left_out} if info.left_out else {}),
            "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "versions": package_versions(),
        },
        "metrics": metrics,
        **(extra or {}),
    }


def _artifact(path: Path) -> dict:
    return {"file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size}


def write_manifest(folder: Path, manifest: dict) -> Path:
    """Write atomically, NaN (e.g. ROC AUC of a one-class split) as null so the file is strict JSON."""
    path = folder / MANIFEST_NAME
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(_finite(manifest), indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def _finite(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
