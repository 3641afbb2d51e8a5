"""`python -m edge_runtime bench` as a black box: the JSON it writes, and the ratio to the manifest's reference.

Timings are not asserted against the target here (a loaded test machine would make that flaky); the benchmark
report compares them."""

from __future__ import annotations

import json

import pytest
import soundfile

from edge_runtime.latency import PERCENTILES, STAGES
from tests.test_run_cli import RATE, run_edge, scene
from tests.tiny import shared_dscnn_bundle


@pytest.fixture(scope="module")
def bundle():
    return shared_dscnn_bundle()


def test_bench_on_generated_audio_writes_the_figures(bundle, tmp_path):
    out = tmp_path / "bench.json"
    result = run_edge("bench", "--model", bundle, "--seconds", "5", "--out", out)
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(out.read_text())
    assert json.loads(result.stdout) == report
    assert 0 < report["rtf"] < 1 and report["audio_seconds"] == pytest.approx(5.0, abs=0.1)
    for figures in (report["per_hop_us"], report["per_step_us"]):
        assert set(figures) == set(STAGES)
        for stage in STAGES:
            values = [figures[stage][f"p{p}"] for p in PERCENTILES]
            assert values == sorted(values) and values[0] >= 0
    assert report["per_step_us"]["total"]["p50"] == pytest.approx(10 * report["per_hop_us"]["total"]["p50"], rel=1e-3)
    assert 0 < report["rss_mb"]["peak"] < 500 and 0 < report["first_inference_s"] < 30
    assert report["pinned_cpu"] is not None and report["threads"] == 1
    assert report["device"]["interpreter"].startswith(("ai-edge-litert", "tflite-runtime"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert report["reference"] == manifest["reference_latency"]
    assert report["reference"]["gpu"].get("status", "measured") in ("measured", "not measured: no CUDA device")
    cpu = report["ratio_to_reference"]["cpu"]
    assert cpu["rtf_ratio"] == pytest.approx(report["rtf"] / manifest["reference_latency"]["cpu"]["rtf"], rel=0.02)
    line = result.stderr.decode().strip()
    assert line.startswith("bench: rtf ") and "x the workstation cpu" in line


def test_bench_on_a_wav_counts_its_detections(bundle, tmp_path):
    wav = tmp_path / "scene.wav"
    soundfile.write(wav, scene(), RATE, subtype="PCM_16")
    result = run_edge("bench", "--model", bundle, "--wav", wav, "--no-pin")
    report = json.loads(result.stdout)
    assert report["detections"] == 3 and report["pinned_cpu"] is None and report["audio"] == str(wav)


def test_bench_bad_input_is_one_error_line(bundle, tmp_path):
    result = run_edge("bench", "--model", tmp_path)
    assert result.returncode == 2 and result.stderr.decode().startswith("error: model bundle")
    assert len(result.stderr.decode().splitlines()) == 1
    help_text = " ".join(run_edge("bench", "--help").stdout.decode().split())
    for option in ("--wav", "--seconds", "(default: 60)", "--threads", "--cpu", "--no-pin", "--out"):
        assert option in help_text
