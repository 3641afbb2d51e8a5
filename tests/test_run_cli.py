"""`python -m edge_runtime run` as a black box: a subprocess in `.venv-edge` on a WAV file and on raw PCM piped to
its standard input, with the tiny bundle's keyword (a chirp) inserted at known times. One detection per keyword,
none for other sounds; the log file, the on-detect command, the config file, SIGTERM and bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from edge_runtime.config import SETTINGS, read_config
from tests.tiny import REPO, SPEC, keyword_sound, other_sound, shared_dscnn_bundle

EDGE_PYTHON = REPO / ".venv-edge" / "bin" / "python"
EXAMPLE_CONFIG = REPO / "deploy" / "kws-edge.toml"
RATE = SPEC.sample_rate
KEYWORD_AT = (1.0, 3.6, 6.4)  # seconds; each chirp lasts 0.5 s
OTHER_AT = (2.4, 5.2)
SCENE_SECONDS = 8.5
# A keyword starting at T is fully in view of windows ending T+0.5 .. T+1.0; the detection fires on the way up.
DETECTION_WINDOW_S = (0.0, 1.2)
PCM_FULL_SCALE = 32767


def scene(keyword_at=KEYWORD_AT, other_at=OTHER_AT, seconds=SCENE_SECONDS, seed=5) -> np.ndarray:
    """Digital silence (the tiny model's background) with chirps and noise bursts at known times."""
    rng = np.random.default_rng(seed)
    audio = np.zeros(int(seconds * RATE), np.float32)
    for start, make in [(t, keyword_sound) for t in keyword_at] + [(t, other_sound) for t in other_at]:
        sound = make(rng)
        audio[int(start * RATE) : int(start * RATE) + len(sound)] += sound
    return audio


def pcm16(audio: np.ndarray, channels: int = 1) -> bytes:
    samples = np.clip(np.round(audio * PCM_FULL_SCALE), -PCM_FULL_SCALE, PCM_FULL_SCALE).astype("<i2")
    return np.repeat(samples[:, None], channels, axis=1).tobytes()


def run_edge(*args, stdin: bytes | None = None, env: dict | None = None, timeout: float = 60, cwd: Path = REPO):
    if not EDGE_PYTHON.is_file():
        pytest.fail(f"{EDGE_PYTHON} is missing: run `make venvs` to create the edge environment")
    return subprocess.run(
        [str(EDGE_PYTHON), "-m", "edge_runtime", *map(str, args)],
        cwd=cwd,
        input=stdin,
        capture_output=True,
        timeout=timeout,
        env=env,
    )


def detections(result: subprocess.CompletedProcess) -> list[dict]:
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def assert_one_per_keyword(records: list[dict], keyword_at=KEYWORD_AT) -> None:
    assert len(records) == len(keyword_at), records
    for record, start in zip(records, keyword_at, strict=True):
        assert start + DETECTION_WINDOW_S[0] < record["time_s"] <= start + DETECTION_WINDOW_S[1], records


@pytest.fixture(scope="module")
def bundle() -> Path:
    return shared_dscnn_bundle()


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("run-wavs")
    files = {"positive": scene(), "negative": scene(keyword_at=(), other_at=(0.5, 2.4, 4.0, 6.0))}
    for name, audio in files.items():
        soundfile.write(folder / f"{name}.wav", audio, RATE, subtype="PCM_16")
    return {name: folder / f"{name}.wav" for name in files}


def test_wav_gives_one_detection_per_keyword(bundle, wavs):
    result = run_edge("run", "--model", bundle, "--wav", wavs["positive"])
    records = detections(result)
    assert_one_per_keyword(records)
    for record in records:
        assert set(record) == {"time_s", "keyword", "score", "latency_ms", "utc"}
        assert record["keyword"] == "sheila" and 0.5 <= record["score"] <= 1.0 and 0.0 < record["latency_ms"] < 1000
    stderr = result.stderr.decode()
    # All 8.5 s: 84 whole 100 ms steps, and at the end of the file the last partial one, completed with silence.
    assert stderr.startswith("listening: WAV file") and "final summary: 8.5 s audio" in stderr
    assert "Traceback" not in stderr


def test_negative_audio_gives_no_detection(bundle, wavs):
    result = run_edge("run", "--model", bundle, "--wav", wavs["negative"])
    assert detections(result) == [] and "detections 0" in result.stderr.decode()


def test_keyword_ending_with_the_input_is_detected(bundle, tmp_path):
    """A keyword that ends with the file (or with standard input) is not lost in the last, partial model step, nor
    in the smoothing: the end is followed by silence for the smoothing span, as a pause would follow it live."""
    chirp = keyword_sound(np.random.default_rng(7), seconds=0.25)  # as in test_streaming's end-of-input test
    audio = np.zeros(RATE, np.float32)
    audio[-len(chirp) :] = chirp  # without the end-of-input flush: no detection, "0.9 s audio"
    wav = tmp_path / "keyword_at_end.wav"
    soundfile.write(wav, audio, RATE, subtype="PCM_16")
    smoothing = json.loads((Path(bundle) / "manifest.json").read_text())["streaming"]["smoothing_seconds"]
    by_wav = run_edge("run", "--model", bundle, "--wav", wav)
    by_stdin = run_edge("run", "--model", bundle, "--stdin", stdin=pcm16(audio))
    for result in (by_wav, by_stdin):
        records = detections(result)
        assert len(records) == 1 and 0.75 < records[0]["time_s"] <= 1.0 + smoothing + 0.05, records
        assert "final summary: 1.0 s audio" in result.stderr.decode()


def test_stdin_pcm_gives_the_same_detections_at_any_rate(bundle, wavs):
    audio = scene()
    native = detections(run_edge("run", "--model", bundle, "--stdin", stdin=pcm16(audio)))
    assert_one_per_keyword(native)
    resampled = soxr.resample(audio, RATE, 44100)
    stereo = run_edge(
        "run", "--model", bundle, "--stdin", "--stdin-rate", 44100, "--stdin-channels", 2, stdin=pcm16(resampled, 2)
    )
    from_44k = detections(stereo)
    assert_one_per_keyword(from_44k)
    for a, b in zip(native, from_44k, strict=True):
        assert abs(a["time_s"] - b["time_s"]) <= 0.1


def test_log_file_and_on_detect_command(bundle, wavs, tmp_path):
    log_file, marks = tmp_path / "detections.jsonl", tmp_path / "marks.txt"
    script = "import os, sys; open(sys.argv[1], 'a').write(os.environ['KWS_KEYWORD'] + ' ' + os.environ['KWS_TIME_S'])"
    result = run_edge(
        "run",
        "--model",
        bundle,
        "--wav",
        wavs["positive"],
        "--log-file",
        log_file,
        "--on-detect",
        sys.executable,
        "-c",
        script,
        marks,
    )
    records = detections(result)
    assert [json.loads(line) for line in log_file.read_text().splitlines()] == records
    # One write per detection (no newline: each command appends one "keyword time" record).
    written = marks.read_text()
    assert sorted(f"sheila {r['time_s']}" for r in records) == sorted(
        "sheila " + part for part in written.split("sheila ") if part
    )


def test_sigterm_stops_cleanly_and_flushes_the_logs(bundle, tmp_path):
    latency_log = tmp_path / "latency.jsonl"
    process = subprocess.Popen(
        [str(EDGE_PYTHON), "-m", "edge_runtime", "run", "--model", str(bundle), "--stdin", "--summary-seconds", "0.5",
         "--latency-log", str(latency_log)],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    process.stdin.write(pcm16(scene(keyword_at=(0.2,), other_at=(), seconds=2.05)))  # 20 steps of 100 ms
    process.stdin.flush()  # stdin stays open: the runtime waits for more audio until the signal
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and '"audio_s": 2.0,' not in (
        latency_log.read_text() if latency_log.exists() else ""
    ):
        time.sleep(0.1)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr.decode()
    assert len(stdout.decode().splitlines()) == 1  # the keyword was detected before the signal
    summaries = [json.loads(line) for line in latency_log.read_text().splitlines()]
    assert summaries[-1]["type"] == "final summary" and summaries[-1]["audio_s"] == 2.0
    assert {"rtf", "per_hop_us", "cpu_percent", "rss_mb", "overflows", "dropped_samples"} <= set(summaries[-1])
    assert "final summary" in stderr.decode() and "Traceback" not in stderr.decode()


def test_config_file_with_command_line_overrides(bundle, wavs, tmp_path):
    config = tmp_path / "kws.toml"
    config.write_text(f'model = "{bundle}"\nwav = "{wavs["positive"]}"\nsummary_seconds = 0\nthreshold = 0.5\n')
    assert_one_per_keyword(detections(run_edge("run", "--config", config)))
    assert detections(run_edge("run", "--config", config, "--threshold", "1")) == []


def test_example_config_explains_every_setting_and_loads():
    text = EXAMPLE_CONFIG.read_text()
    for setting in SETTINGS:
        assert f"\n{setting.key} = " in text or f"\n# {setting.key} = " in text, setting.key
    lines = text.splitlines()
    for index, line in enumerate(lines):  # every key has a comment line right above it
        if "=" in line and not line.startswith("# ") or line.startswith("# ") and " = " in line[:40]:
            assert lines[index - 1].startswith("#"), line
    active = tomllib.loads(text)
    assert read_config(EXAMPLE_CONFIG) == active and "model" in active


def test_run_help_explains_every_option_and_its_default(bundle):
    result = run_edge("run", "--help")
    text = " ".join(result.stdout.decode().split())
    assert result.returncode == 0
    for setting in SETTINGS:
        assert setting.flag in text, setting.flag
    assert "--config" in text and "--list-devices" in text
    assert text.count("(default:") >= len(SETTINGS) + 2


def no_streaming_copy(bundle: Path, folder: Path) -> Path:
    target = folder / "bundle"
    target.mkdir()
    manifest = json.loads((bundle / "manifest.json").read_text())
    del manifest["streaming"]
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-bundle", "model bundle /nonexistent not found (give a folder holding manifest.json"),
        ("two-sources", "--wav and --stdin both given; choose one source"),
        ("no-model", "no model bundle: pass --model BUNDLE or set 'model' in the config file"),
        ("unknown-key", "unknown keys ['treshold']; allowed: model, wav"),
        ("bad-type", "'threads' must be int, found 'two'"),
        ("missing-command", "--on-detect command 'no-such-command-xyz' not found or not executable"),
        ("missing-wav", "no such file"),
        ("no-streaming", "has no streaming model (architecture 'dscnn'); only a dscnn streams"),
    ],
)
def test_bad_input_is_one_error_line(bundle, wavs, tmp_path, case, message):
    config = tmp_path / "c.toml"
    base = ["run", "--model", bundle]
    args = {
        "missing-bundle": ["run", "--model", "/nonexistent", "--wav", wavs["positive"]],
        "two-sources": [*base, "--wav", wavs["positive"], "--stdin"],
        "no-model": ["run", "--wav", wavs["positive"]],
        "unknown-key": [*base, "--config", config],
        "bad-type": [*base, "--config", config],
        "missing-command": [*base, "--wav", wavs["positive"], "--on-detect", "no-such-command-xyz"],
        "missing-wav": [*base, "--wav", tmp_path / "nope.wav"],
        "no-streaming": ["run", "--model", no_streaming_copy(bundle, tmp_path), "--wav", wavs["positive"]],
    }[case]
    config.write_text({"unknown-key": "treshold = 0.5\n", "bad-type": 'threads = "two"\n'}.get(case, ""))
    result = run_edge(*args, env=dict(os.environ))
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and result.stdout == b""
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
