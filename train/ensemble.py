"""Join trained checkpoints into one: the mean of their logits (train.models.ensemble.LogitMean), scored and
thresholded on the val windows as `train.fit` scores a model, written as an ordinary checkpoint.

    python -m train.ensemble --members runs/a/train/crnn/best.pt runs/a/train/crnn-seed1/best.pt \
        --data "$(cat runs/a/data_path.txt)" --out runs/a/train/verifier

The members must read the same features and spot the same keyword with the same labels on the same data (the
same left-out voices too): what a checkpoint's contract says. `make train` builds the detector's verifier this way
from VERIFIER_TEACHERS trainings of the teacher with other seeds (on a clip set of their own, VERIFIER_SIZE).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from edge_runtime.cli_parser import OneLineErrorParser
from train.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from train.data.augment import Augmenter
from train.data.clipset import ClipSet
from train.features_torch import TorchMelFrontEnd
from train.fit import val_test_metrics
from train.models import count_parameters
from train.models.ensemble import LogitMean

ARCHITECTURE = "ensemble"


def _contract(info: CheckpointInfo) -> dict:
    """What members must share: features, labels, keyword, the data set and the voices left out of it."""
    return {
        "feature_spec": info.feature_spec.to_dict(),
        "labels": list(info.labels),
        "keyword": info.keyword,
        "data": info.data.get("cache_key") or info.data.get("clipset"),
        "left_out": sorted(info.left_out),
    }


def join(paths: list[Path]) -> tuple[LogitMean, CheckpointInfo]:
    """The members' logit mean and its checkpoint info (threshold and metrics not yet set); ValueError saying
    which member differs in what, when they do not share a contract."""
    if len(paths) < 2:
        raise ValueError(f"an ensemble needs at least two --members, got {len(paths)}")
    loaded = [load_checkpoint(path) for path in paths]
    first = _contract(loaded[0][1])
    for path, (_, info) in zip(paths[1:], loaded[1:], strict=True):
        other = _contract(info)
        differs = [key for key in first if first[key] != other[key]]
        if differs:
            raise ValueError(
                f"{path} differs from {paths[0]} in {', '.join(differs)}: "
                + "; ".join(f"{key} {other[key]!r} vs {first[key]!r}" for key in differs)
            )
    if any(info.architecture == ARCHITECTURE for _, info in loaded):
        raise ValueError("a member is an ensemble itself; list its members instead")
    members = [{"architecture": info.architecture, "config": info.model_config} for _, info in loaded]
    base = loaded[0][1]
    model = LogitMean(base.feature_spec.n_mels, len(base.labels), members)
    for slot, (member, _) in zip(model.members, loaded, strict=True):
        slot.load_state_dict(member.state_dict())
    info = CheckpointInfo(
        architecture=ARCHITECTURE, model_config={"members": members}, feature_spec=base.feature_spec,
        labels=list(base.labels), keyword=base.keyword, data=dict(base.data),
    )  # fmt: skip
    info.data["members"] = [str(Path(path).resolve()) for path in paths]
    return model.eval(), info


def score(model: torch.nn.Module, info: CheckpointInfo, clips: ClipSet) -> dict:
    """Val and test detection metrics at the threshold `train.fit` would choose; sets `info.threshold`."""
    centre = Augmenter(info.feature_spec, [], np.random.default_rng(0))  # only its deterministic centred windows
    info.threshold, metrics = val_test_metrics(
        model, TorchMelFrontEnd(info.feature_spec), clips, centre, info.keyword_index, torch.device("cpu")
    )
    return metrics


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = OneLineErrorParser(
        prog="python -m train.ensemble",
        description="Join trained checkpoints into one model that outputs the mean of their logits (the "
        "detector's verifier); its threshold is chosen on the val windows, as train.fit chooses one.",
    )
    parser.add_argument("--members", type=Path, nargs="+", required=True, metavar="CHECKPOINT",
                        help="two or more checkpoints (best.pt of train.fit) with the same features, labels and data")
    parser.add_argument("--data", type=Path, required=True,
                        help="the clip set they were trained on (its val split sets the threshold)")
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for best.pt (the ensemble checkpoint) and metrics.json")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model, info = join(args.members)
        clips = ClipSet.load(args.data)
        recorded = info.data.get("cache_key")
        if recorded and clips.meta.get("cache_key") != recorded:
            raise ValueError(f"--data {args.data} is not the data set the members were trained on "
                             f"({info.data.get('clipset')})")  # fmt: skip
        if info.left_out:
            clips.leave_out(info.left_out)
        metrics = score(model, info, clips)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    info.metrics = metrics
    args.out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(args.out / "best.pt", model, info)
    summary = {"architecture": ARCHITECTURE, "members": info.data["members"], "parameters": count_parameters(model),
               "data": {"clipset": str(Path(args.data).resolve()), "cache_key": clips.meta.get("cache_key", "")},
               **metrics}  # fmt: skip
    (args.out / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    test = metrics["test"]
    print(
        f"ensemble of {len(args.members)}: test accuracy {test['accuracy']:.4f}, FRR {test['frr']:.4f}, FAR "
        f"{test['far']:.4f}, ROC AUC {test['roc_auc']:.4f} at threshold {test['threshold']:.3f} -> "
        f"{args.out / 'best.pt'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
