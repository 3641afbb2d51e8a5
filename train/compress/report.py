"""`python -m train.compress.report`: every compression stage and the deployed int8 TFLite, scored side by side.

Reads `stages.json` from `python -m train.compress` and the bundle `python -m convert` made from its
`student.pt`, and writes `report.json` and `report.md` next to `stages.json`. One row per model: the CRNN fp32
baseline (the teacher), each stage of the chain and of the single-method ablation, and the converted TFLite
files of the final student (float32 and the deployed int8). Per row: parameters, MACs per 1 s window (`macs.py`,
the same counter for every row; a quantized model has its float model's MACs), bytes (the serialized state_dict
for torch models, the file for TFLite), test quality (`quality.py`: accuracy, FRR and FAR at the row's val
threshold, ROC AUC, au_fa_fr, FRR at a fixed FA/h) and single-thread CPU latency per window (`latency.py`).
Top level: `speed_up_rate_macs`, `compression_rate_bytes` and `speed_up_rate_latency` of the deployed model
against the baseline, the issue's targets for them, and whether accuracy and au_fa_fr are no worse, with how sure
that is on this test split (`no_worse_uncertainty`, `uncertainty.py`: a paired bootstrap; it informs, the verdicts
stay the measured comparison).
Exit status: 0 written (whether or not the targets are met: see `targets_met`); 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from convert.windows import WindowMaker
from edge_runtime.cli_parser import OneLineErrorParser
from edge_runtime.errors import KwsError
from edge_runtime.features import FeatureSpec
from edge_runtime.interpreter import OUTPUT_LOGITS, TfliteModel
from edge_runtime.manifest import output_meaning, sha256_of
from train.checkpoint import load_checkpoint
from train.compress.chain import TFLITE_INT8, TORCH_DYNAMIC_INT8, TORCH_FP32
from train.compress.cli import STAGES_FILE, STAGES_FORMAT
from train.compress.latency import DEFAULT_CALLS_PER_ROUND, DEFAULT_ROUNDS, measure
from train.compress.macs import count_macs
from train.compress.quality import DEFAULT_FA_PER_HOUR, quality
from train.compress.quantize import dynamic_int8, state_dict_bytes
from train.compress.uncertainty import paired_bootstrap
from train.data.clipset import ClipSet
from train.models import count_parameters

REPORT_JSON, REPORT_MD = "report.json", "report.md"
REPORT_FORMAT = "kws-compression-report/1"
BASELINE = "baseline: CRNN fp32 (the teacher)"
BASELINE_TFLITE = "baseline: CRNN float32 TFLite"
TFLITE_FLOAT32 = "tflite float32"
# The targets for the deployed model against the CRNN fp32 baseline.
TARGETS = {"speed_up_rate_macs": 25.0, "compression_rate_bytes": 25.0, "speed_up_rate_latency": 10.0}


@dataclass
class Row:
    name: str
    run: str
    kind: str
    parameters: int
    macs: int
    bytes: int
    threshold: float
    scores: Callable[[np.ndarray], np.ndarray]  # test features -> keyword scores
    call: Callable[[], object]  # one window, for latency
    note: str = ""


def torch_row(name: str, run: str, kind: str, model: torch.nn.Module, threshold: float, macs: int, window, note=""):
    model = model.cpu().eval()
    measured = dynamic_int8(model) if kind == TORCH_DYNAMIC_INT8 else model
    features = torch.from_numpy(window[None])

    @torch.inference_mode()
    def scores(windows: np.ndarray) -> np.ndarray:
        batches = [measured(torch.from_numpy(windows[i : i + 512])) for i in range(0, len(windows), 512)]
        return torch.softmax(torch.cat(batches).float(), dim=1)[:, 1].numpy()

    return Row(name, run, kind, count_parameters(model), macs, state_dict_bytes(measured), threshold, scores,
               lambda: measured(features), note)


def tflite_row(name: str, run: str, kind: str, path: Path, threshold: float, parameters: int, macs: int, window,
               note="", output_meaning: str = OUTPUT_LOGITS):
    """`output_meaning`: what the model outputs, from its bundle's manifest (logits for bundles converted now)."""
    model = TfliteModel(path, num_threads=1, output_meaning=output_meaning)

    def scores(windows: np.ndarray) -> np.ndarray:
        return np.array([model.probabilities(w)[1] for w in windows])

    return Row(name, run, kind, parameters, macs, path.stat().st_size, threshold, scores,
               lambda: model.probabilities(window), note)


