"""Turn bench/results/*.json into PNG charts under docs/img/ (matplotlib).

    python bench/plot.py [--results bench/results] [--out docs/img]

Knows the result formats of bench/chat.py (``chat-*.json``), bench/switch.py (``switch-*.json``),
bench/hub.py (``hub-*.json``), bench/wsgi.py (``wsgi*.json``) and bench/echo.py (``echo*.json``);
each file becomes ``docs/img/<same name>.png``, and the hub results of every Python version
together also become ``docs/img/hub-ratios.png``.  Other files are skipped with a note.
"""
import argparse
import glob
import json
import os
import statistics

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402,F401

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LOOP_BLUE = "#2a6f97"
COLORS = {"loop": LOOP_BLUE, "gevent": "#c44536", "greenlet": "#c44536",
          "eventlet": "#e09f3e", "asyncio": "#8a8a8a", "uvloop": "#6a994e",
          "asyncio+uvloop": "#6a994e"}
HUB_IMPLS = ("loop", "gevent", "eventlet", "asyncio", "uvloop")
HUB_SCENARIOS = [  # key in the JSON, metric, title, unit
    ("spawn_join", "seconds", "spawn + join 100k", "s"),
    ("yield", "seconds", "1k green threads x 1k sleep(0)", "s"),
    ("event_block", "seconds", "100k blocked on one Event: creation", "s"),
    ("event_block", "rss_per_thread", "RSS per blocked green thread", "bytes"),
    ("timers", "seconds", "10k random timers", "s"),
]


def _color(name):
    # Server names such as "loop WSGIServer" or "gunicorn -k gevent": colour by the family.
    if name in COLORS:
        return COLORS[name]
    words = name.lower().replace(".", " ").replace("+", " ").split()
    for family in ("uvloop", "gevent", "eventlet", "loop", "asyncio"):
        if family in words:
            return COLORS[family]
    return "#444"       # anything else (nginx): a reference, not a peer


def _style(ax):
    ax.spines[["top", "right"]].set_visible(False)


def _bars(ax, labels, values, title, unit, fmt="{:,.0f}", notes=None, inside=False):
    bars = ax.bar(labels, values, color=[_color(label) for label in labels])
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit)
    texts = [fmt.format(v) for v in values]
    if notes:
        texts = [f"{t}\n{n}" if n else t for t, n in zip(texts, notes)]
    if inside:      # leaves the space above the bar to dots drawn over it
        ax.bar_label(bars, labels=texts, label_type="center", color="white",
                     fontsize=8 if len(labels) <= 3 else 6, fontweight="bold")
    else:
        ax.bar_label(bars, labels=texts, padding=2, fontsize=8)
    ax.margins(y=0.25 if notes else 0.15)
    ax.tick_params(axis="x", labelsize=8)
    if len(labels) > 3 and max(map(len, labels)) > 10:
        ax.tick_params(axis="x", labelrotation=30)
        for tick in ax.get_xticklabels():
            tick.set_horizontalalignment("right")
    _style(ax)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- bench/chat.py -------------------------------------------------------------------------------

