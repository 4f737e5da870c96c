#!/usr/bin/python3
"""Plots clipserve-perf --json results.

  plot_perf.py [-o DIR] [--prefix NAME] [--label TEXT ...] [--title TEXT]
               RESULT.json [RESULT.json ...]

Writes two PNGs into DIR (default: the current directory):
  NAME-latency.png  p50 and p99 client latency against throughput (clips/s),
                    one line per file, each point marked with its step's
                    concurrency or offered rate;
  NAME-batches.png  the batch-size distribution of each step (the share of
                    OK responses by the batch size the server reported), one
                    panel per file.
NAME defaults to "perf". The n-th --label names the n-th file (default:
"model protocol mode" from the file). Needs matplotlib (Debian:
python3-matplotlib); draws with the Agg backend, no display needed.
"""
import argparse
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DPI = 90


def load(path):
    with open(path) as f:
        run = json.load(f)
    if isinstance(run, list):  # schema 1: a bare list of steps
        run = {"steps": run, "mode": "concurrency"}
    if not isinstance(run.get("steps"), list):
        raise ValueError(f"{path}: no steps (not clipserve-perf --json output?)")
    return run


def default_label(run, path):
    parts = [run.get("model"), run.get("protocol"), run.get("mode")]
    if run.get("payload") == "video":
        parts.append("video")
    if (run.get("batch") or 1) > 1:
        parts.append(f"batch {run['batch']}")
    label = " ".join(p for p in parts if p)
    return label or os.path.basename(path)


def step_name(step):
    if step.get("offered_rate") is not None:
        return f"{step['offered_rate']:g}/s"
    return f"c{step.get('concurrency')}"


def plot_latency(runs, path, title):
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    lows, highs = [], []
    for i, (label, run) in enumerate(runs):
        color = f"C{i % 10}"
        steps = [s for s in run["steps"] if s.get("ok", 0) > 0]
        x = [s.get("clips_per_second", s.get("throughput", 0)) for s in steps]
        p50 = [s["p50_us"] / 1000 for s in steps]
        p99 = [s["p99_us"] / 1000 for s in steps]
        ax.plot(x, p99, "-s", color=color, markersize=4, label=f"{label} p99")
        ax.plot(x, p50, "--o", color=color, markersize=3, label=f"{label} p50")
        for s, xi, yi in zip(steps, x, p99):
            ax.annotate(step_name(s), (xi, yi), textcoords="offset points", xytext=(3, 4),
                        fontsize=7, color=color)
        lows += [v for v in p50 if v > 0]
        highs += p99
    if lows and highs and max(highs) / min(lows) > 20:
        ax.set_yscale("log")
    ax.set_xlabel("throughput (clips/s)")
    ax.set_ylabel("client latency (ms)")
    ax.set_title(title or "latency vs. throughput")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def plot_batches(runs, path, title):
    sizes = sorted({int(b) for _, run in runs for s in run["steps"]
                    for b in (s.get("batch_sizes") or {})})
    fig, axes = plt.subplots(len(runs), 1, figsize=(6.4, 1.2 + 2.2 * len(runs)), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, (label, run) in zip(axes[:, 0], runs):
        steps = run["steps"]
        names = [step_name(s) for s in steps]
        bottom = [0.0] * len(steps)
        for k, size in enumerate(sizes):
            shares = []
            for s in steps:
                counts = s.get("batch_sizes") or {}
                total = sum(counts.values())
                shares.append(counts.get(str(size), 0) / total if total else 0.0)
            color = cmap(k / max(1, len(sizes) - 1))
            ax.bar(names, shares, bottom=bottom, color=color, label=str(size), width=0.6)
            bottom = [b + v for b, v in zip(bottom, shares)]
        for j, s in enumerate(steps):
            if s.get("mean_batch_size"):
                ax.text(j, 1.02, f"{s['mean_batch_size']:.1f}", ha="center", va="bottom",
                        fontsize=7)
        ax.set_ylim(0, 1.15)
        ax.set_ylabel("share of responses")
        ax.set_title(label, fontsize=9)
    if sizes:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles[::-1], labels[::-1], title="batch\nsize", fontsize=7,
                   title_fontsize=7, loc="center right", frameon=False)
    fig.suptitle(title or "server batch sizes per step (mean above each bar)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.88, 1))
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", metavar="RESULT.json")
    p.add_argument("-o", "--out-dir", default=".")
    p.add_argument("--prefix", default="perf")
    p.add_argument("--label", action="append", default=[])
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    if len(args.label) > len(args.files):
        p.error("more --label than files")
    runs = []
    for i, path in enumerate(args.files):
        try:
            run = load(path)
        except (OSError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        label = args.label[i] if i < len(args.label) else default_label(run, path)
        runs.append((label, run))
    os.makedirs(args.out_dir, exist_ok=True)
    latency = os.path.join(args.out_dir, f"{args.prefix}-latency.png")
    batches = os.path.join(args.out_dir, f"{args.prefix}-batches.png")
    plot_latency(runs, latency, args.title)
    plot_batches(runs, batches, args.title)
    print(latency)
    print(batches)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