def load_stages(compression: Path) -> dict:
    path = compression / STAGES_FILE
    try:
        stages = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(f"cannot read {path} ({error}); run python -m train.compress first") from None
    if stages.get("format") != STAGES_FORMAT:
        raise ValueError(f"{path} is not a {STAGES_FORMAT} file")
    return stages


def load_manifest(bundle: Path, checkpoint: Path) -> dict:
    """The manifest of a bundle that `python -m convert` made from `checkpoint` (checked by its sha256)."""
    path = bundle / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ValueError(
            f"cannot read {path} ({error}); run python -m convert --checkpoint {checkpoint} first"
        ) from None
    if manifest.get("source", {}).get("checkpoint_sha256") != sha256_of(checkpoint):
        raise ValueError(
            f"bundle {bundle} was not converted from {checkpoint}; run python -m convert --checkpoint {checkpoint} "
            f"--out {bundle} first"
        )
    return manifest


def build_rows(
    stages: dict, bundle: Path | None, teacher_bundle: Path | None, window: np.ndarray, spec: FeatureSpec
) -> tuple[list[Row], str]:
    """All rows and the name of the deployed one."""
    teacher, teacher_info = load_checkpoint(Path(stages["teacher"]))
    teacher_macs = count_macs(teacher, spec.frames_per_clip, spec.n_mels).total
    rows = [torch_row(BASELINE, "baseline", TORCH_FP32, teacher, teacher_info.threshold, teacher_macs, window)]
    if teacher_bundle is not None:
        manifest = load_manifest(teacher_bundle, Path(stages["teacher"]))
        threshold, parameters = float(manifest["detection"]["threshold"]), count_parameters(teacher)
        meaning = output_meaning(manifest["model"], teacher_bundle / "manifest.json")
        rows.append(tflite_row(BASELINE_TFLITE, "baseline", TFLITE_FLOAT32,
                               teacher_bundle / manifest["artifacts"]["float32_tflite"]["file"], threshold, parameters,
                               teacher_macs, window, "the baseline in the deployed model's runtime", meaning))
        rows.append(tflite_row("quantize alone: CRNN int8 TFLite", "quantize alone", TFLITE_INT8,
                               teacher_bundle / manifest["model"]["file"], threshold, parameters, teacher_macs, window,
                               "full int8, post-training (python -m convert, GRU unrolled)", meaning))
    final_row = None
    for stage in stages["stages"]:
        model, info = load_checkpoint(Path(stage["checkpoint"]))
        rows.append(torch_row(stage["name"], stage["run"], stage["kind"], model, info.threshold, stage["macs"], window,
                              stage.get("note", "")))
        if stage["name"] == stages["final"]:
            final_row, final_stage = rows[-1], stage
    deployed = final_row.name
    if bundle is not None:
        student = Path(stages["student"])
        manifest = load_manifest(bundle, student)
        threshold = float(manifest["detection"]["threshold"])
        meaning = output_meaning(manifest["model"], bundle / "manifest.json")
        parameters, macs = final_row.parameters, final_stage["macs"]
        rows.append(tflite_row("chain: float32 TFLite of the final student", "chain", TFLITE_FLOAT32,
                               bundle / manifest["artifacts"]["float32_tflite"]["file"], threshold, parameters, macs,
                               window, output_meaning=meaning))
        rows.append(tflite_row("chain: int8 TFLite of the final student (deployed)", "chain", TFLITE_INT8,
                               bundle / manifest["model"]["file"], threshold, parameters, macs, window,
                               "full int8, post-training (python -m convert)", meaning))
        deployed = rows[-1].name
    return rows, deployed


