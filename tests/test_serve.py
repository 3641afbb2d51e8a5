"""The web API as a black box: `python -m serve` started as a subprocess on loopback with the tiny bundle, whose
keyword is a rising chirp. Scores of keyword and noise WAVs, the zoo listing and provider, the upload limit, a bad
WAV, and WebSocket streaming through the edge runtime's streaming detector (a detection for the chirp, none for
noise)."""

from __future__ import annotations

import http.client
import io
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile
from websockets.sync.client import connect

from tests.tiny import REPO, SPEC, keyword_sound, other_sound, shared_dscnn_bundle

RATE = SPEC.sample_rate
MAX_UPLOAD_MB = 1
START_TIMEOUT_S = 30


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def clip(make, seconds: float = 2.0, at: float = 0.6, seed: int = 3) -> np.ndarray:
    """Digital silence with one sound (the tiny model's background) starting `at` seconds in."""
    audio = np.zeros(int(seconds * RATE), np.float32)
    sound = make(np.random.default_rng(seed))
    audio[int(at * RATE) : int(at * RATE) + len(sound)] = sound
    return audio


def wav_bytes(audio: np.ndarray, rate: int = RATE, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    soundfile.write(buffer, audio, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def start_server(bundle: Path, port: int, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "serve", "--model", str(bundle), "--models-root", str(bundle.parent)]
    command += ["--port", str(port), "--max-upload-mb", str(MAX_UPLOAD_MB), "--log-level", "warning", *extra]
    server = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"server exited: {server.stdout.read().decode()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=1).close()
            return server
        except OSError:
            time.sleep(0.2)
    server.kill()
    raise RuntimeError("server did not start in time")


@pytest.fixture(scope="module")
def server():
    bundle = shared_dscnn_bundle()
    port = free_port()
    process = start_server(bundle, port)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def post_wav(base: str, data: bytes, query: str = "") -> tuple[int, dict]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="clip.wav"\r\n'
            "Content-Type: audio/wav\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        f"http://{base}/v1/score{query}", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_keyword_wav_scores_high_and_noise_low_at_any_rate(server):
    status, keyword = post_wav(server, wav_bytes(clip(keyword_sound)))
    assert status == 200 and keyword["detected"], keyword
    import soxr

    resampled = soxr.resample(clip(keyword_sound), RATE, 44100)
    status, at_44k = post_wav(server, wav_bytes(np.stack([resampled, resampled], axis=1), 44100, "FLOAT"))
    assert status == 200 and at_44k["detected"] and abs(at_44k["probability"] - keyword["probability"]) < 0.1
    status, noise = post_wav(server, wav_bytes(clip(other_sound)))
    assert status == 200 and not noise["detected"] and noise["probability"] < keyword["probability"], noise
    assert keyword["provider"] == noise["provider"] and keyword["keyword"] == "sheila"


def test_models_lists_the_zoo_with_metrics_and_the_provider(server):
    zoo = get_json(f"http://{server}/v1/models")
    names = [model["name"] for model in zoo["models"]]
    assert zoo["default"] in names
    assert zoo["provider"] in ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    default = next(model for model in zoo["models"] if model["name"] == zoo["default"])
    assert default["streaming"] and default["metrics"] and default["keyword"] == "sheila"
    status, chosen = post_wav(server, wav_bytes(clip(keyword_sound)), f"?model={zoo['default']}")
    assert status == 200 and chosen["model"] == zoo["default"]


def test_unknown_model_and_paths_are_refused(server):
    status, body = post_wav(server, wav_bytes(clip(keyword_sound)), "?model=../../etc")
    assert status == 404 and "unknown model '../../etc'" in body["detail"]


def test_oversize_upload_is_413_with_a_clear_message(server):
    # The server answers from the Content-Length alone, before reading the body, and closes the connection. A
    # client still sending a large body then races that close (a broken pipe instead of the answer, now and then),
    # so this client announces the oversize body and waits for the answer, as one sending "Expect: 100-continue"
    # would.
    size = int(MAX_UPLOAD_MB * 2**20) + 1
    host, port = server.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.putrequest("POST", "/v1/score")
        connection.putheader("Content-Type", "multipart/form-data; boundary=x")
        connection.putheader("Content-Length", str(size))
        connection.endheaders()
        response = connection.getresponse()
        status, body = response.status, json.loads(response.read())
    finally:
        connection.close()
    assert status == 413 and f"upload of {size} bytes is larger than the limit" in body["detail"]
    assert "--max-upload-mb" in body["detail"]


def test_bad_wav_is_400_with_one_line(server):
    status, body = post_wav(server, b"RIFF0000WAVEnot really a wav file")
    assert status == 400 and body["detail"].startswith("clip.wav: ") and "\n" not in body["detail"]


def stream(server: str, audio: np.ndarray, fmt: str = "f32", frame_s: float = 0.1) -> list[dict]:
    pcm = audio.astype("<f4") if fmt == "f32" else np.round(audio * 32767).astype("<i2")
    frame = int(frame_s * RATE)
    messages = []
    with connect(f"ws://{server}/v1/stream?format={fmt}") as websocket:
        messages.append(json.loads(websocket.recv(timeout=10)))
        for start in range(0, len(pcm), frame):
            websocket.send(pcm[start : start + frame].tobytes())
        websocket.send(np.zeros(RATE // 2, "<f4" if fmt == "f32" else "<i2").tobytes())  # flush the last steps
        websocket.send("end")
        for raw in websocket:
            messages.append(json.loads(raw))
    assert messages[-1]["type"] == "end"
    return messages


@pytest.mark.parametrize("fmt", ["f32", "i16"])
def test_websocket_streams_a_detection_for_the_keyword_only(server, fmt):
    messages = stream(server, clip(keyword_sound, seconds=3.0), fmt)
    assert messages[0]["type"] == "ready" and messages[0]["sample_rate"] == RATE
    scores = [m for m in messages if m["type"] == "score"]
    detections = [m for m in messages if m["type"] == "detection"]
    assert len(scores) > 10 and len(detections) == 1, messages
    assert 0.6 <= detections[0]["time_s"] <= 0.6 + 1.2 and detections[0]["keyword"] == "sheila"
    noise = stream(server, clip(other_sound, seconds=3.0), fmt)
    assert [m for m in noise if m["type"] == "detection"] == []


def test_websocket_refuses_bad_format_and_oversize_frames(server):
    with connect(f"ws://{server}/v1/stream?format=mp3") as websocket:
        assert "unknown format 'mp3'" in json.loads(websocket.recv(timeout=10))["message"]
    with connect(f"ws://{server}/v1/stream") as websocket:
        websocket.recv(timeout=10)
        websocket.send(np.zeros(2 * RATE, "<f4").tobytes())
        assert "at most" in json.loads(websocket.recv(timeout=10))["message"]


def test_cli_help_and_bad_input():
    help_text = subprocess.run([sys.executable, "-m", "serve", "--help"], cwd=REPO, capture_output=True, text=True)
    for option in ("--model", "--models-root", "--host", "--port", "--max-upload-mb", "127.0.0.1", "8080"):
        assert option in help_text.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "serve", "--model", "/no/such/bundle", "--port", str(free_port())],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and bad.stderr.startswith("error: --model /no/such/bundle: not a folder")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_providers_are_tried_best_first_and_fall_back_to_cpu():
    from serve.providers import candidate_providers, open_session

    offered = ["CPUExecutionProvider", "CUDAExecutionProvider", "AzureExecutionProvider", "TensorrtExecutionProvider"]
    assert candidate_providers(offered) == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    assert candidate_providers([]) == ["CPUExecutionProvider"]
    # Claimed but unusable providers (no GPU or no TensorRT here) fall through to the next, and CPU always runs.
    with warnings.catch_warnings():  # onnxruntime warns about each provider this build lacks
        warnings.simplefilter("ignore")
        _, used = open_session(shared_dscnn_bundle() / "model.onnx", available=offered)
    import onnxruntime

    assert used in onnxruntime.get_available_providers()
