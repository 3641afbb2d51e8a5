"""The microphone source for real: PyAudio -> PortAudio -> ALSA, with a capture device the test defines.

`ALSA_CONFIG_PATH` loads the system's alsa.conf plus a test file that defines the PCM `kwstest`: ALSA's `file`
plugin over the `null` plugin, whose capture data is read from a raw file holding the test scene (keywords at
known times). PortAudio lists it as an input device like any microphone; nothing in PyAudio is mocked. The null
device is not paced in real time, so capture runs as fast as the runtime reads, and `--duration` ends the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soxr

from edge_runtime.errors import KwsError
from edge_runtime.microphone import choose_format, pick_device
from tests.test_run_cli import (
    EDGE_PYTHON,
    KEYWORD_AT,
    RATE,
    SCENE_SECONDS,
    assert_one_per_keyword,
    detections,
    pcm16,
    run_edge,
    scene,
)
from tests.tiny import REPO, shared_dscnn_bundle

SYSTEM_ALSA_CONFIG = Path("/usr/share/alsa/alsa.conf")
DEVICE = "kwstest"
NATIVE_RATE = 48000


def alsa_env(folder: Path, audio: np.ndarray, rate: int) -> dict:
    """Environment whose ALSA has one extra capture PCM, DEVICE, delivering `audio` (16-bit mono at `rate`)."""
    if not SYSTEM_ALSA_CONFIG.is_file():
        pytest.fail(f"{SYSTEM_ALSA_CONFIG} is missing: install libasound2 (portaudio19-dev pulls it in)")
    raw = folder / f"capture_{rate}.raw"
    raw.write_bytes(pcm16(audio))
    config = folder / f"asoundrc_{rate}"
    config.write_text(
        f'pcm.{DEVICE} {{\n  type file\n  slave.pcm "null"\n  file "/dev/null"\n  infile "{raw}"\n  format "raw"\n}}\n'
    )
    return dict(os.environ, ALSA_CONFIG_PATH=f"{SYSTEM_ALSA_CONFIG}:{config}")


@pytest.fixture(scope="module")
def bundle() -> Path:
    return shared_dscnn_bundle()


def test_microphone_by_name_at_the_model_rate(bundle, tmp_path):
    env = alsa_env(tmp_path, scene(), RATE)
    result = run_edge("run", "--model", bundle, "--device", DEVICE, "--duration", SCENE_SECONDS, env=env)
    assert_one_per_keyword(detections(result))
    stderr = result.stderr.decode()
    assert "listening: microphone " in stderr and f"'{DEVICE}' at {RATE} Hz;" in stderr
    assert "overflows 0" in stderr and "ALSA lib" not in stderr  # PortAudio's probing noise is silenced


def test_microphone_by_index_at_its_native_rate_is_resampled(bundle, tmp_path):
    env = alsa_env(tmp_path, soxr.resample(scene(), RATE, NATIVE_RATE), NATIVE_RATE)
    listed = run_edge("run", "--model", bundle, "--list-devices", env=env)
    index = next(line.split(":")[0] for line in listed.stdout.decode().splitlines() if f": {DEVICE} (" in line)
    result = run_edge(
        "run", "--model", bundle, "--device", index, "--mic-rate", NATIVE_RATE, "--duration", SCENE_SECONDS, env=env
    )
    assert_one_per_keyword(detections(result))
    assert f"'{DEVICE}' at {NATIVE_RATE} Hz, resampled to {RATE} Hz" in result.stderr.decode()


def has_sound_card() -> bool:
    cards = Path("/proc/asound/cards")
    return cards.is_file() and "no soundcards" not in cards.read_text()


def test_no_microphone_is_one_error_line(bundle):
    if has_sound_card():  # PortAudio lists hardware cards whatever the ALSA configuration says
        pytest.skip("this machine has a sound card: 'no microphone' cannot be produced here")
    result = run_edge("run", "--model", bundle, env=dict(os.environ, ALSA_CONFIG_PATH=str(SYSTEM_ALSA_CONFIG)))
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "error: no microphone: PortAudio finds no audio input device (is one plugged in and is this user in the "
        "'audio' group?)"
    ]


def test_unknown_device_lists_the_input_devices(bundle, tmp_path):
    env = alsa_env(tmp_path, scene(keyword_at=(), other_at=(), seconds=1.0), RATE)
    result = run_edge("run", "--model", bundle, "--device", "no-such-mic", env=env)
    lines = result.stderr.decode().splitlines()
    assert result.returncode == 2 and len(lines) == 1
    assert lines[0].startswith("error: no input device matches --device 'no-such-mic'; input devices: ")
    assert f"'{DEVICE}'" in lines[0]


def test_rate_choice_falls_back_to_the_native_rate_and_to_stereo():
    device = {"index": 3, "name": "USB mic", "channels": 2, "rate": 44100}
    assert choose_format(lambda rate, channels: True, device, RATE, None) == (RATE, 1)
    assert choose_format(lambda rate, channels: rate == 44100, device, RATE, None) == (44100, 1)
    assert choose_format(lambda rate, channels: rate == 44100 and channels == 2, device, RATE, None) == (44100, 2)
    assert choose_format(lambda rate, channels: True, device, RATE, 48000) == (48000, 1)
    with pytest.raises(KwsError, match="accepts neither 16000 Hz nor its native 44100 Hz"):
        choose_format(lambda rate, channels: False, device, RATE, None)
    devices = [device, {"index": 5, "name": "Default", "channels": 1, "rate": 48000}]
    assert pick_device(devices, None, 5)["index"] == 5 and pick_device(devices, "usb", None)["index"] == 3
    assert pick_device(devices, "5", None)["name"] == "Default"
    with pytest.raises(KwsError, match="no microphone"):
        pick_device([], None, None)


CHUNK = RATE // 10  # samples per microphone read in the reconnect scripts (100 ms)


def reconnect_script(injection: str) -> str:
    """A MicrophoneSource on the real PortAudio device whose `_open`/`_read` the `injection` wraps; the script
    prints its backoff waits, reconnect count and chunk sizes, then its log lines."""
    return f"""
