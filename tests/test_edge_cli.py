"""The edge CLI as a black box: `.venv-edge/bin/python -m edge_runtime` in a subprocess, on real WAV files and a
real converted bundle. The edge venv must exist (`make venvs`); these tests fail, never skip, without it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from edge_runtime.features import FeatureSpec, MelFrontEnd
from edge_runtime.interpreter import TfliteModel
from edge_runtime.manifest import MANIFEST_NAME
from tests.tiny import keyword_sound, other_sound, shared_dscnn_bundle

REPO = Path(__file__).resolve().parents[1]
EDGE_PYTHON = REPO / ".venv-edge" / "bin" / "python"
SPEC = FeatureSpec()
RATE = SPEC.sample_rate


@pytest.fixture(scope="module")
def edge_python() -> Path:
    if not EDGE_PYTHON.is_file():
        pytest.fail(f"{EDGE_PYTHON} is missing: run `make venvs` to create the edge environment")
    return EDGE_PYTHON


@pytest.fixture(scope="module")
def bundle() -> Path:
    return shared_dscnn_bundle()


def run_edge(python: Path, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "edge_runtime", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def placed(sound: np.ndarray, seconds: float, at: list[float]) -> np.ndarray:
    audio = np.zeros(int(RATE * seconds), np.float32)
    for start in at:
        audio[int(RATE * start) : int(RATE * start) + len(sound)] = sound
    return audio


@pytest.fixture(scope="module")
def wavs(tmp_path_factory) -> dict[str, Path]:
    """Keyword and other sounds at three rates, channel layouts and sample formats."""
    folder = tmp_path_factory.mktemp("wavs")
    rng = np.random.default_rng(7)
    chirp, noise = keyword_sound(rng), other_sound(rng)
    keyword_clip, other_clip = placed(chirp, 1.0, [0.25]), placed(noise, 1.0, [0.25])

    def at_rate(audio: np.ndarray, rate: int) -> np.ndarray:  # the test's own resampling, by interpolation
        times = np.arange(int(len(audio) * rate / RATE)) / rate
        return np.interp(times, np.arange(len(audio)) / RATE, audio).astype(np.float32)

    files = {
        "keyword_16k_int16": (keyword_clip, RATE, "PCM_16", 1),
        "other_16k_int16": (other_clip, RATE, "PCM_16", 1),
        "keyword_8k_stereo_24bit": (at_rate(keyword_clip, 8000), 8000, "PCM_24", 2),
        "keyword_44k1_float": (at_rate(keyword_clip, 44100), 44100, "FLOAT", 1),
        "other_44k1_float": (at_rate(other_clip, 44100), 44100, "FLOAT", 1),
        "two_keywords_16k": (placed(chirp, 5.0, [1.0, 3.2]), RATE, "PCM_16", 1),
        "short_keyword_16k": (chirp[: int(0.45 * RATE)], RATE, "PCM_16", 1),
        "keywords_44k1_stereo": (at_rate(placed(chirp, 7.3, [0.4, 2.1, 4.0, 6.75]), 44100), 44100, "PCM_16", 2),
    }
    paths = {}
    for name, (audio, rate, subtype, channels) in files.items():
        paths[name] = folder / f"{name}.wav"
        data = np.stack([audio] * channels, axis=1) if channels > 1 else audio
        soundfile.write(paths[name], data, rate, subtype=subtype)
    return paths


def test_edge_venv_has_no_torch_or_tensorflow_and_the_cli_loads_neither(edge_python, bundle, wavs):
    probe = (
        "import importlib.util, sys\n"
        "from edge_runtime.cli import main\n"
        f"status = main(['score', '--model', {str(bundle)!r}, {str(wavs['keyword_16k_int16'])!r}])\n"
        "heavy = [name for name in ('torch', 'tensorflow', 'onnx', 'onnxruntime') if name in sys.modules]\n"
        "installed = [n for n in ('torch', 'tensorflow') if importlib.util.find_spec(n)]\n"
        "print(status, heavy, installed)\n"
    )
    result = subprocess.run([str(edge_python), "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 [] []"


def test_score_prints_one_json_line_per_file_with_the_path_as_given(edge_python, bundle, wavs):
    names = [
        "keyword_16k_int16",
        "other_16k_int16",
        "keyword_8k_stereo_24bit",
        "keyword_44k1_float",
        "other_44k1_float",
    ]
    relative = [os.path.relpath(wavs[name], REPO) for name in names]
    result = run_edge(edge_python, "score", "--model", bundle, *relative)
    assert result.returncode == 0 and result.stderr == ""
    records = json_lines(result.stdout)
    assert [r["file"] for r in records] == [str(p) for p in relative]
    assert all(set(r) == {"file", "score"} and 0.0 <= r["score"] <= 1.0 for r in records)
    scores = dict(zip(names, (r["score"] for r in records), strict=True))
    for name in names:  # the tiny model learned the chirp; every format and rate must still show it
        assert (scores[name] > 0.9) if name.startswith("keyword") else (scores[name] < 0.5), scores


def test_one_clip_score_equals_the_model_on_the_clip_features(edge_python, bundle, wavs):
    """Whole-file scoring of a 1 s file is exactly one window: the model on the front-end's features."""
    path = wavs["keyword_16k_int16"]
    audio, rate = soundfile.read(path, dtype="float32")
    assert rate == RATE and len(audio) == SPEC.clip_samples
    expected = TfliteModel(bundle / "model_int8.tflite").probabilities(MelFrontEnd(SPEC).frames(audio))[1]
    result = run_edge(edge_python, "score", "--model", bundle, path)
    assert json_lines(result.stdout)[0]["score"] == pytest.approx(float(expected), abs=1e-6)


