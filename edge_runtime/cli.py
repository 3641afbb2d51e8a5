"""`python -m edge_runtime score|detect|run|bench`.

- `score`/`detect`: keyword scores and detections for WAV files (window model), as JSON lines on stdout. Files
  are read and scored block by block, so memory does not grow with the length of a recording.
- `run`: the live streaming detector on a microphone, standard input or a WAV file (`runner.py`).
- `bench`: the streaming pipeline's cost on this machine (`bench.py`).

A bad bundle stops everything: `error: ...` on stderr, exit 2. A bad audio file is reported the same way, the
other files are still processed, and the exit status is 2 at the end. No tracebacks for bad input.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import bench, config, runner
from .audio_io import ACCEPTED_AUDIO, read_audio_blocks
from .cli_parser import OneLineErrorParser, positive_int
from .detector import KeywordScorer, iter_detections
from .errors import KwsError
from .interpreter import DEFAULT_THREADS
from .manifest import MANIFEST_NAME, load_bundle

EXIT_OK, EXIT_BAD_INPUT = 0, 2
SCORE_DECIMALS = 6


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m edge_runtime",
        description="Keyword spotting on WAV files with a converted model bundle (numpy + TFLite interpreter).",
        epilog=f"Audio files: {ACCEPTED_AUDIO}; channels are averaged, audio is resampled to the model's rate (soxr).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{score,detect,run,bench}")
    score = commands.add_parser(
        "score",
        help="print the highest keyword probability of each file",
        description='One JSON line per file: {"file": <path as given>, "score": <max keyword probability, 0..1>}.',
    )
    detect = commands.add_parser(
        "detect",
        help="print each keyword detection",
        description='One JSON line per detection: {"file": ..., "time_s": <end of the peak window, seconds from '
        'the start>, "score": <peak keyword probability>}. A detection fires when a window reaches the threshold '
        "and reports the peak window within the refractory period that follows.",
    )
    for command in (score, detect):
        command.add_argument(
            "--model",
            required=True,
            metavar="BUNDLE",
            help=f"model bundle: a folder holding {MANIFEST_NAME} and the model it names, or the manifest itself",
        )
        command.add_argument("files", nargs="+", metavar="FILE.wav", help="WAV files to process")
        command.add_argument(
            "--threads",
            type=positive_int,
            default=DEFAULT_THREADS,
            help=f"interpreter threads (default: {DEFAULT_THREADS})",
        )
    detect.add_argument(
        "--threshold",
        type=probability,
        default=None,
        help="keyword probability that fires a detection, 0..1 (default: the manifest's detection.threshold)",
    )
    detect.add_argument(
        "--refractory",
        type=non_negative_float,
        default=None,
        metavar="SECONDS",
        help="seconds after a detection in which no new one fires (default: the manifest's refractory_seconds)",
    )
    add_run_parser(commands)
    bench.add_parser(commands)
    return parser


def add_run_parser(commands) -> None:
    run = commands.add_parser(
        "run",
        help="live streaming detection from a microphone, standard input or a WAV file",
        description="Streaming keyword detection: the int8 streaming model scores every 20 ms of audio; a "
        "detection fires when the smoothed keyword probability reaches the threshold outside the refractory "
        "period. A bundle with a verifier has two stages: while the smoothed probability is above the verifier's "
        "gate, the verifier scores 1 s windows on its grid (every 100 ms by default) and the threshold applies "
        "to its mean over the smoothing span instead "
        "(--no-verifier: the streaming model alone). "
        'One JSON line per detection on stdout: {"time_s": <seconds of audio since the start>, "keyword", '
        '"score": <the value that crossed the threshold>, '
        '"latency_ms": <processing time from the audio\'s arrival to this line>, '
        '"utc"}. Start line, warnings and latency summaries go to stderr. SIGTERM/SIGINT: clean stop, exit 0.',
        epilog="Settings come from the command line, else the --config file, else the defaults shown; detection "
        "settings left unset come from the bundle's manifest. Source: --wav, --stdin, or else the microphone.",
    )
    run.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file with any of the settings below by key name "
        "(example with every key: deploy/kws-edge.toml) (default: none)",
    )
    run.add_argument(
        "--list-devices", action="store_true", help="print the microphones PortAudio sees and exit (default: off)"
    )
    config.add_arguments(run)



def probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in 0..1, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0.0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in ("run", "bench"):
        try:
            return run_command(args) if args.command == "run" else bench.main(args)
        except KwsError as error:
            return report(error)
    try:
        bundle = load_bundle(args.model, num_threads=args.threads)
    except KwsError as error:
        return report(error)
    scorer = KeywordScorer(bundle)
    chosen_threshold, chosen_refractory = getattr(args, "threshold", None), getattr(args, "refractory", None)
    threshold = bundle.detection.threshold if chosen_threshold is None else chosen_threshold
    refractory = bundle.detection.refractory_seconds if chosen_refractory is None else chosen_refractory
    status = EXIT_OK
    for file in args.files:
        windows = scorer.stream_windows(read_audio_blocks(file, bundle.feature_spec.sample_rate))
        try:  # a file's lines are printed once all of it has been read: a bad file prints none
            if args.command == "score":
                records = [{"file": file, "score": round(max(score for _, score in windows), SCORE_DECIMALS)}]
            else:
                records = [
                    {"file": file, "time_s": round(found.time_s, 3), "score": round(found.score, SCORE_DECIMALS)}
                    for found in iter_detections(windows, threshold, refractory)
                ]
        except KwsError as error:
            status = report(error)
            continue
        for record in records:
            emit(record)
    return status


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def report(error: KwsError) -> int:
    print(f"error: {error}", file=sys.stderr, flush=True)
    return EXIT_BAD_INPUT


def run_command(args: argparse.Namespace) -> int:
    if args.list_devices:
        from .microphone import list_devices

        print(list_devices(), flush=True)
        return EXIT_OK
    settings = config.resolve(args, config.read_config(args.config) if args.config else {})
    return runner.run(settings)
