"""One backend's measurement, run as its own process: `python -m benchmarks.measure --backend ... --model ...`.

Prints one JSON object. Importable in the edge environment (numpy + TFLite interpreter only): torch and
onnxruntime are imported inside the functions that use them.

Method: pin the process to one core, one thread per backend, warm up, then time each call separately with
`perf_counter_ns`; report percentiles in microseconds. Inputs are real log-mel features of a fixed noise clip.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import time
from pathlib import Path

from edge_runtime.cli_parser import OneLineErrorParser

# One thread per backend, BLAS included (as `python -m edge_runtime` does): set before numpy is imported.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402

from edge_runtime.features import FeatureSpec, MelFrontEnd  # noqa: E402

WARMUP_CALLS = 50
PERCENTILES = (50, 95, 99)
NOT_MEASURED_NO_CUDA = "not measured: no CUDA device"
ONNXRUNTIME_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                         "tensorrt": "TensorrtExecutionProvider"}
PROVIDER_NEEDS = {"cpu": "the onnxruntime install is incomplete", "cuda": "needs onnxruntime-gpu",
                  "tensorrt": "needs onnxruntime-gpu with the TensorRT libraries"}
PEER_DEFAULT_EXPONENT = 20  # kws_threshold 1e-20 when no `make eval` report names an operating point


def pin_to_one_core(core: int | None) -> int | None:
    """Pin this process to one core (the last one by default) so timings are not spread across cores."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cores = sorted(os.sched_getaffinity(0))
    chosen = cores[-1] if core is None else core
    os.sched_setaffinity(0, {chosen})
    return chosen


def timed_calls(call, iterations: int) -> dict:
    """Warm up, then time `iterations` calls one by one; percentiles and mean in microseconds."""
    for _ in range(WARMUP_CALLS):
        call()
    durations = np.empty(iterations, dtype=np.float64)
    for i in range(iterations):
        start = time.perf_counter_ns()
        call()
        durations[i] = (time.perf_counter_ns() - start) / 1000.0
    stats = {f"p{p}_us": float(np.percentile(durations, p)) for p in PERCENTILES}
    return stats | {"mean_us": float(durations.mean()), "iterations": iterations}


def example_audio(spec: FeatureSpec) -> np.ndarray:
    """One clip of fixed pink-ish noise: the audio every model row (and the peer) is timed on."""
    rng = np.random.default_rng(0)
    audio = np.cumsum(rng.standard_normal(spec.clip_samples)).astype(np.float32)
    return 0.1 * (audio - audio.mean()) / (np.abs(audio).max() + 1e-9)


def example_features(spec: FeatureSpec, batch: int) -> np.ndarray:
    """Log-mel of `example_audio`: realistic value ranges for quantized inputs."""
    return np.repeat(MelFrontEnd(spec).frames(example_audio(spec))[None], batch, axis=0)


def measure_features(spec: FeatureSpec, iterations: int) -> dict:
    audio = np.random.default_rng(0).uniform(-0.1, 0.1, spec.clip_samples).astype(np.float32)
    front_end = MelFrontEnd(spec)
    return {"latency": timed_calls(lambda: front_end.frames(audio), iterations)}


def measure_tflite(model_path: Path, spec: FeatureSpec, iterations: int) -> dict:
    from edge_runtime.interpreter import TfliteModel

    model = TfliteModel(model_path, num_threads=1)  # timed with the runtime's softmax of the logits, as deployed
    features = example_features(spec, 1)[0]
    return {"latency": timed_calls(lambda: model.probabilities(features), iterations), "batch_sizes": [1]}


