"""Run the benchmark suite: cnnkit against PyTorch on this CPU. See benchmarks/README.md.

    .venv/bin/python -m benchmarks.run            # the full suite (writes benchmarks/results.json, RESULTS.md)
    .venv/bin/python -m benchmarks.run --quick    # a smoke test in about a minute (writes benchmarks/quick/)
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import shlex
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import measure, peers  # noqa: E402
from benchmarks.report import write_outputs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("gemm", "workloads", "profile", "memory", "mnist", "startup")


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke test: short blocks, few rounds, 3,000 MNIST images")
    p.add_argument("--only", metavar="W,…", help=f"workloads to run (default all: {', '.join(peers.WORKLOADS)})")
    p.add_argument("--skip", metavar="PART,…", default="", help=f"parts to skip: {', '.join(PARTS)}")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default benchmarks/, or benchmarks/quick/ with --quick)")
    p.add_argument("--threads", type=int, default=2, help="threads on both sides (default 2)")
    p.add_argument("--threshold", type=float, default=measure.DEFAULT_THRESHOLD,
                   help="a block is clean when other processes used at most this fraction of the machine "
                        "(default 0.05)")
    p.add_argument("--block-seconds", type=float, help="length of a block (default 0.5; quick 0.15)")
    p.add_argument("--rounds", type=int, help="minimum rounds (A and B blocks) per workload (default 12; quick 2)")
    p.add_argument("--min-clean", type=int, help="go on until each side has this many clean blocks (default 10)")
    p.add_argument("--max-rounds", type=int, help="but at most this many rounds (default 40)")
    p.add_argument("--nchw", action="store_true", help="also run PyTorch in NCHW (to re-check its faster layout)")
    p.add_argument("--mnist-dir", default=None, help="folder of the four MNIST files (default ../shared/data/mnist)")
    args = p.parse_args(argv)
    q = args.quick
    args.block_seconds = args.block_seconds or (0.15 if q else 0.5)
    args.rounds = args.rounds or (2 if q else 12)
    args.min_clean = args.min_clean if args.min_clean is not None else (0 if q else 10)
    args.max_rounds = max(args.max_rounds or (args.rounds if q else 40), args.rounds)
    args.keys = args.only.split(",") if args.only else list(peers.WORKLOADS)
    unknown = [k for k in args.keys if k not in peers.WORKLOADS]
    skip = set(filter(None, args.skip.split(",")))
    if unknown or skip - set(PARTS):
        p.error(f"unknown workload(s) {unknown} or part(s) {sorted(skip - set(PARTS))}")
    args.parts = [x for x in PARTS if x not in skip]
    args.out = Path(args.out) if args.out else ROOT / "benchmarks" / ("quick" if q else "")
    return args


def log(msg: str) -> None:
    print(msg, flush=True)


def run_workloads(args, meter, results) -> list:
    all_blocks = []
    ceiling = results.get("gemm", {}).get("ceiling_gflops")
    for key in args.keys:
        model, mode, batch = peers.WORKLOADS[key]
        log(f"  {key}")
        sides = [peers.cnnkit_side(model, mode, batch)[0], peers.torch_side(model, mode, batch)]
        if args.nchw:
            sides.append(peers.torch_side(model, mode, batch, channels_last=False))
        blocks = measure.round_robin(sides, meter, block_seconds=args.block_seconds, rounds=args.rounds,
                                     max_rounds=args.max_rounds, min_clean=args.min_clean,
                                     threshold=args.threshold, max_seconds=20 if args.quick else 150, log=log)
        all_blocks += blocks
        summary = measure.summarize(blocks, args.threshold)
        flop = peers.flop_per_image(model, mode)
        rate = {s: (v["img_s_clean_median"] or v["img_s_all_median"]) for s, v in summary.items()}
        clean = all(v["clean_blocks"] > 0 for v in summary.values())
        paired, pairs = measure.paired_ratio(blocks, "cnnkit", "torch", args.threshold)
        w = {"model": model, "mode": mode, "batch_size": batch, "cnnkit_img_s": rate["cnnkit"],
             "torch_img_s": rate["torch"], "ratio": rate["cnnkit"] / rate["torch"],
             "paired_ratio": paired, "paired_rounds": pairs, "from_clean_blocks": clean,
             "flop_per_image": flop}
        for s in rate:
            gf = rate[s] * flop / 1e9
            w[f"{s.replace('-', '_')}_gflops"] = gf
            w[f"{s.replace('-', '_')}_ceiling_share"] = gf / ceiling if ceiling else None
        w["sides"] = summary
        w["blocks"] = measure.as_dicts(blocks)
        results["workloads"][key] = w
        log(f"    cnnkit {rate['cnnkit']:.0f} img/s, PyTorch {rate['torch']:.0f} img/s, ratio {w['ratio']:.2f}"
            f"{'' if clean else ' (NO clean blocks on a side: medians over all blocks)'}")
        del sides
        gc.collect()
    return all_blocks


def run_profiles(args, meter, results) -> None:
    from cnnkit.profile import profile_model

    for key in args.keys:
        model, mode, batch = peers.WORKLOADS[key]
        a = meter.snapshot()
        p = profile_model(model, batch_size=batch, steps=2 if args.quick else 8, warmup=1 if args.quick else 2,
                          train=mode == "train")
        b = meter.snapshot()
        entry = results["workloads"].setdefault(key, {})
        entry["profile"] = {**p.to_dict(), "others": meter.others(a, b)}
        entry["profile_markdown"] = p.to_markdown(bound=False)
        log(f"  {key}: {p.bound()}")


def load_summary(results, blocks, threshold) -> dict:
    gemm_blocks = [v for lib in ("numpy", "torch") for v in results.get("gemm", {}).get(lib, {}).values()]
    total = len(blocks) + sum(v["blocks"] for v in gemm_blocks)
    clean = sum(1 for b in blocks if b.others <= threshold) + sum(v["clean_blocks"] for v in gemm_blocks)
    unclean_workloads = [k for k, w in results["workloads"].items() if w.get("from_clean_blocks") is False]
    contended = 1 - clean / total if total else None
    loaded = bool(total) and (contended > 0.25 or bool(unclean_workloads))
    return {"threshold": threshold, "blocks": total, "clean_blocks": clean, "contended_fraction": contended,
            "others_median": statistics.median(b.others for b in blocks) if blocks else None,
            "workloads_without_clean_blocks": unclean_workloads, "loaded": loaded}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(args.threads)
    meter = measure.CpuMeter()
    command = "python -m benchmarks.run" + ("" if argv is None and len(sys.argv) <= 1 else " " + shlex.join(
        sys.argv[1:] if argv is None else argv))
    t0 = time.perf_counter()
    results: dict = {"suite": "cnnkit vs PyTorch CPU", "command": command, "quick": args.quick,
                     "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
                     "settings": {k: getattr(args, k) for k in ("threads", "threshold", "block_seconds", "rounds",
                                                                "min_clean", "max_rounds", "nchw", "parts")},
                     "flop_convention": peers.FLOP_CONVENTION, "workloads": {}}
    blocks: list = []

    def save(final: bool = False) -> None:
        results["seconds"] = time.perf_counter() - t0
        results["load"] = load_summary(results, blocks, args.threshold)
        results["complete"] = final
        write_outputs(results, args.out)

    with threadpool_limits(args.threads, user_api="blas"):
        results["machine"] = measure.machine_facts(args.threads)
        m = results["machine"]
        log(f"cnnkit benchmarks{' (quick)' if args.quick else ''}: {m['cpu_model']}, {m['cpus']} CPUs, "
            f"{args.threads} threads; load average {m['load_average_at_start'][0]:.1f}; writing to {args.out}")
        if "gemm" in args.parts:
            log("GEMM ceiling (float32)")
            results["gemm"] = measure.gemm_ceiling(meter, (2048,) if args.quick else (2048, 4096),
                                                   blocks=2 if args.quick else 6, block_seconds=args.block_seconds,
                                                   threshold=args.threshold)
            log(f"  ceiling {results['gemm']['ceiling_gflops']:.0f} GF/s")
        if "workloads" in args.parts:
            log("Workloads, round-robin (cnnkit vs PyTorch channels_last)")
            blocks = run_workloads(args, meter, results)
            save()
        if "profile" in args.parts:
            log("Per-layer profiles (cnnkit profile)")
            run_profiles(args, meter, results)
            save()
    if "memory" in args.parts:
        from benchmarks.subproc import measure_memory

        log("Peak memory per step (one subprocess per side and workload)")
        results["memory"] = measure_memory(args.keys, ("cnnkit", "torch"), args.threads, meter, log=log)
        save()
    if "mnist" in args.parts:
        from benchmarks.mnist_epoch import DEFAULT_DATA_DIR, mnist_epoch

        log("One MNIST epoch, LeNet-5 recipe" + (" (quick: 3,000 images)" if args.quick else ""))
        with threadpool_limits(args.threads, user_api="blas"):
            results["mnist_epoch"] = mnist_epoch(meter, args.threshold, args.mnist_dir or DEFAULT_DATA_DIR,
                                                 reps=1 if args.quick else 2, limit=3000 if args.quick else None,
                                                 log=log)
        save()
    if "startup" in args.parts:
        from benchmarks.subproc import measure_startup

        log("Import time and first-call overhead (fresh subprocesses)")
        results["startup"] = measure_startup(2 if args.quick else 7, args.threads, meter, args.threshold, log=log,
                                             workloads=("lenet5-train-b64",) if args.quick else
                                             ("lenet5-train-b64", "lenet5-infer-b256"))
    save(final=True)
    load = results["load"]
    log(f"done in {results['seconds'] / 60:.1f} min; {load['clean_blocks']} of {load['blocks']} timed blocks clean"
        f"{' — LOADED MACHINE, results are not clean' if load['loaded'] else ''}; wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
