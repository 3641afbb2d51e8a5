"""`python -m benchmarks`: measure every artifact of a train-and-convert run and write the report.

Rows come from what exists under `--artifacts`: each trained checkpoint (torch, CPU and CUDA), the deployed
bundle's ONNX (ONNX Runtime on CPU, CUDA and TensorRT), float32 and int8 TFLite (the edge interpreter, measured in
the edge environment as the device proxy), the numpy front-end, and the peer (pocketsphinx keyphrase spotting on
the same audio, with its long-audio quality from the `make eval` report when there is one). Every model row
carries its MACs per 1 s window (`train.compress.macs`, on the float torch model it is or was converted from); the
streaming pipeline its MACs per second of audio. A row that cannot be measured on this machine says why
(e.g. "not measured: no CUDA device"); no figure is ever made up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.macs import source_checkpoint, streaming_macs, window_macs
from benchmarks.measure import ONNXRUNTIME_PROVIDERS
from benchmarks.report import PEER_ROW, build_report, peer_exponent, write_report
from edge_runtime.cli_parser import OneLineErrorParser

REPO = Path(__file__).resolve().parents[1]
NO_MACS_FRONT_END = "not counted: the counter counts the front-end as 0 MACs (it is the same for every model)"
NO_MACS_PEER = "not counted: pocketsphinx is a GMM-HMM decoder; the MAC counter covers the torch models only"


@dataclass(frozen=True)
class Target:
    """One row to measure: which backend, which model file, in which environment."""

    name: str
    backend: str
    model: Path | None
    precision: str
    device: str  # "cpu" or "cuda"
    environment: str  # "train" or "edge": which venv's python runs it
    architecture: str
    accuracy: float | None
    provider: str | None = None  # onnxruntime: "cpu", "cuda" or "tensorrt"
    macs_checkpoint: Path | None = None  # the float torch model whose MACs the row carries
    macs_note: str | None = None  # why a row carries no MACs


def front_end_row(manifest: dict) -> str:
    """The front-end row's name: the bundle's own front-end (log-mel-v1 for a manifest that names none)."""
    return f"numpy {manifest['feature_spec'].get('front_end', 'log-mel-v1')} front-end (1 s)"


def discover_targets(artifacts: Path, manifest: dict, peer: bool = True) -> list[Target]:
    edge, test = artifacts / "edge", manifest["metrics"]["test"]
    architecture = manifest["model"]["architecture"]
    source, why = source_checkpoint(artifacts, manifest, REPO)
    converted = {"macs_checkpoint": source, "macs_note": None if source else f"not measured: {why}"}
    targets = []
    trained = []
    for checkpoint in sorted((artifacts / "train").glob("*/best.pt")):
        metrics_file = checkpoint.parent / "metrics.json"
        accuracy = json.loads(metrics_file.read_text())["test"]["accuracy"] if metrics_file.exists() else None
        trained.append((checkpoint, checkpoint.parent.name, accuracy, ""))
    # The deployed model's own torch checkpoint, when it was not trained by train.fit (the compressed student).
    if source is not None and all(source.resolve() != entry[0].resolve() for entry in trained):
        trained.append((source, architecture, test.get("torch", {}).get("accuracy"), " (deployed student)"))
    for checkpoint, arch, accuracy, label in trained:
        for device in ("cpu", "cuda"):
            targets.append(Target(f"torch {device} {arch} fp32{label}", "torch", checkpoint, "fp32", device, "train",
                                  arch, accuracy, macs_checkpoint=checkpoint))
    for provider, device in (("cpu", "cpu"), ("cuda", "cuda"), ("tensorrt", "cuda")):
        targets.append(Target(f"onnxruntime {provider} {architecture} fp32", "onnxruntime", edge / "model.onnx",
                              "fp32", device, "train", architecture, test["onnx"]["accuracy"], provider, **converted))
    targets.append(Target(f"tflite {architecture} float32", "tflite", edge / "model_float32.tflite", "fp32", "cpu",
                          "edge", architecture, test["tflite_float32"]["accuracy"], **converted))
    targets.append(Target(f"tflite {architecture} int8", "tflite", edge / manifest["model"]["file"], "int8", "cpu",
                          "edge", architecture, test["tflite_int8"]["accuracy"], **converted))
    verifier = verifier_target(edge, manifest)
    if verifier is not None:
        targets.append(verifier)
    targets.append(Target(front_end_row(manifest), "features", None, "fp32", "cpu", "edge", "front-end", None,
                          macs_note=NO_MACS_FRONT_END))
    if peer:
        targets.append(Target(PEER_ROW, "pocketsphinx", None, "n/a", "cpu", "train", "pocketsphinx", None,
                              macs_note=NO_MACS_PEER))
    return targets


def verifier_target(edge: Path, manifest: dict) -> Target | None:
    """The bundle's second stage (edge_runtime/verifier.py), when it has one: its int8 window model, which the
    device runs only while the student's gate is open."""
    if "verifier" not in manifest:
        return None
    folder = edge / manifest["verifier"]["folder"]
    inner = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    architecture = inner["model"]["architecture"]
    checkpoint = Path(inner["source"]["checkpoint"])
    known = checkpoint if checkpoint.is_file() else None
    return Target(f"tflite {architecture} int8 (verifier)", "tflite", folder / inner["model"]["file"], "int8", "cpu",
                  "edge", architecture, inner["metrics"]["test"]["tflite_int8"]["accuracy"], macs_checkpoint=known,
                  macs_note=None if known else f"not measured: {checkpoint} is gone")  # fmt: skip