def measure_onnxruntime(model_path: Path, spec: FeatureSpec, iterations: int, provider: str) -> dict:
    """`provider`: "cpu", "cuda" or "tensorrt" (TensorRT with CUDA for the nodes TensorRT does not take). The row is
    measured only when the session really runs on the asked provider: ONNX Runtime falls back silently otherwise."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
    available = onnxruntime.get_available_providers()
    wanted = ONNXRUNTIME_PROVIDERS[provider]
    if wanted not in available:
        return {"not_measured": f"not measured: onnxruntime {onnxruntime.__version__} has no {wanted} "
                                f"(available: {', '.join(available)}; {PROVIDER_NEEDS[provider]})"}
    chain = [wanted] + (["CUDAExecutionProvider"] if provider == "tensorrt" and "CUDAExecutionProvider" in available
                        else [])
    try:
        session = onnxruntime.InferenceSession(str(model_path), options, providers=chain)
    except Exception as error:  # onnxruntime raises its own types for a provider that cannot start
        return {"not_measured": f"not measured: {wanted} did not start ({type(error).__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else ''})"}
    if session.get_providers()[0] != wanted:
        return {"not_measured": f"not measured: the session fell back to {session.get_providers()[0]} "
                                f"instead of {wanted}"}
    name = session.get_inputs()[0].name
    fixed_batch = session.get_inputs()[0].shape[0]
    single = example_features(spec, 1)
    result = {"latency": timed_calls(lambda: session.run(None, {name: single}), iterations), "batch_sizes": [1],
              "provider": session.get_providers()}
    if isinstance(fixed_batch, int) and fixed_batch == 1:
        result["throughput_note"] = "exported with batch 1: throughput at batch 1 only"
    return result


def measure_torch(checkpoint: Path, spec: FeatureSpec, iterations: int, batches: list[int], cuda: bool) -> dict:
    import torch

    from train.checkpoint import load_checkpoint

    if cuda and not torch.cuda.is_available():
        return {"not_measured": NOT_MEASURED_NO_CUDA}
    torch.set_num_threads(1)
    device = "cuda" if cuda else "cpu"
    model, _ = load_checkpoint(checkpoint, device=device)
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def runner(batch: int):
        features = torch.from_numpy(example_features(spec, batch)).to(device)

        def call():
            with torch.inference_mode():
                model(features)
            sync()

        return call

    result = {"latency": timed_calls(runner(1), iterations), "batch_sizes": batches}
    if cuda:
        result["device_name"] = torch.cuda.get_device_name(0)
    throughput = {}
    for batch in batches:
        stats = timed_calls(runner(batch), max(20, iterations // (4 * batch)))
        throughput[str(batch)] = batch / (stats["p50_us"] / 1e6)
    result["throughput_windows_per_s"] = throughput
    return result


def measure_pocketsphinx(keyword: str, exponent: int, spec: FeatureSpec, iterations: int) -> dict:
    """The peer as `train.evaluate.peer` runs it (bundled en-us model, keyphrase search), with one keyphrase at
    kws_threshold 1e-`exponent`, fed as a device would: one long utterance, one call per 1 s of the same audio as
    the other rows. Each timed call is one `process_raw` of 1 s (16 kHz int16); pocketsphinx is single-threaded."""
    from train.evaluate import peer

    if spec.sample_rate != peer.SAMPLE_RATE:
        return {"not_measured": f"not measured: pocketsphinx's model needs {peer.SAMPLE_RATE} Hz audio, "
                                f"the bundle uses {spec.sample_rate} Hz"}
    try:
        spotter = peer.PocketSphinxSpotter(keyword, exponents=(exponent,))
    except ValueError as error:
        return {"not_measured": f"not measured: {error}"}
    decoder = spotter._decoder  # the spotter's own decoder, kept open across calls as a stream would
    pcm = np.round(np.clip(example_audio(spec), -1.0, 1.0) * 32767).astype(np.int16).tobytes()
    decoder.start_utt()
    try:
        latency = timed_calls(lambda: decoder.process_raw(pcm, False, False), iterations)
    finally:
        decoder.end_utt()
    config = decoder.config
    files = [Path(config["hmm"]), Path(config["dict"])]
    model_bytes = sum(f.stat().st_size for path in files for f in ([path] if path.is_file() else path.rglob("*"))
                      if f.is_file())
    return {
        "latency": latency,
        "batch_sizes": [1],
        "kws_threshold": f"1e-{exponent}",
        "how": "one utterance kept open; each timed call feeds 1 s of audio (process_raw); warm-up "
               f"{WARMUP_CALLS} s of audio",
        "model_bytes": model_bytes,
        "model_note": "acoustic model folder + pronunciation dictionary; the default config also loads the en-us "
                      "language model, which keyphrase search does not use (not counted here, but in peak RSS)",
        "model_files": [str(path) for path in files],
        "version": peer.version(),
    }


def peak_rss_mb() -> float:
    """This process's own peak RSS. Linux's ru_maxrss survives fork+exec (a child would report its parent's peak
    if that was higher), so read VmHWM of this address space where /proc exists."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def library_versions() -> dict:
    """Versions of the numeric libraries installed in this environment (absent ones are left out)."""
    from importlib import metadata

    versions = {}
    for name in ("numpy", "torch", "onnxruntime", "onnxruntime-gpu", "ai-edge-litert", "tflite-runtime",
                 "pocketsphinx"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(
        prog="python -m benchmarks.measure",
        description="Measure one backend in this process and print JSON (used by `python -m benchmarks`).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--backend", required=True,
                        choices=["features", "tflite", "onnxruntime", "torch", "pocketsphinx"])
    parser.add_argument("--model", type=Path, help="model file (checkpoint for torch)")
    parser.add_argument("--feature-spec", required=True, help="FeatureSpec as JSON (from the manifest)")
    parser.add_argument("--iterations", type=int, default=1000, help="timed calls at batch 1, after warm-up")
    parser.add_argument("--batch-sizes", default="1,8,64", help="batch sizes for throughput (torch)")
    parser.add_argument("--cuda", action="store_true", help="measure on the CUDA device instead of the CPU")
    parser.add_argument("--provider", choices=sorted(ONNXRUNTIME_PROVIDERS), default=None,
                        help="onnxruntime execution provider (None: cuda with --cuda, else cpu)")
    parser.add_argument("--keyword", default=None, help="keyphrase for pocketsphinx")
    parser.add_argument("--kws-exponent", type=int, default=PEER_DEFAULT_EXPONENT,
                        help="pocketsphinx kws_threshold 1e-K")
    parser.add_argument("--core", type=int, default=None, help="CPU core to pin to (None: the last one)")
    args = parser.parse_args(argv)
    provider = args.provider or ("cuda" if args.cuda else "cpu")
    on_gpu = args.cuda or provider != "cpu"
    core = None if on_gpu else pin_to_one_core(args.core)
    spec = FeatureSpec.from_dict(json.loads(args.feature_spec))
    batches = [int(b) for b in args.batch_sizes.split(",") if b]
    started = time.perf_counter()
    if args.backend == "features":
        result = measure_features(spec, args.iterations)
    elif args.backend == "tflite":
        result = measure_tflite(args.model, spec, args.iterations)
    elif args.backend == "onnxruntime":
        result = measure_onnxruntime(args.model, spec, args.iterations, provider)
    elif args.backend == "pocketsphinx":
        if not args.keyword:
            parser.error("--backend pocketsphinx needs --keyword")
        result = measure_pocketsphinx(args.keyword, args.kws_exponent, spec, args.iterations)
    else:
        result = measure_torch(args.model, spec, args.iterations, batches, args.cuda)
    result |= {
        "versions": library_versions(),
        "pinned_core": core,
        "threads": 1,
        "peak_rss_mb": peak_rss_mb(),
        "wall_seconds": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
