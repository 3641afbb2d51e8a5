"""Print what `make train-and-convert` produced, and prove the bundle works through the edge runtime.

Writes a few held-out test utterances as WAVs to `<artifacts>/samples/` and scores them with
`python -m edge_runtime score` in the edge environment: what is printed is what the device will compute.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile

from edge_runtime.cli_parser import OneLineErrorParser
from edge_runtime.features import FeatureSpec
from train.data.augment import Augmenter
from train.data.clipset import ClipSet

SAMPLES_PER_CLASS = 5


def write_samples(clips: ClipSet, spec: FeatureSpec, out_dir: Path) -> list[tuple[Path, int]]:
    """Centred 1 s windows of the first few test utterances of each class, as 16-bit WAVs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    augmenter = Augmenter(spec, clips.noise_bank(), np.random.default_rng(0))
    written = []
    for label, name in ((1, "keyword"), (0, "other")):
        for rank, index in enumerate(clips.indices("test", label=label)[:SAMPLES_PER_CLASS]):
            path = out_dir / f"{name}_{rank}.wav"
            soundfile.write(path, augmenter.centered_window(clips.utterance(index)), spec.sample_rate, "PCM_16")
            written.append((path, label))
    return written


def score_with_edge_runtime(edge_python: Path, bundle: Path, wavs: list[Path]) -> dict[str, float]:
    result = subprocess.run(
        [str(edge_python), "-m", "edge_runtime", "score", "--model", str(bundle), *map(str, wavs)],
        capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"edge runtime failed: {result.stderr.strip().splitlines()[-1:]}")
    return {json.loads(line)["file"]: json.loads(line)["score"] for line in result.stdout.splitlines()}


def metric_row(name: str, m: dict) -> str:
    return f"  {name:<18} acc {m['accuracy']:.4f}  FRR {m['frr']:.4f}  FAR {m['far']:.4f}  AUC {m['roc_auc']:.4f}"


def print_compression(report_path: Path, deployed_sha256: str | None) -> None:
    """The compression report's verdict, when it describes the deployed model (`make compression-report`)."""
    try:
        report = json.loads(report_path.read_text())
    except (OSError, ValueError):
        return
    if report.get("deployed_sha256") != deployed_sha256:
        print(f"compression report {report_path} describes another model (COMPRESS=0 run?); not shown")
        return
    met = report["targets_met"]
    ratios = "  ".join(
        f"{key} {report[key]:.1f} (>= {target:g} {'met' if met[key] else 'NOT met'})"
        for key, target in report["targets"].items()
    )
    print(f"compressed vs {report['baseline']}: {ratios}")
    print(f"  accuracy no worse: {'yes' if met['accuracy_no_worse'] else 'NO'}   "
          f"au_fa_fr no worse: {'yes' if met['au_fa_fr_no_worse'] else 'NO'}   "
          f"(table: {report_path.with_suffix('.md')})")
    spread = report.get("no_worse_uncertainty")
    if spread:
        accuracy = spread["accuracy_points"]
        low, high = accuracy["interval_95"]
        print(f"  accuracy difference {accuracy['difference']:+.2f} points, 95% interval [{low:+.2f}, {high:+.2f}] "
              f"({spread['method']})")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(
        prog="python -m train.summary",
        description="Summarise a train-and-convert run and score held-out samples with the edge runtime.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="the OUT folder of the run")
    parser.add_argument("--edge-python", type=Path, default=Path(".venv-edge/bin/python"), help="edge venv python")
    parser.add_argument("--elapsed", type=int, default=None, help="wall-clock seconds of the run, to print")
    args = parser.parse_args(argv)

    bundle = args.artifacts / "edge"
    try:
        manifest = json.loads((bundle / "manifest.json").read_text())
        data_dir = Path((args.artifacts / "data_path.txt").read_text().strip())
        clips = ClipSet.load(data_dir)
    except (OSError, ValueError) as error:
        print(f"error: cannot summarise {args.artifacts}: {error}", file=sys.stderr)
        return 2

    print("\n=== train-and-convert summary ===")
    counts = {split: len(clips.indices(split)) for split in ("train", "val", "test")}
    print(f"data     {data_dir}  ({clips.meta.get('source', '?')}, keyword '{manifest['keyword']}', clips {counts})")
    for metrics_file in sorted((args.artifacts / "train").glob("*/metrics.json")):
        m = json.loads(metrics_file.read_text())
        if "members" in m:  # python -m train.ensemble: joined, not trained
            print(f"joined   {len(m['members'])} checkpoints ({m['parameters']:,} params) into their mean logit  ->  "
                  f"{metrics_file.parent / 'best.pt'}")  # fmt: skip
        else:
            print(
                f"trained  {m['architecture']:<6} {m['parameters']:>7,} params, best epoch {m['best_epoch']}, "
                f"{m['train_seconds']:.0f} s on {m['device']}  ->  {metrics_file.parent / 'best.pt'}"
            )
        own = m.get("data", {})
        if own.get("cache_key") and own["cache_key"] != clips.meta.get("cache_key"):  # e.g. the verifier's teachers
            print(f"  data               {own.get('clipset', own['cache_key'])} (its own; test split from there)")
        print(metric_row("test (torch fp32)", m["test"]))
    model = manifest["model"]
    print(f"deployed {bundle / model['file']}  ({model['bytes'] / 1024:.1f} KiB, {model['precision']}, "
          f"{model['architecture']}, threshold {manifest['detection']['threshold']:.3f})")
    for name, m in manifest["metrics"]["test"].items():
        print(metric_row(name, m))
    agreement = manifest["metrics"].get("int8_vs_float32", {})
    if agreement:
        print(f"  int8 vs float32: {json.dumps(agreement)}")

    print_compression(args.artifacts / "compression" / "report.json", model.get("sha256"))

    samples = write_samples(clips, FeatureSpec.from_dict(manifest["feature_spec"]), args.artifacts / "samples")
    try:
        scores = score_with_edge_runtime(args.edge_python, bundle, [path for path, _ in samples])
    except (OSError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for label, name in ((1, "keyword"), (0, "non-keyword")):
        values = [scores[str(path)] for path, lab in samples if lab == label]
        print(f"edge runtime scores on held-out {name} samples: " + " ".join(f"{v:.3f}" for v in values))
    print(f"try it:  {args.edge_python} -m edge_runtime score --model {bundle} {samples[0][0]}")
    if args.elapsed is not None:
        print(f"total time {args.elapsed // 60} min {args.elapsed % 60} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