def measure(target: Target, spec: dict, iterations: int, pythons: dict[str, Path], extra: list[str] = ()) -> dict:
    command = [str(pythons[target.environment]), "-m", "benchmarks.measure", "--backend", target.backend,
               "--feature-spec", json.dumps(spec), "--iterations", str(iterations), *extra]
    if target.model is not None:
        command += ["--model", str(target.model)]
    if target.device == "cuda":
        command.append("--cuda")
    if target.provider is not None:
        command += ["--provider", target.provider]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"not_measured": f"not measured: the measurement failed ({last})"}
    return json.loads(result.stdout.strip().splitlines()[-1])


GPU_PROBE = """
import json, torch
try:
    import onnxruntime
    providers, version = onnxruntime.get_available_providers(), onnxruntime.__version__
except ImportError:
    providers, version = [], None
print(json.dumps({"cuda": torch.cuda.is_available(), "providers": providers, "onnxruntime": version}))
"""


def gpu_probe(train_python: Path) -> dict:
    """In the training environment: is there a CUDA device, and which onnxruntime execution providers exist."""
    probe = subprocess.run([str(train_python), "-c", GPU_PROBE], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return {"cuda": False, "providers": [], "onnxruntime": None}
    return json.loads(probe.stdout.strip().splitlines()[-1])


def gpu_unavailable(target: Target, probe: dict) -> str | None:
    """Why a CUDA row cannot be measured here (None when it can be tried)."""
    if target.device != "cuda":
        return None
    reasons = [] if probe["cuda"] else ["no CUDA device"]
    if target.provider == "tensorrt" and "TensorrtExecutionProvider" not in probe["providers"]:
        listed = ", ".join(probe["providers"]) or "none"
        reasons.append(f"onnxruntime {probe['onnxruntime']} lists no TensorrtExecutionProvider (available: {listed}; "
                       "needs onnxruntime-gpu with the TensorRT libraries)")
    return "not measured: " + "; ".join(reasons) if reasons else None


def macs_fields(target: Target, cache: dict) -> dict:
    """The row's MACs per 1 s window, from the counter of `train.compress.macs` on the float torch model."""
    if target.macs_checkpoint is None:
        return {"macs_per_window": None, "macs_note": target.macs_note}
    if target.macs_checkpoint not in cache:
        try:
            cache[target.macs_checkpoint] = window_macs(target.macs_checkpoint)
        except (ValueError, RuntimeError) as error:
            cache[target.macs_checkpoint] = {"error": f"not measured: the MAC count failed ({error})"}
    counted = cache[target.macs_checkpoint]
    if "error" in counted:
        return {"macs_per_window": None, "macs_note": counted["error"]}
    return {"macs_per_window": counted["macs"],
            "macs_source": {"checkpoint": str(target.macs_checkpoint), "architecture": counted["architecture"],
                            "model_config": counted["model_config"], "frames": counted["frames"],
                            "n_mels": counted["n_mels"]}}


def machine_description() -> dict:
    model_name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": model_name,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
    }


