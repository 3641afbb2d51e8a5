"""The evaluation report: `report.json` (everything), `report.md` (the quality table) and `det.png` (the curve)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from train.evaluate.scoring import Curve, Scored, detection_delays, found_keywords, threshold_for

TARGETS_FA_PER_HOUR = (0.5, 0.1)
# One number to compare training changes by: the mean FRR over these rates. A single rate rests on a few false
# accepts and moves with them (docs/quality.md); an unreached rate counts as every keyword missed.
MEAN_FRR_RATES = (0.5, 1.0, 2.0, 5.0)
SNR_BANDS_DB = ((5.0, 12.0), (12.0, 19.0), (19.0, 26.0))


def operating_points(curve: Curve) -> dict:
    points = {}
    for target in TARGETS_FA_PER_HOUR:
        point = threshold_for(curve, target)
        points[str(target)] = point.to_dict() if point else None
    return points


def mean_frr(curve: Curve, rates: Sequence[float] = MEAN_FRR_RATES) -> dict:
    """FRR at each of `rates` FA/h (1.0 where no threshold reaches it) and their mean."""
    frr = {str(rate): (point.frr if (point := threshold_for(curve, rate)) else 1.0) for rate in rates}
    return {"fa_per_hour": list(rates), "frr": frr, "mean": float(np.mean(list(frr.values())))}


def breakdown(positive: Sequence[Scored], streams: Sequence, threshold: float, hit_after_s: float) -> dict:
    """FRR at `threshold` per voice family, SNR band, voice (eSpeak variant, or the Piper voice) and noise kind of
    the positive streams (`streams`: their `Stream` entries, in the same order)."""
    groups: dict[str, list[int]] = {}
    for scored, stream in zip(positive, streams, strict=True):
        found, _ = found_keywords(scored.detect(threshold), scored.keyword_spans, hit_after_s)
        snr = stream.scene["snr_db"]
        band = next((f"snr {lo:g}-{hi:g} dB" for lo, hi in SNR_BANDS_DB if lo <= snr < hi), "snr other")
        voice = stream.voice.rsplit("+", 1)[-1]  # espeak:en-us+john -> john: the variant, across accents
        for key in (f"family {scored.family}", band, f"voice {voice}", f"noise {stream.scene['noise']}"):
            total = groups.setdefault(key, [0, 0])
            total[0] += len(scored.keyword_spans) - found
            total[1] += len(scored.keyword_spans)
    return {key: {"frr": missed / count, "keywords": count} for key, (missed, count) in sorted(groups.items())}


def delay_summary(positive: Sequence[Scored], threshold: float, hit_after_s: float) -> dict | None:
    """How long after the keyword ends the detector fires, over the keywords found at `threshold`."""
    delays = [d for s in positive for d in detection_delays(s.detect(threshold), s.keyword_spans, hit_after_s)]
    if not delays:
        return None
    return {"median_s": float(np.median(delays)), "p90_s": float(np.quantile(delays, 0.9)), "found": len(delays)}


def false_accepts_by_group(negative: Sequence[Scored], kinds: Sequence[str], threshold: float) -> dict:
    """FA/h at `threshold` per voice family and per noise kind of the negative streams."""
    groups: dict[str, list[float]] = {}
    for stream, kind in zip(negative, kinds, strict=True):
        count = len(stream.detect(threshold))
        for key in (f"family {stream.family}", f"noise {kind}"):
            total = groups.setdefault(key, [0, 0.0])
            total[0] += count
            total[1] += stream.seconds / 3600
    return {k: {"fa_per_hour": n / h, "false_accepts": n, "hours": h} for k, (n, h) in sorted(groups.items())}


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _frr_cell(point: dict | None, hours: float, target: float) -> str:
    if point is None:
        return "not reached"
    cell = _percent(point["frr"])
    return cell if hours * target >= 1 - 1e-9 else f"{cell} (unresolved: {hours:.1f} h)"


def _trained_without(report: dict) -> str:
    groups = report.get("trained_without") or []
    if not groups:
        return ""
    return (f" This model was trained without the voice groups {', '.join(groups)} (`--leave-out`): families "
            "named after them are voices it never heard, whatever their name says.")


def _phases(report: dict) -> str:
    phases = report.get("phases", 1)
    if phases == 1:
        return ""
    return (
        f" Every stream scored at {phases} phases (delayed 0-{phases - 1} feature hops) and pooled, so the hours "
        "and keywords count each phase; pocketsphinx once."
    )


def _verifier_line(name: str, usage: dict) -> str:
    runs = [
        f"{kind} streams: the gate open {100 * u['gate_open_share']:.2f}% of the time, "
        f"{u['windows_per_hour']:,.0f} verifier windows an hour"
        for kind, u in usage.items()
    ]
    return f"{name}: the verifier ran only behind the open gate; " + "; ".join(runs) + "."


def gate_sweep_lines(name: str, sweep: dict, hours: float) -> list[str]:
    """The table of `train.evaluate --gates`: the detector at each gate of the verifier, and what it costs."""
    lines = [
        f"{name} with the verifier's gate at each level of the student's smoothed probability (one scoring pass "
        f"with the gate at {sweep['scored_with_gate']:g}, so the RTF above counts the verifier's extra windows; "
        f"the bundle's own gate is {sweep['deployed_gate']:g}):",
        "",
        "| gate | FRR at 0.5 FA/h | FRR at 0.1 FA/h | mean FRR at " + " / ".join(f"{r:g}" for r in MEAN_FRR_RATES)
        + " FA/h | clip ROC AUC | gate open on negatives | verifier windows an hour on negatives |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in sweep["gates"]:
        points, negative = row["operating_points"], row["verifier"].get("negative", {})
        mark = " (the bundle's)" if row["gate"] == sweep["deployed_gate"] else ""
        lines.append(
            f"| {row['gate']:g}{mark} | {_frr_cell(points['0.5'], hours, 0.5)} | {_frr_cell(points['0.1'], hours, 0.1)}"
            f" | {_percent(row['mean_frr']['mean'])} | "
            + (f"{row['clip_roc_auc']:.4f}" if row.get("clip_roc_auc") is not None else "n/a")
            + f" | {100 * negative.get('gate_open_share', 0.0):.2f}% | "
            f"{negative.get('windows_per_hour', 0.0):,.0f} |"
        )
    return lines


def _threshold_origin(source: dict | None, streams_folder: str) -> str:
    if not source:
        return "set at conversion, on the val clips"
    split = source.get("split")
    target = source.get("target_fa_per_hour")
    origin = f"chosen on {f'the {split} streams' if split else 'long-audio streams'}"
    origin += f" for {target:g} FA/h" if isinstance(target, (int, float)) else ""
    if source.get("streams") == streams_folder:
        origin += ", these very streams, so what follows is not a held-out figure"
    return origin


def _replaced_here(report: dict) -> dict | None:
    """The threshold this run chose and wrote into the manifest, when it did: the bundle's threshold as it came in
    is then no longer what ships."""
    chosen = report.get("threshold") or {}
    return chosen["chosen"] if chosen.get("written") and chosen.get("chosen") else None


def _shipped_name(report: dict) -> str:
    return "as it came in" if _replaced_here(report) else "as shipped"


def shipped_line(report: dict) -> str | None:
    """What the bundle's own threshold does on these streams: the figure a user gets, unlike the curve's points,
    which each take the threshold these streams pick."""
    shipped = report.get("shipped_threshold")
    if not shipped:
        return None
    origin = _threshold_origin(shipped.get("source"), report["streams"]["folder"])
    line = (
        f"{_shipped_name(report).capitalize()}: the bundle's `{shipped['section']}.threshold` "
        f"{shipped['threshold']:.4f} ({origin}) misses "
        f"{_percent(shipped['frr'])} of the {shipped['positives']} keywords here, with {shipped['fa_per_hour']:.2f} "
        f"false accepts per hour ({shipped['false_accepts']} in {shipped['negative_hours']:.2f} h)."
    )
    replaced = _replaced_here(report)
    if replaced:
        line += (
            f" This run then wrote {replaced['threshold']:.4f} (for {report['threshold']['target_fa_per_hour']:g} "
            "FA/h) into the manifest in its place: that is what ships now."
        )
    return line


def markdown(report: dict) -> str:
    lines = [
        f"# Long-audio evaluation: '{report['keyword']}'",
        "",
        f"Bundle `{report['bundle']}` ({report['detector']} detector, {report.get('precision', 'int8')} TFLite through "
        "the edge runtime). "
        f"{report['streams']['positives']} keyword occurrences in {report['streams']['positive_hours']:.2f} h of "
        f"positive streams; {report['streams']['negative_hours']:.2f} h of negative streams. Voices: eSpeak NG "
        f"variants held out of training ({report.get('split', 'test')} split) plus a Piper family (a voice training "
        "heard, new texts/seeds)."
        + _phases(report)
        + _trained_without(report),
        "",
        "| system | FRR at 0.5 FA/h | FRR at 0.1 FA/h | mean FRR at "
        + " / ".join(f"{rate:g}" for rate in MEAN_FRR_RATES)
        + " FA/h | negative hours | clip ROC AUC | RTF (1 core) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, system in report["systems"].items():
        points, hours = system["operating_points"], system["negative_hours"]
        lines.append(
            f"| {name} | {_frr_cell(points['0.5'], hours, 0.5)} | {_frr_cell(points['0.1'], hours, 0.1)} | "
            f"{_percent(system['mean_frr']['mean']) if 'mean_frr' in system else 'n/a'} | "
            f"{hours:.2f} | {system['clip_roc_auc']:.4f} | "
            + (f"{system['rtf']:.4f} |" if system.get("rtf") is not None else "n/a (reference, batched torch) |")
        )
    for name, system in report["systems"].items():
        if system.get("verifier"):
            lines += ["", _verifier_line(name, system["verifier"])]
        if system.get("gate_sweep"):
            lines += ["", *gate_sweep_lines(name, system["gate_sweep"], system["negative_hours"]), "",
                      "![FRR and verifier cost against the gate](gates.png)"]  # fmt: skip
    shipped = shipped_line(report)
    if shipped:
        lines += ["", shipped]
    where = report.get("breakdown")
    if where:
        # References (e.g. the teacher) at their own threshold for the same rate, beside ours.
        # Several references of one architecture (teachers of several seeds) each keep a column: their label then
        # names the checkpoint.
        referenced = [(name, system) for name, system in report["systems"].items() if "breakdown" in system]
        labels = [system.get("label", name) for name, system in referenced]
        others = {
            (label if labels.count(label) == 1 else f"{label}, {system.get('checkpoint', name)}"): system["breakdown"]
            for label, (name, system) in zip(labels, referenced, strict=True)
        }
        # Beside them, ours at the threshold the bundle ships, when the report scored it: what a user would get.
        as_shipped = report.get("shipped_threshold") or {}
        shipped_name = _shipped_name(report)
        shipped_positives = as_shipped.get("breakdown", {}).get("positives")
        shipped_negatives = as_shipped.get("breakdown", {}).get("negatives")
        lines += [
            "",
            f"At threshold {where['threshold']:.4f} ({where['why']})"
            + "".join(f"; {name} at {b['threshold']:.4f} ({b['why']})" for name, b in others.items())
            + (f"; {shipped_name}: ours at {as_shipped['threshold']:.4f}" if shipped_positives else "")
            + ":",
            "",
            "| positives | FRR | " + (f"FRR {shipped_name} | " if shipped_positives else "")
            + "".join(f"FRR, {name} | " for name in others) + "keywords |",
            "| --- | --- | " + ("--- | " if shipped_positives else "") + "--- | " * len(others) + "--- |",
        ]
        lines += [
            f"| {k} | {_percent(v['frr'])} | "
            + (f"{_percent(shipped_positives.get(k, {}).get('frr'))} | " if shipped_positives else "")
            + "".join(f"{_percent(b['positives'].get(k, {}).get('frr'))} | " for b in others.values())
            + f"{v['keywords']} |"
            for k, v in where["positives"].items()
        ]
        delay = where.get("delay_after_keyword_end")
        if delay:
            lines += ["", f"Detections fire a median {delay['median_s']:.2f} s after the keyword ends (90% within "
                      f"{delay['p90_s']:.2f} s; {delay['found']} keywords found)."]  # fmt: skip
        lines += [
            "",
            "| negatives | FA/h | false accepts | "
            + (f"FA/h {shipped_name} | false accepts {shipped_name} | " if shipped_negatives else "") + "hours |",
            "| --- | --- | --- | " + ("--- | --- | " if shipped_negatives else "") + "--- |",
        ]
        lines += [
            f"| {k} | {v['fa_per_hour']:.2f} | {v['false_accepts']} | "
            + (f"{shipped_negatives[k]['fa_per_hour']:.2f} | {shipped_negatives[k]['false_accepts']} | "
               if shipped_negatives else "")
            + f"{v['hours']:.2f} |"
            for k, v in where["negatives"].items()
        ]
    chosen = report.get("threshold")
    if chosen:
        point = chosen["chosen"]
        lines += [
            "",
            f"Threshold for {chosen['target_fa_per_hour']} FA/h: "
            + (
                f"{point['threshold']:.4f} (FRR {_percent(point['frr'])}, {point['fa_per_hour']:.2f} FA/h measured"
                f", {'written to the manifest' if chosen['written'] else 'not written'})"
                if point
                else "not reachable"
            ),
        ]
    lines += ["", "![DET curve](det.png)", ""]
    return "\n".join(lines)


def plot(report: dict, curves: dict[str, Curve], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    floor = min(0.5 / max(c.negative_hours, 1e-9) for c in curves.values())  # zero FA/h drawn at half a count
    for (name, curve), style in zip(curves.items(), ("-", "--", ":", "-."), strict=False):
        fa = np.maximum(curve.fa_per_hour, floor)
        levels = np.unique(fa)  # the best FRR at each false-accept rate: the curve's lower envelope
        best = np.array([curve.frr[fa <= level].min() for level in levels])
        axes.step(levels, 100 * best, style, where="post", label=name, marker=".", markersize=3)
    for target in TARGETS_FA_PER_HOUR:
        axes.axvline(target, color="grey", linewidth=0.6)
    axes.axhline(5, color="red", linewidth=0.6, linestyle=":")
    axes.set_xscale("log")
    axes.set_xlabel(f"false accepts per hour (log; 0 drawn at {floor:.2g})")
    axes.set_ylabel("false rejects (%)")
    axes.set_ylim(0, 100)
    axes.set_title(f"'{report['keyword']}' on held-out voices, long audio")
    axes.grid(True, which="both", linewidth=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_gate_sweep(sweep: dict, path: Path) -> None:
    """What each verifier gate buys and costs: FRR at 0.5 FA/h and the mean FRR against the gate, and beside them
    the verifier windows an hour on audio without the keyword (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = sweep["gates"]
    gates = [row["gate"] for row in rows]
    at_half = [100 * p["frr"] if (p := row["operating_points"]["0.5"]) else np.nan for row in rows]
    mean = [100 * row["mean_frr"]["mean"] for row in rows]
    windows = [max(row["verifier"].get("negative", {}).get("windows_per_hour", 0.0), 1.0) for row in rows]
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    axes.plot(gates, at_half, "o-", label="FRR at 0.5 FA/h")
    rates = " / ".join(f"{r:g}" for r in MEAN_FRR_RATES)
    axes.plot(gates, mean, "s--", label=f"mean FRR at {rates} FA/h")
    axes.axvline(sweep["deployed_gate"], color="grey", linewidth=0.6, linestyle=":", label="the bundle's gate")
    axes.set_xlabel("gate: the student's smoothed probability that starts the verifier")
    axes.set_ylabel("false rejects (%)")
    axes.set_ylim(bottom=0)
    axes.grid(True, linewidth=0.3)
    cost = axes.twinx()
    cost.plot(gates, windows, "^:", color="tab:red", label="verifier windows an hour (negatives)")
    cost.set_yscale("log")
    cost.set_ylabel("verifier windows an hour (negatives)", color="tab:red")
    lines, labels = axes.get_legend_handles_labels()
    more, more_labels = cost.get_legend_handles_labels()
    axes.legend(lines + more, labels + more_labels, fontsize=8)
    axes.set_title("The verifier's gate: misses against cost")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_report(report: dict, curves: dict[str, Curve], out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json", "markdown": out / "report.md", "plot": out / "det.png"}
    paths["json"].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    paths["markdown"].write_text(markdown(report), encoding="utf-8")
    plot(report, curves, paths["plot"])
    sweeps = [system["gate_sweep"] for system in report["systems"].values() if system.get("gate_sweep")]
    if sweeps:
        paths["gates_plot"] = out / "gates.png"
        plot_gate_sweep(sweeps[0], paths["gates_plot"])
    return paths
