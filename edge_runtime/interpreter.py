"""A TFLite model behind one call: float log-mel features in, float class probabilities out.

Whether the model is full-integer (int8 input and output) or float32, callers see the same thing: this class
quantizes features with the input tensor's scale and zero point and dequantizes the output with the output's.
Models converted now output class logits and this class applies the softmax in float (`OUTPUT_LOGITS`); bundles
converted before end their graph in a softmax (`OUTPUT_PROBABILITIES`) and are read as they are.
The conversion step scores its TFLite artifacts through this class too, so what is measured is what is deployed.

The interpreter comes from `ai_edge_litert` (maintained, numpy 2) and falls back to `tflite_runtime`; both expose
the same `Interpreter` API.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .errors import KwsError

try:
    from ai_edge_litert.interpreter import Interpreter
except ImportError:  # pragma: no cover - depends on what the device has installed
    try:
        from tflite_runtime.interpreter import Interpreter
    except ImportError:
        Interpreter = None

DEFAULT_THREADS = 1  # a Pi shares its few cores with audio capture; one thread keeps latency predictable
SUPPORTED_DTYPES = ("int8", "float32")
# What a window model's output holds: the manifest's `model.output.meaning`. Logits, because an int8 softmax output
# has 256 levels of 1/256: it rounds every probability below 1/512 to 0, so windows the float model ranks far apart
# (a keyword at 1e-3, silence at 1e-6) tie at 0 and the low end of the detection curve is lost (measured on one
# student: test au_fa_fr 65 in float32, 101 in int8). The int8 logits keep the final layer's own resolution, and
# the softmax of two or a few numbers costs nothing on the device.
OUTPUT_LOGITS = "class logits"
OUTPUT_PROBABILITIES = "class probabilities"
OUTPUT_MEANINGS = (OUTPUT_LOGITS, OUTPUT_PROBABILITIES)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities over the last axis, float32 (shifted by the maximum, so large logits do not overflow; float32
    throughout, a few microseconds per window: it runs once per model call on the device)."""
    logits = np.asarray(logits, dtype=np.float32)
    exponentials = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class TensorInfo:
    """What the interpreter says about a model input or output; scale 0.0 means "not quantized"."""

    name: str
    shape: list[int]
    dtype: str
    scale: float
    zero_point: int

    @classmethod
    def from_details(cls, details: dict) -> TensorInfo:
        scale, zero_point = details.get("quantization", (0.0, 0))
        return cls(
            name=str(details["name"]),
            shape=[int(d) for d in details["shape"]],
            dtype=np.dtype(details["dtype"]).name,
            scale=float(scale),
            zero_point=int(zero_point),
        )

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0

    def to_dict(self) -> dict:
        return asdict(self)


class TfliteModel:
    """One-input, one-output TFLite classifier: `probabilities(features)` -> float32 [num_classes].

    `output_meaning`: OUTPUT_LOGITS (what `python -m convert` writes) or OUTPUT_PROBABILITIES (bundles converted
    before logits); a bundle's manifest says which."""

    def __init__(
        self, path: str | Path, num_threads: int = DEFAULT_THREADS, output_meaning: str = OUTPUT_LOGITS
    ) -> None:
        if output_meaning not in OUTPUT_MEANINGS:
            raise KwsError(f"model output meaning must be one of {', '.join(OUTPUT_MEANINGS)}; got {output_meaning!r}")
        self.output_meaning = output_meaning
        if Interpreter is None:
            raise KwsError("no TFLite interpreter installed: install ai-edge-litert (or tflite-runtime)")
        if num_threads < 1:
            raise KwsError(f"num_threads must be >= 1, got {num_threads}")
        self.path = Path(path)
        if not self.path.is_file():
            raise KwsError(f"model file {self.path} does not exist")
        try:
            self._interpreter = Interpreter(model_path=str(self.path), num_threads=num_threads)
            with native_stderr_silenced():
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise KwsError(f"model file {self.path} is not a loadable TFLite model ({error})") from None
        inputs, outputs = self._interpreter.get_input_details(), self._interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise KwsError(f"model {self.path} has {len(inputs)} inputs and {len(outputs)} outputs; expected 1 and 1")
        self._input_index, self._output_index = inputs[0]["index"], outputs[0]["index"]
        self.input, self.output = TensorInfo.from_details(inputs[0]), TensorInfo.from_details(outputs[0])
        for role, tensor in (("input", self.input), ("output", self.output)):
            if tensor.dtype not in SUPPORTED_DTYPES:
                raise KwsError(f"model {self.path} {role} is {tensor.dtype}; supported: {', '.join(SUPPORTED_DTYPES)}")

    @property
    def precision(self) -> str:
        return self.input.dtype

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        """Float32 [num_classes] for one window shaped like the input, with or without its batch axis of 1."""
        features = np.asarray(features, dtype=np.float32)
        if list(features.shape) not in (self.input.shape, self.input.shape[1:]):
            raise KwsError(f"model {self.path} takes input of shape {self.input.shape}, got {list(features.shape)}")
        features = features.reshape(self.input.shape)
        self._interpreter.set_tensor(self._input_index, quantize(features, self.input))
        self._interpreter.invoke()
        output = dequantize(self._interpreter.get_tensor(self._output_index), self.output)[0]
        return softmax(output) if self.output_meaning == OUTPUT_LOGITS else output


@contextlib.contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Hide what the C++ runtime writes straight to file descriptor 2 ("INFO: Created TensorFlow Lite XNNPACK
    delegate for CPU." on every load), so stderr carries only our own one-line errors. Failures still arrive as
    Python exceptions with their message."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def quantize(values: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """Float values -> the tensor's dtype: q = round(x / scale) + zero_point, saturated to int8."""
    if not tensor.quantized:
        return values.astype(tensor.dtype, copy=False)
    info = np.iinfo(tensor.dtype)
    steps = np.round(values / tensor.scale) + tensor.zero_point
    return np.clip(steps, info.min, info.max).astype(tensor.dtype)


def dequantize(values: np.ndarray, tensor: TensorInfo) -> np.ndarray:
    """The tensor's dtype -> float32: x = (q - zero_point) * scale."""
    if not tensor.quantized:
        return values.astype(np.float32, copy=False)
    return ((values.astype(np.float32) - tensor.zero_point) * tensor.scale).astype(np.float32)