def plot_chat(report, path):
    results = {k: v for k, v in report["results"].items() if "error" not in v}
    if not results:
        raise ValueError("no successful run")
    names = list(results)
    runs = report.get("runs") or {}
    panels = [  # key, scale, title, unit, label format
        ("latency_p50_ms", 1, "fan-out latency p50\n(lower is better)", "ms", "{:.1f}"),
        ("latency_p99_ms", 1, "fan-out latency p99\n(lower is better)", "ms", "{:.1f}"),
        ("deliveries_per_second", 1e-6, "burst deliveries/s\n(higher is better)",
         "million deliveries per second", "{:.2f}M"),
    ]
    first = next(iter(results.values()))
    if "latency_server_cpu_ms_per_message" in first:     # older results have no CPU numbers
        panels += [
            ("latency_server_cpu_ms_per_message", 1,
             "server CPU per paced message\n(lower is better)", "ms", "{:.1f}"),
            ("burst_server_cpu_ns_per_delivery", 1,
             "server CPU per burst delivery\n(lower is better)", "ns", "{:.0f}"),
        ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 4.0))
    for ax, (key, scale, title, unit, fmt) in zip(axes, panels):
        _bars(ax, names, [results[n][key] * scale for n in names], title, unit, fmt,
              inside=len(runs) > 0)
        # Every run as a dot over its bar: how far apart runs were matters on a shared machine.
        for x, name in enumerate(names):
            values = [r[key] * scale for r in runs.get(name, []) if key in r]
            if len(values) > 1:
                ax.plot([x] * len(values), values, "o", color="black", markersize=3, alpha=0.6)
    repeat = report.get("parameters", {}).get("repeat", 1)
    fig.suptitle(f"chat server (bench/chat.py), {first['clients']:,} clients in one room, burst "
                 f"of {first['burst_messages']:,} lines; CPython {report['python']}, "
                 f"{report['cpus']} CPUs"
                 + (f"\nbars: the median of {repeat} runs, dots: every run" if repeat > 1
                    else ""))
    _save(fig, path)


# -- bench/switch.py ----------------------------------------------------------------------------

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
    _save(fig, path)


# -- bench/hub.py -------------------------------------------------------------------------------

def _hub_value(results, key, metric, impl):
    value = results.get(key, {}).get(impl, {}).get(metric)
    return value if isinstance(value, (int, float)) else None


def plot_hub(report, path):
    """One panel per scenario: each implementation's time (or bytes), labelled with its ratio
    to loop's."""
    results = report["results"]
    impls = [i for i in HUB_IMPLS if any(i in results.get(k, {}) for k, *_ in HUB_SCENARIOS)]
    if "loop" not in impls:
        raise ValueError("no loop results")
    fig, axes = plt.subplots(1, len(HUB_SCENARIOS), figsize=(16, 3.9))
    for ax, (key, metric, title, unit) in zip(axes, HUB_SCENARIOS):
        names = [i for i in impls if _hub_value(results, key, metric, i) is not None]
        values = [_hub_value(results, key, metric, i) for i in names]
        base = _hub_value(results, key, metric, "loop")
        notes = [None if n == "loop" or not base else f"x{v / base:.2f}"
                 for n, v in zip(names, values)]
        _bars(ax, names, values, title, unit,
              "{:,.0f}" if unit == "bytes" else "{:.2f}", notes)
    fig.suptitle(f"hub: loop vs gevent, eventlet, asyncio, asyncio+uvloop "
                 f"(CPython {report.get('python', '?')}; lower is better; xN = that peer / loop)")
    _save(fig, path)


def plot_hub_ratios(reports, path):
    """Every Python version on one chart: each peer's number divided by loop's, log scale, so
    everything above the line at 1 is where loop is faster (or lighter)."""
    reports = sorted(reports, key=lambda r: tuple(int(p) for p in
                                                  str(r.get("python", "0")).split(".")[:3]))
    peers = [i for i in HUB_IMPLS[1:]
             if any(i in r["results"].get("spawn_join", {}) for r in reports)]
    fig, axes = plt.subplots(1, len(reports), figsize=(5.2 * len(reports), 4.4), sharey=True,
                             squeeze=False)
    width = 0.8 / max(1, len(peers))
    for ax, report in zip(axes[0], reports):
        results = report["results"]
        for index, peer in enumerate(peers):
            xs, ratios = [], []
            for x, (key, metric, _title, _unit) in enumerate(HUB_SCENARIOS):
                base = _hub_value(results, key, metric, "loop")
                value = _hub_value(results, key, metric, peer)
                if base and value is not None:
                    xs.append(x + (index - (len(peers) - 1) / 2) * width)
                    ratios.append(value / base)
            # Bars grow from the loop line: up where loop wins, down where the peer does.
            bars = ax.bar(xs, [r - 1 for r in ratios], width, bottom=1, color=COLORS[peer],
                          label=peer)
            ax.bar_label(bars, labels=[f"{r:.1f}" for r in ratios], fontsize=6, padding=1)
        ax.axhline(1.0, color=LOOP_BLUE, linewidth=1.5, label="loop = 1")
        ax.set_yscale("log")
        ticks = [0.1, 0.2, 0.5, 1, 2, 5, 10, 20]
        ax.set_yticks(ticks)
        ax.set_yticklabels([f"{t:g}" for t in ticks])
        ax.minorticks_off()
        ax.set_ylim(0.1, 20)
        ax.set_xticks(range(len(HUB_SCENARIOS)))
        ax.set_xticklabels(["spawn+join", "sleep(0)", "Event:\ncreation", "Event:\nRSS",
                            "timers"], fontsize=8)
        ax.set_title(f"CPython {report.get('python', '?')}", fontsize=10)
        _style(ax)
    axes[0][0].set_ylabel("peer / loop  (above 1: loop is faster or lighter)")
    axes[0][-1].legend(fontsize=8, loc="upper right")
    fig.suptitle("hub scenarios (bench/hub.py): each peer relative to loop, log scale")
    _save(fig, path)


