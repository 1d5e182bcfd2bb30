#!/usr/bin/env python
"""Render run_stdlib.py --json outputs (one per Python version) as the Markdown table of
docs/compatibility.md:  python tests/stdlib/render_table.py r311.json r312.json r313.json

An argument may list several files joined by commas (``r311.json,rerun311.json``): later files
replace the earlier results of the modules and implementations they contain (a re-run of some
modules after a fix)."""
import json
import sys


def cell(summary):
    if summary is None:
        return "-"
    text = "%d/%d" % (summary["pass"], summary["pass"] + summary["fail"] + summary["hang"])
    if summary["hang"]:
        text += " (%d hung)" % summary["hang"]
    if summary.get("module_status", "done") != "done":
        text += " [%s]" % summary["module_status"]
    return text


def main(paths):
    runs = []
    for spec in paths:
        merged = None
        for path in spec.split(","):
            data = json.load(open(path))
            if merged is None:
                merged = data
                continue
            for module, impls in data["results"].items():
                merged["results"].setdefault(module, {}).update(impls)
        runs.append(merged)
    header = ["module"]
    for run in runs:
        header += ["%s loop" % run["version"], "%s gevent" % run["version"]]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    modules = []
    for run in runs:
        for module in run["results"]:
            if module not in modules:
                modules.append(module)
    totals = [[0, 0] for _ in range(2 * len(runs))]
    for module in modules:
        row = [module]
        for i, run in enumerate(runs):
            for j, impl in enumerate(("loop", "gevent")):
                summary = run["results"].get(module, {}).get(impl)
                row.append(cell(summary))
                if summary:
                    totals[2 * i + j][0] += summary["pass"]
                    totals[2 * i + j][1] += summary["pass"] + summary["fail"] + summary["hang"]
        print("| " + " | ".join(row) + " |")
    print("| **total** | " + " | ".join("**%d/%d**" % tuple(t) for t in totals) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
