"""Train one model on a built clip set: `python -m train.fit --data DIR --model dscnn --out DIR`.

CUDA with mixed precision when present, CPU otherwise. Augmentation runs in numpy on the CPU (time shift, noise
at random SNR, gain); log-mel runs in torch on the training device. Each epoch is validated; the best checkpoint
(by validation ROC AUC, then loss) is kept, the decision threshold is chosen on validation, and the test split is
scored once at the end into `metrics.json`.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edge_runtime.cli_parser import OneLineErrorParser
from edge_runtime.features import FRONT_ENDS, LOG_MEL, MODEL_FRONT_END, FeatureSpec
from train.checkpoint import CheckpointInfo, load_checkpoint, save_checkpoint
from train.cli_options import json_object
from train.data.augment import (
    BABBLE_PROBABILITY,
    BABBLE_TALKERS,
    FORMANT_CENTRES_HZ,
    FORMANT_WARP_FACTOR,
    FORMANT_WARP_PROBABILITY,
    VTLP_FACTOR,
    VTLP_PROBABILITY,
    Augmenter,
)
from train.data.batches import FIT_EPOCH, AugmentedBatches, worker_count, workers_option
from train.data.clipset import ClipSet
from train.features_torch import TorchMelFrontEnd
from train.losses import class_weights
from train.metrics import accuracy_threshold, detection_metrics
from train.models import ARCHITECTURES, build_model, count_parameters
from train.resume import RESUME_FILE, load_training_state, restore, save_training_state
from train.spec_augment import SpecAugment


@dataclass
class FitConfig:
    data: Path
    out: Path
    model: str = "dscnn"
    # Keyword arguments that override the architecture's defaults (e.g. a wider CRNN for the verifier: {"hidden_size":
    # 128, "conv_channels": 16}); stored in the checkpoint, so export, conversion and the ensemble rebuild the same.
    model_config: dict = field(default_factory=dict)
    epochs: int = 12
    batch_size: int = 128
    learning_rate: float = 3e-3
    weight_decay: float = 1e-3
    positive_fraction: float = 0.35
    # SpecAugment masks on training features (train.spec_augment). Off by default: on the default data the CRNN
    # trained with them scored lower on val (best epoch: AUC 0.9948 vs 0.9976, accuracy 96.1% vs 97.8%) though its
    # test AUC was higher (0.9939 vs 0.9878): no clear gain, so the option stays for experiments.
    spec_augment: bool = False
    # Share of training windows with other speech before and after the utterance (train.data.augment,
    # CONTEXT_PROBABILITY); 0 switches it off.
    speech_context: float = 0.0
    whisper: float = 0.0
    # Share of training windows from another vocal tract length (train.data.augment, VTLP_PROBABILITY).
    vtlp: float = VTLP_PROBABILITY
    # Share of training windows with each formant moved by its own factor (train.data.augment,
    # FORMANT_WARP_PROBABILITY).
    formant_warp: float = FORMANT_WARP_PROBABILITY
    # Share of noisy training windows whose noise is babble made for that window (train.data.augment,
    # BABBLE_PROBABILITY) instead of a noise bank recording.
    babble: float = BABBLE_PROBABILITY
    # Group prefixes ("piper", "espeak:en-gb") taken out of train and val (ClipSet.leave_out): the test split then
    # measures a voice family or engine the model never heard. Recorded in the checkpoint's data entry, so the
    # student (train.compress) and the int8 calibration (python -m convert) leave out the same.
    leave_out: list[str] = field(default_factory=list)
    # Weight of non-keyword clips in the loss (the keyword's is 1): above 1 a false accept costs more than a miss.
    false_accept_weight: float = 1.0
    # The feature front-end (edge_runtime.features.FRONT_ENDS; default MODEL_FRONT_END, pcen-v2); None: the clip
    # set's own (log-mel for every clip set built so far). It travels with the checkpoint into the manifest, so
    # conversion and the device compute the same features.
    front_end: str | None = MODEL_FRONT_END
    seed: int = 0
    device: str = "auto"
    # Processes that augment the next batches while the model trains (train.data.batches); None: auto, worker_count().
    # The model is the same for any number.
    workers: int | None = None
    resume: bool = False
    stop_after_epochs: int | None = None  # end this invocation early (time-boxed jobs); resume later


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for but no CUDA device is available; use cpu or auto")
    return torch.device(requested)


def epoch_indices(clips: ClipSet, positive_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """All training negatives once, plus keyword utterances resampled to make up `positive_fraction` of the epoch."""
    positives, negatives = clips.indices("train", label=1), clips.indices("train", label=0)
    if len(positives) == 0 or len(negatives) == 0:
        raise ValueError("the training split needs both keyword and non-keyword clips")
    wanted = int(round(len(negatives) * positive_fraction / (1.0 - positive_fraction)))
    drawn = rng.choice(positives, size=max(wanted, len(positives)), replace=wanted > len(positives))
    return rng.permutation(np.concatenate([negatives, drawn]))


def centered_windows(clips: ClipSet, augmenter: Augmenter, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Fixed evaluation windows (utterance centred, no noise) and their labels for a split."""
    indices = clips.indices(split)
    windows = np.stack([augmenter.centered_window(clips.utterance(i)) for i in indices]) if len(indices) else None
    return windows, clips.labels[indices].astype(np.int64)


