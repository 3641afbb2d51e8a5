"""Soak the edge runtime: hours of audio through `python -m edge_runtime run --stdin`, as the service would see it.

`python -m benchmarks.soak --hours 2` (or `make soak`):
1. A deterministic generator plays held-out test utterances of the clip set (one every few seconds, keywords
   among them) over a noise bed as 16-bit PCM on the runner's standard input, as fast as it can take it. This is
   done twice; the two runs must report identical detections (a long run drifts in nothing).
2. Memory: the runner's own periodic summaries (latency log) give RSS over time; growth after the first summary
   must stay within `--max-rss-growth-mb`.
3. A real-time-paced part (`--realtime-seconds`): the generator writes at the audio's own pace; the runner must
   drop no samples.
Figures go to `<out>/soak_report.json` and stdout. `generate` is also a subcommand, usable on its own.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from edge_runtime.cli_parser import OneLineErrorParser
from edge_runtime.features import FeatureSpec

REPO = Path(__file__).resolve().parents[1]
UTTERANCE_EVERY_SECONDS = 4.0
KEYWORD_SHARE = 0.2
NOISE_RMS = 0.01
CHUNK_SECONDS = 1.0
SUMMARY_SECONDS = 60.0


def soak_audio(clipset: Path, seconds: float, seed: int):
    """Yield (int16 chunk, keyword start times in the chunk's second range) for `seconds` of audio."""
    from train.data.clipset import ClipSet

    clips = ClipSet.load(clipset)
    spec = FeatureSpec.from_dict(clips.meta["feature_spec"])
    rng = np.random.default_rng(seed)
    keywords, others = clips.indices("test", label=1), clips.indices("test", label=0)
    chunk = round(CHUNK_SECONDS * spec.sample_rate)
    total = round(seconds * spec.sample_rate)
    every = round(UTTERANCE_EVERY_SECONDS * spec.sample_rate)
    pending = np.zeros(0, dtype=np.float32)  # the tail of an utterance that runs into the next chunk
    for start in range(0, total, chunk):
        length = min(chunk, total - start)
        audio = (NOISE_RMS * rng.standard_normal(length)).astype(np.float32)
        carried = pending[:length]
        audio[: carried.size] += carried
        pending = pending[carried.size :]
        onsets = []
        for onset in range(-(-start // every) * every, start + length, every):
            is_keyword = rng.random() < KEYWORD_SHARE
            utterance = clips.utterance(int(rng.choice(keywords if is_keyword else others)))
            offset = onset - start
            head = utterance[: length - offset]
            audio[offset : offset + head.size] += head
            pending = np.concatenate([pending, np.zeros(max(0, utterance.size - head.size - pending.size), np.float32)])
            pending[: utterance.size - head.size] += utterance[head.size :]
            if is_keyword:
                onsets.append(onset / spec.sample_rate)
        yield (np.clip(audio, -1, 1) * 32767).astype("<i2"), onsets


def generate(args: argparse.Namespace) -> int:
    """Write the soak audio to stdout as raw PCM; keyword onsets (seconds) to --onsets if given."""
    out = sys.stdout.buffer
    onsets, started = [], time.monotonic()
    played = 0.0
    try:
        for pcm, chunk_onsets in soak_audio(args.clipset, args.seconds, args.seed):
            if args.realtime:
                time.sleep(max(0.0, started + played - time.monotonic()))
            out.write(pcm.tobytes())
            played += pcm.size / FeatureSpec().sample_rate
            onsets += chunk_onsets
        out.flush()
    except BrokenPipeError:
        return 1
    finally:
        if args.onsets:
            Path(args.onsets).write_text(json.dumps(onsets))
    return 0


def run_once(args: argparse.Namespace, seconds: float, realtime: bool, tag: str) -> dict:
    """Generator piped into the runner; returns detections, summaries and timings of this run."""
    latency_log = args.out / f"latency_{tag}.jsonl"
    latency_log.unlink(missing_ok=True)
    onsets_file = args.out / f"onsets_{tag}.json"
    generator_command = [str(args.train_python), "-m", "benchmarks.soak", "generate", "--clipset", str(args.clipset),
                         "--seconds", str(seconds), "--seed", str(args.seed), "--onsets", str(onsets_file)]
    if realtime:
        generator_command.append("--realtime")
    runner_command = [str(args.edge_python), "-m", "edge_runtime", "run", "--model", str(args.model), "--stdin",
                      "--latency-log", str(latency_log), "--summary-seconds", str(SUMMARY_SECONDS)]
    if args.threshold is not None:
        runner_command += ["--threshold", str(args.threshold)]
    started = time.monotonic()
    generator = subprocess.Popen(generator_command, cwd=REPO, stdout=subprocess.PIPE)
    runner = subprocess.Popen(runner_command, cwd=REPO, stdin=generator.stdout, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    generator.stdout.close()  # the runner holds the pipe now
    stdout, stderr = runner.communicate()
    generator.wait()
    wall = time.monotonic() - started
    if runner.returncode != 0 or generator.returncode != 0:
        raise RuntimeError(f"soak run {tag} failed (runner {runner.returncode}, generator {generator.returncode}): "
                           f"{stderr.strip().splitlines()[-1:]}")
    summaries = [json.loads(line) for line in latency_log.read_text().splitlines() if line.strip()]
    detections = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return {"wall_seconds": wall, "detections": detections, "summaries": summaries,
            "keyword_onsets": json.loads(onsets_file.read_text())}


def rss_figures(summaries: list[dict]) -> dict:
    current = [s["rss_mb"]["current"] for s in summaries]
    return {"first_summary_mb": current[0], "last_mb": current[-1], "max_mb": max(current),
            "growth_after_first_summary_mb": max(current) - current[0], "summaries": len(current)}


def soak(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    seconds = args.hours * 3600
    print(f"soak: {args.hours} h of audio, twice, as fast as the runner takes it ...", file=sys.stderr, flush=True)
    first, second = (run_once(args, seconds, False, tag) for tag in ("fast_1", "fast_2"))
    key = [(d["time_s"], d["score"]) for d in first["detections"]]
    final = first["summaries"][-1]
    report = {
        "audio_hours": args.hours,
        "fast": {
            "wall_seconds": [round(first["wall_seconds"], 1), round(second["wall_seconds"], 1)],
            "speed_x_real_time": round(seconds / first["wall_seconds"], 1),
            "rtf_final_summary": final["rtf"],
            "detections": len(first["detections"]),
            "keywords_inserted": len(first["keyword_onsets"]),
            "identical_detections_in_two_runs": key == [(d["time_s"], d["score"]) for d in second["detections"]],
            "rss": rss_figures(first["summaries"]),
            "dropped_samples": final["dropped_samples"],
        },
    }
    if args.realtime_seconds > 0:
        print(f"soak: {args.realtime_seconds:.0f} s at real-time pace ...", file=sys.stderr, flush=True)
        paced = run_once(args, args.realtime_seconds, True, "realtime")
        paced_final = paced["summaries"][-1]
        report["realtime"] = {
            "audio_seconds": args.realtime_seconds, "wall_seconds": round(paced["wall_seconds"], 1),
            "dropped_samples": paced_final["dropped_samples"], "overflows": paced_final["overflows"],
            "cpu_percent": paced_final["cpu_percent"], "rss": rss_figures(paced["summaries"]),
        }
    ok = (report["fast"]["identical_detections_in_two_runs"]
          and report["fast"]["rss"]["growth_after_first_summary_mb"] <= args.max_rss_growth_mb
          and report["fast"]["dropped_samples"] == 0
          and report.get("realtime", {}).get("dropped_samples", 0) == 0)
    report["passed"] = ok
    report["max_rss_growth_mb"] = args.max_rss_growth_mb
    (args.out / "soak_report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = OneLineErrorParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    commands = parser.add_subparsers(dest="command")
    gen = commands.add_parser("generate", help="write soak audio as raw 16-bit PCM to stdout",
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    gen.add_argument("--clipset", type=Path, required=True, help="clip set whose test split is played")
    gen.add_argument("--seconds", type=float, required=True, help="audio length")
    gen.add_argument("--seed", type=int, default=0, help="choice of utterances and noise")
    gen.add_argument("--realtime", action="store_true", help="write at the audio's own pace")
    gen.add_argument("--onsets", help="file for the keyword onset times (JSON list of seconds)")
    for option, kind, default, text in (
        ("--model", Path, Path("artifacts/edge"), "the bundle to soak"),
        ("--clipset", Path, None, "clip set (default: the one in artifacts/data_path.txt)"),
        ("--hours", float, 2.0, "hours of audio in the fast part (run twice)"),
        ("--realtime-seconds", float, 300.0, "seconds of real-time-paced audio (0 to skip)"),
        ("--max-rss-growth-mb", float, 5.0, "allowed RSS growth after the first summary"),
        ("--seed", int, 0, "seed of the generated audio"),
        ("--threshold", float, None, "detection threshold (default: the manifest's)"),
        ("--out", Path, Path("artifacts/soak"), "folder for the report and latency logs"),
        ("--train-python", Path, Path(".venv-train/bin/python"), "python that generates audio"),
        ("--edge-python", Path, Path(".venv-edge/bin/python"), "python that runs the edge runtime"),
    ):
        parser.add_argument(option, type=kind, default=default, help=text)
    args = parser.parse_args(argv)
    if args.command == "generate":
        return generate(args)
    if args.clipset is None:
        try:
            args.clipset = Path((Path("artifacts") / "data_path.txt").read_text().strip())
        except OSError:
            print("error: no --clipset and no artifacts/data_path.txt; run `make train-and-convert` first",
                  file=sys.stderr)
            return 2
    try:
        return soak(args)
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
