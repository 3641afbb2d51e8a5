"""The report's plots: latency per backend, size vs accuracy vs latency, cost per second of audio."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402


def _measured(report: dict) -> list[dict]:
    return [row for row in report["rows"] if "latency" in row]


def plot_latency(report: dict, path: Path) -> Path:
    """Horizontal bars at p50 with whiskers to p95, log scale; rows not measured are listed under the plot."""
    rows = _measured(report)
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(rows) + 1.8))
    p50 = [r["latency"]["p50_us"] for r in rows]
    whisker = [[0] * len(rows), [r["latency"]["p95_us"] - r["latency"]["p50_us"] for r in rows]]
    colours = ["tab:red" if r["backend"] == "pocketsphinx" else "tab:green" if r["precision"] == "int8" else "tab:blue"
               for r in rows]
    ax.barh([r["name"] for r in rows], p50, xerr=whisker, color=colours, capsize=3)
    for y, row in enumerate(rows):
        ax.text(row["latency"]["p95_us"], y, f"  {row['latency']['p50_us']:.0f} us", va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("latency per 1 s window (peer: per 1 s of audio), microseconds\n"
                  "(bar p50, whisker p95; one thread, pinned core)")
    ax.invert_yaxis()
    missing = [line for r in report["rows"] if "not_measured" in r
               for line in textwrap.wrap(f"{r['name']}: {r['not_measured']}", 150, subsequent_indent="    ")]
    if missing:
        fig.text(0.01, 0.01, "\n".join(missing), fontsize=7, va="bottom")
        fig.subplots_adjust(bottom=0.12 + 0.03 * len(missing))
    ax.set_title("Latency per backend")
    fig.tight_layout(rect=(0, 0.04 * len(missing), 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _macs_label(row: dict) -> str:
    macs = row.get("macs_per_window")
    return f"{row['name']}\n{macs / 1e6:.2f} M MACs" if macs is not None else row["name"]


def plot_size_accuracy_latency(report: dict, path: Path) -> Path:
    """Size (x) vs test accuracy (y), coloured by p50 latency, each point labelled with its MACs per window."""
    rows = [r for r in _measured(report) if r.get("model_bytes") and r.get("test_accuracy") is not None]
    fig, ax = plt.subplots(figsize=(8, 5))
    latencies = [r["latency"]["p50_us"] for r in rows]
    points = ax.scatter([r["model_bytes"] / 1024 for r in rows], [100 * r["test_accuracy"] for r in rows],
                        c=latencies, cmap="viridis", norm=matplotlib.colors.LogNorm(), s=80)
    stacked: dict[int, int] = {}  # points at the same accuracy get their labels stacked, not overprinted
    for row in rows:
        where = round(1000 * row["test_accuracy"])  # same accuracy: labels on one line would overlap
        level = stacked[where] = stacked.get(where, -1) + 1
        ax.annotate(_macs_label(row), (row["model_bytes"] / 1024, 100 * row["test_accuracy"]), fontsize=7,
                    xytext=(4, 4 - 20 * level), textcoords="offset points")
    ax.margins(x=0.2, y=0.15)
    fig.colorbar(points, label="p50 latency, microseconds")
    ax.set_xscale("log")
    ax.set_xlabel("model size, KiB")
    ax.set_ylabel("test accuracy, %")
    ax.set_title("Size vs accuracy vs latency (labels: MACs per 1 s window)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_streaming_cost(report: dict, path: Path) -> Path:
    entries = [(e["name"], e["cpu_us_per_audio_second"]) for e in report["streaming"]]
    entries += [(f"device: {Path(d['source']).name}", d["rtf"] * 1e6) for d in report["devices"]]
    fig, ax = plt.subplots(figsize=(8, 0.6 * max(len(entries), 1) + 1.5))
    if entries:
        ax.barh([name for name, _ in entries], [cost for _, cost in entries], color="tab:orange")
        for y, (_, cost) in enumerate(entries):
            ax.text(cost, y, f"  {cost:.0f} us (rtf {cost / 1e6:.5f})", va="center", fontsize=8)
        ax.invert_yaxis()
    else:
        ax.text(0.5, 0.5, "no streaming figures measured", ha="center", transform=ax.transAxes)
    ax.set_xlabel("CPU microseconds per second of audio (one core)")
    ax.set_title("Cost per second of audio")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
