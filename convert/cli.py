"""`python -m convert`: checkpoint -> edge bundle. Progress on stderr, a summary table on stdout.

Exit status: 0 done; 1 a step failed (onnx2tf, a numeric check); 2 bad input (checkpoint, clip set, option).
Failures print one `error: ...` line on stderr (after the tail of the onnx2tf log when onnx2tf failed).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from convert.errors import EXIT_FAILED, ConversionError
from convert.pipeline import (
    DEFAULT_CALIBRATION_WINDOWS,
    DEFAULT_FLOAT_TOLERANCE,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_OPSET,
    DEFAULT_REFRACTORY_SECONDS,
    DEFAULT_WINDOW_HOP_SECONDS,
    INT8_FILE,
    ConversionOptions,
    run_conversion,
)
from convert.streaming import DEFAULT_OUTPUTS_PER_STEP, DEFAULT_SMOOTHING_SECONDS, STREAM_INT8_FILE
from convert.verifier import DEFAULT_VERIFIER_GATE, DEFAULT_VERIFIER_HOP_SECONDS, VERIFIER_FOLDER
from edge_runtime.cli_parser import OneLineErrorParser, positive_int
from edge_runtime.errors import KwsError
from edge_runtime.manifest import MANIFEST_NAME

METRIC_COLUMNS = (("accuracy", "accuracy"), ("FRR", "frr"), ("FAR", "far"), ("ROC AUC", "roc_auc"))


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m convert",
        description=(
            "Convert a trained checkpoint into an edge bundle: ONNX (opset 17, class logits out), TFLite float32 and "
            f"full-integer int8 (int8 input and output) via onnx2tf, every artifact scored on the test split, and a "
            f"manifest.json naming {INT8_FILE} as the deployed model."
        ),
    )
    parser.add_argument("--checkpoint", type=Path, required=True, help="trained checkpoint (.pt) to convert")
    parser.add_argument("--out", type=Path, required=True, help="output folder for the bundle (created if needed)")
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="clip set folder for calibration and evaluation (default: the one named in the checkpoint)",
    )
    parser.add_argument(
        "--calibration-windows",
        type=positive_int,
        default=DEFAULT_CALIBRATION_WINDOWS,
        metavar="N",
        help=f"training-split windows used to calibrate int8 ranges, up to half keyword (default: "
        f"{DEFAULT_CALIBRATION_WINDOWS})",
    )
    parser.add_argument(
        "--opset",
        type=int,
        default=DEFAULT_OPSET,
        help=f"ONNX opset for the legacy exporter (default: {DEFAULT_OPSET}, the one onnx2tf 1.29.24 is checked with)",
    )
    parser.add_argument(
        "--float-tolerance",
        type=float,
        default=DEFAULT_FLOAT_TOLERANCE,
        metavar="P",
        help=f"largest allowed probability difference ONNX vs torch and TFLite float32 vs ONNX "
        f"(default: {DEFAULT_FLOAT_TOLERANCE:g})",
    )
    parser.add_argument(
        "--min-agreement",
        type=float,
        default=DEFAULT_MIN_AGREEMENT,
        metavar="FRACTION",
        help=f"smallest allowed fraction of test windows where int8 and float32 TFLite make the same decision at "
        f"the threshold; below it no manifest is written (default: {DEFAULT_MIN_AGREEMENT})",
    )
    parser.add_argument(
        "--stream-outputs-per-step",
        type=positive_int,
        default=DEFAULT_OUTPUTS_PER_STEP,
        metavar="N",
        help=f"streaming model ({STREAM_INT8_FILE}, dscnn only): outputs per interpreter call, each one stem "
        f"stride of feature frames (20 ms by default); more amortises the per-call cost and adds latency "
        f"(default: {DEFAULT_OUTPUTS_PER_STEP}, i.e. 100 ms of audio per call)",
    )
    parser.add_argument(
        "--stream-phases",
        type=positive_int,
        default=None,
        metavar="N",
        help="streaming.phases written to the manifest: the runtime runs the step N times per call, each copy "
        "with its own state and a lag spread over the stem's stride, and merges their scores, so the detector "
        "hears the audio at N alignments of the stride (1: one, the cheapest; the model's work grows N-fold) "
        "(default: every phase, the stem's stride)",
    )
    parser.add_argument(
        "--smoothing-seconds",
        type=float,
        default=DEFAULT_SMOOTHING_SECONDS,
        metavar="S",
        help=f"streaming.smoothing_seconds written to the manifest: the live detector's moving average of the "
        f"keyword probability (default: {DEFAULT_SMOOTHING_SECONDS})",
    )
    parser.add_argument(
        "--verifier",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help=f"a larger checkpoint of the same keyword and features (the CRNN teacher) converted into "
        f"OUT/{VERIFIER_FOLDER}/ as the detector's second stage: it scores 1 s windows only while the streaming "
        f"model's smoothed probability is at or above --verifier-gate, and the threshold applies to its mean over "
        f"the smoothing span (edge_runtime/verifier.py; default: none, the streaming model alone)",
    )
    parser.add_argument(
        "--verifier-gate",
        type=float,
        default=DEFAULT_VERIFIER_GATE,
        metavar="P",
        help=f"verifier.gate written to the manifest: the streaming model's smoothed probability at which the "
        f"verifier starts scoring; lower misses fewer keywords and runs the verifier more often "
        f"(default: {DEFAULT_VERIFIER_GATE})",
    )
    parser.add_argument(
        "--verifier-hop-seconds",
        type=float,
        default=DEFAULT_VERIFIER_HOP_SECONDS,
        metavar="S",
        help=f"verifier.hop_seconds written to the manifest: the verifier scores windows ending every S seconds "
        f"(a multiple of the feature hop) (default: {DEFAULT_VERIFIER_HOP_SECONDS})",
    )
    parser.add_argument(
        "--refractory-seconds",
        type=float,
        default=DEFAULT_REFRACTORY_SECONDS,
        metavar="S",
        help=f"detection.refractory_seconds written to the manifest (default: {DEFAULT_REFRACTORY_SECONDS})",
    )
    parser.add_argument(
        "--window-hop-seconds",
        type=float,
        default=DEFAULT_WINDOW_HOP_SECONDS,
        metavar="S",
        help=f"detection.window_hop_seconds written to the manifest: how far the scoring window slides "
        f"(default: {DEFAULT_WINDOW_HOP_SECONDS})",
    )
    parser.add_argument(
        "--keep-work",
        action="store_true",
        help="keep onnx2tf's intermediate files in OUT/work/ for debugging (default: removed)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = ConversionOptions(
        checkpoint=args.checkpoint,
        out=args.out,
        data=args.data,
        calibration_windows=args.calibration_windows,
        opset=args.opset,
        float_tolerance=args.float_tolerance,
        min_agreement=args.min_agreement,
        refractory_seconds=args.refractory_seconds,
        window_hop_seconds=args.window_hop_seconds,
        stream_outputs_per_step=args.stream_outputs_per_step,
        stream_phases=args.stream_phases,
        smoothing_seconds=args.smoothing_seconds,
        verifier=args.verifier,
        verifier_gate=args.verifier_gate,
        verifier_hop_seconds=args.verifier_hop_seconds,
        keep_work=args.keep_work,
    )
    try:
        manifest = run_conversion(options)
    except ConversionError as error:
        if error.details:
            print(error.details, file=sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KwsError as error:  # the finished bundle failed the edge runtime's own checks
        print(f"error: the written bundle does not load: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(summary_table(manifest, args.out))
    return 0


def summary_table(manifest: dict, out: Path) -> str:
    test, agreement = manifest["metrics"]["test"], manifest["metrics"]["int8_vs_float32"]
    consistency = manifest["metrics"]["float_consistency"]
    sizes = {
        "onnx": manifest["artifacts"]["onnx"]["bytes"],
        "tflite_float32": manifest["artifacts"]["float32_tflite"]["bytes"],
        "tflite_int8": manifest["model"]["bytes"],
    }
    any_metrics = next(iter(test.values()))
    lines = [
        f"bundle {out}: keyword '{manifest['keyword']}', threshold {manifest['detection']['threshold']:.3f}, "
        f"{any_metrics['positives']} keyword + {any_metrics['negatives']} other test windows",
        f"{'artifact':<16}{'bytes':>9}" + "".join(f"{title:>10}" for title, _ in METRIC_COLUMNS),
    ]
    for name, metrics in test.items():
        size = f"{sizes[name]:>9}" if name in sizes else f"{'-':>9}"
        lines.append(f"{name:<16}{size}" + "".join(_cell(metrics[key]) for _, key in METRIC_COLUMNS))
    lines.append(
        f"int8 vs float32: {agreement['decision_agreement']:.2%} same decisions, probability difference max "
        f"{agreement['max_abs_probability_difference']:.4f} mean {agreement['mean_abs_probability_difference']:.4f}"
    )
    lines.append(
        f"float paths: ONNX vs torch max {consistency['onnx_vs_torch_max_abs']:.2g}, "
        f"TFLite float32 vs ONNX max {consistency['tflite_float32_vs_onnx_max_abs']:.2g}"
    )
    if "streaming" in manifest:
        stream, checks = manifest["streaming"], manifest["streaming"]["checks"]
        cpu = manifest["reference_latency"]["cpu"]
        lines.append(
            f"streaming {stream['file']} ({stream['bytes']} bytes, state {stream['state_size']}): float32 vs window "
            f"max {checks['float32_vs_window_max_abs']:.2g}, int8 vs int8 window "
            f"{checks['int8_vs_window_int8']['decision_agreement']:.2%} same decisions; rtf {cpu['rtf']:.5f} here"
        )
    if "verifier" in manifest:
        lines.append(verifier_line(manifest["verifier"], out))
    return "\n".join(lines)


def verifier_line(section: dict, out: Path) -> str:
    verifier = json.loads((out / section["folder"] / MANIFEST_NAME).read_text(encoding="utf-8"))
    int8 = verifier["metrics"]["test"]["tflite_int8"]
    return (
        f"verifier {section['folder']}/{verifier['model']['file']} ({verifier['model']['architecture']}, "
        f"{verifier['model']['bytes']} bytes, int8 ROC AUC {int8['roc_auc']:.4f}): scores windows every "
        f"{section['hop_seconds'] * 1000:g} ms while the streaming score is >= {section['gate']:g}; the threshold "
        f"applies to its mean"
    )


def _cell(value: float | None) -> str:
    return f"{'n/a':>10}" if value is None or value != value else f"{value:>10.4f}"
