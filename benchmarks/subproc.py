"""Measurements that need a fresh process: peak memory per step, import time, first-call overhead.

Run as a child (``python -m benchmarks.subproc memory|first-call --side cnnkit|torch --workload K``)
it prints one JSON object; the parent functions start the children and take medians.

Peak memory: in its own process per side, after the model, the batch and (for training) the
optimiser exist, the resident set (``VmRSS``) is read and the peak counter is reset (writing ``5`` to
``/proc/self/clear_refs`` resets ``VmHWM``); the first steps run; ``VmHWM`` − that ``VmRSS`` is
the memory a step needs beyond what the process held before it — buffers, caches, gradients,
optimiser state and workspaces made by the first steps included. The same is measured again at
steady state (after the first steps, for three more steps): the transient memory of one step.
Where the counter cannot be reset, ``ru_maxrss`` (the peak since the process began) is used.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MIB = 2 ** 20


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak(resettable: bool) -> int:
    return _status("VmHWM") if resettable else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _side(side: str, key: str, threads: int):
    from benchmarks.peers import WORKLOADS, cnnkit_side, torch_side

    model, mode, batch = WORKLOADS[key]
    if side == "cnnkit":
        return cnnkit_side(model, mode, batch)[0]
    import torch

    torch.set_num_threads(threads)
    return torch_side(model, mode, batch)


def memory_child(side: str, key: str, threads: int, first_steps: int = 3, steady_steps: int = 3) -> dict:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(threads, user_api="blas"):
        s = _side(side, key, threads)
        gc.collect()
        rss0 = _status("VmRSS")
        resettable = _reset_peak()
        for _ in range(first_steps):
            s.step()
        peak = _peak(resettable)
        gc.collect()
        _reset_peak()
        rss1 = _status("VmRSS")
        for _ in range(steady_steps):
            s.step()
        peak1 = _peak(resettable)
    return {"rss_before_mib": rss0 / MIB, "peak_mib": peak / MIB, "step_peak_mib": (peak - rss0) / MIB,
            "steady_rss_mib": rss1 / MIB, "steady_step_peak_mib": (peak1 - rss1) / MIB if resettable else None,
            "peak_method": "VmHWM reset via /proc/self/clear_refs" if resettable else "ru_maxrss"}


def first_call_child(side: str, key: str, threads: int, steps: int = 5) -> dict:
    t0 = time.perf_counter()
    import numpy  # noqa: F401
    from threadpoolctl import threadpool_limits

    import cnnkit  # noqa: F401
    if side == "torch":
        import torch  # noqa: F401
    t_import = time.perf_counter() - t0
    with threadpool_limits(threads, user_api="blas"):
        t0 = time.perf_counter()
        s = _side(side, key, threads)
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        s.step()
        first = time.perf_counter() - t0
        later = []
        for _ in range(steps):
            t0 = time.perf_counter()
            s.step()
            later.append(time.perf_counter() - t0)
    steady = statistics.median(later)
    return {"import_s": t_import, "build_s": t_build, "first_step_s": first, "steady_step_s": steady,
            "first_call_overhead_s": first - steady}


# --------------------------------------------------------------------------- parent side
def run_child(args: list[str], meter, timeout: float = 600) -> tuple[str, float, float]:
    """Run ``python args…`` from the repository root; (stdout, wall seconds, others fraction)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    c0 = os.times()
    a = meter.snapshot()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    b = meter.snapshot()
    c1 = os.times()
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    children = (c1.children_user + c1.children_system) - (c0.children_user + c0.children_system)
    wall = b[0] - a[0]
    if not meter.available:
        return proc.stdout, wall, float("nan")
    others = max(0.0, (b[1] - a[1]) - (b[2] - a[2]) - children) / (wall * meter.cpus)
    return proc.stdout, wall, others


def _median_clean(values: list[tuple[float, float]], threshold: float) -> dict:
    """values: (figure, others). Median over clean runs (all runs when none is clean)."""
    clean = [v for v, o in values if o <= threshold]
    use = clean or [v for v, _ in values]
    return {"median": statistics.median(use), "runs": len(values), "clean_runs": len(clean),
            "min": min(v for v, _ in values)}


def measure_memory(keys, sides, threads: int, meter, log=print) -> dict:
    out: dict = {}
    for key in keys:
        out[key] = {}
        for side in sides:
            text, _, others = run_child(["-m", "benchmarks.subproc", "memory", "--side", side, "--workload", key,
                                         "--threads", str(threads)], meter)
            out[key][side] = dict(json.loads(text), others=others)
            log(f"    {key} {side}: step peak {out[key][side]['step_peak_mib']:.1f} MiB")
    return out


IMPORT_SNIPPETS = {
    "import cnnkit": "import cnnkit",
    "import cnnkit + first use (cnnkit.Sequential)": "import cnnkit; cnnkit.Sequential",
    "import numpy": "import numpy",
    "import torch": "import torch",
}


def measure_startup(reps: int, threads: int, meter, threshold: float,
                    workloads=("lenet5-train-b64", "lenet5-infer-b256"), log=print) -> dict:
    """Import times (in-process clock, fresh interpreter each run), CLI start, first-call overhead."""
    result: dict = {"reps": reps, "imports": {}, "cli": {}, "first_call": {}}
    for label, code in IMPORT_SNIPPETS.items():
        prog = f"import time; t0 = time.perf_counter(); {code}; print(time.perf_counter() - t0)"
        runs = []
        for _ in range(reps):
            text, _, others = run_child(["-c", prog], meter)
            runs.append((float(text.split()[-1]), others))
        result["imports"][label] = _median_clean(runs, threshold)
        log(f"    {label}: {1e3 * result['imports'][label]['median']:.0f} ms")
    for label, args in (("python -c pass", ["-c", "pass"]), ("cnnkit --version", ["-m", "cnnkit", "--version"])):
        runs = []
        for _ in range(reps):
            _, wall, others = run_child(args, meter)
            runs.append((wall, others))
        result["cli"][label] = _median_clean(runs, threshold)
        log(f"    {label}: {1e3 * result['cli'][label]['median']:.0f} ms wall")
    for key in workloads:
        for side in ("cnnkit", "torch"):
            runs = []
            for _ in range(reps):
                text, _, others = run_child(["-m", "benchmarks.subproc", "first-call", "--side", side,
                                             "--workload", key, "--threads", str(threads)], meter)
                runs.append((json.loads(text), others))
            summary = {f: _median_clean([(r[f], o) for r, o in runs], threshold)
                       for f in ("import_s", "build_s", "first_step_s", "steady_step_s", "first_call_overhead_s")}
            result["first_call"].setdefault(key, {})[side] = summary
            log(f"    first call {key} {side}: {1e3 * summary['first_call_overhead_s']['median']:+.0f} ms")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="child measurements of the benchmark suite (prints JSON)")
    p.add_argument("what", choices=("memory", "first-call"))
    p.add_argument("--side", choices=("cnnkit", "torch"), required=True)
    p.add_argument("--workload", required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    fn = memory_child if args.what == "memory" else first_call_child
    print(json.dumps(fn(args.side, args.workload, args.threads)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
