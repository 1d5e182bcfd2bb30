"""Turn bench/results/*.json into PNG charts under docs/img/ (matplotlib).

    python bench/plot.py [--results bench/results] [--out docs/img]

Knows the result formats of bench/chat.py (``chat-*.json``) and bench/switch.py
(``switch-*.json``); other files are skipped with a note.
"""
import argparse
import glob
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COLORS = {"loop": "#2a6f97", "gevent": "#c44536", "asyncio+uvloop": "#6a994e",
          "greenlet": "#c44536"}


def _bars(ax, labels, values, title, unit, fmt="{:,.0f}"):
    bars = ax.bar(labels, values, color=[COLORS.get(label, "#888") for label in labels])
    ax.set_title(title)
    ax.set_ylabel(unit)
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], padding=2, fontsize=8)
    ax.margins(y=0.15)
    ax.spines[["top", "right"]].set_visible(False)


def plot_chat(report, path):
    results = {k: v for k, v in report["results"].items() if "error" not in v}
    names = list(results)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
    _bars(axes[0], names, [results[n]["latency_p50_ms"] for n in names],
          "fan-out latency p50 (lower is better)", "ms", "{:.2f}")
    _bars(axes[1], names, [results[n]["latency_p99_ms"] for n in names],
          "fan-out latency p99 (lower is better)", "ms", "{:.2f}")
    _bars(axes[2], names, [results[n]["deliveries_per_second"] for n in names],
          "burst deliveries/s (higher is better)", "messages delivered per second")
    clients = next(iter(results.values()))["clients"] if results else "?"
    fig.suptitle(f"chat server, {clients} clients in one room "
                 f"(CPython {report['python']}, {report['cpus']} CPUs)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_switch(report, path):
    # bench/switch.py: {"results": {"loop": {...}, "greenlet": {...}}} or a list of rows.
    rows = report.get("rows") or report.get("results")
    if not isinstance(rows, dict):
        raise ValueError("unknown switch.py format")
    first = next(impl for impl in rows.values() if isinstance(impl, dict))
    metrics = [m for m in first if isinstance(first[m], (int, float))]
    if not metrics:
        raise ValueError("no numeric metrics")
    names = [n for n in rows if isinstance(rows[n], dict)]
    columns = 4
    rows_needed = (len(metrics) + columns - 1) // columns
    fig, axes = plt.subplots(rows_needed, columns, figsize=(13, 3.3 * rows_needed), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        unit = "us" if "(us)" in metric else "bytes" if "(bytes)" in metric else "ns per switch"
        _bars(ax, names, [rows[n].get(metric, 0) for n in names], metric, unit, "{:,.0f}")
    fig.suptitle(f"switching core: loop._switch vs greenlet (CPython {report.get('python', '?')}; "
                 "lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


PLOTTERS = {"chat": plot_chat, "switch": plot_switch}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "img"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    for path in sorted(glob.glob(os.path.join(args.results, "*.json"))):
        stem = os.path.splitext(os.path.basename(path))[0]
        kind = stem.split("-")[0]
        plotter = PLOTTERS.get(kind)
        if plotter is None:
            print(f"skip {path}: no plot for '{kind}' results")
            continue
        with open(path) as f:
            report = json.load(f)
        target = os.path.join(args.out, stem + ".png")
        try:
            plotter(report, target)
        except (KeyError, ValueError, TypeError) as exc:
            print(f"skip {path}: {exc}")
            continue
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