def test_short_file_is_padded_to_one_clip(edge_python, bundle, wavs):
    result = run_edge(edge_python, "score", "--model", bundle, wavs["short_keyword_16k"])
    assert result.returncode == 0 and json_lines(result.stdout)[0]["score"] > 0.9


def test_detect_gives_one_detection_per_keyword_at_its_time(edge_python, bundle, wavs):
    path = wavs["two_keywords_16k"]
    result = run_edge(edge_python, "detect", "--model", bundle, path)
    assert result.returncode == 0 and result.stderr == ""
    detections = json_lines(result.stdout)
    assert [set(d) for d in detections] == [{"file", "time_s", "score"}] * 2
    assert all(d["file"] == str(path) and d["score"] >= 0.5 for d in detections)
    # A keyword at START..START+0.5 s is fully in view for windows ending START+0.5 .. START+1.0.
    for detection, start in zip(detections, (1.0, 3.2), strict=True):
        assert start + 0.3 <= detection["time_s"] <= start + 1.2, detections
    no_refractory = json_lines(run_edge(edge_python, "detect", "--model", bundle, path, "--refractory", "0").stdout)
    assert len(no_refractory) > 2
    assert run_edge(edge_python, "detect", "--model", bundle, path, "--threshold", "1").stdout == ""


def test_edge_runtime_folder_alone_runs_outside_the_repository(edge_python, bundle, wavs, tmp_path):
    shutil.copytree(REPO / "edge_runtime", tmp_path / "edge_runtime", ignore=shutil.ignore_patterns("__pycache__"))
    path = wavs["keyword_44k1_float"]
    alone = run_edge(edge_python, "score", "--model", bundle, path, cwd=tmp_path)
    in_repo = run_edge(edge_python, "score", "--model", bundle, path)
    assert alone.returncode == 0, alone.stderr
    assert alone.stdout == in_repo.stdout and json_lines(alone.stdout)[0]["score"] > 0.9


def damaged_files(folder: Path) -> dict[str, Path]:
    good = folder / "good.wav"
    soundfile.write(good, np.zeros(RATE, np.float32), RATE, subtype="PCM_16")
    corrupt = folder / "corrupt.wav"
    corrupt.write_bytes(b"RIFF" + b"\x10\x00\x00\x00" + b"WAVE" + bytes(range(200)))
    empty = folder / "empty.wav"
    empty.write_bytes(b"")
    text = folder / "notes.wav"
    text.write_text("this is a text file\n")
    return {"corrupt": corrupt, "empty": empty, "text": text, "missing": folder / "missing.wav"}


@pytest.mark.parametrize("kind", ["corrupt", "empty", "text", "missing"])
def test_bad_audio_file_is_one_error_line_and_exit_2(edge_python, bundle, tmp_path, kind):
    path = damaged_files(tmp_path)[kind]
    result = run_edge(edge_python, "score", "--model", bundle, path)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.stderr


def test_good_files_are_still_scored_next_to_bad_ones(edge_python, bundle, wavs, tmp_path):
    bad = damaged_files(tmp_path)
    files = [wavs["keyword_16k_int16"], bad["corrupt"], wavs["other_16k_int16"], bad["empty"]]
    result = run_edge(edge_python, "score", "--model", bundle, *files)
    assert result.returncode == 2
    assert [r["file"] for r in json_lines(result.stdout)] == [str(files[0]), str(files[2])]
    assert len(result.stderr.splitlines()) == 2 and "Traceback" not in result.stderr


