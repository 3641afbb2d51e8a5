"""The benchmark report builds from a tiny run, validates against its schema, and merges device results."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import PEER_ROW, peer_exponent, ratios, validate
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
                 "numpy log-mel-v1 front-end (1 s)"):
        latency = rows[name]["latency"]
        assert latency["iterations"] == ITERATIONS
        assert 0 < latency["p50_us"] <= latency["p95_us"] <= latency["p99_us"]
        assert rows[name]["peak_rss_mb"] > 10 and rows[name]["pinned_core"] is not None
    # The edge rows ran in the edge environment: no torch in that process, so far less memory.
    assert rows["tflite dscnn int8"]["peak_rss_mb"] < rows["torch cpu dscnn fp32"]["peak_rss_mb"]
    assert "torch" not in rows["tflite dscnn int8"]["versions"]
    assert rows["tflite dscnn int8"]["model_bytes"] == (tiny_report[0] / "edge" / "model_int8.tflite").stat().st_size
    assert set(rows["torch cpu dscnn fp32"]["throughput_windows_per_s"]) == {"1", "8", "64"}
    streaming, scan, peer = report["streaming"]
    assert peer["name"].startswith("peer: pocketsphinx") and peer["cpu_us_per_audio_second"] == rows[
        "pocketsphinx keyphrase spotting (1 s of audio)"]["latency"]["p50_us"]
    precision = json.loads((tiny_report[0] / "edge" / "manifest.json").read_text())["streaming"]["precision"]
    assert streaming["name"].startswith(f"streaming {precision} (")
    assert streaming["rtf"] == report["edge_bench"]["rtf"] > 0
    assert streaming["per_hop_us"]["total"]["p50"] > 0 and streaming["peak_rss_mb"] > 10
    windows_per_second = 1 / json.loads((tiny_report[0] / "edge" / "manifest.json").read_text())["detection"][
        "window_hop_seconds"]
    assert scan["cpu_us_per_audio_second"] == pytest.approx(
        rows["numpy log-mel-v1 front-end (1 s)"]["latency"]["p50_us"]
        + windows_per_second * rows["tflite dscnn int8"]["latency"]["p50_us"])
    for name in ("latency_per_backend.png", "size_accuracy_latency.png", "streaming_cost.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| tflite dscnn int8 | int8 | cpu |" in (out / "report.md").read_text()


def test_gpu_rows_say_why_they_are_missing_never_a_number(tiny_report):
    _, _, report = tiny_report
    import torch

    for row in report["rows"]:
        if row["device"] == "cuda" and row.get("execution_provider") != "TensorrtExecutionProvider":
            if torch.cuda.is_available():
                assert row["latency"]["p50_us"] > 0
            else:
                assert row["not_measured"] == "not measured: no CUDA device" and "latency" not in row
    if not torch.cuda.is_available():
        assert report["ratios"]["edge_proxy_vs_gpu_baseline_latency_ratio"] == "not measured: no CUDA device"


def test_the_gpu_baseline_is_the_teacher_on_the_gpu():
    """Rows as a machine with a GPU measures them: the edge proxy is compared with the CRNN teacher on CUDA, not
    with the first DS-CNN row on CUDA."""
    def row(backend, device, architecture, p50, precision="fp32"):
        return {"backend": backend, "device": device, "architecture": architecture, "precision": precision,
                "latency": {"p50_us": p50}}

    rows = [row("torch", "cpu", "crnn", 800.0), row("torch", "cuda", "dscnn", 900.0),
            row("torch", "cuda", "crnn", 500.0), row("tflite", "cpu", "dscnn", 25.0, "int8")]
    result = ratios(rows, {"model": {"architecture": "dscnn"}})
    assert result["edge_proxy_vs_gpu_baseline_latency_ratio"] == pytest.approx(25.0 / 500.0)
    assert result["int8_tflite_vs_teacher_torch_cpu_speedup"] == pytest.approx(800.0 / 25.0)


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


def tensorrt_here() -> bool:
    import onnxruntime
    import torch

    return torch.cuda.is_available() and "TensorrtExecutionProvider" in onnxruntime.get_available_providers()


def test_macs_column_is_the_counter_on_the_float_model(tiny_report):
    from train.checkpoint import load_checkpoint
    from train.compress.macs import count_macs

    artifacts, out, report = tiny_report
    model, info = load_checkpoint(artifacts / "train" / "dscnn" / "best.pt")
    expected = count_macs(model, info.feature_spec.frames_per_clip, info.feature_spec.n_mels).total
    assert expected > 0
    rows = {row["name"]: row for row in report["rows"]}
    converted = ("onnxruntime cpu dscnn fp32", "onnxruntime cuda dscnn fp32", "onnxruntime tensorrt dscnn fp32",
                 "tflite dscnn float32", "tflite dscnn int8")
    for name in ("torch cpu dscnn fp32", "torch cuda dscnn fp32", *converted):
        assert rows[name]["macs_per_window"] == expected, name
        assert rows[name]["macs_source"]["architecture"] == "dscnn"
        assert rows[name]["macs_source"]["frames"] == info.feature_spec.frames_per_clip
    # The converted rows carry the MACs of the checkpoint the manifest names as their source (same hash).
    assert rows["tflite dscnn int8"]["macs_source"]["checkpoint"] == json.loads(
        (artifacts / "edge" / "manifest.json").read_text())["source"]["checkpoint"]
    for name in ("numpy log-mel-v1 front-end (1 s)", PEER_ROW):
        assert rows[name]["macs_per_window"] is None and rows[name]["macs_note"].startswith("not counted: ")
    # Streaming: per-step MACs x steps per second; 10 ms frames, frames_per_step frames per step, once per phase.
    macs = report["streaming_macs"]
    phases = json.loads((artifacts / "edge" / "manifest.json").read_text())["streaming"]["phases"]
    assert macs["phases"] == phases == 2  # every phase of the tiny model's stride-2 stem
    assert macs["steps_per_second"] == pytest.approx(100 / macs["frames_per_step"] * phases)
    assert macs["macs_per_audio_second"] == pytest.approx(macs["macs_per_step"] * macs["steps_per_second"])
    assert sum(macs["breakdown_per_step"].values()) == macs["macs_per_step"]
    streaming, scan, _ = report["streaming"]
    assert streaming["macs_per_audio_second"] == macs["macs_per_audio_second"]
    windows_per_second = 1 / json.loads((artifacts / "edge" / "manifest.json").read_text())["detection"][
        "window_hop_seconds"]
    assert scan["macs_per_audio_second"] == pytest.approx(windows_per_second * expected)
    # The stream computes each frame once; the window scan recomputes every overlapping window.
    assert 0 < streaming["macs_per_audio_second"] < scan["macs_per_audio_second"]
    table = (out / "report.md").read_text()
    assert "MACs per 1 s window" in table and f"| {expected:,} |" in table
    assert f"{macs['macs_per_audio_second']:,.0f}" in table


def test_tensorrt_row_is_measured_only_where_tensorrt_exists(tiny_report):
    _, _, report = tiny_report
    (row,) = [r for r in report["rows"] if r.get("execution_provider") == "TensorrtExecutionProvider"]
    assert row["name"] == "onnxruntime tensorrt dscnn fp32" and row["device"] == "cuda"
    if tensorrt_here():
        assert row["latency"]["p50_us"] > 0
        return
    import onnxruntime
    import torch

    assert "latency" not in row and row["not_measured"].startswith("not measured: ")
    if not torch.cuda.is_available():
        assert "no CUDA device" in row["not_measured"]
    if "TensorrtExecutionProvider" not in onnxruntime.get_available_providers():
        assert "no TensorrtExecutionProvider" in row["not_measured"]


def test_peer_row_is_measured_on_one_pinned_core(tiny_report):
    from importlib import metadata

    _, out, report = tiny_report
    (row,) = [r for r in report["rows"] if r["backend"] == "pocketsphinx"]
    assert row["name"] == PEER_ROW and row["device"] == "cpu" and row["precision"] == "n/a"
    latency = row["latency"]
    assert latency["iterations"] == ITERATIONS
    assert 0 < latency["p50_us"] <= latency["p95_us"] <= latency["p99_us"]
    assert row["peak_rss_mb"] > 10 and row["pinned_core"] is not None and row["threads"] == 1
    assert row["version"] == metadata.version("pocketsphinx") and row["kws_threshold"] == "1e-20"
    assert row["model_bytes"] > 1_000_000 and "torch" in row["versions"]
    # No `make eval` report in this run: the quality fields say so instead of carrying a figure.
    assert row["quality"].startswith("not measured: no `make eval` report at ")
    assert report["ratios"]["peer_vs_streaming_cpu_per_audio_second"] == pytest.approx(
        latency["p50_us"] / report["streaming"][0]["cpu_us_per_audio_second"])
    assert f"| {PEER_ROW} | n/a | cpu | {latency['p50_us']:.1f} |" in (out / "report.md").read_text()


def fake_eval_report(manifest: dict) -> dict:
    """The shape `python -m train.evaluate` writes (systems with operating points), with made-up test values."""
    def system(frr_05, auc, threshold):
        point = {"threshold": threshold, "frr": frr_05, "fa_per_hour": 0.4, "false_accepts": 1, "resolvable": True}
        return {"operating_points": {"0.5": point, "0.1": None}, "negative_hours": 2.5, "clip_roc_auc": auc,
                "rtf": 0.02}

    return {"keyword": manifest["keyword"], "model_sha256": manifest["model"]["sha256"], "detector": "window",
            "systems": {"ours (dscnn int8, window detector)": system(0.05, 0.99, 0.3),
                        "pocketsphinx 5.1.1 (keyphrase spotting)": system(0.675, 0.87, -30.0)}}


def test_eval_report_quality_is_merged_into_the_peer_and_deployed_rows(tiny_report, tmp_path):
    artifacts, out, report = tiny_report
    manifest = json.loads((artifacts / "edge" / "manifest.json").read_text())
    evaluation = tmp_path / "eval.json"
    evaluation.write_text(json.dumps(fake_eval_report(manifest)))
    assert peer_exponent(json.loads(evaluation.read_text())) == 30 and peer_exponent(None) == 20
    result = run_bench("--artifacts", str(artifacts), "--out", str(out), "--reuse-measurements",
                       "--eval-report", str(evaluation))
    assert result.returncode == 0, result.stderr
    merged = json.loads((out / "report.json").read_text())
    validate(merged)
    rows = {row["name"]: row for row in merged["rows"]}
    peer, int8 = rows[PEER_ROW]["quality"], rows["tflite dscnn int8"]["quality"]
    assert peer["system"].startswith("pocketsphinx") and peer["frr_at_0.5_fa_per_hour"] == 0.675
    assert peer["frr_at_0.1_fa_per_hour"] == "not reached" and peer["clip_roc_auc"] == 0.87
    assert int8["system"].startswith("ours") and int8["frr_at_0.5_fa_per_hour"] == 0.05
    assert rows[PEER_ROW]["latency"] == {r["name"]: r for r in report["rows"]}[PEER_ROW]["latency"]
    table = (out / "report.md").read_text()
    assert "| pocketsphinx keyphrase spotting (1 s of audio) | pocketsphinx 5.1.1 (keyphrase spotting) | 67.5% |" \
        in table
    # A report of another model file is not merged into the deployed row.
    other = fake_eval_report(manifest) | {"model_sha256": "0" * 64}
    evaluation.write_text(json.dumps(other))
    assert run_bench("--artifacts", str(artifacts), "--out", str(out), "--reuse-measurements",
                     "--eval-report", str(evaluation)).returncode == 0
    rows = {row["name"]: row for row in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["tflite dscnn int8"]["quality"].startswith("not measured: ")
    assert isinstance(rows[PEER_ROW]["quality"], dict)


def test_schema_checks_the_new_columns(tiny_report):
    _, _, report = tiny_report
    validate(report)
    for mutate in (
        lambda r: r["rows"][0].update(macs_per_window=None, macs_note=None) or r["rows"][0].pop("macs_note"),
        lambda r: r["rows"][0].pop("macs_per_window"),
        lambda r: r["rows"][0].update(macs_per_window=-5),
        lambda r: next(x for x in r["rows"] if x["backend"] == "pocketsphinx").pop("quality"),
        lambda r: next(x for x in r["rows"] if x["backend"] == "pocketsphinx").update(quality="0.9"),
        lambda r: r["streaming"][0].update(macs_per_audio_second=0),
    ):
        broken = json.loads(json.dumps(report))
        mutate(broken)
        with pytest.raises(ValueError, match="schema"):
            validate(broken)


def test_help_lists_every_option():
    result = run_bench("--help")
    assert result.returncode == 0
    for option in ("--artifacts", "--out", "--iterations", "--device-results", "--reuse-measurements",
                   "--stream-seconds", "--history", "--eval-report", "--peer-iterations", "--no-peer"):
        assert option in result.stdout, option


def test_a_malformed_eval_report_gives_reasons_not_figures():
    from benchmarks.report import eval_quality

    manifest = {"keyword": "sheila", "model": {"sha256": "a" * 64}}
    assert eval_quality(None, "no `make eval` report at x", "pocketsphinx", manifest) == \
        "not measured: no `make eval` report at x"
    broken = {"keyword": "sheila", "systems": {"pocketsphinx 5.1.1": {"operating_points": {}}}}
    assert eval_quality(broken, "e.json", "pocketsphinx", manifest).startswith("not measured: the `make eval` report")
    assert eval_quality({"keyword": "marvin"}, "e.json", "pocketsphinx", manifest).startswith("not measured: ")
    assert peer_exponent(broken) == 20


def test_the_deployed_students_own_checkpoint_gets_torch_rows(tmp_path):
    """With compression (the default) the deployed model is not in artifacts/train/: its manifest's source
    checkpoint is benchmarked in torch as well."""
    from benchmarks.cli import discover_targets

    bundle = shared_dscnn_bundle()
    artifacts = tmp_path / "artifacts"
    shutil.copytree(bundle, artifacts / "edge")
    manifest = json.loads((artifacts / "edge" / "manifest.json").read_text())
    targets = {t.name: t for t in discover_targets(artifacts, manifest, peer=False)}
    deployed = targets["torch cpu dscnn fp32 (deployed student)"]
    assert deployed.architecture == "dscnn" and deployed.model.name == Path(manifest["source"]["checkpoint"]).name
    assert deployed.accuracy == manifest["metrics"]["test"]["torch"]["accuracy"]
    assert "torch cuda dscnn fp32 (deployed student)" in targets