def measure_all(args: argparse.Namespace, manifest: dict, evaluation: dict | None) -> list[dict]:
    pythons = {"train": args.train_python, "edge": args.edge_python}
    probe = gpu_probe(args.train_python)
    macs_cache: dict = {}
    rows = []
    for target in discover_targets(args.artifacts, manifest, peer=not args.no_peer):
        print(f"measuring {target.name} ...", file=sys.stderr, flush=True)
        iterations, extra = args.iterations, []
        if target.backend == "pocketsphinx":
            iterations = args.peer_iterations or args.iterations
            extra = ["--keyword", manifest["keyword"], "--kws-exponent", str(peer_exponent(evaluation))]
        reason = gpu_unavailable(target, probe)
        measured = {"not_measured": reason} if reason else measure(target, manifest["feature_spec"], iterations,
                                                                    pythons, extra)
        model_bytes = target.model.stat().st_size if target.model is not None and target.model.exists() else None
        row = {
            "name": target.name, "backend": target.backend, "precision": target.precision, "device": target.device,
            "environment": target.environment, "architecture": target.architecture,
            "model_file": str(target.model) if target.model else None, "model_bytes": model_bytes,
            "test_accuracy": target.accuracy, **macs_fields(target, macs_cache), **measured,
        }
        if target.provider is not None:
            row["execution_provider"] = ONNXRUNTIME_PROVIDERS[target.provider]
        rows.append(row)
    return rows


def measure_streaming(bundle: Path, edge_python: Path, seconds: float) -> dict | None:
    """The deployed streaming pipeline, measured by the edge runtime's own `bench` (one pinned core, one thread)."""
    command = [str(edge_python), "-m", "edge_runtime", "bench", "--model", str(bundle), "--seconds", str(seconds)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"not_measured": f"not measured: edge_runtime bench failed ({last})"}
    return json.loads(result.stdout)


def measure_streaming_macs(artifacts: Path, manifest: dict) -> dict:
    """MACs per second of audio of the deployed streaming step (per-step MACs x steps per second)."""
    checkpoint, why = source_checkpoint(artifacts, manifest, REPO)
    if checkpoint is None:
        return {"not_measured": f"not measured: {why}"}
    try:
        section = manifest["streaming"]
        counted = streaming_macs(checkpoint, section["outputs_per_step"], section.get("phases", 1))
    except (ValueError, RuntimeError) as error:
        return {"not_measured": f"not measured: the MAC count failed ({error})"}
    return counted | {"checkpoint": str(checkpoint)}


