"""Streaming export: the DS-CNN's streaming step (see `stream_model.py`) as ONNX, then TFLite float32 and int8.

Checks before anything is written to the manifest, each through the edge runtime's own streaming code:
- ONNX step vs torch step, and TFLite float32 step vs the torch *window* model on every window a long stream of
  test features passes through: within the float tolerance (measured ~1e-7).
- int8 step vs the int8 window model (what `detect` deploys) and vs the float window model: probability
  differences and decision agreement at the threshold, recorded; the agreement with the int8 window model must
  reach the same minimum as the int8 window model's with float. (Against float alone, a barely trained model
  whose probabilities all lie within one int8 step of the threshold would fail on quantization, not streaming.)
- int8 state input and output share scale and zero point, so the device feeds the state back unchanged.

Calibration pairs (frames, state) come from running the float step over the calibration windows, so the int8
state ranges are the ones the device will see.
"""

from __future__ import annotations

import contextlib
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import torch

from convert.errors import ConversionError
from convert.evaluate import int8_agreement, max_abs_difference, tflite_probabilities
from convert.export_onnx import DEFAULT_OPSET
from convert.stream_model import (
    FRAMES_INPUT,
    PROBABILITIES_OUTPUT,
    STATE_INPUT,
    STATE_OUTPUT,
    NotStreamable,
    StreamingDSCNN,
    last_frame_of_output,
    window_start_of_output,
)
from convert.to_tflite import convert_to_tflite
from edge_runtime.features import FeatureSpec, silence_frames
from edge_runtime.interpreter import OUTPUT_LOGITS, Interpreter, TensorInfo, softmax
from edge_runtime.manifest import sha256_of
from edge_runtime.stream_manifest import TENSOR_ROLES, entry_from_section
from edge_runtime.streaming import StreamingModel

STREAM_INT8_FILE, STREAM_FLOAT32_FILE, STREAM_ONNX_FILE = (
    "model_stream_int8.tflite",
    "model_stream_float32.tflite",
    "model_stream.onnx",
)
# Outputs per interpreter call: 5 outputs = 5 x the stem stride in feature frames (the default student's stride 5:
# 25 frames, 250 ms of audio per call). More amortises the per-call cost further and adds latency.
DEFAULT_OUTPUTS_PER_STEP = 5
# Moving average of the keyword probability over this span (70 merged outputs of 10 ms). A keyword stays in the
# 1 s window for about half a second, so its probability holds a plateau that long, and a false accept is usually a
# shorter spike. Chosen on the long val streams (docs/quality.md, "Smoothing" and "Two stages"): for the student
# alone, merging every phase, the mean FRR at 0.5-5 FA/h over three seeds was 14.5% at 0.5 s, 13.1% at 0.7 s and
# 12.3% at 1.0 s (within val's noise, for 0.15 s more delay); with the verifier 8.5% at 0.7 s and 9.4% at 1.0 s.
# The epoch selection keeps its own span (train.evaluate.selection.SELECTION_SMOOTHING_SECONDS).
DEFAULT_SMOOTHING_SECONDS = 0.7
MAX_CALIBRATION_PAIRS = 1000
MAX_CHECK_WINDOWS = 60  # test windows chained into the check stream (each adds frames_per_clip frames)
CALIBRATION_SEED = 0


@dataclass(frozen=True)
class StreamOptions:
    outputs_per_step: int = DEFAULT_OUTPUTS_PER_STEP
    smoothing_seconds: float = DEFAULT_SMOOTHING_SECONDS
    phases: int | None = None  # copies of the step the runtime runs, at lags spread over one stride; None: the stride
    opset: int = DEFAULT_OPSET
    float_tolerance: float = 1e-4
    min_agreement: float = 0.97


def streamable(model: torch.nn.Module, spec: FeatureSpec) -> bool:
    try:
        StreamingDSCNN(model, spec, 1)
    except NotStreamable:
        return False
    return True


