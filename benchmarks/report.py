"""Turn measured rows into report.json (checked against schema.json), report.md and PNG plots."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

from benchmarks.plots import plot_latency, plot_size_accuracy_latency, plot_streaming_cost

REPORT_FORMAT = "kws-benchmark-report/1"
SCHEMA_PATH = Path(__file__).with_name("schema.json")
MICROSECONDS_PER_SECOND = 1e6


def _row(rows: list[dict], backend: str, precision: str | None = None, device: str = "cpu", arch: str | None = None):
    """The first measured row matching the given backend, precision, device and architecture."""
    for row in rows:
        if (row["backend"], row["device"]) != (backend, device) or "latency" not in row:
            continue
        if (precision is None or row["precision"] == precision) and (arch is None or row["architecture"] == arch):
            return row
    return None


def streaming_costs(rows: list[dict], manifest: dict, edge_bench: dict | None) -> list[dict]:
    """CPU time per second of audio: the deployed streaming pipeline as `edge_runtime bench` measured it, and the
    file detector (one second of front-end plus one int8 window per hop) for comparison."""
    costs = []
    if edge_bench and "rtf" in edge_bench:
        costs.append({
            "name": f"streaming int8 ({edge_bench['model']['file']}), features + model + post-processing",
            "how": "edge_runtime bench: wall time over generated audio, one pinned core, one interpreter thread",
            "cpu_us_per_audio_second": edge_bench["rtf"] * MICROSECONDS_PER_SECOND,
            "rtf": edge_bench["rtf"],
            "per_hop_us": edge_bench["per_hop_us"],
            "peak_rss_mb": edge_bench["rss_mb"]["peak"],
            "first_inference_s": edge_bench["first_inference_s"],
        })
    features, int8 = _row(rows, "features"), _row(rows, "tflite", "int8")
    if features is None or int8 is None:
        return costs
    windows_per_second = 1.0 / manifest["detection"]["window_hop_seconds"]
    cost = features["latency"]["p50_us"] + windows_per_second * int8["latency"]["p50_us"]
    return costs + [{
        "name": f"window scan, int8, hop {manifest['detection']['window_hop_seconds']} s",
        "how": "p50 of the 1 s numpy front-end + windows per second x p50 of one int8 window (single thread)",
        "cpu_us_per_audio_second": cost,
        "rtf": cost / MICROSECONDS_PER_SECOND,
    }]


def ratios(rows: list[dict], manifest: dict) -> dict:
    arch = manifest["model"]["architecture"]
    int8 = _row(rows, "tflite", "int8")
    result = {}
    teacher_cpu = next((r for r in rows if r["backend"] == "torch" and r["device"] == "cpu" and "latency" in r
                        and r["architecture"] != arch), None)
    student_cpu = _row(rows, "torch", "fp32", "cpu", arch)
    gpu = _row(rows, "torch", "fp32", "cuda", arch) or _row(rows, "onnxruntime", "fp32", "cuda")
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
    return result


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


def build_report(rows, manifest, machine, device_results, edge_bench, created_utc) -> dict:
    streaming = streaming_costs(rows, manifest, edge_bench)
    report = {
        "format": REPORT_FORMAT,
        "created_utc": created_utc,
        "machine": machine,
        "deployed": {"keyword": manifest["keyword"], "architecture": manifest["model"]["architecture"],
                     "file": manifest["model"]["file"], "bytes": manifest["model"]["bytes"]},
        "rows": rows,
        "streaming": streaming,
        "ratios": ratios(rows, manifest),
        "devices": merge_device_results(device_results, streaming),
        "edge_bench": edge_bench,
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


def markdown(report: dict) -> str:
    lines = [
        "# Benchmark report",
        "",
        f"Created {report['created_utc']} on {report['machine']['cpu']} ({report['machine']['cores']} cores), "
        f"Python {report['machine']['python']}. One thread, pinned to one core, batch 1, per 1 s window; "
        "percentiles over the stated number of timed calls after warm-up.",
        "",
        "| backend | precision | device | p50 us | p95 us | p99 us | peak RSS MB | model bytes | test accuracy |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        if "latency" in row:
            lat = row["latency"]
            timing = f"{lat['p50_us']:.1f} | {lat['p95_us']:.1f} | {lat['p99_us']:.1f} | {row['peak_rss_mb']:.0f}"
        else:
            timing = f"{row['not_measured']} | | | "
        lines.append(f"| {row['name']} | {row['precision']} | {row['device']} | {timing} | "
                     f"{_fmt(row.get('model_bytes'), '{:,}')} | {_fmt(row.get('test_accuracy'), '{:.2%}')} |")
    throughput = [r for r in report["rows"] if r.get("throughput_windows_per_s")]
    if throughput:
        lines += ["", "Throughput (windows per second, one thread):", "",
                  "| backend | " + " | ".join(f"batch {b}" for b in throughput[0]["throughput_windows_per_s"]) + " |",
                  "|---|" + "---|" * len(throughput[0]["throughput_windows_per_s"])]
        for row in throughput:
            values = " | ".join(f"{v:,.0f}" for v in row["throughput_windows_per_s"].values())
            lines.append(f"| {row['name']} | {values} |")
    lines += ["", "Cost per second of audio:", "", "| pipeline | CPU us per audio second | real-time factor |",
              "|---|---|---|"]
    for entry in report["streaming"]:
        lines.append(f"| {entry['name']} | {entry['cpu_us_per_audio_second']:.0f} | {entry['rtf']:.5f} |")
    lines += ["", "Ratios (measured in this run):", ""]
    for key, value in report["ratios"].items():
        lines.append(f"- {key}: {value if isinstance(value, str) else f'{value:.1f}x'}")
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
