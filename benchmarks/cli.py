"""`python -m benchmarks`: measure every artifact of a train-and-convert run and write the report.

Rows come from what exists under `--artifacts`: each trained checkpoint (torch, CPU and CUDA), the deployed
bundle's ONNX (ONNX Runtime, CPU and CUDA), float32 and int8 TFLite (the edge interpreter, measured in the edge
environment as the device proxy), and the numpy front-end. A row that cannot be measured on this machine says
why (e.g. "not measured: no CUDA device"); no figure is ever made up.
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

from benchmarks.measure import NOT_MEASURED_NO_CUDA
from benchmarks.report import build_report, write_report

REPO = Path(__file__).resolve().parents[1]


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


def discover_targets(artifacts: Path, manifest: dict) -> list[Target]:
    edge, test = artifacts / "edge", manifest["metrics"]["test"]
    architecture = manifest["model"]["architecture"]
    targets = []
    for checkpoint in sorted((artifacts / "train").glob("*/best.pt")):
        arch = checkpoint.parent.name
        metrics_file = checkpoint.parent / "metrics.json"
        accuracy = json.loads(metrics_file.read_text())["test"]["accuracy"] if metrics_file.exists() else None
        for device in ("cpu", "cuda"):
            targets.append(Target(f"torch {device} {arch} fp32", "torch", checkpoint, "fp32", device, "train", arch,
                                  accuracy))
    for device in ("cpu", "cuda"):
        targets.append(Target(f"onnxruntime {device} {architecture} fp32", "onnxruntime", edge / "model.onnx", "fp32",
                              device, "train", architecture, test["onnx"]["accuracy"]))
    targets.append(Target(f"tflite {architecture} float32", "tflite", edge / "model_float32.tflite", "fp32", "cpu",
                          "edge", architecture, test["tflite_float32"]["accuracy"]))
    targets.append(Target(f"tflite {architecture} int8", "tflite", edge / manifest["model"]["file"], "int8", "cpu",
                          "edge", architecture, test["tflite_int8"]["accuracy"]))
    targets.append(Target("numpy log-mel front-end (1 s)", "features", None, "fp32", "cpu", "edge", "front-end", None))
    return targets


def measure(target: Target, spec: dict, iterations: int, pythons: dict[str, Path]) -> dict:
    command = [str(pythons[target.environment]), "-m", "benchmarks.measure", "--backend", target.backend,
               "--feature-spec", json.dumps(spec), "--iterations", str(iterations)]
    if target.model is not None:
        command += ["--model", str(target.model)]
    if target.device == "cuda":
        command.append("--cuda")
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"not_measured": f"not measured: the measurement failed ({last})"}
    return json.loads(result.stdout.strip().splitlines()[-1])


def cuda_available(train_python: Path) -> bool:
    check = "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"
    probe = subprocess.run([str(train_python), "-c", check], capture_output=True, check=False)
    return probe.returncode == 0


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


def measure_all(args: argparse.Namespace, manifest: dict) -> list[dict]:
    pythons = {"train": args.train_python, "edge": args.edge_python}
    has_cuda = cuda_available(args.train_python)
    rows = []
    for target in discover_targets(args.artifacts, manifest):
        print(f"measuring {target.name} ...", file=sys.stderr, flush=True)
        if target.device == "cuda" and not has_cuda:
            measured = {"not_measured": NOT_MEASURED_NO_CUDA}
        else:
            measured = measure(target, manifest["feature_spec"], args.iterations, pythons)
        model_bytes = target.model.stat().st_size if target.model is not None and target.model.exists() else None
        rows.append({
            "name": target.name, "backend": target.backend, "precision": target.precision, "device": target.device,
            "environment": target.environment, "architecture": target.architecture,
            "model_file": str(target.model) if target.model else None, "model_bytes": model_bytes,
            "test_accuracy": target.accuracy, **measured,
        })
    return rows


def measure_streaming(bundle: Path, edge_python: Path, seconds: float) -> dict | None:
    """The deployed streaming pipeline, measured by the edge runtime's own `bench` (one pinned core, one thread)."""
    command = [str(edge_python), "-m", "edge_runtime", "bench", "--model", str(bundle), "--seconds", str(seconds)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return {"not_measured": f"not measured: edge_runtime bench failed ({last})"}
    return json.loads(result.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
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
                             "results) instead of measuring again")
    parser.add_argument("--stream-seconds", type=float, default=60.0,
                        help="seconds of generated audio for the streaming pipeline's measurement")
    parser.add_argument("--history", type=Path, default=Path("benchmarks/history"),
                        help="where a report with measured GPU rows is also kept")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be >= 1")
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

    if args.reuse_measurements:
        try:
            previous = json.loads((args.out / "report.json").read_text())
            rows, machine, edge_bench = previous["rows"], previous["machine"], previous.get("edge_bench")
        except (OSError, ValueError, KeyError) as error:
            print(f"error: cannot reuse {args.out / 'report.json'}: {error}; run `make bench` first", file=sys.stderr)
            return 2
    else:
        rows, machine = measure_all(args, manifest), machine_description()
        if "streaming" in manifest:
            print("measuring the streaming pipeline (edge_runtime bench) ...", file=sys.stderr, flush=True)
            edge_bench = measure_streaming(args.artifacts / "edge", args.edge_python, args.stream_seconds)
        else:
            edge_bench = None
    try:
        report = build_report(rows, manifest, machine, device_results, edge_bench,
                              created_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
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