def load_evaluation(path: Path) -> tuple[dict | None, str]:
    """The `make eval` report (train.evaluate's report.json), or (None, why not)."""
    try:
        return json.loads(path.read_text()), str(path)
    except FileNotFoundError:
        return None, f"no `make eval` report at {path}"
    except (OSError, ValueError) as error:
        return None, f"the `make eval` report {path} cannot be read ({error})"


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(
        prog="python -m benchmarks",
        description="Benchmark every artifact of a train-and-convert run and write a report with plots.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="the OUT folder of a run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/report"), help="report folder")
    parser.add_argument("--iterations", type=int, default=1000,
                        help="timed calls per row at batch 1 (use >= 1000 for a report)")
    parser.add_argument("--train-python", type=Path, default=Path(".venv-train/bin/python"), help="training venv")
    parser.add_argument("--edge-python", type=Path, default=Path(".venv-edge/bin/python"), help="edge venv")
    parser.add_argument("--device-results", type=Path, action="append", default=[],
                        help="JSON written by `edge_runtime bench` on a device (repeatable), merged into the report")
    parser.add_argument("--reuse-measurements", action="store_true",
                        help="rebuild the report from the rows already in OUT/report.json (e.g. to merge device "
                             "results or a newer `make eval` report) instead of measuring again")
    parser.add_argument("--stream-seconds", type=float, default=60.0,
                        help="seconds of generated audio for the streaming pipeline's measurement")
    parser.add_argument("--history", type=Path, default=Path("benchmarks/history"),
                        help="where a report with measured GPU rows is also kept")
    parser.add_argument("--eval-report", type=Path, default=None,
                        help="report.json of `make eval` (python -m train.evaluate), for the long-audio quality of "
                             "the peer and the deployed model (None: ARTIFACTS/eval/report.json; missing: those "
                             "figures say 'not measured')")
    parser.add_argument("--peer-iterations", type=int, default=None,
                        help="timed 1 s calls for the pocketsphinx peer row (None: same as --iterations)")
    parser.add_argument("--no-peer", action="store_true", help="leave out the pocketsphinx peer row")
    args = parser.parse_args(argv)
    if args.iterations < 1 or (args.peer_iterations is not None and args.peer_iterations < 1):
        parser.error("--iterations and --peer-iterations must be >= 1")
    try:
        manifest = json.loads((args.artifacts / "edge" / "manifest.json").read_text())
        device_results = [(path, json.loads(path.read_text())) for path in args.device_results]
    except (OSError, ValueError) as error:
        hint = "run `make train-and-convert` first; device results must be JSON files"
        print(f"error: {error} ({hint})", file=sys.stderr)
        return 2
    for python in (args.train_python, args.edge_python):
        if not python.exists():
            print(f"error: {python} is missing; run `make venvs`", file=sys.stderr)
            return 2
    evaluation, eval_source = load_evaluation(args.eval_report or args.artifacts / "eval" / "report.json")

    if args.reuse_measurements:
        try:
            previous = json.loads((args.out / "report.json").read_text())
            rows, machine, edge_bench = previous["rows"], previous["machine"], previous.get("edge_bench")
            stream_macs = previous.get("streaming_macs")
            if any("macs_per_window" not in row for row in rows):
                raise ValueError("it predates the MACs column")
        except (OSError, ValueError, KeyError) as error:
            print(f"error: cannot reuse {args.out / 'report.json'}: {error}; run `make bench` first", file=sys.stderr)
            return 2
    else:
        rows, machine = measure_all(args, manifest, evaluation), machine_description()
        if "streaming" in manifest:
            print("measuring the streaming pipeline (edge_runtime bench) ...", file=sys.stderr, flush=True)
            edge_bench = measure_streaming(args.artifacts / "edge", args.edge_python, args.stream_seconds)
            stream_macs = measure_streaming_macs(args.artifacts, manifest)
        else:
            edge_bench, stream_macs = None, None
    try:
        report = build_report(rows, manifest, machine, device_results, edge_bench,
                              created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                              streaming_macs=stream_macs, evaluation=evaluation, eval_source=eval_source)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    written = write_report(report, args.out)
    if any(row["device"] == "cuda" and "latency" in row for row in rows):
        args.history.mkdir(parents=True, exist_ok=True)
        history_file = args.history / f"{report['created_utc'][:10]}-{platform.node()}-gpu.json"
        history_file.write_text(json.dumps(report, indent=2) + "\n")
        written.append(history_file)
    print("\n".join(str(path) for path in written))
    return 0
