"""Turn measured rows into report.json (checked against schema.json), report.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from benchmarks.measure import PEER_DEFAULT_EXPONENT
from benchmarks.plots import plot_latency, plot_size_accuracy_latency, plot_streaming_cost

REPORT_FORMAT = "kws-benchmark-report/1"
SCHEMA_PATH = Path(__file__).with_name("schema.json")
MICROSECONDS_PER_SECOND = 1e6
PEER_ROW = "pocketsphinx keyphrase spotting (1 s of audio)"
EVAL_TARGETS = ("0.5", "0.1")  # false accepts per hour of the `make eval` operating points


def _row(rows: list[dict], backend: str, precision: str | None = None, device: str = "cpu", arch: str | None = None):
    """The first measured row matching the given backend, precision, device and architecture."""
    for row in rows:
        if (row["backend"], row["device"]) != (backend, device) or "latency" not in row:
            continue
        if (precision is None or row["precision"] == precision) and (arch is None or row["architecture"] == arch):
            return row
    return None


def streaming_costs(rows: list[dict], manifest: dict, edge_bench: dict | None,
                    streaming_macs: dict | None = None) -> list[dict]:
    """CPU time (and MACs) per second of audio: the deployed streaming pipeline as `edge_runtime bench` measured it,
    the file detector (one second of front-end plus one int8 window per hop) and the peer, for comparison."""
    costs = []
    if edge_bench and "rtf" in edge_bench:
        precision = manifest.get("streaming", {}).get("precision", "int8")  # float32 where the int8 step failed
        entry = {
            "name": f"streaming {precision} ({edge_bench['model']['file']}), features + model + post-processing",
            "how": "edge_runtime bench: wall time over generated audio, one pinned core, one interpreter thread",
            "cpu_us_per_audio_second": edge_bench["rtf"] * MICROSECONDS_PER_SECOND,
            "rtf": edge_bench["rtf"],
            "per_hop_us": edge_bench["per_hop_us"],
            "peak_rss_mb": edge_bench["rss_mb"]["peak"],
            "first_inference_s": edge_bench["first_inference_s"],
        }
        if streaming_macs and "macs_per_audio_second" in streaming_macs:
            entry["macs_per_audio_second"] = streaming_macs["macs_per_audio_second"]
            phases = streaming_macs.get("phases", 1)
            at_phases = f", {phases} phases of the stride" if phases > 1 else ""
            entry["macs_how"] = (f"{streaming_macs['macs_per_step']:,} MACs per streaming step x "
                                 f"{streaming_macs['steps_per_second']:g} steps per second{at_phases} (model only)")
        elif streaming_macs:
            entry["macs_note"] = streaming_macs["not_measured"]
        costs.append(entry)
    features, int8 = _row(rows, "features"), _row(rows, "tflite", "int8")
    if features is not None and int8 is not None:
        windows_per_second = 1.0 / manifest["detection"]["window_hop_seconds"]
        cost = features["latency"]["p50_us"] + windows_per_second * int8["latency"]["p50_us"]
        entry = {
            "name": f"window scan, int8, hop {manifest['detection']['window_hop_seconds']} s",
            "how": "p50 of the 1 s numpy front-end + windows per second x p50 of one int8 window (single thread)",
            "cpu_us_per_audio_second": cost,
            "rtf": cost / MICROSECONDS_PER_SECOND,
        }
        if int8.get("macs_per_window") is not None:
            entry["macs_per_audio_second"] = windows_per_second * int8["macs_per_window"]
            entry["macs_how"] = f"{windows_per_second:g} windows per second x MACs per window (model only)"
        costs.append(entry)
    peer = _row(rows, "pocketsphinx")
    if peer is not None:
        costs.append({
            "name": f"peer: pocketsphinx {peer.get('version', '')} keyphrase spotting".replace("  ", " "),
            "how": "p50 of one 1 s process_raw call in an open utterance (single thread, pinned core)",
            "cpu_us_per_audio_second": peer["latency"]["p50_us"],
            "rtf": peer["latency"]["p50_us"] / MICROSECONDS_PER_SECOND,
            "peak_rss_mb": peer["peak_rss_mb"],
        })
    return costs


def ratios(rows: list[dict], manifest: dict, streaming: list[dict] = ()) -> dict:
    arch = manifest["model"]["architecture"]
    int8 = _row(rows, "tflite", "int8")
    result = {}
    teacher_cpu = next((r for r in rows if r["backend"] == "torch" and r["device"] == "cpu" and "latency" in r
                        and r["architecture"] != arch), None)
    student_cpu = _row(rows, "torch", "fp32", "cpu", arch)
    # The GPU baseline is the teacher (the CRNN baseline) in torch on the GPU, as the CPU one is.
    gpu = next((r for r in rows if r["backend"] == "torch" and r["device"] == "cuda" and "latency" in r
                and r["architecture"] != arch), None) or _row(rows, "onnxruntime", "fp32", "cuda")
    def p50(row: dict) -> float:
        return row["latency"]["p50_us"]

    if int8 and teacher_cpu:
        result["int8_tflite_vs_teacher_torch_cpu_speedup"] = p50(teacher_cpu) / p50(int8)
    if int8 and student_cpu:
        result["int8_tflite_vs_student_torch_cpu_speedup"] = p50(student_cpu) / p50(int8)
    if int8 and gpu:
        result["edge_proxy_vs_gpu_baseline_latency_ratio"] = p50(int8) / p50(gpu)
    else:
        result["edge_proxy_vs_gpu_baseline_latency_ratio"] = "not measured: no CUDA device"
    peer = _row(rows, "pocketsphinx")
    stream = streaming[0] if streaming and streaming[0]["name"].startswith("streaming ") else None
    if peer and stream:
        result["peer_vs_streaming_cpu_per_audio_second"] = peer["latency"]["p50_us"] / stream[
            "cpu_us_per_audio_second"]
    return result


def eval_system(evaluation: dict, prefix: str) -> tuple[str, dict] | None:
    """The `make eval` system whose name starts with `prefix` ("ours", "pocketsphinx")."""
    for name, system in (evaluation.get("systems") or {}).items():
        if name.startswith(prefix):
            return name, system
    return None


def peer_exponent(evaluation: dict | None) -> int:
    """The peer's kws_threshold exponent k (1e-k) for the latency row: `make eval`'s operating point at 0.5 false
    accepts per hour when it has one, else the default."""
    found = eval_system(evaluation, "pocketsphinx") if evaluation else None
    try:
        return int(round(-found[1]["operating_points"]["0.5"]["threshold"]))
    except (TypeError, KeyError, ValueError):  # no report, no peer in it, or no point at 0.5 FA/h
        return PEER_DEFAULT_EXPONENT


def eval_quality(evaluation: dict | None, eval_source: str, prefix: str, manifest: dict) -> dict | str:
    """Long-audio quality of one `make eval` system, or "not measured: why"."""
    if evaluation is None:
        return f"not measured: {eval_source}"
    if evaluation.get("keyword") != manifest["keyword"]:
        return f"not measured: the `make eval` report {eval_source} is for '{evaluation.get('keyword')}'"
    if prefix == "ours" and evaluation.get("model_sha256") != manifest["model"]["sha256"]:
        return f"not measured: the `make eval` report {eval_source} evaluated another model file"
    found = eval_system(evaluation, prefix)
    if found is None:
        return f"not measured: the `make eval` report {eval_source} has no {prefix} system (run without --no-peer)"
    name, system = found
    try:
        quality = {"source": eval_source, "system": name, "clip_roc_auc": float(system["clip_roc_auc"]),
                   "negative_hours": float(system["negative_hours"]), "rtf_in_eval": system.get("rtf")}
        for target in EVAL_TARGETS:
            point = system["operating_points"].get(target)
            quality[f"frr_at_{target}_fa_per_hour"] = float(point["frr"]) if point else "not reached"
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        return f"not measured: the `make eval` report {eval_source} lacks a field of {name} ({error!r})"
    return quality


def deployed_window_model(row: dict, manifest: dict) -> bool:
    """The bundle's own int8 window model (not the verifier's, whose file has the same name in its folder)."""
    path = Path(row.get("model_file") or "")
    return path.name == manifest["model"]["file"] and path.parent.name != manifest.get("verifier", {}).get("folder")


def verifier_costs(rows: list[dict], evaluation: dict | None) -> list[dict]:
    """What the two-stage detector's verifier adds per second of audio: its windows per hour as `make eval` counted
    them on each kind of stream, times its p50 window latency measured in this run."""
    verifier = next((row for row in rows if row["name"].endswith("(verifier)") and "latency" in row), None)
    systems = (evaluation or {}).get("systems", {})
    usage = next((system["verifier"] for name, system in systems.items() if name.startswith("ours") and
                  "verifier" in system), None)  # fmt: skip
    if verifier is None or usage is None:
        return []
    costs = []
    for kind, ran in usage.items():
        windows_per_second = ran["windows_per_hour"] / 3600
        cost = windows_per_second * verifier["latency"]["p50_us"]
        entry = {
            "name": f"+ verifier ({verifier['architecture']} int8) on the {kind} streams of `make eval`",
            "how": (f"{ran['windows_per_hour']:,.0f} windows an hour (the gate open {100 * ran['gate_open_share']:.2f}%"
                    f" of the time) x p50 of one verifier window"),
            "cpu_us_per_audio_second": cost,
            "rtf": cost / MICROSECONDS_PER_SECOND,
        }
        if verifier.get("macs_per_window"):
            entry["macs_per_audio_second"] = windows_per_second * verifier["macs_per_window"]
            entry["macs_how"] = f"{windows_per_second:.3g} windows per second x MACs per window"
        costs.append(entry)
    return costs


def merge_quality(rows: list[dict], manifest: dict, evaluation: dict | None, eval_source: str) -> list[dict]:
    """The peer row and the deployed int8 row get `quality` from the `make eval` report (or why not)."""
    merged = []
    for row in rows:
        row = dict(row)
        row.pop("quality", None)  # measurements reused from an earlier report get it afresh
        if row["backend"] == "pocketsphinx":
            row["quality"] = eval_quality(evaluation, eval_source, "pocketsphinx", manifest)
        elif row["backend"] == "tflite" and deployed_window_model(row, manifest):
            row["quality"] = eval_quality(evaluation, eval_source, "ours", manifest)
        merged.append(row)
    return merged


def merge_device_results(device_results: list[tuple[Path, dict]], streaming: list[dict]) -> list[dict]:
    """Results of `edge_runtime bench` from real devices, beside the workstation proxy."""
    merged = []
    proxy_rtf = streaming[0]["rtf"] if streaming else None
    for path, result in device_results:
        if not isinstance(result.get("rtf"), (int, float)):
            raise ValueError(f"device results {path} have no numeric top-level 'rtf'")
        peak_rss = (result.get("rss_mb") or {}).get("peak", result.get("peak_rss_mb"))
        entry = {"source": str(path), "rtf": float(result["rtf"]), "device": result.get("device", {}),
                 "per_hop_us": result.get("per_hop_us", {}), "peak_rss_mb": peak_rss}
        if proxy_rtf:
            entry["rtf_vs_workstation_proxy"] = entry["rtf"] / proxy_rtf
        # What the bundle recorded of the workstation at conversion time (CPU, and GPU when it had one).
        entry["reference"] = result.get("reference") or {}
        entry["ratio_to_reference"] = result.get("ratio_to_reference") or {}
        merged.append(entry)
    return merged


def build_report(rows, manifest, machine, device_results, edge_bench, created_utc, streaming_macs=None,
                 evaluation=None, eval_source="no `make eval` report given") -> dict:
    rows = merge_quality(rows, manifest, evaluation, eval_source)
    streaming = streaming_costs(rows, manifest, edge_bench, streaming_macs) + verifier_costs(rows, evaluation)
    report = {
        "format": REPORT_FORMAT,
        "created_utc": created_utc,
        "machine": machine,
        "deployed": {"keyword": manifest["keyword"], "architecture": manifest["model"]["architecture"],
                     "file": manifest["model"]["file"], "bytes": manifest["model"]["bytes"]},
        "rows": rows,
        "streaming": streaming,
        "streaming_macs": streaming_macs,
        "ratios": ratios(rows, manifest, streaming),
        "devices": merge_device_results(device_results, streaming),
        "edge_bench": edge_bench,
        "evaluation": {"source": eval_source, "found": evaluation is not None},
    }
    validate(report)
    return report


def validate(report: dict) -> None:
    """Raise ValueError naming the first place where the report breaks schema.json."""
    try:
        jsonschema.validate(report, json.loads(SCHEMA_PATH.read_text()))
    except jsonschema.ValidationError as error:
        where = "/".join(str(part) for part in error.absolute_path) or "the top level"
        raise ValueError(f"benchmark report does not match schema.json at {where}: {error.message}") from None


def _fmt(value, pattern="{:.1f}"):
    return "" if value is None else pattern.format(value)


def _macs_cell(row: dict) -> str:
    if row.get("macs_per_window") is not None:
        return f"{row['macs_per_window']:,}"
    return (row.get("macs_note") or "not measured").split(":")[0]


def _quality_cell(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else str(value)


def markdown(report: dict) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Created {report['created_utc']} on {report['machine']['cpu']} ({report['machine']['cores']} cores), "
        f"Python {report['machine']['python']}. One thread, pinned to one core, batch 1, per 1 s window; "
        "percentiles over the stated number of timed calls after warm-up. MACs: `train.compress.macs.count_macs` "
        "of the float torch model on one 1 s window (ONNX and TFLite rows: the checkpoint they were converted from; "
        "quantization does not change the count).",
        "",
        "| backend | precision | device | p50 us | p95 us | p99 us | peak RSS MB | model bytes | MACs per 1 s window "
        "| test accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    notes = []
    for row in report["rows"]:
        if "latency" in row:
            lat = row["latency"]
            timing = f"{lat['p50_us']:.1f} | {lat['p95_us']:.1f} | {lat['p99_us']:.1f} | {row['peak_rss_mb']:.0f}"
        else:
            timing = f"{row['not_measured']} | | | "
        model_bytes = row.get("model_bytes")
        accuracy = row.get("test_accuracy")
        if row["backend"] == "pocketsphinx":
            accuracy_cell = "n/a (long-audio quality below)"
        else:
            accuracy_cell = _fmt(accuracy, "{:.2%}")
        lines.append(f"| {row['name']} | {row['precision']} | {row['device']} | {timing} | "
                     f"{_fmt(model_bytes, '{:,}')} | {_macs_cell(row)} | {accuracy_cell} |")
        if row.get("macs_per_window") is None and row.get("macs_note"):
            notes.append(f"- {row['name']}: MACs {row['macs_note']}")
        if row["backend"] == "pocketsphinx" and "latency" in row:
            notes.append(f"- {row['name']}: pocketsphinx {row.get('version')}, kws_threshold "
                         f"{row.get('kws_threshold')}, {row['latency']['iterations']} timed calls; {row.get('how')}. "
                         f"Model bytes: {row.get('model_note')}.")
    if notes:
        lines += ["", *notes]
    throughput = [r for r in report["rows"] if r.get("throughput_windows_per_s")]
    if throughput:
        lines += ["", "Throughput (windows per second, one thread):", "",
                  "| backend | " + " | ".join(f"batch {b}" for b in throughput[0]["throughput_windows_per_s"]) + " |",
                  "|---|" + "---|" * len(throughput[0]["throughput_windows_per_s"])]
        for row in throughput:
            values = " | ".join(f"{v:,.0f}" for v in row["throughput_windows_per_s"].values())
            lines.append(f"| {row['name']} | {values} |")
    lines += ["", "Cost per second of audio:", "",
              "| pipeline | CPU us per audio second | real-time factor | MACs per audio second |", "|---|---|---|---|"]
    for entry in report["streaming"]:
        macs = entry.get("macs_per_audio_second")
        macs_cell = f"{macs:,.0f}" if macs is not None else entry.get("macs_note", "n/a").split(":")[0]
        lines.append(f"| {entry['name']} | {entry['cpu_us_per_audio_second']:.0f} | {entry['rtf']:.5f} | "
                     f"{macs_cell} |")
    counted = [e for e in report["streaming"] if e.get("macs_how")]
    if counted:
        lines += ["", *(f"- {e['name']}: {e['macs_how']}" for e in counted)]
    lines += ["", "Long-audio quality (from the `make eval` report, not measured by this run):", ""]
    quality_rows = [r for r in report["rows"] if "quality" in r]
    if quality_rows and any(isinstance(r["quality"], dict) for r in quality_rows):
        lines += ["| row | eval system | FRR at 0.5 FA/h | FRR at 0.1 FA/h | clip ROC AUC | negative hours |",
                  "|---|---|---|---|---|---|"]
        for row in quality_rows:
            q = row["quality"]
            if isinstance(q, dict):
                lines.append(f"| {row['name']} | {q['system']} | {_quality_cell(q['frr_at_0.5_fa_per_hour'])} | "
                             f"{_quality_cell(q['frr_at_0.1_fa_per_hour'])} | {q['clip_roc_auc']:.4f} | "
                             f"{q['negative_hours']:.2f} |")
            else:
                lines.append(f"| {row['name']} | {q} | | | | |")
        lines += ["", f"Source: {report['evaluation']['source']}."]
    else:
        reason = next((r["quality"] for r in quality_rows), f"not measured: {report['evaluation']['source']}")
        lines.append(f"- {reason}")
    lines += ["", "Ratios (measured in this run):", ""]
    for key, value in report["ratios"].items():
        lines.append(f"- {key}: {value if isinstance(value, str) else f'{value:.3g}x'}")
    if report["devices"]:
        lines += ["", "Devices:", "", "| device results | rtf | vs workstation proxy |", "|---|---|---|"]
        for device in report["devices"]:
            lines.append(f"| {device['source']} | {device['rtf']:.5f} | "
                         f"{_fmt(device.get('rtf_vs_workstation_proxy'), '{:.1f}x')} |")
    lines += ["", "![latency](latency_per_backend.png)", "", "![size vs accuracy](size_accuracy_latency.png)", "",
              "![streaming cost](streaming_cost.png)", ""]
    return "\n".join(lines)


def write_report(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "report.json", out / "report.md"]
    paths[0].write_text(json.dumps(report, indent=2) + "\n")
    paths[1].write_text(markdown(report))
    paths += [plot_latency(report, out / "latency_per_backend.png"),
              plot_size_accuracy_latency(report, out / "size_accuracy_latency.png"),
              plot_streaming_cost(report, out / "streaming_cost.png")]
    return paths
