"""The FastAPI app: the page at `/`, OpenAPI at `/docs`, and the `/v1` API.

- `POST /v1/score?model=NAME`: a WAV upload (any rate, channels, bit depth; at most `max_upload_bytes`) -> the
  keyword probability from the bundle's ONNX model on the chosen execution provider.
- `GET /v1/models`: the zoo with each model's test metrics, the default model and the provider.
- `WS /v1/stream?model=NAME&format=f32|i16`: binary frames of 16 kHz mono PCM (little-endian float32 or int16) in;
  JSON out: `ready` once, then `score` per frame that completed model steps, and `detection` per detection, from
  the edge runtime's streaming detector (two stages when the bundle has a verifier). A text frame (`end`) asks for
  `end` once every frame before it is scored; the server then closes.
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from edge_runtime.audio_io import read_audio
from edge_runtime.errors import KwsError

from .scoring import OnnxScorer, StreamSession, open_stream_bundle
from .zoo import Zoo, ZooEntry

STATIC = Path(__file__).parent / "static"
PCM_FORMATS = {"f32": np.dtype("<f4"), "i16": np.dtype("<i2")}
INT16_SCALE = 32768.0
MAX_FRAME_SECONDS = 1.0  # a WebSocket frame carries at most this much audio
UPLOAD_CHUNK = 1 << 16
MODEL_HELP = "zoo name from GET /v1/models; empty: the default model"


class Models:
    """Loaded models by zoo name, built on first use and shared by requests (streaming bundles are read once; each
    WebSocket gets its own detector state)."""

    def __init__(self, zoo: Zoo) -> None:
        self.zoo = zoo
        self._scorers: dict[str, OnnxScorer] = {}
        self._streams: dict = {}
        self._lock = threading.Lock()

    def entry(self, name: str | None) -> ZooEntry:
        try:
            return self.zoo.get(name)
        except KeyError as error:
            raise HTTPException(404, error.args[0]) from None

    def scorer(self, entry: ZooEntry) -> OnnxScorer:
        with self._lock:
            if entry.name not in self._scorers:
                self._scorers[entry.name] = OnnxScorer(entry)
            return self._scorers[entry.name]

    def stream_bundle(self, entry: ZooEntry):
        with self._lock:
            if entry.name not in self._streams:
                self._streams[entry.name] = open_stream_bundle(entry)
            return self._streams[entry.name]


def create_app(zoo: Zoo, max_upload_bytes: int = 10 * 1024 * 1024) -> FastAPI:
    """The app serving `zoo`; the default model is loaded now so a broken bundle stops the server at start."""
    models = Models(zoo)
    default_scorer = models.scorer(zoo.get(None))
    app = FastAPI(
        title="Keyword spotting API",
        version="1",
        description="Score WAV uploads and stream microphone audio against the deployed keyword-spotting models.",
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def limit_upload(request: Request, call_next):
        """Refuse an oversize upload before its body is read; one without a length could be any size."""
        if request.url.path != "/v1/score" or request.method != "POST":
            return await call_next(request)
        length = request.headers.get("content-length", "")
        if not length.isdigit():
            return JSONResponse(status_code=411, content={"detail": "a Content-Length header is required"})
        if int(length) > max_upload_bytes:
            return JSONResponse(status_code=413, content={"detail": too_large(int(length), max_upload_bytes)})
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/v1/models", summary="The model zoo: every bundle with its test metrics, the default, the provider")
    def list_models() -> dict:
        return {
            "default": zoo.default,
            "provider": default_scorer.provider,
            "models": [zoo.entries[name].describe() for name in zoo.names()],
        }

    @app.post("/v1/score", summary="Keyword probability of a WAV upload (any sample rate, channels, bit depth)")
    async def score(
        file: Annotated[UploadFile, File(description="a WAV file")],
        model: Annotated[str, Query(description=MODEL_HELP)] = "",
    ):
        entry = models.entry(model)
        data = await read_limited(file, max_upload_bytes)
        audio = await run_in_threadpool(decode_wav, data, file.filename or "upload.wav", entry.sample_rate)
        scorer = await run_in_threadpool(models.scorer, entry)
        result = await run_in_threadpool(scorer.score, audio)
        return {
            "model": entry.name,
            "keyword": entry.keyword,
            "probability": round(result.probability, 4),
            "threshold": entry.threshold,
            "detected": result.probability >= entry.threshold,
            "provider": scorer.provider,
            "duration_s": round(audio.shape[0] / scorer.spec.sample_rate, 3),
            "windows": {"end_s": result.times_s, "probability": result.scores},
        }

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket, model: str = "", format: str = "f32"):  # noqa: A002 - the query name
        await websocket.accept()
        try:
            entry = zoo.get(model)
            dtype = PCM_FORMATS.get(format)
            if dtype is None:
                raise KwsError(f"unknown format '{format}'; allowed: {', '.join(PCM_FORMATS)}")
            session = StreamSession(await run_in_threadpool(models.stream_bundle, entry))
        except (KeyError, KwsError) as error:
            await websocket.send_json({"type": "error", "message": str(error.args[0])})
            await websocket.close(code=1008)
            return
        await websocket.send_json(
            {
                "type": "ready",
                "model": entry.name,
                "keyword": entry.keyword,
                "sample_rate": session.sample_rate,
                "format": format,
                "threshold": session.policy.threshold,
                "verified_by": session.verified_by,
            }
        )
        max_bytes = int(MAX_FRAME_SECONDS * session.sample_rate) * dtype.itemsize
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:  # "end": every frame sent so far is scored; say so and close
                    await websocket.send_json({"type": "end", "time_s": round(session.stream_time_s, 3)})
                    await websocket.close()
                    return
                data = message.get("bytes") or b""
                if len(data) > max_bytes or len(data) % dtype.itemsize:
                    await websocket.send_json(
                        {
                            "type": "error",
                            "message": f"a frame must hold whole {format} samples, at most {max_bytes} bytes "
                            f"({MAX_FRAME_SECONDS:g} s at {session.sample_rate} Hz); got {len(data)} bytes",
                        }
                    )
                    await websocket.close(code=1009)
                    return
                audio = np.frombuffer(data, dtype).astype(np.float32)
                if dtype.kind == "i":
                    audio /= INT16_SCALE
                update = await run_in_threadpool(session.push, audio)
                if update.value is not None:
                    await websocket.send_json(
                        {
                            "type": "score",
                            "time_s": round(update.time_s, 3),
                            "score": round(update.value, 4),
                            "probability": round(update.probability, 4),
                        }
                    )
                for detection in update.detections:
                    await websocket.send_json(
                        {
                            "type": "detection",
                            "keyword": entry.keyword,
                            "time_s": round(detection.time_s, 3),
                            "score": round(detection.score, 4),
                        }
                    )
        except WebSocketDisconnect:
            return

    return app


def too_large(size: int, limit: int) -> str:
    return (
        f"upload of {size} bytes is larger than the limit of {limit} bytes ({limit / 2**20:g} MB; see --max-upload-mb)"
    )


async def read_limited(file: UploadFile, limit: int) -> bytes:
    chunks, size = [], 0
    while chunk := await file.read(UPLOAD_CHUNK):
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_large(size, limit))
        chunks.append(chunk)
    return b"".join(chunks)


def decode_wav(data: bytes, filename: str, sample_rate: int) -> np.ndarray:
    """The upload as mono float32 at `sample_rate`; 400 with the reader's one-line reason if it is not a sound WAV."""
    with tempfile.TemporaryDirectory(prefix="kws-upload-") as folder:
        path = Path(folder) / "upload.wav"
        path.write_bytes(data)
        try:
            return read_audio(path, sample_rate)
        except KwsError as error:
            raise HTTPException(400, str(error).replace(str(path), Path(filename).name)) from None
