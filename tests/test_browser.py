"""The demo page in a real headless Chromium: its fake microphone plays a WAV (Chromium's
`--use-file-for-fake-audio-capture`), the page streams it over the WebSocket, and the test reads the page through
the DevTools protocol: the tiny bundle's keyword (a chirp) makes a detection appear in the list, noise makes none."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile
from websockets.sync.client import connect

from tests.test_serve import RATE, clip, free_port, start_server
from tests.tiny import keyword_sound, other_sound, shared_dscnn_bundle

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
LISTEN_S = 12.0  # the fake microphone loops its file; a few loops of the keyword are heard in this time
START_TIMEOUT_S = 20.0
PAGE_STATE = """JSON.stringify({
  status: document.getElementById("status").textContent,
  detections: [...document.querySelectorAll("#detections li.detection")].map((li) => li.textContent),
  score: document.getElementById("score").textContent,
})"""


@pytest.fixture(scope="module")
def server():
    port = free_port()
    process = start_server(shared_dscnn_bundle(), port)
    yield f"127.0.0.1:{port}"
    process.terminate()
    process.wait(timeout=10)


def page_state(debug_port: int, url: str, deadline: float, until) -> dict:
    """Poll the page's status, score and detections over the DevTools protocol until `until(state)` or deadline."""
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list", timeout=2) as response:
                pages = [t for t in json.loads(response.read()) if t["type"] == "page" and t["url"].startswith(url)]
            if pages:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("Chromium did not open the page")
        time.sleep(0.2)
    state: dict = {}
    with connect(pages[0]["webSocketDebuggerUrl"], max_size=None) as devtools:
        for request_id in range(1, 10_000):
            devtools.send(
                json.dumps({"id": request_id, "method": "Runtime.evaluate", "params": {"expression": PAGE_STATE}})
            )
            while True:
                reply = json.loads(devtools.recv(timeout=10))
                if reply.get("id") == request_id:
                    break
            value = reply.get("result", {}).get("result", {}).get("value")
            state = json.loads(value) if value else state
            if (state and until(state)) or time.monotonic() > deadline:
                return state
            time.sleep(0.25)
    return state


def run_page(server: str, audio: np.ndarray, until) -> dict:
    assert CHROMIUM is not None, "the browser test needs Debian's chromium; install it with: make web-deps"
    with tempfile.TemporaryDirectory(prefix="kws-browser-") as folder:
        wav = Path(folder) / "microphone.wav"
        soundfile.write(wav, audio, RATE, subtype="PCM_16")
        debug_port = free_port()
        url = f"http://{server}/"
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
                f"--use-file-for-fake-audio-capture={wav}",
                "--autoplay-policy=no-user-gesture-required",
                f"--remote-debugging-port={debug_port}",
                "--remote-debugging-address=127.0.0.1",
                f"--user-data-dir={Path(folder) / 'profile'}",
                url + "?autostart=1",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: chromium's helpers go with it
        )
        try:
            return page_state(debug_port, url, time.monotonic() + START_TIMEOUT_S + LISTEN_S, until)
        finally:
            stop_process_group(browser)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop a browser and every helper it started, and wait until they are gone: a helper (crash handler, renderer)
    still writing into the profile folder would make removing the temporary folder fail."""
    group = process.pid
    os.killpg(group, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):  # the SIGKILLs below end it
        process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            break  # the whole group has exited
        time.sleep(0.05)
    process.wait(timeout=10)


def test_keyword_from_the_fake_microphone_appears_on_the_page(server):
    state = run_page(server, clip(keyword_sound, seconds=2.0), until=lambda s: s["detections"])
    assert state["status"].startswith("listening"), state
    assert state["detections"] and "sheila at" in state["detections"][0], state


def test_noise_from_the_fake_microphone_shows_no_detection(server):
    listening_since: list[float] = []

    def heard_enough(state: dict) -> bool:
        """Half of LISTEN_S (several loops of the noise file) after the page started listening."""
        if state["status"].startswith("listening") and not listening_since:
            listening_since.append(time.monotonic())
        return bool(listening_since) and time.monotonic() - listening_since[0] > LISTEN_S / 2

    state = run_page(server, clip(other_sound, seconds=2.0), until=heard_enough)
    assert state["status"].startswith("listening") and state["detections"] == [], state
    assert float(state["score"]) < 0.5