def make_report(
    stages: dict, bundle: Path | None, teacher_bundle: Path | None, fa_per_hour: float, rounds: int, per_round: int, say
) -> dict:
    clips = ClipSet.load(stages["clipset"])
    spec = load_checkpoint(Path(stages["teacher"]))[1].feature_spec  # every row reads the teacher's features
    say("report: test windows through the device front-end")
    test = WindowMaker(clips, spec).split("test")
    rows, deployed = build_rows(stages, bundle, teacher_bundle, test.features[0], spec)
    say(f"report: scoring {len(rows)} models on {len(test)} test windows")
    results, scores_of = [], {}
    for row in rows:
        scores = scores_of[row.name] = row.scores(test.features)
        results.append({
            "name": row.name,
            "run": row.run,
            "kind": row.kind,
            "parameters": row.parameters,
            "macs": row.macs,
            "bytes": row.bytes,
            "bytes_of": "file" if row.kind in (TFLITE_INT8, TFLITE_FLOAT32) else "state_dict",
            "test": quality(scores, test.labels == 1, row.threshold, spec.clip_seconds, fa_per_hour),
            "note": row.note,
        })
    say(f"report: latency, {rounds} interleaved rounds of {per_round} calls per model, one core, one thread")
    latency = measure({row.name: row.call for row in rows}, rounds, per_round)
    for result in results:
        result["latency"] = latency[result["name"]]
    summary = summarize(results, deployed, stages, fa_per_hour)
    base, final = (next(row for row in rows if row.name == name) for name in (BASELINE, deployed))
    summary["no_worse_uncertainty"] = paired_bootstrap(
        scores_of[BASELINE], base.threshold, scores_of[deployed], final.threshold, test.labels == 1,
        spec.clip_seconds,
    )
    if bundle is not None:  # lets `train.summary` tell whether this report describes the bundle it summarises
        deployed_file = json.loads((bundle / "manifest.json").read_text())["model"]["file"]
        summary["deployed_sha256"] = sha256_of(bundle / deployed_file)
    return summary


def summarize(results: list[dict], deployed: str, stages: dict, fa_per_hour: float) -> dict:
    by_name = {result["name"]: result for result in results}
    base, final = by_name[BASELINE], by_name[deployed]
    ratios = {
        "speed_up_rate_macs": base["macs"] / final["macs"],
        "compression_rate_bytes": base["bytes"] / final["bytes"],
        "speed_up_rate_latency": base["latency"]["median_us"] / final["latency"]["median_us"],
    }
    no_worse = {
        "accuracy_no_worse": final["test"]["accuracy"] >= base["test"]["accuracy"],
        "au_fa_fr_no_worse": final["test"]["au_fa_fr"] <= base["test"]["au_fa_fr"],
    }
    met = {key: value >= TARGETS[key] for key, value in ratios.items()} | no_worse
    extra = {}
    if BASELINE_TFLITE in by_name:  # the same ratio with the baseline in the deployed model's runtime
        same_runtime = by_name[BASELINE_TFLITE]["latency"]["median_us"] / final["latency"]["median_us"]
        extra["speed_up_rate_latency_vs_tflite_baseline"] = round(same_runtime, 2)
    return {
        "format": REPORT_FORMAT,
        "baseline": BASELINE,
        "deployed": deployed,
        **{key: round(value, 2) for key, value in ratios.items()},
        **no_worse,
        **extra,
        "targets": TARGETS,
        "targets_met": met,
        "all_targets_met": all(met.values()),
        "fa_per_hour_fixed": fa_per_hour,
        "methods": stages["methods"],
        "compress_seconds": stages["seconds"],
        "settings": stages["settings"],
        "rows": results,
    }