# -- bench/wsgi.py and bench/echo.py ------------------------------------------------------------

def _wsgi_medians(report):
    """{(server, connections): (req/s, p99 ms)}: bench/wsgi.py's summary when it has one (the
    median over its rounds), otherwise the median of its rows."""
    if report.get("summary"):
        return {(s["server"], s["connections"]): (s["median_requests_per_s"], s["median_p99_ms"])
                for s in report["summary"]}
    groups = {}
    for row in report["results"]:
        groups.setdefault((row["server"], row["connections"]), []).append(row)
    out = {}
    for key, rows in groups.items():
        p99s = [r["p99_ms"] for r in rows if r.get("p99_ms") is not None]
        out[key] = (statistics.median(r["requests_per_s"] for r in rows),
                    statistics.median(p99s) if p99s else None)
    return out


def plot_wsgi(report, path):
    medians = _wsgi_medians(report)
    if not medians:
        raise ValueError("no rows")
    servers = list(dict.fromkeys(server for server, _ in medians))
    counts = sorted({connections for _, connections in medians})
    # One panel per connection count, stacked: the server names need the width.
    fig, axes = plt.subplots(len(counts), 1, squeeze=False,
                             figsize=(11, (0.42 * len(servers) + 1.3) * len(counts)))
    for ax, connections in zip(axes[:, 0], counts):
        names = [s for s in servers if (s, connections) in medians]
        rps = [medians[(s, connections)][0] for s in names]
        y = range(len(names))
        bars = ax.barh(y, rps, color=[_color(s) for s in names])
        ax.set_yticks(list(y))
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        labels = []
        for s in names:
            value, p99 = medians[(s, connections)]
            labels.append(f"{value:,.0f}" + (f"  (p99 {p99:,.0f} ms)" if p99 is not None else ""))
        ax.bar_label(bars, labels=labels, padding=3, fontsize=8)
        ax.set_xlabel("requests per second (higher is better)")
        ax.set_title(f"{connections:,} connections", fontsize=10)
        ax.margins(x=0.3)
        ax.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
        _style(ax)
    fig.suptitle(f"{report.get('benchmark', 'WSGI hello world')} "
                 f"(CPython {report.get('python', '?')}, {report.get('cpus', '?')} CPUs)")
    _save(fig, path)


def plot_echo(report, path):
    rows = report["results"]
    names = [r["server"] for r in rows]
    values = [r["round_trips_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    _bars(ax, names, values, "round trips per second (higher is better)", "round trips/s")
    fig.suptitle(f"{report.get('benchmark', 'TCP echo')} "
                 f"(CPython {report.get('python', '?')})", fontsize=10)
    _save(fig, path)


PLOTTERS = {"chat": plot_chat, "switch": plot_switch, "hub": plot_hub, "wsgi": plot_wsgi,
            "echo": plot_echo}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "img"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    hub_reports = []
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
        if kind == "hub":
            hub_reports.append(report)
    if hub_reports:
        target = os.path.join(args.out, "hub-ratios.png")
        plot_hub_ratios(hub_reports, target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
