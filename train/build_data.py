"""Build (or reuse) a clip set: `python -m train.build_data --source synthetic --keyword sheila`.

Prints a table of counts and, as the last line of stdout, the folder of the clip set (what `train.fit --data`
takes). The same command twice does no work the second time: the folder name holds a hash of the source's
config, the seed and the feature spec. Bad input gives one error line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from edge_runtime.cli_parser import OneLineErrorParser
from edge_runtime.features import FeatureSpec
from train.data.clipset import SPLITS, ClipSet, DataSource, build_dataset, cache_key, dataset_folder, is_complete

SOURCES = ("synthetic", "speech-commands", "folder")
DEFAULT_KEYWORD = "sheila"
DEFAULT_CACHE_ROOT = "data"
DEFAULT_SIZE = 1
DEFAULT_SEED = 0
USAGE_ERROR = 2


def make_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m train.build_data",
        description="Build a keyword-spotting clip set (or reuse the cached one) and print its folder last.",
    )
    parser.add_argument(
        "--source", choices=SOURCES, default="synthetic",
        help="synthetic: offline eSpeak NG + Piper speech; speech-commands: Google Speech Commands v1/v2 folder; "
        "folder: your own positive/ and negative/ audio files (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--keyword", default=DEFAULT_KEYWORD, help="word or phrase to detect, label 1 (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir", type=Path, default=None,
        help="speech-commands: the unpacked data set root; folder: the folder holding positive/ and negative/ "
        "(required by those sources)",
    )  # fmt: skip
    parser.add_argument(
        "--size", type=int, default=DEFAULT_SIZE,
        help="synthetic only: scale of the data set; 1 = about 2,200 keyword and 7,000 other utterances in train, "
        "~3 min on 2 cores (default: %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--max-per-word", type=int, default=None,
        help="speech-commands only: keep at most this many clips of each non-keyword word (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed for every random choice of the build (default: %(default)s)",
    )
    parser.add_argument(
        "--cache-root",
        type=Path,
        default=Path(DEFAULT_CACHE_ROOT),
        help="where clip sets are kept (default: %(default)s)",
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1,
        help="synthetic only: processes that synthesize in parallel; the result does not depend on it "
        "(default: the CPU count, %(default)s)",
    )  # fmt: skip
    parser.add_argument(
        "--piper-voice", type=Path, action="append", default=[], metavar="VOICE.onnx",
        help="synthetic only, repeatable: an extra Piper voice model (its .onnx.json beside it); every speaker of a "
        "multi-speaker voice joins the bundled joe voice (default: joe only)",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="no progress bar (default: show it on stderr)")
    return parser


def make_source(args: argparse.Namespace) -> DataSource:
    """The data source the arguments describe; ValueError with the reason when they do not fit together."""
    if args.size < 1:
        raise ValueError(f"--size must be >= 1, got {args.size}")
    if args.seed < 0:
        raise ValueError(f"--seed must be >= 0, got {args.seed}")
    if args.workers < 1:
        raise ValueError(f"--workers must be >= 1, got {args.workers}")
    if args.source == "synthetic":
        if args.data_dir is not None:
            raise ValueError("--data-dir is for --source speech-commands or folder, not synthetic")
        from train.data.synthetic import SyntheticSource

        return SyntheticSource(
            keyword=args.keyword, size=args.size, workers=args.workers, progress=not args.quiet,
            piper_voices=args.piper_voice,
        )  # fmt: skip
    if args.piper_voice:
        raise ValueError("--piper-voice is for --source synthetic")
    if args.data_dir is None:
        raise ValueError(f"--source {args.source} needs --data-dir")
    if args.source == "speech-commands":
        from train.data.speech_commands import SpeechCommandsSource

        return SpeechCommandsSource(args.data_dir, args.keyword, args.max_per_word, progress=not args.quiet)
    from train.data.user_folder import FolderSource

    return FolderSource(args.data_dir, keyword=args.keyword, progress=not args.quiet)


def count_table(clips: ClipSet) -> str:
    keyword = clips.meta["keyword"]
    rows = [f"{'split':<6} {keyword:>10} {'other':>8} {'groups':>7}"]
    for split in SPLITS:
        chosen = clips.indices(split)
        positives = int((clips.labels[chosen] == 1).sum())
        groups = len(set(clips.groups[chosen].tolist()))
        rows.append(f"{split:<6} {positives:>10} {len(chosen) - positives:>8} {groups:>7}")
    rows.append(f"noise bank: {len(clips.noise_bank())} recordings, {clips.meta.get('noise_seconds', '?')} s")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    started = time.monotonic()
    try:
        source = make_source(args)
        spec = FeatureSpec()
        cached = is_complete(
            dataset_folder(source, spec, args.cache_root, args.seed), cache_key(source, spec, args.seed)
        )
        folder = build_dataset(source, spec, args.cache_root, args.seed)
        clips = ClipSet.load(folder)
    except ValueError as error:
        print(f"build_data: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    print(count_table(clips))
    print(f"{'reused the cached build' if cached else 'built'} in {time.monotonic() - started:.1f} s")
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