import sys, threading
from edge_runtime.microphone import DeviceLost, MicrophoneSource

logs, waits = [], []
source = MicrophoneSource(sys.argv[1], {RATE}, {CHUNK}, logs.append, retry_initial_s=0.01, retry_max_s=0.03)
real_open, real_read = source._open, source._read
{injection}
class RecordingStop(threading.Event):
    def wait(self, timeout=None):
        waits.append(timeout)
        return False

chunks = source.chunks(RecordingStop())
got = [next(chunks) for _ in range(3)]
source.close()
print(waits, source.reconnects, [len(c) for c in got])
print("\\n".join(logs))
"""


def run_reconnect_script(tmp_path, injection: str) -> list[str]:
    env = alsa_env(tmp_path, scene(keyword_at=(), other_at=(), seconds=2.0), RATE)
    result = subprocess.run(
        [str(EDGE_PYTHON), "-c", reconnect_script(injection), DEVICE], cwd=REPO, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


LOST_THEN_UNAVAILABLE = """
opens, reads = [], []

def flaky_open():  # the device is gone for three attempts after it was lost
    opens.append(1)
    if len(opens) <= 3:
        raise DeviceLost("device unavailable")
    real_open()

def flaky_read():  # the second read fails as an unplugged USB microphone does
    reads.append(1)
    if len(reads) == 2:
        raise DeviceLost("stream error")
    return real_read()