def export_streaming(
    model: torch.nn.Module,
    spec: FeatureSpec,
    threshold: float,
    keyword_index: int,
    calibration: np.ndarray,
    test: np.ndarray,
    out: Path,
    work: Path,
    log_path: Path,
    options: StreamOptions,
    window_int8: Path,
) -> dict:
    """Write the streaming TFLite files into `out` and return the manifest's `streaming` section. `window_int8`:
    the converted int8 window model, which the int8 step must agree with."""
    stream = StreamingDSCNN(model, spec, options.outputs_per_step).eval()
    work.mkdir(parents=True, exist_ok=True)
    check_stream = chained(test[:MAX_CHECK_WINDOWS], spec)
    with single_torch_thread():
        frames, states = stream_inputs(stream, chained(calibration, spec))
        stream.encode_state(buffer_ranges(stream, states))
        onnx_path = export_stream_onnx(stream, work / STREAM_ONNX_FILE, options.opset)
        onnx_gap = max_abs_difference(
            run_onnx_stream(onnx_path, stream, check_stream), run_torch_stream(stream, check_stream)
        )
        _within(onnx_gap, options.float_tolerance, "streaming ONNX vs torch")
        calibration_inputs = {FRAMES_INPUT: frames, STATE_INPUT: encoded(stream, states)}
        tflite = convert_to_tflite(onnx_path, calibration_inputs, work / "stream", log_path)
        shutil.copyfile(tflite.float32, out / STREAM_FLOAT32_FILE)
        shutil.copyfile(tflite.int8, out / STREAM_INT8_FILE)
        section = streaming_section(stream, out, options)
        check_state_quantization(section["tensors"])
        window, windows, valid = window_probabilities(model, stream, check_stream)
    references = {"float": window[valid], "int8": tflite_probabilities(window_int8, windows[valid])}
    section["checks"] = {"windows": int(valid.sum()), "onnx_vs_torch_step_max_abs": onnx_gap}
    section["checks"] |= compare_with_window(
        section, out, spec, check_stream, references, valid, (keyword_index, threshold)
    )
    float_gap, agreement = section["checks"]["float32_vs_window_max_abs"], section["checks"]["int8_vs_window_int8"]
    _within(float_gap, options.float_tolerance, "streaming TFLite float32 vs window model")
    if agreement["decision_agreement"] < options.min_agreement:
        return streaming_in_float32(section, out, agreement, options.min_agreement)
    return {**section, "precision": "int8"}


def streaming_in_float32(section: dict, out: Path, agreement: dict, min_agreement: float) -> dict:
    """The section for a bundle whose int8 step failed the agreement bar: it streams with the float32 twin.

    Why not fail the conversion: the float32 step equals the window model (checked above to `float_tolerance`), and
    for a DS-CNN this small it costs no more on the device (per 1 s window: float32 TFLite 5 us, int8 22 us, most of
    that the input quantization in numpy). The int8 step is not shipped: its file is removed and the manifest says
    why (`int8_rejected`). Seen with the 2K-parameter default student (95.2% agreement): the min/max calibration of
    the step's activations loses it (agreement falls as the calibration data grows; docs/compression.md)."""
    rejected_file = out / section["file"]
    rejected_file.unlink()
    twin = section["float32"]
    return {
        **section,
        **{key: twin[key] for key in ("file", "sha256", "bytes", "tensors")},
        "precision": "float32",
        "int8_rejected": {
            "file": rejected_file.name,
            "decision_agreement": agreement["decision_agreement"],
            "windows": agreement["windows"],
            "min_agreement": min_agreement,
            "reason": "the int8 step decides differently from the int8 window model on too many windows",
        },
    }


def compare_with_window(
    section: dict,
    out: Path,
    spec: FeatureSpec,
    features: np.ndarray,
    references: dict[str, np.ndarray],
    valid: np.ndarray,
    decision: tuple[int, float],
) -> dict:
    """The streaming TFLite models (through the runtime) against the window models' probabilities on the matching
    windows (`references`: "float" torch, "int8" TFLite); `decision`: (keyword index, threshold)."""
    float32 = probabilities_through_runtime(section, out, spec, features, float32=True)[valid]
    int8 = probabilities_through_runtime(section, out, spec, features, float32=False)[valid]
    return {
        "float32_vs_window_max_abs": max_abs_difference(float32, references["float"]),
        "int8_vs_window": int8_agreement(int8, references["float"], *decision),
        "int8_vs_window_int8": int8_agreement(int8, references["int8"], *decision),
    }


def export_stream_onnx(stream: StreamingDSCNN, path: Path, opset: int) -> Path:
    frames = torch.zeros(1, stream.frames_per_step * stream.layout.n_mels)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter announces that it is legacy
        torch.onnx.export(
            stream,
            (frames, stream.zero_state()),
            str(path),
            input_names=[FRAMES_INPUT, STATE_INPUT],
            output_names=[PROBABILITIES_OUTPUT, STATE_OUTPUT],
            opset_version=opset,
            dynamo=False,
        )
    onnx.checker.check_model(str(path))
    return path


def chained(windows: np.ndarray, spec: FeatureSpec) -> np.ndarray:
    """Feature windows [n, frames, mels] one after the other as one stream [n * frames, mels]."""
    return np.ascontiguousarray(windows.reshape(-1, spec.n_mels), dtype=np.float32)


