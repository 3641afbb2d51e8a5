"""ONNX -> TFLite float32 and full-integer int8 (int8 input and output) with onnx2tf 1.29.24, as a subprocess.

Facts this relies on (shared/notes/TOOLCHAIN.md, re-checked against `onnx2tf --help` and its source):
- onnx2tf calls `onnxsim` and silently skips simplification when it is not on PATH, so the venv's bin folder goes
  first on the subprocess PATH.
- `-kat features` keeps the [1, frames, n_mels] input layout (no NHWC transpose); calibration data is then in that
  same layout.
- `-cind NAME FILE MEAN STD` feeds `(data - MEAN) / STD` to the int8 calibrator. Our models take raw log-mel (they
  normalise inside with a learned BatchNorm), so MEAN 0 and STD 1 pass the real features through unchanged.
- `-oiqt -qt per-channel` writes `*_full_integer_quant.tflite` with int8 input and output (`-iqd`/`-oqd` default
  to int8), next to float32, float16, dynamic-range and other variants we do not deploy.
- GRU/LSTM/RNN need `-eru` (unroll); without it the int8 conversion segfaulted.
- onnx2tf 1.29.24 mistranslates an Unsqueeze(axis 1) of a [N, mel, time] tensor that feeds a Conv2d (the CRNN's
  conv front): it keeps the tensor in [N, time, mel] order and Conv2D fails. A parameter-replacement file
  transposes that Unsqueeze's output to NHWC; the float32 TFLite-vs-ONNX check of the caller proves the result.
Both files then lose the names of their intermediate tensors (`slim_tflite`), which nothing reads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from convert.errors import ConversionError
from convert.export_onnx import INPUT_NAME, has_recurrent_ops
from convert.slim_tflite import slim

FLOAT32_SUFFIX = "_float32.tflite"
INT8_SUFFIX = "_full_integer_quant.tflite"  # int8 input and output; "_integer_quant" keeps float I/O
CALIBRATION_MEAN, CALIBRATION_STD = "[0.0]", "[1.0]"
LOG_TAIL_LINES = 15
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class TfliteFiles:
    float32: Path
    int8: Path
    seconds: float


def venv_bin() -> Path:
    """The bin folder of the interpreter running this code: where pip put onnx2tf and onnxsim."""
    return Path(sysconfig.get_path("scripts"))


def conv_unsqueeze_fixes(onnx_path: Path) -> list[dict]:
    """Parameter replacements for each Unsqueeze(axes=[1]) of a 3-D tensor that feeds a Conv (see module doc)."""
    model = onnx.shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = model.graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*graph.value_info, *graph.input]}
    constants = {init.name: onnx.numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    conv_inputs = {node.input[0] for node in graph.node if node.op_type == "Conv"}
    fixes = []
    for node in graph.node:
        if node.op_type != "Unsqueeze" or node.output[0] not in conv_inputs or ranks.get(node.input[0]) != 3:
            continue
        axes = constants.get(node.input[1]) if len(node.input) > 1 else None
        if axes is not None and np.array_equal(np.asarray(axes).ravel(), [1]):
            fixes.append(
                {
                    "op_name": node.name,
                    "param_target": "outputs",
                    "param_name": node.output[0],
                    # TF holds [1, 1, time, mel]; NHWC of ONNX's [1, 1, mel, time] is [1, mel, time, 1].
                    "post_process_transpose_perm": [0, 3, 2, 1],
                }
            )
    return fixes


def onnx2tf_command(onnx_path: Path, out_dir: Path, calibration_paths: dict[str, Path], extra: list[str]) -> list[str]:
    """One `-cind NAME FILE MEAN STD` per model input; every input keeps its ONNX shape (`-kat`)."""
    calibration = [
        part
        for name, path in calibration_paths.items()
        for part in ("-cind", name, str(path), CALIBRATION_MEAN, CALIBRATION_STD)
    ]
    return [
        str(venv_bin() / "onnx2tf"),
        "-i",
        str(onnx_path),
        "-o",
        str(out_dir),
        "-kat",
        *calibration_paths,
        "-oiqt",
        "-qt",
        "per-channel",
        *calibration,
        *extra,
    ]


def convert_to_tflite(
    onnx_path: Path, calibration: np.ndarray | dict[str, np.ndarray], work_dir: Path, log_path: Path
) -> TfliteFiles:
    """Run onnx2tf in `work_dir`; its whole output goes to `log_path`. Returns the two files we deploy.

    `calibration`: the `features` windows, or (for a model with several inputs) one array per input name, each
    [samples, *input shape without the batch axis]."""
    onnx2tf = venv_bin() / "onnx2tf"
    if not onnx2tf.is_file():
        raise ConversionError(f"onnx2tf not found at {onnx2tf}; create the training venv with `make venvs`")
    work_dir.mkdir(parents=True, exist_ok=True)
    inputs = calibration if isinstance(calibration, dict) else {INPUT_NAME: calibration}
    calibration_paths = {name: work_dir / f"calibration_{name}.npy" for name in inputs}
    for name, data in inputs.items():
        np.save(calibration_paths[name], np.ascontiguousarray(data, dtype=np.float32))
    extra = ["-eru"] if has_recurrent_ops(onnx_path) else []
    fixes = conv_unsqueeze_fixes(onnx_path)
    if fixes:
        param_file = work_dir / "param_replacement.json"
        param_file.write_text(json.dumps({"format_version": 1, "operations": fixes}, indent=1))
        extra += ["-prf", str(param_file)]
    out_dir = work_dir / "onnx2tf"
    command = onnx2tf_command(onnx_path, out_dir, calibration_paths, extra)
    env = dict(os.environ, PATH=f"{venv_bin()}{os.pathsep}{os.environ.get('PATH', '')}")
    started = time.monotonic()
    result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, check=False)
    seconds = time.monotonic() - started
    output = ANSI_ESCAPE.sub("", result.stdout.decode("utf-8", errors="replace"))
    log_path.write_text(
        f"$ {' '.join(command)}\n{output}\nonnx2tf exit status {result.returncode} after {seconds:.1f} s\n",
        encoding="utf-8",
    )
    files = TfliteFiles(out_dir / (onnx_path.stem + FLOAT32_SUFFIX), out_dir / (onnx_path.stem + INT8_SUFFIX), seconds)
    missing = [path.name for path in (files.float32, files.int8) if not path.is_file()]
    if result.returncode != 0 or missing:
        tail = "\n".join(output.rstrip().splitlines()[-LOG_TAIL_LINES:])
        what = f"exit status {result.returncode}" + (f", missing {', '.join(missing)}" if missing else "")
        raise ConversionError(f"onnx2tf failed ({what}); full log in {log_path}", details=tail)
    slim([files.float32, files.int8], log_path)
    return files
