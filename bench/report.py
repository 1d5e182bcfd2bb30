"""Render bench/results/*.json as the Markdown tables of docs/performance.md.

    python bench/report.py > /tmp/tables.md

Each table compares implementations measured in the same run; ratios are the peer's time divided
by loop's (above 1: loop is faster), or loop's memory divided by the peer's (below 1: loop uses
less).
"""
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")


def switch_tables():
    out = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "switch-*.json"))):
        d = json.load(open(path))
        r = d["results"]
        out += [f"### CPython {d['python']}", "", "| | loop | greenlet | loop / greenlet |",
                "|---|---:|---:|---:|"]
        for k in r["loop"]:
            a, b = r["loop"][k], r["greenlet"][k]
            out.append(f"| {k} | {a:,.1f} | {b:,.1f} | {a / b:.2f} |")
        out.append("")
    return out


HUB_LABELS = {"spawn_join": "spawn+join 100k (s)", "yield": "1k x 1k sleep(0) (s)",
              "event_block": "100k blocked on one Event: creation (s)",
              "timers": "10k random timers (s)"}


def hub_tables():
    out = []
    for path in sorted(glob.glob(os.path.join(RESULTS, "hub-*.json"))):
        d = json.load(open(path))
        r = d["results"]
        impls = [i for i in ("loop", "gevent", "eventlet", "asyncio", "uvloop")
                 if i in r.get("spawn_join", {})]
        out += [f"### CPython {d['python']}", "",
                "| scenario | " + " | ".join(impls) + " |",
                "|---|" + "---:|" * len(impls)]
        for sc, label in HUB_LABELS.items():
            row = r.get(sc, {})
            base = row.get("loop", {}).get("seconds")
            cells = []
            for i in impls:
                v = row.get(i, {}).get("seconds")
                if v is None:
                    cells.append("-")
                elif i == "loop":
                    cells.append(f"{v:.3f}")
                else:
                    cells.append(f"{v:.3f} (x{v / base:.2f})")
            out.append(f"| {label} | " + " | ".join(cells) + " |")
            if sc == "event_block":
                rb = row.get("loop", {}).get("rss_per_thread")
                cells = []
                for i in impls:
                    v = row.get(i, {}).get("rss_per_thread")
                    cells.append("-" if v is None else (f"{v:,.0f}" if i == "loop" else f"{v:,.0f} (x{v / rb:.2f})"))
                out.append("| RSS per blocked green thread (bytes) | " + " | ".join(cells) + " |")
        out.append("")
    return out


if __name__ == "__main__":
    print("\n".join(["## C core: loop._switch vs greenlet (`bench/switch.py`)", ""] + switch_tables() +
                    ["## Hub: loop vs gevent, eventlet, asyncio, asyncio+uvloop (`bench/hub.py`)", ""] +
                    hub_tables()))
