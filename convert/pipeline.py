"""Checkpoint -> deployable bundle: ONNX, TFLite float32 and int8, every artifact scored, manifest written last.

The output folder ends up holding only what is deployed or needed to audit it: `model_int8.tflite` (the model the
manifest names), `model_float32.tflite`, `model.onnx`, `manifest.json` and `conversion_log.txt`; for a streamable
model (the DS-CNN) also `model_stream_int8.tflite` (what `python -m edge_runtime run` deploys) and its float32 twin
(see `streaming.py`; the twin is deployed instead when the int8 step fails the agreement check), and the
workstation's reference latencies in the manifest (`reference_latency.py`). onnx2tf's
intermediate files live in `<out>/work/`, removed at the end. A stale `manifest.json` is removed first, so a
conversion that fails half-way never leaves a bundle that looks valid. With `verifier` (a second checkpoint, the
detector's second stage) that checkpoint is converted first, by this same pipeline, into `<out>/verifier/`, and the
manifest names it (`convert/verifier.py`).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.errors import EXIT_BAD_INPUT, ConversionError
from convert.evaluate import int8_agreement, keyword_metrics, max_abs_difference, tflite_probabilities
from convert.export_onnx import DEFAULT_OPSET, export_onnx, onnx_probabilities, torch_probabilities
from convert.manifest_writer import (
    DEFAULT_REFRACTORY_SECONDS,
    DEFAULT_WINDOW_HOP_SECONDS,
    BundleFiles,
    SourceInfo,
    build_manifest,
    write_manifest,
)
from convert.reference_latency import reference_latency
from convert.stream_model import StreamingDSCNN, StreamLayout
from convert.streaming import (
    DEFAULT_OUTPUTS_PER_STEP,
    DEFAULT_SMOOTHING_SECONDS,
    StreamOptions,
    export_streaming,
    stream_phases,
    streamable,
)
from convert.to_tflite import convert_to_tflite
from convert.verifier import (
    DEFAULT_VERIFIER_GATE,
    DEFAULT_VERIFIER_HOP_SECONDS,
    VERIFIER_FOLDER,
    verifier_problems,
    verifier_section,
)
from convert.windows import WindowMaker
from edge_runtime.manifest import MANIFEST_NAME, DetectionSettings, load_bundle
from edge_runtime.postprocess import DetectionPolicy
from edge_runtime.stream_manifest import entry_from_section, load_stream_bundle
from train.checkpoint import CheckpointInfo, load_checkpoint
from train.data.clipset import ClipSet

INT8_FILE, FLOAT32_FILE, ONNX_FILE, LOG_FILE, WORK_DIR = (
    "model_int8.tflite",
    "model_float32.tflite",
    "model.onnx",
    "conversion_log.txt",
    "work",
)
STREAM_LOG_FILE = "conversion_log_stream.txt"
DEFAULT_CALIBRATION_WINDOWS = 300
# Float paths compute the same function: torch vs ONNX measured <= 8e-7, TFLite float32 vs ONNX <= 1e-7.
DEFAULT_FLOAT_TOLERANCE = 1e-4
# DS-CNN int8 agreed with float on 99.6% of decisions in the prototype; below this the int8 model is not shipped.
DEFAULT_MIN_AGREEMENT = 0.97


@dataclass(frozen=True)
class ConversionOptions:
    checkpoint: Path
    out: Path
    data: Path | None = None
    calibration_windows: int = DEFAULT_CALIBRATION_WINDOWS
    opset: int = DEFAULT_OPSET
    float_tolerance: float = DEFAULT_FLOAT_TOLERANCE
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    refractory_seconds: float = DEFAULT_REFRACTORY_SECONDS
    window_hop_seconds: float = DEFAULT_WINDOW_HOP_SECONDS
    stream_outputs_per_step: int = DEFAULT_OUTPUTS_PER_STEP
    stream_phases: int | None = None  # None: every phase of the stem's stride
    smoothing_seconds: float = DEFAULT_SMOOTHING_SECONDS
    verifier: Path | None = None  # a larger checkpoint converted into out/verifier/ as the second stage
    verifier_gate: float = DEFAULT_VERIFIER_GATE
    verifier_hop_seconds: float = DEFAULT_VERIFIER_HOP_SECONDS
    keep_work: bool = False


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_conversion(options: ConversionOptions, say: Callable[[str], None] = progress) -> dict:
    """Convert, check and score; returns the manifest written to `options.out`."""
    model, info = _load_checkpoint(options.checkpoint)
    _check_options(options, info, model)
    clipset_path = _clipset_path(options, info)
    clipset = _load_clipset(clipset_path, info)
    out = options.out
    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST_NAME).unlink(missing_ok=True)
    except OSError as error:
        raise ConversionError(f"cannot use {out} as output folder ({error})", exit_code=EXIT_BAD_INPUT) from None
    work = out / WORK_DIR
    verifier = _verifier(options, clipset_path, say)
    try:
        say(f"[1/6] feature windows from {clipset_path} (test split, {options.calibration_windows} calibration)")
        maker = WindowMaker(clipset, info.feature_spec)
        test, calibration = maker.split("test"), maker.calibration(options.calibration_windows)
        if len(test) == 0 or len(calibration) == 0:
            raise ConversionError(
                f"clip set {clipset_path} has no test or no training utterances", exit_code=EXIT_BAD_INPUT
            )
        say(f"      {len(test)} test windows, {len(calibration)} calibration windows")

        say(f"[2/6] ONNX export (opset {options.opset}) and check against torch")
        onnx_path = export_onnx(model, info.feature_spec, out / ONNX_FILE, options.opset)
        probabilities = {
            "torch": torch_probabilities(model, test.features),
            "onnx": onnx_probabilities(onnx_path, test.features),
        }
        checks = {"onnx_vs_torch_max_abs": max_abs_difference(probabilities["onnx"], probabilities["torch"])}
        _check_within(checks["onnx_vs_torch_max_abs"], options.float_tolerance, "ONNX vs torch")

        say("[3/6] onnx2tf: TFLite float32 and int8 (takes a while)")
        tflite = convert_to_tflite(onnx_path, calibration.features, work, out / LOG_FILE)
        shutil.copyfile(tflite.float32, out / FLOAT32_FILE)
        shutil.copyfile(tflite.int8, out / INT8_FILE)
        say(f"      onnx2tf took {tflite.seconds:.1f} s")

        say("[4/6] scoring TFLite models through the edge runtime interpreter")
        probabilities["tflite_float32"] = tflite_probabilities(out / FLOAT32_FILE, test.features)
        probabilities["tflite_int8"] = tflite_probabilities(out / INT8_FILE, test.features)
        checks["tflite_float32_vs_onnx_max_abs"] = max_abs_difference(
            probabilities["tflite_float32"], probabilities["onnx"]
        )
        _check_within(checks["tflite_float32_vs_onnx_max_abs"], options.float_tolerance, "TFLite float32 vs ONNX")
        metrics = _metrics(probabilities, test.labels, info, checks)
        check_agreement(metrics["int8_vs_float32"], options.min_agreement)

        streaming = _streaming(model, info, options, calibration.features, test.features, work, say)

        say("[6/6] manifest")
        files = BundleFiles(out / INT8_FILE, out / FLOAT32_FILE, onnx_path, options.opset)
        manifest = build_manifest(
            info,
            files,
            SourceInfo(options.checkpoint, clipset_path),
            metrics,
            options.refractory_seconds,
            options.window_hop_seconds,
            extra=streaming,
        )
        if verifier is not None:
            manifest["verifier"] = verifier_section(
                options.verifier_gate, options.verifier_hop_seconds, verifier["detection"]["threshold"]
            )
        write_manifest(out, manifest)
        load_bundle(out)  # the edge runtime's own checks, before anyone copies the bundle to a device
        if streaming:
            load_stream_bundle(out)
        return manifest
    finally:
        if not options.keep_work:
            shutil.rmtree(work, ignore_errors=True)


def _verifier(options: ConversionOptions, clipset_path: Path, say) -> dict | None:
    """Convert `options.verifier` into out/verifier/ (a window bundle, same checks); its manifest, or None."""
    if options.verifier is None:
        return None
    say(f"[verifier] {options.verifier} -> {options.out / VERIFIER_FOLDER}")
    verifier_options = dataclasses.replace(
        options, checkpoint=options.verifier, out=options.out / VERIFIER_FOLDER, data=clipset_path, verifier=None
    )
    manifest = run_conversion(verifier_options, lambda message: say(f"[verifier] {message}"))
    say("[verifier] done")
    return manifest


def _streaming(model, info: CheckpointInfo, options: ConversionOptions, calibration, test, work: Path, say) -> dict:
    """The streaming model and the reference latencies (manifest sections), or nothing for a model that does not
    stream (the CRNN teacher)."""
    spec = info.feature_spec
    if not streamable(model, spec):
        say(f"[5/6] streaming model: skipped, {info.architecture} does not stream (only the dscnn does)")
        return {}
    say(f"[5/6] streaming model ({options.stream_outputs_per_step} outputs per step), onnx2tf, stream == window check")
    stream_options = StreamOptions(
        outputs_per_step=options.stream_outputs_per_step,
        smoothing_seconds=options.smoothing_seconds,
        phases=options.stream_phases,
        opset=options.opset,
        float_tolerance=options.float_tolerance,
        min_agreement=options.min_agreement,
    )
    out = options.out
    section = export_streaming(
        model,
        spec,
        info.threshold,
        info.keyword_index,
        calibration,
        test,
        out,
        work,
        out / STREAM_LOG_FILE,
        stream_options,
        window_int8=out / INT8_FILE,
    )
    checks = section["checks"]
    versus_float = checks["int8_vs_window"]
    say(
        f"      over {checks['windows']} windows: float32 stream vs window max "
        f"{checks['float32_vs_window_max_abs']:.2g}; int8 stream vs int8 window "
        f"{checks['int8_vs_window_int8']['decision_agreement']:.2%} same decisions (vs float window "
        f"{versus_float['decision_agreement']:.2%}, max {versus_float['max_abs_probability_difference']:.3f})"
    )
    if section["precision"] == "float32":
        rejected = section["int8_rejected"]
        say(
            f"      the int8 step agrees on only {rejected['decision_agreement']:.2%} "
            f"(< {rejected['min_agreement']:.0%}): the bundle streams with {section['file']} "
            f"({section['bytes']:,} bytes) instead"
        )
    entry = entry_from_section(section, out, spec)
    policy = DetectionPolicy(info.threshold, options.refractory_seconds, options.smoothing_seconds)
    stream = StreamingDSCNN(model, spec, options.stream_outputs_per_step)
    references = reference_latency(entry, info.keyword_index, policy, stream)
    say(
        f"      reference latency on this CPU: rtf {references['cpu']['rtf']:.5f}; GPU: "
        f"{references['gpu'].get('rtf', references['gpu'].get('status'))}"
    )
    return {"streaming": section, "reference_latency": references}


def _load_checkpoint(path: Path):
    try:
        return load_checkpoint(path)
    except ValueError as error:
        raise ConversionError(str(error), exit_code=EXIT_BAD_INPUT) from None


def _clipset_path(options: ConversionOptions, info: CheckpointInfo) -> Path:
    if options.data is not None:
        return options.data
    named = info.data.get("clipset") if isinstance(info.data, dict) else None
    if not named:
        raise ConversionError(
            f"checkpoint {options.checkpoint} names no clip set (data['clipset']); pass --data FOLDER",
            exit_code=EXIT_BAD_INPUT,
        )
    return Path(named)


def _load_clipset(path: Path, info: CheckpointInfo) -> ClipSet:
    """The clip set must hold audio at the checkpoint's sample rate, labelled for the checkpoint's keyword."""
    try:
        clipset = ClipSet.load(path)
    except ValueError as error:
        raise ConversionError(str(error), exit_code=EXIT_BAD_INPUT) from None
    found = (clipset.meta.get("sample_rate"), clipset.meta.get("keyword"))
    expected = (info.feature_spec.sample_rate, info.keyword)
    if found != expected:
        raise ConversionError(
            f"clip set {path} holds (sample rate, keyword) {found}, the checkpoint needs {expected}",
            exit_code=EXIT_BAD_INPUT,
        )
    # Calibrate on what the model was trained on: a family its training left out stays out of int8 ranges too.
    try:
        clipset.leave_out(info.left_out)
    except ValueError as error:
        raise ConversionError(f"clip set {path}: {error}", exit_code=EXIT_BAD_INPUT) from None
    return clipset


def _check_options(options: ConversionOptions, info: CheckpointInfo, model) -> None:
    """Refuse settings that would only fail after minutes of work (or produce a bundle the device refuses)."""
    detection = DetectionSettings(info.threshold, options.refractory_seconds, options.window_hop_seconds)
    problems = detection.problems(info.feature_spec)
    if options.stream_phases is not None and streamable(model, info.feature_spec):
        try:
            stream_phases(options.stream_phases, StreamLayout.of(model, info.feature_spec).stride)
        except ValueError as error:
            problems.append(f"--stream-phases: {error}")
    if options.verifier is not None:
        if not streamable(model, info.feature_spec):
            problems.append(f"--verifier needs a streaming model (a dscnn); {info.architecture} does not stream")
        problems += verifier_problems(options.verifier, info, options.verifier_gate, options.verifier_hop_seconds)
    if not 0.0 <= options.min_agreement <= 1.0:
        problems.append(f"--min-agreement {options.min_agreement} must be in 0..1")
    if not options.float_tolerance > 0.0:
        problems.append(f"--float-tolerance {options.float_tolerance} must be > 0")
    if problems:
        raise ConversionError("; ".join(problems), exit_code=EXIT_BAD_INPUT)


def check_agreement(agreement: dict, min_agreement: float) -> None:
    """The int8 model ships only if it makes the float32 model's decision on enough test windows."""
    if agreement["decision_agreement"] < min_agreement:
        raise ConversionError(
            f"int8 model agrees with float32 on only {agreement['decision_agreement']:.1%} of "
            f"{agreement['windows']} test decisions (--min-agreement {min_agreement:.1%}); not writing a manifest"
        )


def _check_within(value: float, tolerance: float, what: str) -> None:
    if not value <= tolerance:
        raise ConversionError(f"{what}: max abs probability difference {value:.3g} exceeds {tolerance:.3g}")


def _metrics(probabilities: dict[str, np.ndarray], labels: np.ndarray, info: CheckpointInfo, checks: dict) -> dict:
    index, threshold = info.keyword_index, info.threshold
    return {
        "test": {name: keyword_metrics(p, labels, index, threshold) for name, p in probabilities.items()},
        "int8_vs_float32": int8_agreement(
            probabilities["tflite_int8"], probabilities["tflite_float32"], index, threshold
        ),
        "float_consistency": checks,
    }
