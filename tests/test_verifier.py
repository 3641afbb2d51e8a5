"""The second stage end to end on the tiny setup: a tiny dscnn converted with a tiny CRNN as its verifier (two real
onnx2tf conversions), the verified values checked against the verifier's window model run by hand, the service
and the evaluation making the same detections, and a broken verifier refused with one line."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest

from convert.cli import summary_table
from convert.errors import ConversionError
from convert.pipeline import ConversionOptions, run_conversion
from convert.verifier import DEFAULT_VERIFIER_GATE, DEFAULT_VERIFIER_HOP_SECONDS, VERIFIER_FOLDER
from edge_runtime.bench import measure
from edge_runtime.errors import KwsError
from edge_runtime.features import MelFrontEnd, silence_frames
from edge_runtime.interpreter import TfliteModel
from edge_runtime.postprocess import DetectionPolicy, PostProcessor, smoothed_track
from edge_runtime.stream_manifest import load_stream_bundle
from edge_runtime.streaming import StreamingScorer
from edge_runtime.verifier import VerifiedPostProcessor, deployed_threshold
from tests.test_run_cli import detections, run_edge, scene
from tests.tiny import REPO, SPEC, make_tiny_checkpoint, make_tiny_clipset
from train.checkpoint import load_checkpoint, save_checkpoint
from train.evaluate.calibrate import write_threshold
from train.evaluate.detectors import StreamingDetector

RATE = SPEC.sample_rate
TEACHER_THRESHOLD = 0.45  # the tiny student's is 0.5


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("verified")
    clipset = make_tiny_clipset(root / "clips")
    student = make_tiny_checkpoint(root / "dscnn.pt", "dscnn", clipset)
    teacher = make_tiny_checkpoint(root / "crnn.pt", "crnn", clipset, steps=20)
    model, info = load_checkpoint(teacher)  # its own threshold, so the manifest's two thresholds can be told apart
    save_checkpoint(teacher, model, dataclasses.replace(info, threshold=TEACHER_THRESHOLD))
    out = root / "edge"
    options = ConversionOptions(checkpoint=student, out=out, calibration_windows=40, verifier=teacher)
    manifest = run_conversion(options, say=print)
    return {"root": root, "clips": clipset, "student": student, "teacher": teacher, "out": out, "manifest": manifest}


def test_conversion_writes_the_verifier_bundle_and_hands_it_the_threshold(tiny):
    manifest = tiny["manifest"]
    assert manifest["verifier"] == {
        "folder": VERIFIER_FOLDER,
        "gate": DEFAULT_VERIFIER_GATE,
        "hop_seconds": DEFAULT_VERIFIER_HOP_SECONDS,
        "threshold": TEACHER_THRESHOLD,
    }
    verifier_manifest = json.loads((tiny["out"] / VERIFIER_FOLDER / "manifest.json").read_text())
    assert verifier_manifest["model"]["architecture"] == "crnn" and "verifier" not in verifier_manifest
    # Each threshold beside the scores it applies to: the verifier's mean, and the student's own (window scan).
    assert verifier_manifest["detection"]["threshold"] == pytest.approx(TEACHER_THRESHOLD)
    assert manifest["detection"]["threshold"] == pytest.approx(0.5)
    bundle = load_stream_bundle(tiny["out"])
    assert bundle.verifier.hop_frames == round(DEFAULT_VERIFIER_HOP_SECONDS * 1000 / SPEC.hop_ms)
    assert bundle.verifier.bundle.feature_spec == bundle.spec
    assert deployed_threshold(bundle) == pytest.approx(TEACHER_THRESHOLD)
    assert not (tiny["out"] / VERIFIER_FOLDER / "work").exists()
    assert "verifier verifier/model_int8.tflite (crnn" in summary_table(manifest, tiny["out"])


def test_the_device_package_carries_the_verifier(tiny, tmp_path):
    result = subprocess.run(
        ["make", "--no-print-directory", "edge-package", f"BUNDLE={tiny['out']}", f"PACKAGE_DIR={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "kws-edge.tar.gz") as tar:
        names = set(tar.getnames())
        tar.extractall(tmp_path, filter="data")
    assert {"kws-edge/bundle/verifier/manifest.json", "kws-edge/bundle/verifier/model_int8.tflite"} <= names
    unpacked = load_stream_bundle(tmp_path / "kws-edge" / "bundle")
    assert unpacked.verifier is not None and unpacked.verifier.gate == DEFAULT_VERIFIER_GATE


def verified(bundle, audio: np.ndarray, chunk: int, gate: float | None = None):
    """(times, smoothed student scores, verified values) streamed in chunks of `chunk` samples."""
    if gate is not None:
        bundle = dataclasses.replace(bundle, verifier=dataclasses.replace(bundle.verifier, gate=gate))
    policy = DetectionPolicy(0.5, bundle.detection.refractory_seconds, bundle.stream.smoothing_seconds)
    post = VerifiedPostProcessor(policy, bundle.stream.output_period_s, bundle.verifier, bundle.stream.frames_per_step)
    scorer = StreamingScorer(bundle.stream, bundle.keyword_index)
    steps = [step for start in range(0, len(audio), chunk) for step in scorer.push(audio[start : start + chunk])]
    values = np.concatenate([post.values(s.times_s, s.scores, s.frames) for s in steps])
    times, scores = np.concatenate([s.times_s for s in steps]), np.concatenate([s.scores for s in steps])
    return times, smoothed_track(scores, bundle.stream.smoothing_seconds, bundle.stream.output_period_s), values, post


def test_verified_values_are_the_verifier_window_mean_where_the_gate_is_open(tiny):
    bundle = load_stream_bundle(tiny["out"])
    audio = scene()
    times, smoothed, values, post = verified(bundle, audio, 1600)
    for chunk in (37, 4000):  # the chunking changes nothing, with the kept frames bounded
        np.testing.assert_array_equal(verified(bundle, audio, chunk)[2], values)
    gate = bundle.verifier.gate
    is_open = smoothed >= gate
    assert 0.02 < is_open.mean() < 0.8  # the chirps open it, the silence and the noise bursts mostly do not
    assert np.all(values[~is_open] == 0.0)
    assert post.verifier.windows_scored < len(times) / bundle.verifier.hop_frames  # only while open, each once

    # By hand: the verifier's int8 model on every grid window (silence before the audio) ending in the span.
    spec, window, hop = bundle.spec, SPEC.frames_per_clip, bundle.verifier.hop_frames
    span = round(bundle.stream.smoothing_seconds * 1000 / spec.hop_ms)
    pad = window + span  # row pad + k is stream frame k
    frames = np.concatenate([silence_frames(pad, spec), MelFrontEnd(spec).frames(audio)])
    model = TfliteModel(tiny["out"] / VERIFIER_FOLDER / "model_int8.tflite")
    keyword = bundle.keyword_index
    checked = 0
    for index in np.flatnonzero(is_open)[::7]:
        last = round((times[index] * RATE - spec.window_samples) / spec.hop_samples)
        grid = [g for g in range(last - span + 1, last + 1) if g % hop == 0]
        expected = np.mean([model.probabilities(frames[pad + g - window + 1 : pad + g + 1])[keyword] for g in grid])
        assert values[index] == pytest.approx(expected, abs=1e-6)
        checked += 1
    assert checked >= 5
    assert values.max() > 0.5  # the tiny CRNN hears the chirps too


def test_a_closed_gate_never_runs_the_verifier_and_a_zero_gate_always_does(tiny):
    bundle = load_stream_bundle(tiny["out"])
    audio = scene()
    _, _, shut, post = verified(bundle, audio, 1600, gate=1.01)
    assert np.all(shut == 0.0) and post.verifier.windows_scored == 0
    times, _, always, post = verified(bundle, audio, 1600, gate=0.0)
    assert np.all(always > 0.0)
    grid_windows = (times[-1] - times[0]) / (bundle.verifier.hop_frames * SPEC.hop_ms / 1000)
    assert grid_windows < post.verifier.windows_scored < grid_windows + 2 * bundle.stream.smoothing_seconds * 100


def test_the_service_and_the_evaluation_make_the_same_verified_detections(tiny, tmp_path):
    import soundfile

    audio = scene()
    wav = tmp_path / "scene.wav"
    soundfile.write(wav, audio, RATE, subtype="FLOAT")
    result = run_edge("run", "--model", tiny["out"], "--wav", wav)
    records = detections(result)
    assert "verified by crnn" in result.stderr.decode()
    detector = StreamingDetector(tiny["out"])
    track = detector.score(audio)
    expected = detector.detect(track, deployed_threshold(detector.bundle))
    assert len(records) == len(expected) >= 2
    np.testing.assert_allclose([r["time_s"] for r in records], expected, atol=1e-3)


def student_alone_detections(folder: Path, audio: np.ndarray) -> list[float]:
    """Detection times of the streaming student alone at its own threshold, as `run` makes them from a file."""
    bundle = load_stream_bundle(folder, with_verifier=False)
    policy = DetectionPolicy(
        bundle.detection.threshold, bundle.detection.refractory_seconds, bundle.stream.smoothing_seconds
    )
    post = PostProcessor(policy, bundle.stream.output_period_s)
    scorer = StreamingScorer(bundle.stream, bundle.keyword_index)
    steps = scorer.push(audio) + scorer.flush(tail_seconds=policy.smoothing_seconds)
    return [d.time_s for step in steps for d in post.update(step.times_s, step.scores)]


def test_run_without_the_verifier_is_the_streaming_model_alone(tiny, tmp_path):
    import soundfile

    audio = scene()
    wav = tmp_path / "scene.wav"
    soundfile.write(wav, audio, RATE, subtype="FLOAT")
    result = run_edge("run", "--model", tiny["out"], "--wav", wav, "--no-verifier")
    records = detections(result)
    stderr = result.stderr.decode()
    assert "verified by" not in stderr and f"threshold {tiny['manifest']['detection']['threshold']:g}" in stderr
    expected = student_alone_detections(tiny["out"], audio)
    assert len(records) == len(expected) >= 2
    np.testing.assert_allclose([r["time_s"] for r in records], expected, atol=1e-3)
    # Without the second stage a missing verifier is no reason to refuse.
    copy = broken_copy(tiny, tmp_path, lambda m, folder: shutil.rmtree(folder / VERIFIER_FOLDER))
    assert len(detections(run_edge("run", "--model", copy, "--wav", wav, "--no-verifier"))) == len(expected)


def test_the_web_stream_runs_both_stages_as_the_device_does(tiny, tmp_path):
    import soundfile

    from tests.test_serve import free_port, start_server, stream

    audio = scene()
    wav = tmp_path / "scene.wav"
    soundfile.write(wav, audio, RATE, subtype="FLOAT")
    on_device = [r["time_s"] for r in detections(run_edge("run", "--model", tiny["out"], "--wav", wav))]
    port = free_port()
    server = start_server(tiny["out"], port)
    try:
        messages = stream(f"127.0.0.1:{port}", audio)
    finally:
        server.terminate()
        server.wait(timeout=10)
    ready, scores = messages[0], [m for m in messages if m["type"] == "score"]
    assert ready["verified_by"] == "crnn" and ready["threshold"] == pytest.approx(TEACHER_THRESHOLD)
    found = [m["time_s"] for m in messages if m["type"] == "detection"]
    assert len(found) == len(on_device) >= 2
    np.testing.assert_allclose(found, on_device, atol=1e-3)
    values = np.array([m["score"] for m in scores])
    assert (values == 0.0).any() and values.max() >= TEACHER_THRESHOLD  # the gate shuts on silence; chirps pass
    assert all(0.0 <= m["probability"] <= 1.0 for m in scores)


def test_the_benchmark_counts_how_often_the_verifier_ran(tiny):
    bundle = load_stream_bundle(tiny["out"])
    policy = DetectionPolicy(deployed_threshold(bundle), 1.0, bundle.stream.smoothing_seconds)
    result = measure(bundle.stream, bundle.keyword_index, policy, scene(), verifier=bundle.verifier)
    usage = result["verifier"]
    assert 0.0 < usage["gate_open_share"] < 1.0 and usage["windows_scored"] > 0
    assert result["detections"] >= 2


def broken_copy(tiny, tmp_path: Path, change) -> Path:
    copy = tmp_path / "edge"
    shutil.copytree(tiny["out"], copy)
    path = copy / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest, copy)
    path.write_text(json.dumps(manifest))
    return copy


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda m, folder: shutil.rmtree(folder / VERIFIER_FOLDER), "its verifier does not load"),
        (lambda m, folder: m["verifier"].update(gate=1.5), "verifier.gate must be in 0..1"),
        (lambda m, folder: m["verifier"].update(threshold=-0.1), "verifier.threshold must be in 0..1"),
        (lambda m, folder: m["verifier"].update(hop_seconds=0.015), "verifier.hop_seconds must be a positive"),
        (lambda m, folder: m["verifier"].pop("folder"), "'verifier.folder' is missing"),
    ],
)
def test_a_broken_verifier_is_refused_with_one_line(tiny, tmp_path, change, message):
    copy = broken_copy(tiny, tmp_path, change)
    with pytest.raises(KwsError, match=message):
        load_stream_bundle(copy)
    result = run_edge("run", "--model", copy, "--wav", tmp_path / "none.wav")
    lines = result.stderr.decode().strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and message.split()[0] in lines[0], lines


def test_a_verifier_on_other_features_is_refused(tiny, tmp_path):
    def other_features(manifest, folder):
        verifier_manifest = folder / VERIFIER_FOLDER / "manifest.json"
        values = json.loads(verifier_manifest.read_text())
        values["feature_spec"]["f_max_hz"] = 7000.0
        verifier_manifest.write_text(json.dumps(values))

    with pytest.raises(KwsError, match="reads other features than the stream"):
        load_stream_bundle(broken_copy(tiny, tmp_path, other_features))


def test_conversion_refuses_a_verifier_that_cannot_serve_before_any_work(tiny, tmp_path):
    out = tmp_path / "never"
    base = ConversionOptions(checkpoint=tiny["student"], out=out, verifier=tiny["teacher"])
    cases = [
        (dataclasses.replace(base, checkpoint=tiny["teacher"]), "needs a streaming model"),
        (dataclasses.replace(base, verifier_gate=2.0), "--verifier-gate 2.0 must be in 0..1"),
        (dataclasses.replace(base, verifier_hop_seconds=0.025), "--verifier-hop-seconds 0.025"),
        (dataclasses.replace(base, verifier=tmp_path / "missing.pt"), "--verifier"),
    ]
    for options, message in cases:
        with pytest.raises(ConversionError, match=message):
            run_conversion(options, say=print)
        assert not out.exists()


def chirp_streams(folder: Path) -> list:
    """A positive stream (three chirps, the tiny model's keyword) and a negative one, saved as the evaluation's
    streams are."""
    from train.evaluate.streams import Stream

    streams = []
    for index, (kind, keyword_at) in enumerate([("positive", (1.0, 3.6, 6.4)), ("negative", ())]):
        audio = scene(keyword_at=keyword_at)
        np.save(folder / f"{index}.npy", np.round(audio * 32767).astype(np.int16))
        spans = [(t, t + 0.5) for t in keyword_at]
        scene_info = {"noise": "none"}
        streams.append(Stream(index, kind, "tiny", "chirp", audio.size / RATE, spans, scene_info, f"{index}.npy"))
    return streams


def test_the_evaluation_reports_how_often_the_verifier_ran_on_each_kind_of_stream(tiny, tmp_path):
    from train.evaluate.cli import score_streams
    from train.evaluate.report import _verifier_line

    streams = chirp_streams(tmp_path)
    detector = StreamingDetector(tiny["out"])
    tracks, _, usage = score_streams(detector, tmp_path, streams, progress=False)
    assert set(usage) == {"negative", "positive"} and len(tracks) == 2
    # The keywords hold the gate open far longer than the noise bursts do.
    assert 0.0 <= usage["negative"]["gate_open_share"] < usage["positive"]["gate_open_share"] < 1.0
    seconds = streams[0].seconds
    assert usage["positive"]["hours"] == pytest.approx(seconds / 3600)
    windows = usage["positive"]["windows_per_hour"] * seconds / 3600
    assert windows == pytest.approx(round(windows)) and windows > 0
    assert "positive streams: the gate open" in _verifier_line("ours", usage)


def test_the_benchmark_measures_the_verifier_window_model(tiny):
    from benchmarks.cli import discover_targets
    from benchmarks.cli import measure as measure_row
    from tests.test_run_cli import EDGE_PYTHON

    targets = discover_targets(tiny["root"], tiny["manifest"], peer=False)
    (row,) = [t for t in targets if t.name == "tflite crnn int8 (verifier)"]
    assert row.model == tiny["out"] / VERIFIER_FOLDER / "model_int8.tflite"
    assert row.macs_checkpoint == tiny["teacher"] and row.environment == "edge"
    measured = measure_row(row, tiny["manifest"]["feature_spec"], 20, {"edge": EDGE_PYTHON})
    assert "not_measured" not in measured, measured
    assert 0 < measured["latency"]["p50_us"] < 1e5


def test_the_benchmark_report_adds_the_verifiers_cost_and_gives_it_no_quality(tiny):
    from benchmarks.report import merge_quality, verifier_costs

    out = tiny["out"]
    rows = [
        {"name": "tflite dscnn int8", "backend": "tflite", "model_file": str(out / "model_int8.tflite"),
         "architecture": "dscnn", "latency": {"p50_us": 14.0}},
        {"name": "tflite crnn int8 (verifier)", "backend": "tflite", "architecture": "crnn",
         "model_file": str(out / VERIFIER_FOLDER / "model_int8.tflite"), "latency": {"p50_us": 50.0},
         "macs_per_window": 852_048, "quality": "from an earlier report"},
    ]  # fmt: skip
    merged = merge_quality(rows, tiny["manifest"], None, "no report")
    assert merged[0]["quality"].startswith("not measured") and "quality" not in merged[1]
    usage = {"negative": {"windows_per_hour": 360.0, "gate_open_share": 0.004, "hours": 10.0},
             "positive": {"windows_per_hour": 7200.0, "gate_open_share": 0.1, "hours": 1.0}}  # fmt: skip
    evaluation = {"systems": {"ours (dscnn int8, streaming detector)": {"verifier": usage}}}
    negative, positive = verifier_costs(rows, evaluation)
    assert negative["cpu_us_per_audio_second"] == pytest.approx(0.1 * 50.0)  # 360 windows an hour x 50 us
    assert positive["macs_per_audio_second"] == pytest.approx(2.0 * 852_048)
    assert "0.40%" in negative["how"] and verifier_costs(rows, None) == []


def test_the_evaluation_writes_the_threshold_of_the_stage_it_measured(tiny, tmp_path):
    copy = broken_copy(tiny, tmp_path, lambda manifest, folder: None)
    write_threshold(copy, 0.73, {"target_fa_per_hour": 0.5}, section="verifier")
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["verifier"]["threshold"] == 0.73 and manifest["verifier"]["threshold_source"]["target_fa_per_hour"]
    assert manifest["detection"]["threshold"] == pytest.approx(0.5) and "threshold_source" not in manifest["detection"]
    assert deployed_threshold(load_stream_bundle(copy)) == 0.73
    result = run_edge("run", "--model", copy, "--wav", tmp_path / "none.wav")
    assert result.returncode != 0  # (no such file) but the bundle with the written threshold loaded first
    assert "none.wav" in result.stderr.decode()


def gated_copy(tiny, tmp_path: Path, gate: float) -> Path:
    (tmp_path / f"gate{gate:g}").mkdir()
    return broken_copy(tiny, tmp_path / f"gate{gate:g}", lambda manifest, _: manifest["verifier"].update(gate=gate))


def test_a_gate_sweep_from_one_lower_pass_is_each_gate_scored_on_its_own(tiny, tmp_path):
    from train.evaluate.cli import detector_curve, gate_sweep, score_streams
    from train.evaluate.report import gate_sweep_lines, operating_points, write_report
    from train.evaluate.streams import stream_audio
    from train.metrics import roc_auc

    streams = chirp_streams(tmp_path)
    deployed = DEFAULT_VERIFIER_GATE
    sweeping = StreamingDetector(tiny["out"], scoring_gate=0.05)
    assert sweeping.verifier.gate == 0.05 and sweeping.deployed_gate == deployed
    tracks, _, usage = score_streams(sweeping, tmp_path, streams, progress=False)
    own, _, own_usage = score_streams(StreamingDetector(tiny["out"]), tmp_path, streams, progress=False)
    # What the sweeping detector reports of the bundle is the bundle at its own gate, verifier usage included.
    assert usage == own_usage
    for track, alone in zip(tracks, own, strict=True):
        np.testing.assert_array_equal(track.scores, alone.scores)

    for gate in (0.05, 0.1, deployed, 0.5):
        detector = StreamingDetector(gated_copy(tiny, tmp_path, gate))
        for stream, track in zip(streams, tracks, strict=True):
            scored = detector.score(stream_audio(tmp_path, stream))
            np.testing.assert_array_equal(sweeping.at_gate(track, gate).scores, scored.scores)
            assert sweeping.usage_at_gate(track, gate) == detector.last_verifier_usage
    with pytest.raises(ValueError, match="gates from there up"):
        sweeping.at_gate(tracks[0], 0.01)

    # Clips: the first seconds of each stream, the keyword's and the other's; at each gate their peaks' ROC AUC.
    clip_audio = [stream_audio(tmp_path, s)[start : start + 2 * RATE] for s in streams for start in (0, 3 * RATE)]
    labels = np.array([True, True, False, False])
    clip_tracks = [sweeping.score(audio) for audio in clip_audio]
    sweep = gate_sweep(sweeping, streams, tracks, (0.05, deployed, 0.5), SPEC.clip_seconds, (clip_tracks, labels))
    own_peaks = [float(StreamingDetector(tiny["out"]).score(audio).scores.max()) for audio in clip_audio]
    assert sweep["gates"][1]["clip_roc_auc"] == pytest.approx(roc_auc(np.array(own_peaks), labels))
    assert [row["gate"] for row in sweep["gates"]] == [0.05, deployed, 0.5]
    assert sweep["scored_with_gate"] == 0.05 and sweep["deployed_gate"] == deployed
    shares = [row["verifier"]["negative"]["gate_open_share"] for row in sweep["gates"]]
    windows = [row["verifier"]["negative"]["windows_per_hour"] for row in sweep["gates"]]
    assert shares == sorted(shares, reverse=True) and windows == sorted(windows, reverse=True) and shares[0] > shares[2]
    at_deployed = sweep["gates"][1]["verifier"]
    assert at_deployed["negative"]["gate_open_share"] == pytest.approx(own_usage["negative"]["gate_open_share"])
    table = "\n".join(gate_sweep_lines("ours", sweep, hours=2.0))
    assert f"| {deployed:g} (the bundle's) |" in table and "one scoring pass with the gate at 0.05" in table

    curve, _, _ = detector_curve(sweeping, streams, tracks, SPEC.clip_seconds)
    system = {"operating_points": operating_points(curve), "negative_hours": curve.negative_hours,
              "clip_roc_auc": 1.0, "rtf": 0.001, "gate_sweep": sweep}  # fmt: skip
    report = {"keyword": "chirp", "bundle": str(tiny["out"]), "detector": "streaming", "systems": {"ours": system},
              "streams": {"positives": 3, "positive_hours": 0.01, "negative_hours": curve.negative_hours}}  # fmt: skip
    paths = write_report(report, {"ours": curve}, tmp_path / "report")
    assert paths["gates_plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(the bundle's) |" in paths["markdown"].read_text() and "](gates.png)" in paths["markdown"].read_text()


def test_a_gate_sweep_needs_a_verifier(tiny, tmp_path):
    alone = broken_copy(tiny, tmp_path, lambda manifest, folder: manifest.pop("verifier"))
    with pytest.raises(ValueError, match="no verifier, so no gate to sweep"):
        StreamingDetector(alone, scoring_gate=0.1)
