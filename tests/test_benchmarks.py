"""The benchmark suite's own correctness (benchmarks/): never how fast anything is.

The PyTorch peer must compute the same network as cnnkit (same logits, same gradients from the
same weights), the FLOP counts must be the documented ones, contention tagging and the block
statistics must do their arithmetic right, and the report must say when a run was loaded.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import measure, peers  # noqa: E402
from benchmarks.report import markdown  # noqa: E402


def test_flop_counts_are_the_documented_ones():
    # ../shared/BENCHMARKING.md: LeNet-5 0.833 MFLOP forward, 2.26 per training image; CIFAR-net 53.2 / 157.7
    assert peers.flop_per_image("lenet5", "infer") == 2 * 416_520
    assert peers.flop_per_image("lenet5", "train") == pytest.approx(2.26e6, rel=2e-3)
    assert peers.flop_per_image("cifar-net", "infer") == pytest.approx(53.2e6, rel=1e-3)
    assert peers.flop_per_image("cifar-net", "train") == pytest.approx(157.7e6, rel=1e-3)


@pytest.mark.parametrize("name", ["lenet5", "cifar-net"])
@pytest.mark.parametrize("channels_last", [True, False])
def test_torch_peer_is_the_same_network(torch, name, channels_last):
    import cnnkit
    from cnnkit.kernels.losses import softmax_cross_entropy

    model = cnnkit.resolve_model(name, seed=4, dtype="float64")
    net = peers.torch_model(model, channels_last).double()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, *model.input_shape))
    y = np.array([1, 7, 3])
    logits = model.forward(x)
    _, d = softmax_cross_entropy(logits, y)
    model.backward(d, need_input_grad=False)
    out = net(peers.to_torch_input(x, channels_last))
    np.testing.assert_allclose(out.detach().numpy(), logits, rtol=1e-10, atol=1e-10)
    torch.nn.functional.cross_entropy(out, torch.from_numpy(y)).backward()
    conv1, fc1 = model["conv1"], model["fc1"]
    tconv1 = net[0]
    tfc1 = next(m for m in net if isinstance(m, torch.nn.Linear))
    np.testing.assert_allclose(tconv1.weight.grad.numpy().transpose(2, 3, 1, 0), conv1.params["weight"].grad,
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(tfc1.bias.grad.numpy(), fc1.params["bias"].grad, rtol=1e-9, atol=1e-12)


def test_channels_last_input_is_a_view(torch):
    x = np.zeros((2, 5, 5, 3), np.float32)
    t = peers.to_torch_input(x)
    assert t.shape == (2, 3, 5, 5) and t.is_contiguous(memory_format=torch.channels_last)
    assert t.data_ptr() == x.ctypes.data


def test_sides_run_one_step(torch):
    for model, mode, batch in (("lenet5", "train", 4), ("lenet5", "infer", 4)):
        for side in (peers.cnnkit_side(model, mode, batch)[0], peers.torch_side(model, mode, batch)):
            side.step()
            assert side.images == batch


class FakeMeter(measure.CpuMeter):
    """Snapshots from a script: (wall, machine busy seconds, own CPU seconds)."""

    def __init__(self, cpus=2):
        self.hz, self.available, self.cpus = 100, True, cpus


def test_others_is_machine_busy_minus_own_cpu_over_capacity():
    m = FakeMeter(cpus=2)
    # 1 s wall, machine busy 2.0 CPU-s, we used 1.9 -> others 0.1 CPU-s of 2 -> 5 %
    assert m.others((0.0, 10.0, 5.0), (1.0, 12.0, 6.9)) == pytest.approx(0.05)
    assert m.others((0.0, 10.0, 5.0), (1.0, 11.0, 6.2)) == 0.0  # ticks lag own time: never negative
    assert m.others((0.0, 10.0, 5.0), (0.5, 11.0, 5.0)) == pytest.approx(1.0)  # all of it someone else's


def test_real_meter_reads_proc_stat():
    m = measure.CpuMeter()
    if not m.available:
        pytest.skip("no /proc/stat")
    a = m.snapshot()
    sum(i * i for i in range(200_000))
    b = m.snapshot()
    assert m.cpus >= 1 and b[1] >= a[1] and b[2] >= a[2]
    assert 0.0 <= m.others(a, b) <= 1.0 + 0.5  # tick rounding on a short span


def _blocks():
    B = measure.Block
    return [B("cnnkit", 0, 2, 100, 1.0, 0.01), B("torch", 0, 2, 100, 0.5, 0.02),
            B("torch", 1, 2, 100, 0.25, 0.50), B("cnnkit", 1, 2, 100, 2.0, 0.00),
            B("cnnkit", 2, 2, 100, 0.5, 0.03), B("torch", 2, 2, 100, 1.0, 0.04)]


def test_summaries_use_clean_blocks_only():
    s = measure.summarize(_blocks(), threshold=0.05)
    assert s["cnnkit"]["blocks"] == 3 and s["cnnkit"]["clean_blocks"] == 3
    assert s["torch"]["clean_blocks"] == 2
    assert s["torch"]["img_s_clean_median"] == pytest.approx(150.0)  # 200 and 100; the contended 400 dropped
    assert s["torch"]["img_s_all_median"] == pytest.approx(200.0)
    ratio, rounds = measure.paired_ratio(_blocks(), "cnnkit", "torch", threshold=0.05)
    assert rounds == 2 and ratio == pytest.approx((0.5 + 2.0) / 2)


def test_round_robin_alternates_and_stops_at_max_rounds():
    calls = []
    sides = [peers.Side("a", lambda: calls.append("a"), 1), peers.Side("b", lambda: calls.append("b"), 1)]
    blocks = measure.round_robin(sides, FakeMeterLive(), block_seconds=1e-4, rounds=2, max_rounds=3, min_clean=99,
                                 threshold=0.05, pause=0, log=lambda *_: None)
    assert [b.side for b in blocks] == ["a", "b", "b", "a", "a", "b"]  # ABBA…, up to max_rounds
    assert [b.round for b in blocks] == [0, 0, 1, 1, 2, 2]


class FakeMeterLive(FakeMeter):
    """A meter whose machine is always fully busy with others (every block contended)."""

    def snapshot(self):
        import time

        t = time.perf_counter()
        return t, 2 * t * 10, 0.0


def test_report_labels_a_loaded_or_quick_run():
    results = {"command": "python -m benchmarks.run --quick", "started": "now", "seconds": 60, "quick": True,
               "complete": True, "settings": {"threads": 2}, "flop_convention": "x.",
               "load": {"loaded": True, "contended_fraction": 0.9, "others_median": 0.8, "threshold": 0.05,
                        "workloads_without_clean_blocks": ["lenet5-train-b64"]},
               "workloads": {"lenet5-train-b64": {
                   "cnnkit_img_s": 100.0, "torch_img_s": 200.0, "ratio": 0.5, "paired_ratio": None,
                   "cnnkit_gflops": 0.2, "torch_gflops": 0.4, "cnnkit_ceiling_share": None,
                   "torch_ceiling_share": None, "flop_per_image": 2.26e6,
                   "sides": {"cnnkit": {"clean_blocks": 0, "blocks": 2}, "torch": {"clean_blocks": 0, "blocks": 2}}}}}
    text = markdown(results)
    assert "LOADED MACHINE — NOT A CLEAN RESULT" in text and "QUICK MODE" in text
    assert "| lenet5-train-b64 | 100 | 200 | 0.50 | – |" in text
    results["load"]["loaded"], results["quick"] = False, False
    text = markdown(results)
    assert "LOADED" not in text and "QUICK" not in text