def broken_bundle(bundle: Path, folder: Path, kind: str) -> Path:
    target = folder / "bundle"
    shutil.copytree(bundle, target)
    manifest_path = target / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    if kind == "tampered":
        model = target / "model_int8.tflite"
        model.write_bytes(model.read_bytes()[:-1] + b"\x00")
    elif kind == "missing-model":
        (target / "model_int8.tflite").unlink()
    elif kind == "sample-rate":
        manifest["feature_spec"]["sample_rate"] = 8000
    elif kind == "shape":
        manifest["model"]["input"]["shape"] = [1, 40, 98]
    manifest_path.write_text(json.dumps(manifest))
    return target


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("tampered", "is not the one in the manifest: expected sha256"),
        ("missing-model", "model_int8.tflite does not exist"),
        ("sample-rate", "feature_spec is not usable: invalid feature spec: mel band 20.0..7600.0 Hz must lie within"),
        ("shape", "feature_spec makes windows of shape [1, 98, 40] (1.0 s at 16000 Hz, 40 mels), but model.input"),
    ],
)
def test_bad_bundle_is_one_clear_error_line_and_exit_2(edge_python, bundle, wavs, tmp_path, kind, message):
    broken = broken_bundle(bundle, tmp_path, kind)
    result = run_edge(edge_python, "detect", "--model", broken, wavs["keyword_16k_int16"])
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_help_explains_options_and_defaults(edge_python):
    result = run_edge(edge_python, "detect", "--help")
    text = " ".join(result.stdout.split())
    assert result.returncode == 0
    for fragment in ("--threshold", "manifest's detection.threshold", "--refractory", "--threads", "(default: 1)"):
        assert fragment in text


def test_detection_rule_on_known_scores():
    """Peak within the refractory span is reported; a window exactly refractory_seconds after the peak may fire."""
    from edge_runtime.detector import WindowScores, find_detections

    times = np.round(np.arange(1, 31) * 0.1, 6)
    scores = np.zeros(30, np.float32)
    scores[[4, 5, 6]] = [0.6, 0.9, 0.7]  # one keyword: peak at 0.6 s
    scores[15] = 0.8  # 1.0 s after the peak: a new detection
    scores[18] = 0.95  # within 1 s of that one: raises its peak
    scores[29] = 0.4  # below threshold
    windows = WindowScores(times_s=times, scores=scores)
    found = [(d.time_s, round(d.score, 2)) for d in find_detections(windows, 0.5, 1.0)]
    assert found == [(0.6, 0.9), (1.9, 0.95)]
    assert len(find_detections(windows, 0.5, 0.0)) == 5
    assert find_detections(windows, 0.99, 1.0) == []


def test_windows_cover_the_end_of_the_file():
    from edge_runtime.detector import window_starts

    assert window_starts(98, 98, 10).tolist() == [0]
    assert window_starts(118, 98, 10).tolist() == [0, 10, 20]
    assert window_starts(125, 98, 10).tolist() == [0, 10, 20, 27]


WHOLE_FILE_PATH = """
import json, sys
from edge_runtime.audio_io import read_audio
from edge_runtime.detector import KeywordScorer, find_detections
from edge_runtime.manifest import load_bundle

command, bundle, files = sys.argv[1], sys.argv[2], sys.argv[3:]
scorer = KeywordScorer(load_bundle(bundle))
for file in files:
    windows = scorer.window_scores(read_audio(file, scorer.spec.sample_rate))  # whole, as score/detect used to
    if command == "score":
        print(json.dumps({"file": file, "score": round(windows.peak, 6)}))
    for found in find_detections(windows, 0.5, 1.0) if command == "detect" else []:
        print(json.dumps({"file": file, "time_s": round(found.time_s, 3), "score": round(found.score, 6)}))
"""