def _steps(stream: StreamingDSCNN, features: np.ndarray) -> list[np.ndarray]:
    """The stream's frames cut into steps (a last partial step is dropped)."""
    per_step = stream.frames_per_step
    return [features[start : start + per_step] for start in range(0, len(features) - per_step + 1, per_step)]


def primed_state(stream: StreamingDSCNN) -> torch.Tensor:
    """The state after a clip of silence, as the device primes it."""
    state = stream.zero_state()
    silence = torch.from_numpy(silence_frames(stream.frames_per_step, stream.spec)).reshape(1, -1)
    with torch.no_grad():
        for _ in range(stream.layout.prime_steps(stream.frames_per_step)):
            _, state = stream(silence, state)
    return state


def run_torch_stream(stream: StreamingDSCNN, features: np.ndarray) -> np.ndarray:
    """Probabilities [outputs, classes] of the torch step over a stream, from the silence-primed state."""
    state, outputs = primed_state(stream), []
    with torch.no_grad():
        for frames in _steps(stream, features):
            logits, state = stream(torch.from_numpy(frames).reshape(1, -1), state)
            outputs.append(softmax(logits[0].numpy()))
    return np.concatenate(outputs)


def run_onnx_stream(path: Path, stream: StreamingDSCNN, features: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    state, outputs = primed_state(stream).numpy(), []
    for frames in _steps(stream, features):
        logits, state = session.run(None, {FRAMES_INPUT: frames.reshape(1, -1), STATE_INPUT: state})
        outputs.append(softmax(logits[0]))
    return np.concatenate(outputs)


@contextlib.contextmanager
def single_torch_thread() -> Iterator[None]:
    """Step-by-step torch calls on tiny tensors: one thread is 10x faster than two contending ones (measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def stream_inputs(stream: StreamingDSCNN, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (frames, state) inputs of each step over a stream, from the primed state; at most
    MAX_CALIBRATION_PAIRS of them (chosen at random, in order). The state as the stream currently encodes it."""
    state, frames_seen, states_seen = primed_state(stream), [], []
    with torch.no_grad():
        for frames in _steps(stream, features):
            flat = torch.from_numpy(frames).reshape(1, -1)
            frames_seen.append(frames.reshape(-1))
            states_seen.append(state[0].numpy().copy())
            _, state = stream(flat, state)
    chosen = np.sort(np.random.default_rng(CALIBRATION_SEED).permutation(len(frames_seen))[:MAX_CALIBRATION_PAIRS])
    return np.stack(frames_seen)[chosen], np.stack(states_seen)[chosen]


def buffer_ranges(stream: StreamingDSCNN, states: np.ndarray) -> list[tuple[float, float]]:
    """(low, high) of each buffer's values in unencoded states [n, N]."""
    ranges, offset = [], 0
    for buffer in stream.layout.buffers:
        values = states[:, offset : offset + buffer.size]
        offset += buffer.size
        ranges.append((float(values.min()), float(values.max())) if values.size else (0.0, 0.0))
    return ranges


def encoded(stream: StreamingDSCNN, states: np.ndarray) -> np.ndarray:
    """Unencoded states [n, N] in the stream's buffer encoding (what the encoded step would have been fed)."""
    result, offset = states.copy(), 0
    for buffer, (scale, shift) in zip(stream.layout.buffers, stream.encoding, strict=True):
        result[:, offset : offset + buffer.size] = states[:, offset : offset + buffer.size] * scale + shift
        offset += buffer.size
    return result


def window_probabilities(
    model: torch.nn.Module, stream: StreamingDSCNN, features: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The window model's probabilities [outputs, classes] on the window matching each stream output (silence
    before the stream, as the primed state assumes), those windows, and which outputs have such a window."""
    layout, spec = stream.layout, stream.spec
    prefix = layout.window_frames
    padded = np.concatenate([silence_frames(prefix, spec), features, silence_frames(prefix, spec)])
    outputs = len(_steps(stream, features)) * stream.steps
    starts = np.array([window_start_of_output(layout, n) + prefix for n in range(outputs)])
    last_frames = np.array([last_frame_of_output(layout, n) for n in range(outputs)])
    valid = (starts >= 0) & (last_frames < len(features))
    windows = np.stack([padded[max(s, 0) : max(s, 0) + layout.window_frames] for s in starts])
    with torch.no_grad():
        probabilities = torch.softmax(model.eval()(torch.from_numpy(windows)), dim=-1).numpy()
    return probabilities, windows, valid


def stream_phases(requested: int | None, stride: int) -> int:
    """The phases the runtime runs the step at: all of the stride unless fewer were asked for
    (`edge_runtime.streaming.StreamingScorer`)."""
    if requested is None:
        return stride
    if not 1 <= requested <= stride:
        raise ValueError(f"stream phases must be from 1 to the model's stem stride ({stride}), got {requested}")
    return requested


def streaming_section(stream: StreamingDSCNN, out: Path, options: StreamOptions) -> dict:
    """The manifest's `streaming` section, tensors as the interpreter reports them (names matched by role)."""
    layout = stream.layout
    int8_path, float32_path = out / STREAM_INT8_FILE, out / STREAM_FLOAT32_FILE
    return {
        "file": int8_path.name,
        "sha256": sha256_of(int8_path),
        "bytes": int8_path.stat().st_size,
        "frames_per_step": stream.frames_per_step,
        "outputs_per_step": stream.steps,
        "stride_frames": layout.stride,
        "output_frame_offset": last_frame_of_output(layout, 0),
        "state_size": layout.state_size,
        "state_buffers": [
            {"layer": b.name, "channels": b.channels, "frames": b.frames, "encoding": {"scale": k, "offset": o}}
            for b, (k, o) in zip(layout.buffers, stream.encoding, strict=True)
        ],
        "prime_steps": layout.prime_steps(stream.frames_per_step),
        "smoothing_seconds": float(options.smoothing_seconds),
        "phases": stream_phases(options.phases, layout.stride),
        "output": OUTPUT_LOGITS,
        "tensors": tensor_roles(int8_path),
        "float32": {
            "file": float32_path.name,
            "sha256": sha256_of(float32_path),
            "bytes": float32_path.stat().st_size,
            "tensors": tensor_roles(float32_path),
        },
    }


def tensor_roles(path: Path) -> dict:
    """The four tensors by role. onnx2tf keeps input names; output names it may rename, so outputs are told apart
    by rank (probabilities [1, outputs, classes], state_out [1, N])."""
    interpreter = Interpreter(model_path=str(path))
    inputs = [TensorInfo.from_details(d) for d in interpreter.get_input_details()]
    outputs = [TensorInfo.from_details(d) for d in interpreter.get_output_details()]
    roles = {}
    for tensor in inputs:
        for name in (FRAMES_INPUT, STATE_INPUT):
            if tensor.name == name or tensor.name.endswith(f"_{name}:0") or tensor.name == f"{name}:0":
                roles[name] = tensor
    for tensor in outputs:
        roles[PROBABILITIES_OUTPUT if len(tensor.shape) == 3 else STATE_OUTPUT] = tensor
    if sorted(roles) != sorted(TENSOR_ROLES) or len(inputs) != 2 or len(outputs) != 2:
        raise ConversionError(
            f"streaming model {path.name}: cannot tell its tensors apart (inputs {[t.name for t in inputs]}, "
            f"outputs {[(t.name, t.shape) for t in outputs]})"
        )
    if roles[STATE_INPUT].shape != roles[STATE_OUTPUT].shape:
        raise ConversionError(f"streaming model {path.name}: state {roles[STATE_INPUT]} vs {roles[STATE_OUTPUT]}")
    return {role: roles[role].to_dict() for role in TENSOR_ROLES}


def check_state_quantization(tensors: dict) -> None:
    """The int8 state goes back in unchanged only if input and output share scale and zero point."""
    state, state_out = tensors[STATE_INPUT], tensors[STATE_OUTPUT]
    keys = ("dtype", "scale", "zero_point")
    if tuple(state[k] for k in keys) != tuple(state_out[k] for k in keys):
        raise ConversionError(
            f"streaming int8 model: state input {[state[k] for k in keys]} and output {[state_out[k] for k in keys]} "
            "differ in dtype, scale or zero point; the state cannot be fed back unchanged"
        )


def probabilities_through_runtime(
    section: dict, out: Path, spec: FeatureSpec, features: np.ndarray, float32: bool
) -> np.ndarray:
    """Probabilities [outputs, classes] over the stream through the edge runtime's own `StreamingModel`."""
    entry = entry_from_section(section, out, spec, float32=float32)
    model = StreamingModel(entry)
    per_step = entry.frames_per_step
    steps = [model.step(features[s : s + per_step]) for s in range(0, len(features) - per_step + 1, per_step)]
    return np.concatenate(steps)


def _within(value: float, tolerance: float, what: str) -> None:
    if not value <= tolerance:
        raise ConversionError(f"{what}: max abs probability difference {value:.3g} exceeds {tolerance:.3g}")
