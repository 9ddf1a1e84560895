"""How the suite measures: contention-tagged blocks, round-robin, the GEMM ceiling, machine facts.

Contention (../shared/BENCHMARKING.md): before and after each block the machine-wide busy time is
read from ``/proc/stat`` (user + nice + system + irq + softirq + steal, over every CPU) and this
process's own CPU time from ``time.process_time()`` (all its threads). What other processes used
is the difference, as a fraction of the machine's capacity during the block
(wall seconds × CPUs); a block is *clean* when that fraction is at most the threshold (default
5 %, i.e. a tenth of one core on two cores). ``/proc/stat`` counts in clock ticks (10 ms), so a
quiet block still reads a percent or two.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np

DEFAULT_THRESHOLD = 0.05


class CpuMeter:
    """Snapshots of machine-wide busy CPU time and this process's own CPU time."""

    def __init__(self) -> None:
        self.hz = os.sysconf("SC_CLK_TCK")
        self.available = os.path.exists("/proc/stat")
        self.cpus = self._count_cpus()

    def _count_cpus(self) -> int:
        if not self.available:
            return os.cpu_count() or 1
        with open("/proc/stat") as f:
            return sum(1 for line in f if line.startswith("cpu") and line[3:4].isdigit()) or 1

    def _busy_seconds(self) -> float:
        if not self.available:
            return math.nan
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
        return (user + nice + system + irq + softirq + steal) / self.hz

    def snapshot(self) -> tuple[float, float, float]:
        """(wall, machine busy seconds, own CPU seconds)."""
        return time.perf_counter(), self._busy_seconds(), time.process_time()

    def others(self, a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
        """Fraction of the machine other processes used between snapshots ``a`` and ``b``."""
        wall = b[0] - a[0]
        if not self.available or wall <= 0:
            return math.nan
        return max(0.0, (b[1] - a[1]) - (b[2] - a[2])) / (wall * self.cpus)


@dataclass
class Block:
    side: str
    round: int
    steps: int
    images: int
    seconds: float
    others: float  # fraction of the machine used by other processes

    @property
    def rate(self) -> float:
        return self.images / self.seconds


def timed_block(meter: CpuMeter, step: Callable[[], object], steps: int) -> tuple[float, float]:
    """Run ``step`` ``steps`` times; (seconds, others fraction)."""
    a = meter.snapshot()
    for _ in range(steps):
        step()
    b = meter.snapshot()
    return b[0] - a[0], meter.others(a, b)


def steps_for(step: Callable[[], object], seconds: float) -> int:
    """Steps that last about ``seconds`` (from a timed step after a warm-up step)."""
    step()
    t0 = time.perf_counter()
    step()
    return max(1, round(seconds / max(time.perf_counter() - t0, 1e-6)))


def round_robin(sides, meter: CpuMeter, *, block_seconds: float, rounds: int, max_rounds: int,
                min_clean: int, threshold: float, pause: float = 0.15, max_seconds: float = math.inf,
                log=print) -> list[Block]:
    """Blocks of ~``block_seconds`` per side, alternating A B, B A, A B … (ABBA cancels drift).

    One warm-up block per side first (not counted; it also fixes the steps per block). Runs at
    least ``rounds`` rounds, then goes on until every side has ``min_clean`` clean blocks, up to
    ``max_rounds`` rounds or ``max_seconds``.
    """
    counts = {}
    for side in sides:
        counts[side.name] = steps_for(side.step, block_seconds)
        timed_block(meter, side.step, counts[side.name])  # warm-up block
    blocks: list[Block] = []
    t0 = time.perf_counter()
    for r in range(max_rounds):
        for side in (sides if r % 2 == 0 else sides[::-1]):
            time.sleep(pause)  # let the other side's spinning threads sleep (OpenBLAS spins ~0.1 s after a GEMM)
            seconds, others = timed_block(meter, side.step, counts[side.name])
            blocks.append(Block(side.name, r, counts[side.name], counts[side.name] * side.images, seconds, others))
        clean = {s.name: sum(1 for b in blocks if b.side == s.name and b.others <= threshold) for s in sides}
        if r + 1 >= rounds and (all(c >= min_clean for c in clean.values()) or time.perf_counter() - t0 > max_seconds):
            break
    kept = sum(1 for b in blocks if b.others <= threshold)
    log(f"    {len(blocks)} blocks, {kept} clean; others used median "
        f"{100 * statistics.median(b.others for b in blocks):.0f}% of the machine")
    return blocks


def summarize(blocks: Sequence[Block], threshold: float) -> dict:
    """Per side: blocks, clean blocks, median rate over clean blocks (and over all blocks)."""
    out = {}
    for name in dict.fromkeys(b.side for b in blocks):
        mine = [b for b in blocks if b.side == name]
        clean = [b for b in mine if b.others <= threshold]
        out[name] = {
            "blocks": len(mine), "clean_blocks": len(clean), "steps_per_block": mine[0].steps,
            "img_s_clean_median": statistics.median(b.rate for b in clean) if clean else None,
            "img_s_all_median": statistics.median(b.rate for b in mine),
            "others_median": statistics.median(b.others for b in mine),
        }
    return out


def paired_ratio(blocks: Sequence[Block], a: str, b: str, threshold: float) -> tuple[float | None, int]:
    """Median over rounds in which both blocks were clean of rate(a)/rate(b); and how many rounds."""
    by_round: dict[int, dict[str, Block]] = {}
    for blk in blocks:
        by_round.setdefault(blk.round, {})[blk.side] = blk
    ratios = [r[a].rate / r[b].rate for r in by_round.values()
              if a in r and b in r and r[a].others <= threshold and r[b].others <= threshold]
    return (statistics.median(ratios) if ratios else None), len(ratios)


# --------------------------------------------------------------------------- GEMM ceiling
def gemm_ceiling(meter: CpuMeter, sizes: Sequence[int], blocks: int, block_seconds: float, threshold: float,
                 with_torch: bool = True) -> dict:
    """float32 n×n GEMM rate (np.matmul, and torch.mm for reference) in contention-tagged blocks."""
    rng = np.random.default_rng(0)
    result: dict = {"numpy": {}, "torch": {}}
    libs = [("numpy", np.matmul)]
    if with_torch:
        import torch

        libs.append(("torch", torch.mm))
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        for lib, mm in libs:
            x, y = (a, b) if lib == "numpy" else (torch.from_numpy(a), torch.from_numpy(b))
            step = (lambda mm=mm, x=x, y=y: mm(x, y))
            k = steps_for(step, block_seconds)
            rates, clean = [], []
            for _ in range(blocks):
                time.sleep(0.15)
                seconds, others = timed_block(meter, step, k)
                rate = 2 * n ** 3 * k / seconds / 1e9
                rates.append(rate)
                if others <= threshold:
                    clean.append(rate)
            result[lib][str(n)] = {"gflops_clean_median": statistics.median(clean) if clean else None,
                                   "gflops_all_median": statistics.median(rates), "gflops_max": max(rates),
                                   "blocks": blocks, "clean_blocks": len(clean)}
    best = [v["gflops_clean_median"] for v in result["numpy"].values() if v["gflops_clean_median"]]
    fallback = [v["gflops_all_median"] for v in result["numpy"].values()]
    result["ceiling_gflops"] = max(best) if best else max(fallback)
    result["ceiling_from_clean_blocks"] = bool(best)
    result["method"] = ("float32 n×n np.matmul (OpenBLAS, the BLAS cnnkit uses), 2n³ FLOPs per product, "
                        "median over clean blocks of the best size; torch.mm shown for reference")
    return result


# --------------------------------------------------------------------------- machine facts
def _cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    have = set(line.split(":", 1)[1].split())
                    return [f for f in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if f in have]
    except OSError:
        pass
    return []


def machine_facts(threads: int) -> dict:
    """CPU, memory, versions, BLAS and thread settings of this run (threadpool_info as it ran)."""
    import cnnkit

    facts = {
        "cpu_model": _cpu_model(), "cpus": CpuMeter().cpus, "cpu_flags": _cpu_flags(),
        "hypervisor": _hypervisor(), "platform": platform.platform(), "python": platform.python_version(),
        "numpy": np.__version__, "cnnkit": cnnkit.__version__, "threads": threads,
        "thread_env": {k: v for k, v in os.environ.items()
                       if k.startswith(("OPENBLAS", "OMP_", "MKL_", "GOTO", "BLIS", "KMP_"))},
        "load_average_at_start": list(os.getloadavg()),
    }
    try:
        with open("/proc/meminfo") as f:
            facts["memory_gib"] = round(int(f.readline().split()[1]) / 2 ** 20, 1)
    except OSError:
        pass
    try:
        import torch

        facts["torch"] = torch.__version__
        facts["torch_threads"] = torch.get_num_threads()
        facts["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        facts["torch_mkldnn"] = torch.backends.mkldnn.is_available()
    except ImportError:
        facts["torch"] = None
    from threadpoolctl import threadpool_info

    facts["threadpools"] = [{k: i.get(k) for k in ("user_api", "internal_api", "prefix", "version", "num_threads",
                                                   "threading_layer", "architecture") if i.get(k) is not None}
                            for i in threadpool_info()]
    return facts


def _hypervisor() -> str | None:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        if line.startswith("Hypervisor vendor:"):
            return line.split(":", 1)[1].strip()
    return None


def as_dicts(blocks: Sequence[Block]) -> list[dict]:
    return [dict(asdict(b), rate=round(b.rate, 2), seconds=round(b.seconds, 5), others=round(b.others, 4))
            for b in blocks]


def python_executable() -> str:
    return sys.executable