source._open, source._read = flaky_open, flaky_read
"""


def test_a_lost_microphone_is_reopened_with_backoff(tmp_path):
    """Real PortAudio device; only the failure is injected: the stream fails once, reopening fails three times."""
    lines = run_reconnect_script(tmp_path, LOST_THEN_UNAVAILABLE)
    assert lines[0] == f"[0.01, 0.02, 0.03] 1 {[CHUNK] * 3}"  # doubling, capped at retry_max_s
    assert lines[1] == "warning: microphone lost (stream error); reopening"
    assert lines[2] == "warning: microphone not available (device unavailable); retrying in 0.01 s"
    assert lines[-1].startswith("microphone back: microphone ") and f"'{DEVICE}' at {RATE} Hz" in lines[-1]


UNPLUG_PLUGIN_SOURCE = REPO / "tests" / "kws_unplug_pcm.c"


def unplug_env(folder: Path, audio: np.ndarray, fail_after_s: float, gone_s: float) -> dict:
    """Environment whose ALSA has the capture PCM DEVICE from tests/kws_unplug_pcm.c: `audio` (looped), unplugged
    after `fail_after_s` seconds of it (reads fail with ENODEV), not openable for `gone_s`, then back."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None or not Path("/usr/include/alsa/pcm_external.h").is_file():
        pytest.fail("building the test ALSA plugin needs gcc and libasound2-dev (pulled in by portaudio19-dev)")
    plugin = folder / "libasound_module_pcm_kwsunplug.so"
    build = subprocess.run(
        [compiler, "-shared", "-fPIC", "-DPIC", "-O1", "-o", str(plugin), str(UNPLUG_PLUGIN_SOURCE), "-lasound"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    raw = folder / "capture.raw"
    raw.write_bytes(pcm16(audio))
    config = folder / "asoundrc_unplug"
    config.write_text(
        f'pcm_type.kwsunplug {{\n  lib "{plugin}"\n}}\n'
        f'pcm.{DEVICE} {{\n  type kwsunplug\n  infile "{raw}"\n  state "{folder / "unplugged_until"}"\n'
        f"  fail_after {round(fail_after_s * RATE)}\n  gone_seconds {gone_s}\n}}\n"
    )
    return dict(os.environ, ALSA_CONFIG_PATH=f"{SYSTEM_ALSA_CONFIG}:{config}")


def test_a_microphone_unplugged_mid_stream_is_reopened_and_detection_goes_on(bundle, tmp_path):
    """Nothing injected in Python: the ALSA device itself fails mid-stream (ENODEV, as an unplugged USB microphone)
    and disappears for 1 s. PortAudio's read fails, the runtime says so once, retries with backoff while the device
    is missing, reopens it, and detection goes on: no traceback, no PortAudio noise, exit 0."""
    lost_at = 5.0  # seconds of audio: after the first two keywords of the scene (1.0 and 3.6 s)
    env = unplug_env(tmp_path, scene(), fail_after_s=lost_at, gone_s=1.0)
    result = run_edge(
        "run", "--model", bundle, "--device", DEVICE, "--duration", lost_at + SCENE_SECONDS,
        "--retry-initial", "0.2", "--retry-max", "0.4", env=env,
    )  # fmt: skip
    records = detections(result)  # exit status 0
    # Reopened, the device starts its audio again: the scene's three keywords follow at stream time 5 s + T.
    assert_one_per_keyword(records, keyword_at=(*KEYWORD_AT[:2], *(lost_at + t for t in KEYWORD_AT)))
    lines = result.stderr.decode().splitlines()
    lost = [line for line in lines if line.startswith("warning: microphone lost")]
    retries = [line for line in lines if line.startswith("warning: microphone not available (")]
    back = [line for line in lines if line.startswith("microphone back: ")]
    assert lost == ["warning: microphone lost ([Errno -9999] Unanticipated host error); reopening"], lines
    assert retries and retries[0].endswith("retrying in 0.2 s")  # the device is missing for 1 s: backoff
    assert all(line.endswith(("retrying in 0.2 s", "retrying in 0.4 s")) for line in retries), retries
    assert len(back) == 1 and f"'{DEVICE}' at {RATE} Hz" in back[0]
    ours = ("listening: ", "warning: ", "microphone back: ", "summary: ", "final summary: ")
    assert all(line.startswith(ours) for line in lines), lines  # no traceback, no "Expression ... failed" noise
    assert "detections 5" in lines[-1]


FAILS_AT_ONCE = """
reads = []

def flaky_read():  # read 2 fails (the device is lost); reopened, it fails at its first read twice more
    reads.append(1)
    if len(reads) in (2, 3, 4):
        raise DeviceLost("stream error")
    return real_read()

source._read = flaky_read
"""


def test_a_device_that_fails_at_once_after_reopening_is_retried_with_backoff(tmp_path):
    """A device that opens but fails at its first read must not make a busy open/fail loop."""
    lines = run_reconnect_script(tmp_path, FAILS_AT_ONCE)
    assert lines[0] == f"[0.01, 0.02] 3 {[CHUNK] * 3}"
    assert lines[1] == "warning: microphone lost (stream error); reopening"
    assert lines[3] == "warning: microphone lost again at once (stream error); reopening in 0.01 s"
    assert lines[5] == "warning: microphone lost again at once (stream error); reopening in 0.02 s"
    assert [line.split(":")[0] for line in lines[2::2]] == ["microphone back"] * 3
