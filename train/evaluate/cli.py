"""`python -m train.evaluate --model artifacts/edge`: long-audio FRR and false accepts per hour, ours vs the peer.

Builds (or reuses) the evaluation streams for the bundle's keyword, runs the deployed int8 model through the edge
runtime's detector and pocketsphinx over them, and writes `report.json`, `report.md` and `det.png` to `--out`.
With `--target-fa-per-hour X` it also writes the threshold that meets X on these streams into the bundle's manifest
(`make eval` does so on the val split, then scores the test split at it); every report says what the bundle's own
threshold does on its streams. Bad input: one `error:` line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge_runtime.cli_parser import OneLineErrorParser, positive_int
from edge_runtime.errors import KwsError
from train.data.augment import Augmenter
from train.data.clipset import ClipSet
from train.evaluate import peer as peer_module
from train.evaluate.calibrate import write_threshold
from train.evaluate.detectors import DEFAULT_DETECTOR, DETECTORS, CheckpointDetector, ScoreTrack, make_detector
from train.evaluate.report import (
    breakdown,
    delay_summary,
    false_accepts_by_group,
    mean_frr,
    operating_points,
    write_report,
)
from train.evaluate.scoring import Scored, candidate_thresholds, sweep, threshold_for
from train.evaluate.selection import VAL_STREAM_SEED
from train.evaluate.streams import Stream, StreamConfig, build_streams, load_streams, stream_audio
from train.metrics import roc_auc

EXIT_BAD_INPUT = 2
DEFAULTS = StreamConfig(keyword="x", held_out_variants=("x",))
PEER_CLIP_PAD_S = 0.5  # silence around each test clip for the peer, which needs some lead-in
# Each split's voices come with their own stream seed: the val streams are another draw of texts and scenes, so
# choices made on them (a threshold, a training change) are not fitted to the test streams' draws either.
SPLIT_SEEDS = {"test": DEFAULTS.seed, "val": VAL_STREAM_SEED}


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="python -m train.evaluate",
        description="Long-audio evaluation of a converted bundle on voices training never heard: FRR, false "
        "accepts per hour, DET curve, clip-level ROC AUC, real-time factor; pocketsphinx beside it.",
    )
    add = parser.add_argument
    add("--model", type=Path, default=Path("artifacts/edge"), help="bundle folder or manifest (default: %(default)s)")
    add(
        "--clipset", type=Path, default=None,
        help="the clip set the model was trained on, for its held-out voices and test clips "
        "(default: the manifest's source.clipset)",
    )  # fmt: skip
    add("--out", type=Path, default=Path("artifacts/eval"), help="report folder (default: %(default)s)")
    add("--cache-root", type=Path, default=Path("data"), help="where streams are cached (default: %(default)s)")
    add("--positives", type=int, default=DEFAULTS.positives, help="keyword occurrences (default: %(default)s)")
    add(
        "--negative-hours", type=float, default=DEFAULTS.negative_hours,
        help="hours of audio without the keyword; 0.1 FA/h needs >= 10, 0.5 FA/h >= 2 (default: %(default)s)",
    )  # fmt: skip
    add(
        "--split", choices=sorted(SPLIT_SEEDS), default="test",
        help="whose voices: the eSpeak variants the clip set held out for test (the reported figures) or for val "
        "(for choosing training changes without looking at test; clip AUC on the val clips too) "
        "(default: %(default)s)",
    )  # fmt: skip
    add(
        "--seed", type=int, default=None,
        help="evaluation seed, not a training one (default: "
        + ", ".join(f"{seed} for {split}" for split, seed in sorted(SPLIT_SEEDS.items())) + ")",
    )  # fmt: skip
    add(
        "--target-fa-per-hour", type=float, default=None,
        help="choose the lowest threshold with at most this many false accepts per hour on these streams and write "
        "it into the bundle's manifest (verifier.threshold for a two-stage bundle, else detection.threshold, with "
        "threshold_source naming the split and streams); make eval does this on --split val, then scores test "
        "(default: report only)",
    )  # fmt: skip
    add(
        "--detector", choices=sorted(DETECTORS), default=DEFAULT_DETECTOR,
        help="edge runtime detector: window (`detect`) or streaming (`run`) (default: %(default)s)",
    )  # fmt: skip
    add(
        "--reference", type=Path, action="append", default=[], metavar="CHECKPOINT",
        help="also score this torch checkpoint (e.g. the CRNN teacher, artifacts/train/crnn/best.pt) on the same "
        "streams, at the streaming detector's output times with its smoothing and refractory period: what the "
        "deployed model gives up to compression; repeatable; needs --detector streaming (default: none)",
    )  # fmt: skip
    add(
        "--phases", type=positive_int, default=1, metavar="N",
        help="score every stream N times, delayed by 0..N-1 feature hops of silence, and pool them: a strided "
        "model (the DS-CNN's stem takes 5 frames a step) sees the audio at another phase each time, and one phase's "
        "FRR at 0.5 FA/h moved a one-phase detector by up to 25 points. A bundle whose detector runs every phase "
        "of the stride itself (streaming.phases, python -m convert's default) needs only 1. FA/h and FRR are "
        "then over N times the audio, at N times the scoring time (ours and references; pocketsphinx once) "
        "(default: %(default)s)",
    )  # fmt: skip
    add(
        "--gates", default=None, metavar="G1,G2,...",
        help="for a two-stage bundle: also measure the detector with the verifier's gate at each of these levels of "
        "the student's smoothed probability (0..1), from one scoring pass run at the lowest of them and the "
        "bundle's own: FRR at 0.5 / 0.1 FA/h, mean FRR, clip ROC AUC and how often the verifier runs, per gate "
        "(report.json gate_sweep, a table in report.md, gates.png). What the report says of the bundle itself "
        "stays at its own gate; convert --verifier-gate sets another (default: no sweep)",
    )  # fmt: skip
    add("--no-peer", action="store_true", help="skip pocketsphinx (default: run it)")
    add(
        "--peer-hours", type=float, default=None,
        help="negative hours pocketsphinx runs on, an evenly spread subset; it takes ~0.01-0.03 s per second of "
        "audio (default: all of them)",
    )  # fmt: skip
    add(
        "--workers", type=int, default=os.cpu_count() or 1,
        help="processes that build streams; the result is the same (default: %(default)s, the CPU count)",
    )  # fmt: skip
    add("--quiet", action="store_true", help="no progress bars (default: bars on a terminal)")
    return parser


def gate_list(text: str | None) -> tuple[float, ...] | None:
    """`--gates`: comma-separated levels in 0..1, sorted without repeats; () for none, None when malformed."""
    if text is None:
        return ()
    try:
        gates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        return None
    return tuple(sorted(set(gates))) if gates and all(0.0 <= gate <= 1.0 for gate in gates) else None


def held_out_variants(clips: ClipSet, split: str = "test") -> tuple[str, ...]:
    held_out = clips.meta.get("held_out", {}).get(split, {}).get("espeak_variants")
    if not held_out:
        raise ValueError(
            f"clip set {clips.folder} lists no held-out {split} voices (meta.json held_out.{split}.espeak_variants); "
            "evaluation needs a synthetic clip set"
        )
    return tuple(held_out)


def clipset_of(args, manifest: dict) -> ClipSet:
    path = args.clipset or manifest.get("source", {}).get("clipset")
    if not path:
        raise ValueError("the manifest names no clip set; pass --clipset")
    return ClipSet.load(path)


def score_streams(
    detector, folder: Path, streams: list[Stream], progress: bool, desc: str = "scoring (ours)", phases: int = 1
):
    """The detector's score track per stream and phase (stream by stream, phases 0..phases-1 within each, as
    `phased` lists them), the seconds spent scoring, and for a detector with a verifier how much it ran on each
    kind of stream (else None)."""
    tracks, spent, usage = [], 0.0, {}
    for stream in tqdm(streams, desc=desc, unit="stream", disable=None if progress else True):
        audio = stream_audio(folder, stream)
        for phase in range(phases):
            started = time.perf_counter()
            tracks.append(score_at_phase(detector, audio, phase))
            spent += time.perf_counter() - started
            ran = getattr(detector, "last_verifier_usage", None)
            if ran is not None:
                add_usage(usage, stream, ran)
    return tracks, spent, (verifier_usage(usage) if usage else None)


def add_usage(totals: dict, stream: Stream, ran: dict) -> None:
    """Add one scoring of `stream` (a detector's `last_verifier_usage`) to the totals per kind of stream."""
    total = totals.setdefault(stream.kind, {"seconds": 0.0, "windows": 0, "open_outputs": 0, "outputs": 0})
    total["seconds"] += stream.seconds
    for key, value in ran.items():
        total[key] += value


def verifier_usage(totals: dict) -> dict:
    """Per kind of stream: the share of outputs the gate was open for and the verifier windows per hour."""
    return {
        kind: {
            "gate_open_share": t["open_outputs"] / t["outputs"] if t["outputs"] else 0.0,
            "windows_per_hour": t["windows"] / (t["seconds"] / 3600) if t["seconds"] else 0.0,
            "hours": t["seconds"] / 3600,
        }
        for kind, t in sorted(totals.items())
    }


def score_at_phase(detector, audio: np.ndarray, phase: int) -> ScoreTrack:
    """The detector's track on `audio` delayed by `phase` hops of digital silence, with the delay taken back out
    of the times (so keyword spans still line up) and the outputs that heard only the delay dropped."""
    if phase == 0:
        return detector.score(audio)
    delay = phase * detector.spec.hop_samples
    track = detector.score(np.concatenate([np.zeros(delay, np.float32), np.asarray(audio, np.float32)]))
    delay_s = delay / detector.spec.sample_rate
    return track.shifted(track.times_s >= delay_s, delay_s)


def phased(streams: list[Stream], phases: int) -> list[Stream]:
    """Each stream once per phase, in `score_streams`' order."""
    return [stream for stream in streams for _ in range(phases)]


def detector_curve(detector, streams: list[Stream], tracks: list, hit_after: float):
    """(curve, scored positives, scored negatives) of a detector's score tracks, positives and negatives in stream
    order."""

    def scored(stream: Stream, track) -> Scored:
        return Scored(lambda t: detector.detect(track, t), stream.seconds, stream.keyword_spans, stream.family)

    pairs = list(zip(streams, tracks, strict=True))
    positive = [scored(s, track) for s, track in pairs if s.kind == "positive"]
    negative = [scored(s, track) for s, track in pairs if s.kind == "negative"]
    negative_values = [detector.decision_values(track) for s, track in pairs if s.kind == "negative"]
    thresholds = candidate_thresholds([track.scores for track in tracks], negative_values)
    return sweep(positive, negative, thresholds, hit_after), positive, negative


def gate_sweep(detector, streams: list[Stream], tracks: list, gates, hit_after: float, clips=None) -> dict:
    """The detector at each of `gates` from the same tracks (scored with the verifier's gate at or below all of
    them): operating points, mean FRR and how often the verifier runs, per gate; with `clips` (the clips' tracks
    and labels) their ROC AUC too."""
    rows = []
    for gate in gates:
        gated = [detector.at_gate(track, gate) for track in tracks]
        curve, _, _ = detector_curve(detector, streams, gated, hit_after)
        totals: dict = {}
        for stream, track in zip(streams, tracks, strict=True):
            add_usage(totals, stream, detector.usage_at_gate(track, gate))
        rows.append({"gate": gate, "operating_points": operating_points(curve), "mean_frr": mean_frr(curve),
                     "verifier": verifier_usage(totals)})  # fmt: skip
        if clips is not None:
            clip_tracks, labels = clips
            rows[-1]["clip_roc_auc"] = roc_auc(np.array([peak(detector.at_gate(t, gate)) for t in clip_tracks]), labels)
    return {"scored_with_gate": detector.verifier.gate, "deployed_gate": detector.deployed_gate, "gates": rows}


def peer_subset(negatives: list[Stream], hours: float | None) -> list[Stream]:
    """Evenly spread negatives adding up to about `hours` (all when None)."""
    total = sum(s.seconds for s in negatives) / 3600
    if hours is None or hours >= total:
        return negatives
    count = max(1, round(len(negatives) * hours / total))
    return [negatives[i] for i in np.unique(np.linspace(0, len(negatives) - 1, count).round().astype(int))]


def clip_scores(clips: ClipSet, spec, score_one, split: str = "test") -> tuple[np.ndarray | list, np.ndarray]:
    """`score_one` of each of the split's clips (centred in a 1 s window), as an array of numbers or, where it
    returns tracks, a list; and which clips hold the keyword."""
    augmenter = Augmenter(spec, [], np.random.default_rng(0))
    indices = clips.indices(split)
    scores = [score_one(augmenter.centered_window(clips.utterance(i))) for i in indices]
    return (scores if scores and isinstance(scores[0], ScoreTrack) else np.array(scores)), clips.labels[indices] == 1


def peak(track: ScoreTrack) -> float:
    """A clip's score: the highest value its track reaches."""
    return float(track.scores.max())


def run(args) -> int:
    progress = not args.quiet
    detector = make_detector(args.model, args.detector, min(args.gates) if args.gates else None)
    spec, keyword, manifest = detector.spec, detector.keyword, detector.manifest
    references = [CheckpointDetector(checkpoint, detector) for checkpoint in args.reference]  # fail before scoring
    clips = clipset_of(args, manifest)
    config = StreamConfig(
        keyword=keyword, held_out_variants=held_out_variants(clips, args.split), positives=args.positives,
        negative_hours=args.negative_hours, seed=SPLIT_SEEDS[args.split] if args.seed is None else args.seed,
        piper_negative_hours=min(DEFAULTS.piper_negative_hours, args.negative_hours * 0.25),
    )  # fmt: skip
    folder = build_streams(config, spec, args.cache_root, workers=args.workers, progress=progress)
    streams = load_streams(folder)
    positives = [s for s in streams if s.kind == "positive"]
    negatives = [s for s in streams if s.kind == "negative"]
    scored = phased(streams, args.phases)  # what the curves count: every stream at every phase
    scored_positives = [s for s in scored if s.kind == "positive"]
    scored_negatives = [s for s in scored if s.kind == "negative"]
    hit_after = spec.clip_seconds

    tracks, spent, verifier_ran = score_streams(detector, folder, streams, progress, phases=args.phases)
    curve, ours_pos, ours_neg = detector_curve(detector, scored, tracks, hit_after)
    clip_tracks, clip_labels = clip_scores(clips, spec, detector.score, args.split)
    clip_our = np.array([peak(track) for track in clip_tracks])
    clips_scored = (clip_tracks, clip_labels)
    swept = gate_sweep(detector, scored, tracks, args.gates, hit_after, clips_scored) if args.gates else None
    audio_seconds = sum(s.seconds for s in streams)
    verifier = getattr(detector, "verifier", None)
    verified = f", verified by {verifier.architecture}" if verifier is not None else ""
    our_name = (f"ours ({manifest['model'].get('architecture', '?')} {detector.precision}, {detector.name} detector"
                f"{verified})")  # fmt: skip
    systems = {
        our_name: {
            "operating_points": operating_points(curve),
            "mean_frr": mean_frr(curve),
            "negative_hours": curve.negative_hours,
            "clip_roc_auc": roc_auc(clip_our, clip_labels),
            "rtf": spent / (audio_seconds * args.phases),
            "curve": curve.to_dict(),
            **({"verifier": verifier_ran} if verifier_ran else {}),
            **({"gate_sweep": swept} if swept else {}),
        }
    }
    curves = {our_name: curve}
    for reference in references:
        name, curves[name], systems[name] = run_reference(reference, folder, streams, clips, args, hit_after)
    if not args.no_peer:
        peer_name, peer_curve, peer_entry = run_peer(
            keyword, folder, positives, negatives, clips, spec, args, hit_after
        )
        systems[peer_name], curves[peer_name] = peer_entry, peer_curve

    report = {
        "keyword": keyword,
        "bundle": str(args.model),
        "model_sha256": manifest["model"]["sha256"],
        "detector": detector.name,
        "precision": detector.precision,
        "split": args.split,
        "trained_without": list(manifest.get("source", {}).get("leave_out", [])),
        "hit_rule": f"a detection within [onset, offset + {hit_after:g} s] of a keyword occurrence",
        "phases": args.phases,
        "streams": {
            "folder": str(folder),
            "config": asdict(config),
            "positives": curve.positives,
            "positive_hours": sum(s.seconds for s in scored_positives) / 3600,
            "negative_hours": curve.negative_hours,
            "negative_hours_by_family": {
                family: sum(s.seconds for s in scored_negatives if s.family == family) / 3600
                for family in sorted({s.family for s in negatives})
            },
        },
        "systems": systems,
    }
    report["breakdown"] = operating_breakdown(
        curve, args.target_fa_per_hour, ours_pos, scored_positives, ours_neg, scored_negatives, hit_after
    )
    section = "verifier" if verifier is not None else "detection"  # the threshold of what was evaluated
    shipped = shipped_threshold(manifest, section)
    if shipped is not None:  # as the bundle came in, before a threshold chosen here replaces it
        report["shipped_threshold"] = as_shipped(shipped, ours_pos, scored_positives, ours_neg, scored_negatives,
                                                 hit_after)  # fmt: skip
    if args.target_fa_per_hour is not None:
        report["threshold"] = choose_threshold(args, curve, report, section)
    paths = write_report(report, curves, args.out)
    print(paths["markdown"].read_text(encoding="utf-8"))
    print(f"report: {paths['json']}  {paths['markdown']}  {paths['plot']}")
    return 0


def operating_breakdown(curve, target, ours_pos, positives, ours_neg, negatives, hit_after: float) -> dict:
    """Where the errors are: FRR per family / SNR band and FA/h per family / noise kind, at the threshold for the
    target FA/h (0.5 when none is given), or at the strictest threshold when no threshold reaches it."""
    target = 0.5 if target is None else target
    point = threshold_for(curve, target)
    threshold = point.threshold if point else float(curve.thresholds[-1])
    why = f"the threshold for {target:g} FA/h" if point else f"the strictest; none reaches {target:g} FA/h"
    return {
        "threshold": threshold,
        "why": why,
        "positives": breakdown(ours_pos, positives, threshold, hit_after),
        "delay_after_keyword_end": delay_summary(ours_pos, threshold, hit_after),
        "negatives": false_accepts_by_group(ours_neg, [s.scene["noise"] for s in negatives], threshold),
    }


def shipped_threshold(manifest: dict, section: str) -> dict | None:
    """The threshold the bundle ships for the evaluated detector (`section`: detection or verifier) and where it came
    from: `threshold_source` when an evaluation chose it, None when conversion set it from the val clips."""
    values = manifest.get(section)
    if not isinstance(values, dict) or values.get("threshold") is None:
        return None
    return {"section": section, "threshold": float(values["threshold"]), "source": values.get("threshold_source")}


def as_shipped(shipped: dict, ours_pos, positives, ours_neg, negatives, hit_after: float) -> dict:
    """The shipped threshold's entry of the report: FRR and FA/h at it, and where a user's misses and false accepts
    would be (the breakdown by voice, SNR and noise again, at the threshold they run)."""
    threshold = shipped["threshold"]
    return {
        **shipped, **at_threshold(ours_pos, ours_neg, threshold, hit_after),
        "breakdown": {
            "positives": breakdown(ours_pos, positives, threshold, hit_after),
            "negatives": false_accepts_by_group(ours_neg, [s.scene["noise"] for s in negatives], threshold),
        },
    }  # fmt: skip


def at_threshold(positive: list[Scored], negative: list[Scored], threshold: float, hit_after: float) -> dict:
    """FRR and false accepts per hour at one given threshold: what a user of the bundle gets, where the curve's
    operating points are each at the threshold that these very streams pick."""
    point = sweep(positive, negative, [threshold], hit_after, stop_above_fa_per_hour=float("inf"))
    return {
        "frr": float(point.frr[0]), "fa_per_hour": float(point.fa_per_hour[0]),
        "false_accepts": int(point.false_accepts[0]), "positives": point.positives,
        "negative_hours": point.negative_hours,
    }  # fmt: skip


def run_reference(reference: CheckpointDetector, folder: Path, streams: list[Stream], clips, args, hit_after: float):
    """A torch checkpoint on the same streams as ours: name, curve and report entry (with its own breakdown)."""
    name = f"reference: {reference.architecture} float32 torch ({reference.checkpoint})"
    tracks, _, _ = score_streams(
        reference, folder, streams, not args.quiet, f"scoring ({reference.architecture})", phases=args.phases
    )
    scored = phased(streams, args.phases)
    curve, positive, negative = detector_curve(reference, scored, tracks, hit_after)
    clip, labels = clip_scores(clips, reference.spec, lambda w: float(reference.score(w).scores.max()), args.split)
    entry = {
        "operating_points": operating_points(curve),
        "mean_frr": mean_frr(curve),
        "negative_hours": curve.negative_hours,
        "clip_roc_auc": roc_auc(clip, labels),
        "rtf": None,  # batched float32 torch on the workstation: not a deployed path, so no real-time factor
        "checkpoint": str(reference.checkpoint),
        "label": f"{reference.architecture} (reference)",
        "curve": curve.to_dict(),
    }
    entry["breakdown"] = operating_breakdown(
        curve, args.target_fa_per_hour, positive, [s for s in scored if s.kind == "positive"],
        negative, [s for s in scored if s.kind == "negative"], hit_after,
    )  # fmt: skip
    return name, curve, entry


def choose_threshold(args, curve, report, section: str = "detection") -> dict:
    """The threshold for the target FA/h, written into the evaluated detector's `section` of the manifest."""
    point = threshold_for(curve, args.target_fa_per_hour)
    entry = {"target_fa_per_hour": args.target_fa_per_hour, "chosen": point.to_dict() if point else None}
    entry["written"] = False
    if point is None:
        print(f"warning: no threshold reaches {args.target_fa_per_hour} FA/h; manifest unchanged", file=sys.stderr)
        return entry
    if not point.resolvable:
        print(
            f"warning: {curve.negative_hours:.2f} h of negative audio cannot resolve {args.target_fa_per_hour} FA/h "
            f"(needs {1 / args.target_fa_per_hour:g} h); the threshold allows no false accept at all",
            file=sys.stderr,
        )
    write_threshold(
        args.model, point.threshold,
        {
            "target_fa_per_hour": args.target_fa_per_hour, "split": args.split,
            "measured_fa_per_hour": point.fa_per_hour, "measured_frr": point.frr,
            "negative_hours": round(curve.negative_hours, 3),
            "positives": curve.positives, "detector": report["detector"], "streams": report["streams"]["folder"],
            "report": str(args.out / "report.json"),
        },
        section,
    )  # fmt: skip
    entry["written"] = True
    return entry


def run_peer(keyword, folder, positives, negatives, clips, spec, args, hit_after: float):
    if spec.sample_rate != peer_module.SAMPLE_RATE:
        raise ValueError(f"the peer needs {peer_module.SAMPLE_RATE} Hz audio, the bundle uses {spec.sample_rate}")
    spotter = peer_module.PocketSphinxSpotter(keyword)
    chosen = positives + peer_subset(negatives, args.peer_hours)
    results, spent = {}, 0.0
    for stream in tqdm(chosen, desc="scoring (pocketsphinx)", unit="stream", disable=True if args.quiet else None):
        result = spotter.run(stream_audio(folder, stream))
        results[stream.index], spent = result, spent + result.seconds

    def peer_scored(stream: Stream) -> Scored:
        return Scored(results[stream.index].detect, stream.seconds, stream.keyword_spans, stream.family)

    peer_neg = [s for s in chosen if s.kind == "negative"]
    peer_pos = [peer_scored(s) for s in positives]
    curve = sweep(peer_pos, [peer_scored(s) for s in peer_neg], spotter.thresholds, hit_after)
    pad = np.zeros(round(PEER_CLIP_PAD_S * spec.sample_rate), np.float32)
    scores, labels = clip_scores(clips, spec, lambda w: spotter.run(np.concatenate([pad, w, pad])).peak(), args.split)
    finite = np.where(np.isfinite(scores), scores, min(spotter.thresholds) - 1)
    name = f"pocketsphinx {peer_module.version()} (keyphrase spotting)"
    return name, curve, {
        "operating_points": operating_points(curve),
        "mean_frr": mean_frr(curve),
        "negative_hours": curve.negative_hours,
        "clip_roc_auc": roc_auc(finite, labels),
        "rtf": spent / sum(s.seconds for s in chosen),
        "thresholds_meaning": "-k for kws_threshold 1e-k",
        "curve": curve.to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problems = []
    if args.positives < 1:
        problems.append(f"--positives must be >= 1, got {args.positives}")
    if not args.negative_hours > 0:
        problems.append(f"--negative-hours must be > 0, got {args.negative_hours}")
    if args.target_fa_per_hour is not None and not args.target_fa_per_hour >= 0:
        problems.append(f"--target-fa-per-hour must be >= 0, got {args.target_fa_per_hour}")
    if args.peer_hours is not None and not args.peer_hours > 0:
        problems.append(f"--peer-hours must be > 0, got {args.peer_hours}")
    if args.reference and args.detector != "streaming":
        problems.append("--reference is scored like the streaming detector; it needs --detector streaming")
    problems += [f"--reference {path} does not exist" for path in args.reference if not path.is_file()]
    gates = gate_list(args.gates)
    if gates is None:
        problems.append(f"--gates must be comma-separated levels in 0..1 (e.g. 0.05,0.1,0.2), got {args.gates!r}")
    args.gates = gates or ()
    if args.workers < 1 or (args.seed is not None and args.seed < 0):
        problems.append("--workers must be >= 1 and --seed >= 0")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        return run(args)
    except (ValueError, KwsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