@torch.no_grad()
def keyword_scores(model, front_end, windows: np.ndarray, keyword_index: int, device, batch_size: int = 512):
    """Keyword probability for each window, batched."""
    model.eval()
    scores = []
    for start in range(0, len(windows), batch_size):
        audio = torch.from_numpy(windows[start : start + batch_size]).to(device)
        logits = model(front_end(audio)).float()
        scores.append(torch.softmax(logits, dim=1)[:, keyword_index].cpu().numpy())
    return np.concatenate(scores) if scores else np.zeros(0)


def val_test_metrics(model, front_end, clips: ClipSet, augmenter: Augmenter, keyword_index: int, device):
    """The threshold with the fewest errors on the centred val windows, and the val and test detection metrics at
    it: (threshold, {"val": ..., "test": ...}). What every trained or joined model reports."""
    scored = {}
    for split in ("val", "test"):
        windows, labels = centered_windows(clips, augmenter, split)
        if windows is None:
            raise ValueError(f"the {split} split is empty; the data set needs train, val and test clips")
        scored[split] = (keyword_scores(model, front_end, windows, keyword_index, device), labels == keyword_index)
    threshold = accuracy_threshold(*scored["val"])
    return threshold, {split: detection_metrics(scores, hits, threshold) for split, (scores, hits) in scored.items()}


