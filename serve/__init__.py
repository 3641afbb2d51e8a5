"""Web demo and HTTP API for a deployed keyword-spotting bundle (docs/web-demo.md).

- `zoo`: the bundles found under a root folder, chosen by name only (never by a client-given path).
- `providers`: the ONNX Runtime execution provider, by availability: TensorRT, then CUDA, then CPU.
- `scoring`: whole-clip scoring with the bundle's ONNX model, streaming detection with the edge runtime's detector.
- `app`: the FastAPI app (`/`, `/docs`, `/v1/score`, `/v1/models`, `/v1/stream`); `python -m serve` runs it.
"""