def markdown(report: dict) -> str:
    fa = report["fa_per_hour_fixed"]
    lines = [
        "| model | kind | params | MACs / 1 s | bytes | accuracy | FRR | FAR | ROC AUC | au_fa_fr | "
        f"FRR @ {fa:g} FA/h | latency (µs) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in report["rows"]:
        t = row["test"]
        lines.append(
            f"| {row['name']} | {row['kind']} | {row['parameters']:,} | {row['macs']:,} | {row['bytes']:,} | "
            f"{t['accuracy']:.2%} | {t['frr']:.2%} | {t['far']:.2%} | {t['roc_auc']:.4f} | {t['au_fa_fr']:.2f} | "
            f"{t['frr_at_fa_per_hour']:.2%} | {row['latency']['median_us']:.1f} |"
        )
    met = report["targets_met"]
    lines += [
        "",
        f"Deployed model: **{report['deployed']}**, against **{report['baseline']}**:",
        "",
        *(
            f"- `{key}` = **{report[key]:.2f}** (target >= {target:g}): {'met' if met[key] else 'NOT met'}"
            for key, target in report["targets"].items()
        ),
        f"- accuracy no worse than the baseline: {'yes' if met['accuracy_no_worse'] else 'NO'}",
        f"- au_fa_fr no worse than the baseline: {'yes' if met['au_fa_fr_no_worse'] else 'NO'}",
    ]
    spread = report.get("no_worse_uncertainty")
    if spread:
        accuracy, area = spread["accuracy_points"], spread["au_fa_fr"]
        lines += [
            "",
            f"How sure the two verdicts are on this test split ({spread['method']}, {spread['resamples']:,} "
            "resamples; deployed minus baseline, 95% interval):",
            f"- accuracy: {accuracy['difference']:+.2f} points [{accuracy['interval_95'][0]:+.2f}, "
            f"{accuracy['interval_95'][1]:+.2f}]; no worse in {accuracy['share_no_worse']:.0%} of resamples",
            f"- au_fa_fr: {area['difference']:+.2f} [{area['interval_95'][0]:+.2f}, {area['interval_95'][1]:+.2f}]; "
            f"no worse in {area['share_no_worse']:.0%} of resamples",
        ]
    if "speed_up_rate_latency_vs_tflite_baseline" in report:
        lines.append(f"- latency ratio against the CRNN as float32 TFLite (same runtime, not a target): "
                     f"{report['speed_up_rate_latency_vs_tflite_baseline']:.2f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(
        prog="python -m train.compress.report",
        description="Score the compression stages and the deployed int8 TFLite side by side; write report.json and "
        "report.md into the compression folder.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--compression", type=Path, required=True, help="the --out folder of python -m train.compress")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle converted from COMPRESSION/student.pt by python -m convert (without it the "
                        "deployed row is the last torch stage)")
    parser.add_argument("--teacher-bundle", type=Path, default=None,
                        help="bundle python -m convert made from the teacher checkpoint: adds the CRNN as float32 and "
                        "int8 TFLite (the latter is quantization alone in the deployed format; converting the CRNN "
                        "takes minutes, so make does not)")
    parser.add_argument("--fa-per-hour", type=float, default=DEFAULT_FA_PER_HOUR,
                        help="false alarms per hour at which FRR is reported")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="interleaved latency rounds")
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS_PER_ROUND, help="timed calls per model per round")
    args = parser.parse_args(argv)
    if args.fa_per_hour <= 0 or args.rounds < 1 or args.calls < 1:
        parser.error("--fa-per-hour must be > 0, --rounds and --calls >= 1")
    try:
        stages = load_stages(args.compression)
        report = make_report(stages, args.bundle, args.teacher_bundle, args.fa_per_hour, args.rounds, args.calls,
                             lambda m: print(m, file=sys.stderr, flush=True))
    except (ValueError, KwsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    table = markdown(report)
    try:
        (args.compression / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
        (args.compression / REPORT_MD).write_text(table)
    except OSError as error:
        print(f"error: cannot write the report into {args.compression} ({error})", file=sys.stderr)
        return 2
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