def test_block_by_block_score_and_detect_equal_the_whole_file_path(edge_python, bundle, wavs):
    """`score`/`detect` read files in blocks; their lines are exactly those of scoring each file held whole."""
    names = ["keyword_16k_int16", "short_keyword_16k", "keyword_8k_stereo_24bit", "keyword_44k1_float"]
    files = [str(wavs[name]) for name in (*names, "two_keywords_16k", "keywords_44k1_stereo")]
    for command in ("score", "detect"):
        streamed = run_edge(edge_python, command, "--model", bundle, *files)
        whole = subprocess.run(
            [str(edge_python), "-c", WHOLE_FILE_PATH, command, str(bundle), *files],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert streamed.returncode == whole.returncode == 0, streamed.stderr + whole.stderr
        assert streamed.stdout == whole.stdout and streamed.stdout
    assert len(json_lines(streamed.stdout)) >= 6  # detect: the 44.1 kHz stereo file's four keywords among them


def test_window_scores_do_not_depend_on_the_block_size(bundle, wavs):
    from edge_runtime.audio_io import read_audio, read_audio_blocks
    from edge_runtime.detector import KeywordScorer
    from edge_runtime.manifest import load_bundle

    scorer = KeywordScorer(load_bundle(bundle))
    for name in ("keywords_44k1_stereo", "short_keyword_16k", "keyword_8k_stereo_24bit"):
        whole = scorer.window_scores(read_audio(wavs[name], RATE))
        for block_seconds in (0.013, 0.5, 100.0):
            pairs = list(scorer.stream_windows(read_audio_blocks(wavs[name], RATE, block_seconds)))
            np.testing.assert_array_equal([time for time, _ in pairs], whole.times_s)
            np.testing.assert_array_equal(np.array([score for _, score in pairs], np.float32), whole.scores)


PEAK_RSS = """
import resource, subprocess, sys
result = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
sys.stderr.write(result.stderr)
print(result.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, len(result.stdout.splitlines()))
"""
LONG_MINUTES = 30
RSS_GROWTH_LIMIT_MB = 20  # the long file may cost this much more than a 1 s file; whole it would be 115 MB of
# float32 samples alone (and the whole-file path peaked at 1.7 GB on it: frames, FFTs and resampling of it all)


def peak_rss_mb(python: Path, *args) -> tuple[float, int]:
    """Peak RSS of `python -m edge_runtime ARGS` (ru_maxrss of the only child of a fresh wrapper) and its lines."""
    wrapper = subprocess.run(
        [str(python), "-c", PEAK_RSS, str(python), "-m", "edge_runtime", *map(str, args)],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    status, max_rss_kb, lines = map(int, wrapper.stdout.split())
    assert status == 0 and wrapper.returncode == 0, wrapper.stderr
    return max_rss_kb / 1024, lines


def test_long_file_is_scored_in_bounded_memory(edge_python, bundle, wavs, tmp_path):
    """30 minutes of quiet noise: peak RSS of `score` and `detect` stays within RSS_GROWTH_LIMIT_MB of a 1 s file."""
    long_wav = tmp_path / "long.wav"
    rng = np.random.default_rng(0)
    with soundfile.SoundFile(long_wav, "w", RATE, 1, "PCM_16") as wav:  # written in blocks: the test stays small too
        for _ in range(LONG_MINUTES * 6):
            wav.write((rng.standard_normal(RATE * 10) * 3).astype("<i2"))
    assert long_wav.stat().st_size > LONG_MINUTES * 60 * RATE * 2
    short_mb, _ = peak_rss_mb(edge_python, "score", "--model", bundle, wavs["keyword_16k_int16"])
    whole_float32_mb = LONG_MINUTES * 60 * RATE * 4 / 2**20
    for command in ("score", "detect"):
        long_mb, lines = peak_rss_mb(edge_python, command, "--model", bundle, long_wav)
        print(f"{command}: peak RSS {long_mb:.1f} MB ({LONG_MINUTES} min), {short_mb:.1f} MB (1 s)", file=sys.stderr)
        assert long_mb < short_mb + RSS_GROWTH_LIMIT_MB < whole_float32_mb
        assert command == "detect" or lines == 1


def test_silence_and_clipped_audio_score_cleanly(edge_python, bundle, tmp_path):
    """Digital silence and audio clipped at full scale (driven past +-1 and clipped) are valid input: a finite
    score in 0..1 for each file, no detection on silence or clipped noise, exit 0, nothing on stderr."""
    rng = np.random.default_rng(11)
    silence = tmp_path / "silence.wav"
    soundfile.write(silence, np.zeros(3 * RATE, np.int16), RATE, subtype="PCM_16")
    clipped_noise = tmp_path / "clipped_noise.wav"
    soundfile.write(clipped_noise, np.clip(rng.normal(0, 4.0, 3 * RATE), -1, 1), RATE, subtype="PCM_16")
    clipped_keyword = tmp_path / "clipped_keyword.wav"
    sound = keyword_sound(rng)
    loud = np.clip(placed(sound, 2.0, [0.5]) * 1.5 / np.abs(sound).max(), -1, 1)
    soundfile.write(clipped_keyword, loud, RATE, subtype="PCM_16")

    result = run_edge(edge_python, "score", "--model", bundle, silence, clipped_noise, clipped_keyword)
    assert result.returncode == 0 and result.stderr == ""
    scores = {Path(line["file"]).name: line["score"] for line in json_lines(result.stdout)}
    assert all(np.isfinite(score) and 0.0 <= score <= 1.0 for score in scores.values())
    assert scores["silence.wav"] < 0.5 and scores["clipped_noise.wav"] < 0.5
    detections = run_edge(edge_python, "detect", "--model", bundle, silence, clipped_noise)
    assert detections.returncode == 0 and detections.stdout == "" and detections.stderr == ""
