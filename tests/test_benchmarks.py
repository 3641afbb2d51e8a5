"""The benchmark report builds from a tiny run, validates against its schema, and merges device results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import validate
from tests.tiny import REPO, shared_dscnn_bundle

ITERATIONS = 30  # enough to exercise the method; real reports use >= 1000


def run_bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=REPO, capture_output=True, text=True,
                          check=False)


@pytest.fixture(scope="module")
def tiny_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    artifacts = root / "artifacts"
    bundle = shared_dscnn_bundle()
    shutil.copytree(bundle, artifacts / "edge")
    checkpoint = Path(json.loads((bundle / "manifest.json").read_text())["source"]["checkpoint"])
    (artifacts / "train" / "dscnn").mkdir(parents=True)
    shutil.copy(checkpoint, artifacts / "train" / "dscnn" / "best.pt")
    out = root / "report"
    result = run_bench("--artifacts", str(artifacts), "--out", str(out), "--iterations", str(ITERATIONS),
                       "--stream-seconds", "5", "--history", str(root / "history"))
    assert result.returncode == 0, result.stderr[-2000:]
    return artifacts, out, json.loads((out / "report.json").read_text())


def test_report_has_every_backend_with_real_figures(tiny_report):
    _, out, report = tiny_report
    validate(report)
    rows = {row["name"]: row for row in report["rows"]}
    for name in ("torch cpu dscnn fp32", "onnxruntime cpu dscnn fp32", "tflite dscnn float32", "tflite dscnn int8",
                 "numpy log-mel front-end (1 s)"):
        latency = rows[name]["latency"]
        assert latency["iterations"] == ITERATIONS
        assert 0 < latency["p50_us"] <= latency["p95_us"] <= latency["p99_us"]
        assert rows[name]["peak_rss_mb"] > 10 and rows[name]["pinned_core"] is not None
    # The edge rows ran in the edge environment: no torch in that process, so far less memory.
    assert rows["tflite dscnn int8"]["peak_rss_mb"] < rows["torch cpu dscnn fp32"]["peak_rss_mb"]
    assert "torch" not in rows["tflite dscnn int8"]["versions"]
    assert rows["tflite dscnn int8"]["model_bytes"] == (tiny_report[0] / "edge" / "model_int8.tflite").stat().st_size
    assert set(rows["torch cpu dscnn fp32"]["throughput_windows_per_s"]) == {"1", "8", "64"}
    streaming, scan = report["streaming"]
    assert streaming["name"].startswith("streaming int8") and streaming["rtf"] == report["edge_bench"]["rtf"] > 0
    assert streaming["per_hop_us"]["total"]["p50"] > 0 and streaming["peak_rss_mb"] > 10
    windows_per_second = 1 / json.loads((tiny_report[0] / "edge" / "manifest.json").read_text())["detection"][
        "window_hop_seconds"]
    assert scan["cpu_us_per_audio_second"] == pytest.approx(
        rows["numpy log-mel front-end (1 s)"]["latency"]["p50_us"]
        + windows_per_second * rows["tflite dscnn int8"]["latency"]["p50_us"])
    for name in ("latency_per_backend.png", "size_accuracy_latency.png", "streaming_cost.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tflite dscnn int8 | int8 | cpu |" in (out / "report.md").read_text()


def test_gpu_rows_say_why_they_are_missing_never_a_number(tiny_report):
    _, _, report = tiny_report
    import torch

    for row in report["rows"]:
        if row["device"] == "cuda":
            if torch.cuda.is_available():
                assert row["latency"]["p50_us"] > 0
            else:
                assert row["not_measured"] == "not measured: no CUDA device" and "latency" not in row
    if not torch.cuda.is_available():
        assert report["ratios"]["edge_proxy_vs_gpu_baseline_latency_ratio"] == "not measured: no CUDA device"


def test_device_results_merge_without_measuring_again(tiny_report, tmp_path):
    artifacts, out, report = tiny_report
    device = tmp_path / "pi4.json"
    device.write_text(json.dumps({"rtf": 0.0015, "device": {"machine": "aarch64"}, "rss_mb": {"peak": 41.0}}))
    result = run_bench("--artifacts", str(artifacts), "--out", str(out), "--reuse-measurements",
                       "--device-results", str(device))
    assert result.returncode == 0, result.stderr
    merged = json.loads((out / "report.json").read_text())
    assert merged["rows"] == report["rows"]
    (entry,) = merged["devices"]
    assert entry["rtf"] == 0.0015 and entry["peak_rss_mb"] == 41.0
    assert entry["rtf_vs_workstation_proxy"] == pytest.approx(0.0015 / report["streaming"][0]["rtf"])
    assert "pi4.json" in (out / "report.md").read_text()


def test_bad_device_results_and_missing_artifacts_are_one_error_line(tiny_report, tmp_path):
    artifacts, out, _ = tiny_report
    no_rtf = tmp_path / "bad.json"
    no_rtf.write_text(json.dumps({"latency": {}}))
    for args in (["--artifacts", str(artifacts), "--out", str(out), "--reuse-measurements", "--device-results",
                  str(no_rtf)],
                 ["--artifacts", str(tmp_path / "nothing")]):
        result = run_bench(*args)
        assert result.returncode == 2
        assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_schema_rejects_a_row_with_neither_a_figure_nor_a_reason(tiny_report):
    _, _, report = tiny_report
    broken = json.loads(json.dumps(report))
    broken["rows"][0].pop("latency", None)
    broken["rows"][0].pop("not_measured", None)
    with pytest.raises(ValueError, match="schema"):
        validate(broken)