def train_one_epoch(
    model, front_end, optimizer, scheduler, scaler, batches, device, use_amp, progress, masks=None,
    false_accept_weight: float = 1.0,
):
    model.train()
    total_loss, seen = 0.0, 0
    for audio, labels in batches:
        audio, labels = torch.from_numpy(audio).to(device), torch.from_numpy(labels).to(device)
        with torch.no_grad():
            features = front_end(audio)  # float32 FFT outside autocast
            if masks is not None:
                features = masks(features)
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            logits = model(features)
            loss = torch.nn.functional.cross_entropy(
                logits, labels, weight=class_weights(false_accept_weight, logits)
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        total_loss += loss.item() * len(labels)
        seen += len(labels)
        progress.set_postfix(loss=f"{total_loss / seen:.4f}")
        progress.update(len(labels))
    return total_loss / max(seen, 1)


def training_augmenter(
    clips: ClipSet, spec, rng: np.random.Generator, speech_context: float, whisper: float = 0.0,
    vtlp: float = VTLP_PROBABILITY, babble: float = BABBLE_PROBABILITY,
    formant_warp: float = FORMANT_WARP_PROBABILITY,
) -> Augmenter:
    """The augmentation of training windows (the teacher's and, in `train.compress`, the student's)."""
    context = clips.sampler("train", label=0) if speech_context > 0 or babble > 0 else None
    return Augmenter(
        spec, clips.noise_bank(), rng, context_speech=context, context_probability=speech_context,
        whisper_probability=whisper, vtlp_probability=vtlp, babble_probability=babble,
        formant_warp_probability=formant_warp,
    )  # fmt: skip


def clipset_spec(clips: ClipSet, front_end: str | None = None) -> FeatureSpec:
    """The clip set's feature spec, with another front-end if one is named (the audio is the same for any)."""
    spec = FeatureSpec.from_dict(clips.meta["feature_spec"]) if "feature_spec" in clips.meta else FeatureSpec()
    return dataclasses.replace(spec, front_end=front_end) if front_end else spec


def fit(config: FitConfig) -> dict:
    """Train, keep the best checkpoint, score the test split; returns the metrics written to metrics.json."""
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = pick_device(config.device)
    clips = ClipSet.load(config.data)
    if config.leave_out:
        left_out = clips.leave_out(config.leave_out)
        print(f"leaving out {left_out} train and val utterances of {', '.join(config.leave_out)}", file=sys.stderr)
    spec = clipset_spec(clips, config.front_end)
    augmenter = training_augmenter(
        clips, spec, rng, config.speech_context, config.whisper, config.vtlp, config.babble, config.formant_warp
    )
    # Made before any tensor is on the GPU: the workers are forked and only ever run numpy.
    batches = AugmentedBatches(clips, augmenter, config.seed, worker_count(config.workers, device.type))
    try:
        return _fit(config, clips, spec, rng, augmenter, batches, device)
    finally:
        batches.close()


def _fit(config: FitConfig, clips: ClipSet, spec, rng, augmenter: Augmenter, batches: AugmentedBatches, device):
    use_amp = device.type == "cuda"
    labels = list(clips.meta["labels"])
    keyword = clips.meta["keyword"]
    keyword_index = labels.index(keyword)
    front_end = TorchMelFrontEnd(spec).to(device)
    model_config = dict(config.model_config)  # the architecture's defaults but for these; travels in the checkpoint
    try:
        model = build_model(config.model, n_mels=spec.n_mels, num_classes=len(labels), **model_config).to(device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{config.model} cannot be built with --model-config {json.dumps(model_config)}: {error}") \
            from None
    val_windows, val_labels = centered_windows(clips, augmenter, "val")
    if val_windows is None:
        raise ValueError("the validation split is empty; the data set needs train, val and test clips")

    epoch_size = len(epoch_indices(clips, config.positive_fraction, np.random.default_rng(0)))
    steps_per_epoch = -(-epoch_size // config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.learning_rate, total_steps=config.epochs * steps_per_epoch
    )
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    info = CheckpointInfo(
        architecture=config.model,
        model_config=model_config,
        feature_spec=spec,
        labels=labels,
        keyword=keyword,
        data={
            "clipset": str(Path(config.data).resolve()),
            "cache_key": clips.meta.get("cache_key", ""),
            **({"leave_out": list(config.leave_out)} if config.leave_out else {}),
        },
    )
    print(
        f"training {config.model} ({count_parameters(model):,} parameters) on {device.type} for {config.epochs} "
        f"epochs, {steps_per_epoch} steps each, {batches.workers} augmentation workers",
        file=sys.stderr,
    )
    config.out.mkdir(parents=True, exist_ok=True)
    best_path, history, best_key, first_epoch = config.out / "best.pt", [], None, 1
    resume_path, settings = config.out / RESUME_FILE, resume_settings(config, clips)
    state = load_training_state(resume_path, settings) if config.resume else None
    if state is not None:
        restore(state, model=model, optimizer=optimizer, scheduler=scheduler, scaler=scaler, rng=rng)
        history, first_epoch = state["history"], state["epoch"] + 1
        best_key = tuple(state["best_key"]) if state["best_key"] is not None else None
        info.epoch = state["best_epoch"]
        print(f"resuming from {resume_path} after epoch {state['epoch']}", file=sys.stderr)
    started = time.monotonic()
    last_epoch = config.epochs if config.stop_after_epochs is None else min(
        config.epochs, first_epoch - 1 + config.stop_after_epochs)
    for epoch in range(first_epoch, last_epoch + 1):
        order = epoch_indices(clips, config.positive_fraction, rng)
        # disable=None: a live bar on a terminal, nothing in logs (make's output, CI, journald).
        with tqdm(total=len(order), desc=f"epoch {epoch}/{config.epochs}", unit="clip", disable=None) as bar:
            loss = train_one_epoch(
                model, front_end, optimizer, scheduler, scaler,
                batches.batches(order, config.batch_size, stream=(FIT_EPOCH, epoch)), device, use_amp, bar,
                masks=SpecAugment() if config.spec_augment else None,
                false_accept_weight=config.false_accept_weight,
            )
        val_scores = keyword_scores(model, front_end, val_windows, keyword_index, device)
        val = detection_metrics(val_scores, val_labels == keyword_index, accuracy_threshold(val_scores, val_labels))
        history.append({"epoch": epoch, "train_loss": loss, **{f"val_{k}": v for k, v in val.items()}})
        print(
            f"epoch {epoch}: loss {loss:.4f}  val AUC {val['roc_auc']:.4f}  val accuracy {val['accuracy']:.4f}",
            file=sys.stderr,
        )
        key = (val["roc_auc"], val["accuracy"], -loss)
        if best_key is None or key > best_key:
            best_key, info.epoch = key, epoch
            save_checkpoint(best_path, model, info)
        save_training_state(resume_path, settings=settings, epoch=epoch, model=model, optimizer=optimizer,
                            scheduler=scheduler, scaler=scaler, rng=rng, history=history, best_key=best_key,
                            best_epoch=info.epoch)
    if last_epoch < config.epochs:
        print(f"stopped after epoch {last_epoch} of {config.epochs}; continue with --resume", file=sys.stderr)
        return {"stopped_after_epoch": last_epoch}

    model, info = load_checkpoint(best_path, device=str(device))
    info.threshold, scored = val_test_metrics(model, front_end, clips, augmenter, keyword_index, device)
    metrics = {
        "architecture": config.model,
        "parameters": count_parameters(model),
        "device": device.type,
        "best_epoch": info.epoch,
        "train_seconds": round(time.monotonic() - started, 1),
        "data": dict(info.data),  # which clip set the test split is from (the verifier's teachers have their own)
        **scored,
        "history": history,
    }
    info.metrics = {"val": metrics["val"], "test": metrics["test"]}
    save_checkpoint(best_path, model, info)
    (config.out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def model_settings(model: str) -> list[str]:
    """What `--model-config` may set for an architecture: its constructor's keyword arguments but n_mels and
    num_classes, which come from the clip set."""
    return sorted(set(inspect.signature(ARCHITECTURES[model]).parameters) - {"n_mels", "num_classes"})


def resume_settings(config: FitConfig, clips: ClipSet) -> dict:
    """What must be equal for a saved training state to be continued."""
    return {
        "model": config.model, "epochs": config.epochs, "batch_size": config.batch_size,
        "learning_rate": config.learning_rate, "weight_decay": config.weight_decay,
        "positive_fraction": config.positive_fraction, "seed": config.seed, "spec_augment": config.spec_augment,
        # Only when on, so states written before the option existed still resume.
        **({"speech_context": config.speech_context} if config.speech_context else {}),
        **({"whisper": config.whisper} if config.whisper else {}),
        **({"vtlp": config.vtlp} if config.vtlp else {}),
        **({"babble": config.babble} if config.babble else {}),
        **({"formant_warp": config.formant_warp} if config.formant_warp else {}),
        **({"leave_out": list(config.leave_out)} if config.leave_out else {}),
        **({"model_config": dict(config.model_config)} if config.model_config else {}),
        **({"false_accept_weight": config.false_accept_weight} if config.false_accept_weight != 1.0 else {}),
        **({"front_end": config.front_end} if config.front_end not in (None, LOG_MEL) else {}),
        "data": clips.meta.get("cache_key", str(Path(config.data).resolve())),
        # States written before augmentation drew per-batch streams (train.data.batches) continue differently.
        "augmentation_streams": "per-batch",
    }


def parse_args(argv: list[str] | None = None) -> FitConfig:
    defaults = FitConfig(data=Path(), out=Path())
    parser = OneLineErrorParser(
        prog="python -m train.fit",
        description="Train a keyword-spotting model on a clip set built by `python -m train.build_data`.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data", type=Path, required=True, help="clip set folder (printed by train.build_data)")
    parser.add_argument("--out", type=Path, required=True, help="folder for best.pt and metrics.json")
    parser.add_argument("--model", choices=sorted(ARCHITECTURES), default=defaults.model, help="architecture")
    parser.add_argument(
        "--model-config", type=json_object, default={}, metavar="JSON",
        help="JSON object of keyword arguments that override the architecture's defaults, e.g. '{\"hidden_size\": "
        "128, \"conv_channels\": 16}' for a wider CRNN; stored in the checkpoint; {} keeps the architecture's own",
    )
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="clips per optimiser step")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="peak one-cycle LR")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="AdamW weight decay")
    parser.add_argument(
        "--positive-fraction", type=float, default=defaults.positive_fraction,
        help="share of keyword clips in each epoch (keyword clips are resampled to reach it)",
    )
    parser.add_argument(
        "--spec-augment", action="store_true",
        help="SpecAugment frequency and time masks on the training features (train.spec_augment)",
    )
    parser.add_argument(
        "--speech-context", type=float, default=defaults.speech_context, metavar="P",
        help="share of training windows with other speech before and after the word, as live (0 = off)",
    )
    parser.add_argument(
        "--whisper", type=float, default=defaults.whisper, metavar="P",
        help="share of training windows whose utterance is whispered (its spectral envelope over noise, "
        "train.data.augment.whispered) (0 = off)",
    )
    parser.add_argument(
        "--vtlp", type=float, default=defaults.vtlp, metavar="P",
        help="share of training windows whose formants move by a factor from "
        f"{VTLP_FACTOR[0]:g} to {VTLP_FACTOR[1]:g} with pitch and timing kept (vocal-tract-length perturbation, "
        "train.data.augment.vocal_tract_warped) (0 = off)",
    )
    parser.add_argument(
        "--formant-warp", type=float, default=defaults.formant_warp, metavar="P",
        help="share of training windows whose formants move each by a factor of its own, from "
        f"{FORMANT_WARP_FACTOR[0]:g} to {FORMANT_WARP_FACTOR[1]:g} (the envelope around "
        f"{', '.join(f'{hz:g}' for hz in FORMANT_CENTRES_HZ)} Hz; pitch and timing kept; "
        "train.data.augment.formant_warped), as eSpeak's voice variants do; on top of --vtlp (0 = off; default: "
        "%(default)s)",
    )
    parser.add_argument(
        "--babble", type=float, default=defaults.babble, metavar="P",
        help=f"share of noisy training windows whose noise is babble of {BABBLE_TALKERS[0]}-{BABBLE_TALKERS[1]} "
        "talkers made for that window from training negatives, instead of one of the noise bank's recordings "
        "(0 = off; default: %(default)s)",
    )
    parser.add_argument(
        "--leave-out", action="append", default=[], metavar="GROUP_PREFIX",
        help="train and validate without the utterances whose voice group starts with this ('piper', "
        "'espeak:en-gb'; repeatable); the test split keeps them (default: none)",
    )
    parser.add_argument(
        "--false-accept-weight", type=float, default=defaults.false_accept_weight, metavar="W",
        help="weight of non-keyword clips in the loss, the keyword's being 1 (> 1: false accepts cost more)",
    )
    parser.add_argument(
        "--front-end", choices=FRONT_ENDS, default=MODEL_FRONT_END,
        help="features the model reads: log-mel-v1; pcen-v2, per-channel energy normalization (each mel bin divided "
        "by its own slow average, then root-compressed; edge_runtime.features); or pcen-v1, the same with the average "
        "started at a clip's first frame instead of its mean (superseded) (default: %(default)s)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="seed for weights, order and augmentation")
    parser.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default=defaults.device, help="auto picks CUDA when present"
    )
    parser.add_argument(
        "--workers", type=workers_option, default="auto", metavar="N",
        help="processes that augment the next batches while the model trains; the model is the same for any N "
        "(auto: on a GPU all cores but one, at most 8; on the CPU 0, i.e. augment in this process)",
    )
    parser.add_argument(
        "--resume", action="store_true",
        help=f"continue from OUT/{RESUME_FILE} (written after every epoch) if a run with the same settings wrote it",
    )
    parser.add_argument(
        "--stop-after-epochs", type=int, default=None, metavar="N",
        help="end this invocation after N epochs (a time-boxed job); a later --resume continues",
    )
    args = parser.parse_args(argv)
    if args.epochs < 1 or args.batch_size < 1 or not 0.0 < args.positive_fraction < 1.0:
        parser.error("--epochs and --batch-size must be >= 1 and --positive-fraction in (0, 1)")
    if not 0.0 <= args.speech_context <= 1.0:
        parser.error(f"--speech-context must be within 0..1, got {args.speech_context}")
    if not 0.0 <= args.whisper <= 1.0:
        parser.error(f"--whisper must be within 0..1, got {args.whisper}")
    if not 0.0 <= args.vtlp <= 1.0:
        parser.error(f"--vtlp must be within 0..1, got {args.vtlp}")
    if not 0.0 <= args.formant_warp <= 1.0:
        parser.error(f"--formant-warp must be within 0..1, got {args.formant_warp}")
    if not 0.0 <= args.babble <= 1.0:
        parser.error(f"--babble must be within 0..1, got {args.babble}")
    if args.false_accept_weight <= 0:
        parser.error(f"--false-accept-weight must be > 0, got {args.false_accept_weight}")
    accepted = model_settings(args.model)
    unknown = sorted(set(args.model_config) - set(accepted))
    if unknown:
        parser.error(f"--model-config: {args.model} takes no {', '.join(unknown)}; it takes {', '.join(accepted)}")
    return FitConfig(**{k.replace("-", "_"): v for k, v in vars(args).items()})


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    try:
        metrics = fit(config)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: interrupted; the last finished epoch is in {config.out / RESUME_FILE}, continue with --resume",
              file=sys.stderr)
        return 130
    if "stopped_after_epoch" in metrics:
        return 0
    test = metrics["test"]
    print(
        f"{config.model}: test accuracy {test['accuracy']:.4f}, FRR {test['frr']:.4f}, FAR {test['far']:.4f}, "
        f"ROC AUC {test['roc_auc']:.4f} at threshold {test['threshold']:.3f} -> {config.out / 'best.pt'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
