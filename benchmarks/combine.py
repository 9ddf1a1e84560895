"""Combine several runs of the suite into the median of each workload's ratio.

Usage::

    .venv/bin/python -m benchmarks.combine benchmarks/results.json benchmarks/runs/2/results.json \\
        benchmarks/runs/3/results.json --out benchmarks/MEDIAN.md

Each run is a full ``results.json`` written by ``python -m benchmarks.run``; this prints and writes a
Markdown table with every run's cnnkit and PyTorch images/s and ratio, the median ratio, and
whether each run's figures came from clean (uncontended) blocks.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

WORKLOADS = ("lenet5-train-b64", "lenet5-train-b256", "cifar-net-train-b128", "lenet5-infer-b256",
             "cifar-net-infer-b256")


def combine(paths: list[Path]) -> str:
    runs = [json.loads(p.read_text()) for p in paths]
    head = "| workload | " + " | ".join(f"run {i + 1}: cnnkit / torch img/s (ratio)" for i in range(len(runs)))
    lines = [f"# Median of {len(runs)} runs of the benchmark suite", "",
             "Runs: " + ", ".join(f"`{p}` (started {r.get('started', '?')})" for p, r in zip(paths, runs)), "",
             head + " | median ratio |", "|---|" + "---:|" * (len(runs) + 1)]
    for name in WORKLOADS:
        cells, ratios = [], []
        for r in runs:
            w = r["workloads"].get(name)
            if w is None:
                cells.append("–")
                continue
            mark = "" if w.get("from_clean_blocks") else " (contended)"
            cells.append(f"{w['cnnkit_img_s']:,.0f} / {w['torch_img_s']:,.0f} ({w['ratio']:.2f}×){mark}")
            ratios.append(w["ratio"])
        median = f"**{statistics.median(ratios):.2f}×**" if ratios else "–"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {median} |")
    lines += ["", "Ratio = cnnkit images/s ÷ PyTorch images/s (PyTorch 2.13.0 CPU, channels_last, 2 threads each), "
              "medians over clean blocks of one round-robin process per run; '(contended)' marks a run whose "
              "figure had to use all blocks."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    text = combine(args.results)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
