"""Faults a months-long service meets: a log disk that is full must not stop detection."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from tests.tiny import REPO, SPEC, keyword_sound, shared_dscnn_bundle

EDGE_PYTHON = REPO / ".venv-edge" / "bin" / "python"


def test_full_log_disk_is_reported_once_and_detection_goes_on(tmp_path):
    rng = np.random.default_rng(0)
    audio = np.zeros(3 * SPEC.sample_rate, dtype=np.float32)
    chirp = keyword_sound(rng)
    audio[SPEC.sample_rate : SPEC.sample_rate + chirp.size] = chirp
    wav = tmp_path / "chirp.wav"
    soundfile.write(wav, audio, SPEC.sample_rate)
    # /dev/full accepts the open and fails every write with ENOSPC, exactly like a full disk.
    result = subprocess.run(
        [str(EDGE_PYTHON), "-m", "edge_runtime", "run", "--model", str(shared_dscnn_bundle()), "--wav", str(wav),
         "--threshold", "0.05", "--log-file", "/dev/full", "--latency-log", "/dev/full", "--summary-seconds", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: cannot write")]
    assert len(warnings) == 2 and all("No space left on device" in line for line in warnings)
    assert result.stdout.strip(), "detections must still reach stdout"
    assert "final summary" in result.stderr


COMMANDS = ["train.build_data", "train.fit", "train.compress", "train.compress.report", "convert", "train.evaluate",
            "train.summary", "benchmarks", "benchmarks.soak", "edge_runtime detect"]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS)
def test_a_mistyped_option_is_one_error_line_not_a_usage_dump(command):
    python = EDGE_PYTHON if command.startswith("edge_runtime") else sys.executable
    result = subprocess.run(
        [str(python), "-m", *command.split(), "--no-such-option"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    assert lines[0].startswith(f"python -m {command}: error: ") and lines[0].endswith("(see --help)")


# Every option that counts something (threads, windows, phases) shares one type: a count below 1 is one error line.
COUNT_OPTIONS = [("convert", "--calibration-windows"), ("train.evaluate", "--phases"),
                 ("edge_runtime bench", "--threads"), ("edge_runtime run", "--threads")]  # fmt: skip


@pytest.mark.parametrize("command, option", COUNT_OPTIONS)
def test_a_count_below_one_is_refused_with_what_is_allowed(command, option):
    python = EDGE_PYTHON if command.startswith("edge_runtime") else sys.executable
    result = subprocess.run(
        [str(python), "-m", *command.split(), option, "0"],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == f"python -m {command}: error: argument {option}: must be >= 1, got 0 (see --help)"
