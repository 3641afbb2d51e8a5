"""PyTorch -> ONNX: the deployed graph takes log-mel features and returns class logits; the runtime applies the
softmax in float (`edge_runtime.interpreter.OUTPUT_LOGITS` says why: an int8 softmax output loses the low end).

The legacy TorchScript exporter (`dynamo=False`) at opset 17 is used on purpose: torch 2.9's dynamo exporter got a
GRU wrong and wrote opset 18 when asked for 17 (see shared/notes/TOOLCHAIN.md). Every export is checked against
torch on real features by the caller (`max_abs_difference`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from convert.errors import ConversionError
from edge_runtime.features import FeatureSpec
from edge_runtime.interpreter import softmax

INPUT_NAME = "features"
OUTPUT_NAME = "logits"
DEFAULT_OPSET = 17
RECURRENT_OPS = ("GRU", "LSTM", "RNN")


def window_shape(spec: FeatureSpec) -> list[int]:
    """The model input: one clip-long window, batch 1 (the device scores one window at a time)."""
    return [1, spec.frames_per_clip, spec.n_mels]


def export_onnx(model: torch.nn.Module, spec: FeatureSpec, path: Path, opset: int = DEFAULT_OPSET) -> Path:
    """Write `path`: input `features` [1, frames, n_mels] float32 -> output `logits` [1, num_classes]."""
    wrapped = model.eval()
    example = torch.zeros(window_shape(spec), dtype=torch.float32)
    with warnings.catch_warnings(), torch.no_grad():
        # The legacy exporter warns that it is legacy, and about GRU batch sizes (we fix batch 1): both expected.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    if onnx_opset(path) != opset:
        raise ConversionError(f"ONNX export wrote opset {onnx_opset(path)}, asked for {opset}")
    return path


def onnx_opset(path: Path) -> int:
    return next(entry.version for entry in onnx.load(str(path)).opset_import if entry.domain in ("", "ai.onnx"))


def has_recurrent_ops(path: Path) -> bool:
    """GRU/LSTM/RNN nodes need onnx2tf's unrolling (`-eru`) to quantize to int8."""
    return any(node.op_type in RECURRENT_OPS for node in onnx.load(str(path)).graph.node)


def torch_probabilities(model: torch.nn.Module, windows: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """[n, frames, n_mels] float32 -> [n, num_classes] probabilities from the torch model itself."""
    model = model.eval()
    outputs = []
    with torch.no_grad():
        for start in range(0, len(windows), batch_size):
            outputs.append(torch.softmax(model(torch.from_numpy(windows[start : start + batch_size])), -1).numpy())
    return np.concatenate(outputs).astype(np.float32)


def onnx_probabilities(path: Path, windows: np.ndarray) -> np.ndarray:
    """[n, frames, n_mels] -> [n, num_classes] through onnxruntime, one window at a time (the graph has batch 1)."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return softmax(np.stack([session.run([OUTPUT_NAME], {INPUT_NAME: window[None]})[0][0] for window in windows]))
