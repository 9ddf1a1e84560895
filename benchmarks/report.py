"""results.json → RESULTS.md (also: ``python -m benchmarks.report DIR`` rewrites DIR/RESULTS.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cnnkit.io import atomic_write

NAMES = {"cnnkit": "cnnkit", "torch": "PyTorch (channels_last)", "torch-nchw": "PyTorch (NCHW)"}


def write_outputs(results: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", json.dumps(results, indent=1) + "\n")
    atomic_write(out / "RESULTS.md", markdown(results))


def _f(v, fmt: str = ".0f", none: str = "–") -> str:
    return none if v is None else format(v, fmt)


def _pos(v):
    return None if v is None else max(v, 0.0)


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.0f}%"


def banner(results: dict) -> list[str]:
    lines = []
    load = results.get("load") or {}
    if load.get("loaded"):
        lines += [f"> **LOADED MACHINE — NOT A CLEAN RESULT.** Other processes used the CPU during "
                  f"{_pct(load.get('contended_fraction'))} of the timed blocks (in the median block they used "
                  f"{_pct(load.get('others_median'))} of the machine; a block counts as clean at ≤ "
                  f"{_pct(load.get('threshold'))})."
                  + (f" Workloads with no clean block on a side (their medians are over all blocks): "
                     f"{', '.join(load['workloads_without_clean_blocks'])}."
                     if load.get("workloads_without_clean_blocks") else "")
                  + " Rerun on a quiet machine before drawing conclusions.", ""]
    if results.get("quick"):
        lines += ["> **QUICK MODE (smoke test).** Short blocks, few rounds, a 3,000-image MNIST subset: "
                  "these figures only show that the suite runs.", ""]
    if not results.get("complete"):
        lines += ["> **INCOMPLETE:** the run had not finished when this file was written.", ""]
    return lines


def markdown(r: dict) -> str:
    m = r.get("machine", {})
    lines = ["# cnnkit against PyTorch on this CPU", ""] + banner(r)
    lines += [f"Produced by `{r['command']}` (from the repository root), started {r['started']}, "
              f"{r.get('seconds', 0) / 60:.1f} min. Method: [README.md](README.md). "
              f"{m.get('cpu_model', '?')}, {m.get('cpus', '?')} CPUs, {r['settings']['threads']} threads on "
              f"both sides, float32.", "",
              "One run is one sample: PyTorch's figure moves by up to 30 % from one process to the next. The "
              "median of three runs is in [MEDIAN.md](MEDIAN.md) (`python -m benchmarks.combine`); what bounds "
              "each workload, with the experiments that did not pay, in "
              "[README.md](README.md#what-bounds-cnnkit-here-issue-9-measured-2026-11-28); the per-layer "
              "profiles at the end of this file say where the time goes.", ""]
    lines += _throughput(r) + _memory(r) + _mnist(r) + _startup(r) + _machine(r) + _profiles(r)
    return "\n".join(lines) + "\n"


def _throughput(r: dict) -> list[str]:
    ws = r.get("workloads", {})
    if not any("cnnkit_img_s" in w for w in ws.values()):
        return []
    g = r.get("gemm", {})
    lines = ["## Throughput", "",
             "Images per second, median over the clean blocks (round-robin in one process); the ratio is "
             "cnnkit/PyTorch (> 1: cnnkit faster); the paired ratio is the median over rounds of the two "
             "blocks' ratio. GFLOP/s by the convention below, and as a share of the float32 GEMM ceiling "
             "measured in the same run.", "",
             "| workload | cnnkit img/s | PyTorch img/s | ratio | paired ratio | cnnkit GFLOP/s (of ceiling) | "
             "PyTorch GFLOP/s (of ceiling) | clean blocks cnnkit / PyTorch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for key, w in ws.items():
        if "cnnkit_img_s" not in w:
            continue
        s = w["sides"]
        lines.append(f"| {key} | {w['cnnkit_img_s']:.0f} | {w['torch_img_s']:.0f} | {w['ratio']:.2f} | "
                     f"{_f(w['paired_ratio'], '.2f')} | {w['cnnkit_gflops']:.1f} ({_pct(w['cnnkit_ceiling_share'])}) | "
                     f"{w['torch_gflops']:.1f} ({_pct(w['torch_ceiling_share'])}) | "
                     f"{s['cnnkit']['clean_blocks']}/{s['cnnkit']['blocks']} · "
                     f"{s['torch']['clean_blocks']}/{s['torch']['blocks']} |")
    nchw = [(k, w) for k, w in ws.items() if "torch-nchw" in w.get("sides", {})]
    if nchw:
        lines += ["", "PyTorch NCHW for comparison (img/s, clean median): " + "; ".join(
            f"{k} {_f(w['sides']['torch-nchw']['img_s_clean_median'])}" for k, w in nchw)]
    if g:
        sizes = ", ".join(f"{n}² {_f(v['gflops_clean_median'] or v['gflops_all_median'])} GF/s"
                          for n, v in g["numpy"].items())
        torch_mm = ", ".join(f"{n}² {_f(v['gflops_clean_median'] or v['gflops_all_median'])}"
                             for n, v in g.get("torch", {}).items())
        lines += ["", f"GEMM ceiling (float32 np.matmul, OpenBLAS): {sizes} → ceiling "
                      f"**{g['ceiling_gflops']:.0f} GF/s**"
                  + ("" if g.get("ceiling_from_clean_blocks") else " (no clean block: median over all)")
                  + (f". torch.mm for reference: {torch_mm} GF/s." if torch_mm else ".")]
    lines += ["", f"FLOPs: {r['flop_convention']} Per image: "
              + ", ".join(f"{k} {w['flop_per_image'] / 1e6:.2f} MFLOP" for k, w in ws.items() if "flop_per_image" in w)
              + ".", ""]
    return lines


def _memory(r: dict) -> list[str]:
    mem = r.get("memory")
    if not mem:
        return []
    lines = ["## Peak memory per step", "",
             "Each side in its own subprocess. *Step peak*: peak resident memory during the first three steps "
             "minus the resident memory just before them (so workspaces, gradients and optimiser state made by the "
             "first step count); *steady*: the same over three later steps (the transient memory of one step). "
             f"Method: {next(iter(next(iter(mem.values())).values()))['peak_method']}.", "",
             "| workload | cnnkit step peak MiB | PyTorch step peak MiB | cnnkit steady MiB | PyTorch steady MiB | "
             "resident before: cnnkit / PyTorch MiB |", "|---|---:|---:|---:|---:|---:|"]
    for key, sides in mem.items():
        c, t = sides["cnnkit"], sides["torch"]
        lines.append(f"| {key} | {max(c['step_peak_mib'], 0):.1f} | {max(t['step_peak_mib'], 0):.1f} | "
                     f"{_f(_pos(c['steady_step_peak_mib']), '.1f')} | {_f(_pos(t['steady_step_peak_mib']), '.1f')} | "
                     f"{c['rss_before_mib']:.0f} / {t['rss_before_mib']:.0f} |")
    return lines + [""]


def _mnist(r: dict) -> list[str]:
    e = r.get("mnist_epoch")
    if not e:
        return []
    what = "one full epoch" if e["full_epoch"] else f"{e['images']:,} images (not a full epoch)"
    lines = ["## One MNIST epoch, LeNet-5 recipe", "",
             f"Real MNIST, {what}, batch {e['batch_size']}, Adam lr {e['optimizer']['lr']}, RandomCrop(2); "
             f"{e['note']}. Same data order on both sides: **{'yes' if e['same_order'] else 'NO'}** (digest of the "
             f"labels as consumed). Data loading alone takes {e['loader_seconds']:.1f} s of each side's epoch. "
             f"Times: median of {e['reps']} run(s) per side.", "",
             "| side | seconds | img/s | train loss | train accuracy | test accuracy | clean runs |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for side in ("cnnkit", "torch"):
        s = e[side]
        lines.append(f"| {NAMES[side]} | {s['seconds']:.1f} | {s['img_s']:.0f} | {s['train_loss']:.4f} | "
                     f"{100 * s['train_accuracy']:.2f}% | {100 * s['test_accuracy']:.2f}% | "
                     f"{s['clean_runs']}/{len(s['runs'])} |")
    return lines + ["", f"Ratio cnnkit/PyTorch: {e['ratio']:.2f}.", ""]


def _startup(r: dict) -> list[str]:
    s = r.get("startup")
    if not s:
        return []
    lines = ["## Import time and first-call overhead", "",
             f"Fresh interpreter for every run, median of {s['reps']} (over the clean runs when there are any).", "",
             "| what | median ms | clean runs |", "|---|---:|---:|"]
    for label, v in s["imports"].items():
        lines.append(f"| `{label}` (in-process clock) | {1e3 * v['median']:.0f} | {v['clean_runs']}/{v['runs']} |")
    for label, v in s["cli"].items():
        lines.append(f"| `{label}` (whole process, wall) | {1e3 * v['median']:.0f} | {v['clean_runs']}/{v['runs']} |")
    lines += ["", "First call: the first step after building the model, against the median of the next five "
                  "(import and build times are separate).", "",
              "| workload | side | import ms | build ms | first step ms | later step ms | first-call overhead ms |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for key, sides in s["first_call"].items():
        for side, v in sides.items():
            lines.append(f"| {key} | {NAMES[side]} | " + " | ".join(
                f"{1e3 * v[k]['median']:.0f}" for k in ("import_s", "build_s", "first_step_s", "steady_step_s",
                                                         "first_call_overhead_s")) + " |")
    return lines + [""]


def _machine(r: dict) -> list[str]:
    m = r.get("machine", {})
    pools = "; ".join(f"{p.get('internal_api')} {p.get('version') or ''} ({p.get('prefix')}, "
                      f"{p.get('num_threads')} threads{', ' + p['architecture'] if p.get('architecture') else ''})"
                      for p in m.get("threadpools", []))
    return ["## Machine", "",
            f"- CPU: {m.get('cpu_model')} ({m.get('cpus')} CPUs, hypervisor {m.get('hypervisor') or 'none'}), "
            f"flags {', '.join(m.get('cpu_flags', []))}; {m.get('memory_gib')} GiB",
            f"- {m.get('platform')}; Python {m.get('python')}, NumPy {m.get('numpy')}, cnnkit {m.get('cnnkit')}, "
            f"PyTorch {m.get('torch')} (CPU capability {m.get('torch_cpu_capability')}, "
            f"oneDNN {m.get('torch_mkldnn')}, {m.get('torch_threads')} threads)",
            f"- Thread pools as run (threadpoolctl): {pools}",
            f"- Thread environment variables: {m.get('thread_env') or 'none'}",
            f"- Load average at start: {', '.join(f'{x:.2f}' for x in m.get('load_average_at_start', []))}", ""]


def _profiles(r: dict) -> list[str]:
    ws = {k: w for k, w in r.get("workloads", {}).items() if "profile" in w}
    if not ws:
        return []
    lines = ["## Where cnnkit's time goes (per-layer profiles)", "",
             "`cnnkit profile` on each workload (medians over its steps; the split into matrix multiplies "
             "and convolutions, element-wise work and copies-and-other comes from observing cnnkit's NumPy "
             "and compiled-kernel calls, see `src/cnnkit/profile.py`). It times the layers one by one "
             "(no fusion); where shards ran in threads, the categories' times are summed over the threads and "
             "scaled down to the wall time. Measured after the round-robin, "
             "cnnkit alone.", ""]
    ceiling = r.get("gemm", {}).get("ceiling_gflops")
    for key, w in ws.items():
        p = w["profile"]
        share = (f" Its matrix multiplies and convolutions ran at {p['gemm_gflops']:.0f} GF/s by the profile's "
                 f"clock (the GEMM ceiling of both cores is {ceiling:.0f})."
                 if ceiling and p.get("gemm_gflops") else "")
        lines += [f"### {key}", "", f"**What bounds it:** {p['bound']}.{share}"
                  + (f" (Other processes used {_pct(p.get('others'))} of the machine meanwhile.)"
                     if p.get("others") is not None else ""), "", w["profile_markdown"], ""]
    return lines


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent)
    data = json.loads((folder / "results.json").read_text())
    atomic_write(folder / "RESULTS.md", markdown(data))
