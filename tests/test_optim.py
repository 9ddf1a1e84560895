"""Optimisers and schedules: step for step against torch.optim on the same gradients (float64;
the distance each weight tensor has travelled agrees norm-wise to a relative 1e-6), exact resume
from state_dict, dtype and allocation behaviour."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest

from cnnkit.errors import SpecError, UserInputError
from cnnkit.layers import Parameter
from cnnkit.optim import (
    SGD, Adam, AdamW, CosineLR, ReduceOnPlateau, RMSprop, StepLR, WarmupLR, make_optimizer,
    make_schedule, optimizer_from_state, schedule_from_state,
)

TOL = 1e-6
SHAPES = [(3, 3, 2, 4), (4,), (7, 5)]
STEPS = 8

OPTIMISER_CASES = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.1, "momentum": 0.9}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}),
    ("sgd", {"lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 1e-2}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.3, "weight_decay": 1e-3}),
    ("adam", {}),
    ("adam", {"lr": 0.01, "betas": (0.8, 0.99), "eps": 1e-6, "weight_decay": 1e-2}),
    ("adam", {"lr": 0.01, "amsgrad": True}),
    ("adamw", {}),
    ("adamw", {"lr": 0.01, "weight_decay": 0.1, "amsgrad": True}),
    ("rmsprop", {}),
    ("rmsprop", {"lr": 0.001, "alpha": 0.9, "momentum": 0.9, "weight_decay": 1e-3}),
    ("rmsprop", {"lr": 0.001, "centered": True}),
    ("rmsprop", {"lr": 0.001, "centered": True, "momentum": 0.5, "weight_decay": 1e-2}),
]
TORCH_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


def make_params(rng, dtype=np.float64) -> list[Parameter]:
    return [Parameter(f"p{i}", rng.standard_normal(s).astype(dtype)) for i, s in enumerate(SHAPES)]


@pytest.mark.parametrize("name,kw", OPTIMISER_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMISER_CASES)])
def test_optimiser_matches_torch(torch, name, kw):
    rng = np.random.default_rng(1)
    params = make_params(rng)
    tparams = [torch.tensor(p.value.copy(), requires_grad=True) for p in params]
    start = [p.value.copy() for p in params]
    ours = make_optimizer(name, params, **kw)
    theirs = getattr(torch.optim, TORCH_NAMES[name])(tparams, **kw)  # same defaults
    for step in range(STEPS):
        if step == 5:  # a learning rate changed from outside (as a schedule does)
            ours.lr = ours.lr * 0.5
            for g in theirs.param_groups:
                g["lr"] = g["lr"] * 0.5
        for p, t in zip(params, tparams):
            g = rng.standard_normal(p.shape)
            p.grad[...] = g
            t.grad = torch.tensor(g)
        ours.step()
        theirs.step()
        for p, t, w0 in zip(params, tparams, start):
            # compare the distance travelled, not the weights: small update errors must show
            err = rel_err(p.value - w0, t.detach().numpy() - w0)
            assert err <= TOL, f"{name} {kw} step {step + 1} {p.name}: relative error {err:.2e}"


@pytest.mark.parametrize("name,kw", OPTIMISER_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMISER_CASES)])
def test_state_dict_round_trip_continues_identically(name, kw):
    rng = np.random.default_rng(2)
    a = make_params(rng)
    b = [Parameter(p.name, p.value.copy()) for p in a]
    grads = [[rng.standard_normal(s) for s in SHAPES] for _ in range(6)]
    opt_a = make_optimizer(name, a, **kw)
    opt_b = make_optimizer(name, b, **kw)
    for step in range(3):
        for pa, pb, g in zip(a, b, grads[step]):
            pa.grad[...] = g
            pb.grad[...] = g
        opt_a.step()
        opt_b.step()
    state = opt_a.state_dict()
    arrays = state.pop("buffers")
    state = json.loads(json.dumps(state))  # everything but the buffers is JSON
    state["buffers"] = {k: v.copy() for k, v in arrays.items()}
    restored_params = [Parameter(p.name, p.value.copy()) for p in a]
    restored = optimizer_from_state(state, restored_params)
    assert type(restored) is type(opt_a) and restored.steps == 3
    for step in range(3, 6):
        for pa, pr, g in zip(a, restored_params, grads[step]):
            pa.grad[...] = g
            pr.grad[...] = g
        opt_a.step()
        restored.step()
    for pa, pr in zip(a, restored_params):
        assert np.array_equal(pa.value, pr.value)


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw", "rmsprop"])
def test_float32_stays_float32_and_in_place(name):
    rng = np.random.default_rng(3)
    params = make_params(rng, np.float32)
    values = [p.value for p in params]
    before = [v.copy() for v in values]
    opt = make_optimizer(name, params, lr=0.01, **({"momentum": 0.9, "weight_decay": 1e-4}
                                                    if name in ("sgd", "rmsprop") else {}))
    for _ in range(3):
        for p in params:
            p.grad[...] = rng.standard_normal(p.shape)
        opt.step()
    for p, v in zip(params, values):
        assert p.value is v and p.value.dtype == np.float32
        assert all(b.dtype == np.float32 for b in opt.state[params.index(p)].values())
    assert all(not np.array_equal(p.value, b) for p, b in zip(params, before))


@pytest.mark.parametrize("name,kw", [("sgd", {"momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
                                     ("adam", {"weight_decay": 1e-4}), ("adamw", {}),
                                     ("rmsprop", {"centered": True, "momentum": 0.9})])
def test_no_large_allocations_per_step(name, kw):
    big = Parameter("big", np.zeros(1 << 18, np.float32))  # 1 MiB
    opt = make_optimizer(name, [big], lr=1e-3, **kw)
    big.grad[...] = 1.0
    opt.step()  # buffers are created on the first step
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        for _ in range(3):
            opt.step()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024, f"{name} allocated {peak} bytes during a step of a 1 MiB parameter"


# --------------------------------------------------------------------------- schedules
class _Pair:
    """Our optimiser and torch's on the same weights; each epoch takes one step on the same
    gradient, then the schedules step, and rates and weights are compared."""

    def __init__(self, torch, lr=0.1, opt="sgd"):
        self.torch = torch
        self.rng = np.random.default_rng(5)
        self.p = Parameter("w", self.rng.standard_normal(6))
        self.t = torch.tensor(self.p.value.copy(), requires_grad=True)
        self.start = self.p.value.copy()
        if opt == "sgd":
            self.ours = SGD([self.p], lr=lr, momentum=0.9)
            self.theirs = torch.optim.SGD([self.t], lr=lr, momentum=0.9)
        else:
            self.ours = Adam([self.p], lr=lr)
            self.theirs = torch.optim.Adam([self.t], lr=lr)

    def check(self, ours_sched, theirs_sched, epochs, metrics=None):
        torch_lr = lambda: float(self.theirs.param_groups[0]["lr"])  # noqa: E731
        assert math.isclose(self.ours.lr, torch_lr(), rel_tol=TOL, abs_tol=1e-12)
        for e in range(epochs):
            g = self.rng.standard_normal(6)
            self.p.grad[...] = g
            self.t.grad = self.torch.tensor(g)
            self.ours.step()
            self.theirs.step()
            m = None if metrics is None else metrics[e]
            ours_sched.step(m)
            theirs_sched.step() if m is None else theirs_sched.step(m)
            assert math.isclose(self.ours.lr, torch_lr(), rel_tol=TOL, abs_tol=1e-12), \
                f"epoch {e + 1}: ours {self.ours.lr}, torch {torch_lr()}"
            assert rel_err(self.p.value - self.start, self.t.detach().numpy() - self.start) <= TOL


@pytest.mark.parametrize("step_size,gamma", [(1, 0.5), (3, 0.1), (7, 0.9)])
def test_step_lr_matches_torch(torch, step_size, gamma):
    pair = _Pair(torch)
    pair.check(StepLR(pair.ours, step_size, gamma), torch.optim.lr_scheduler.StepLR(pair.theirs, step_size, gamma), 25)


@pytest.mark.parametrize("t_max,eta_min", [(10, 0.0), (7, 1e-3), (1, 0.0)])
def test_cosine_lr_matches_torch_also_past_t_max(torch, t_max, eta_min):
    pair = _Pair(torch)
    pair.check(CosineLR(pair.ours, t_max, eta_min),
               torch.optim.lr_scheduler.CosineAnnealingLR(pair.theirs, t_max, eta_min), 3 * t_max + 2)


@pytest.mark.parametrize("after", ["none", "cosine", "step"])
@pytest.mark.parametrize("warmup,start", [(3, 1 / 3), (5, 0.1), (1, 0.5)])
def test_warmup_matches_torch_linear_then_sequential(torch, after, warmup, start):
    pair = _Pair(torch, opt="adam")
    ours, theirs = pair.ours, pair.theirs
    S = torch.optim.lr_scheduler
    if after == "none":
        mine = WarmupLR(ours, warmup, start)
        ref = S.LinearLR(theirs, start_factor=start, total_iters=warmup)
    else:
        inner = CosineLR(ours, 6, 1e-4) if after == "cosine" else StepLR(ours, 2, 0.5)
        mine = WarmupLR(ours, warmup, start, after=inner)
        t_inner = (S.CosineAnnealingLR(theirs, 6, 1e-4) if after == "cosine" else S.StepLR(theirs, 2, 0.5))
        t_warm = S.LinearLR(theirs, start_factor=start, total_iters=warmup)
        ref = S.SequentialLR(theirs, [t_warm, t_inner], milestones=[warmup])
    pair.check(mine, ref, 20)


PLATEAU_METRICS = [1.0, 0.9, 0.9, 0.9, 0.9, 0.85, 0.85, 0.85, 0.85, 0.85, 0.84999, 0.7, 0.7, 0.7, 0.7, 0.7,
                   0.7, 0.69, 0.69, 0.69, 0.69, 0.69, 0.69, 0.69, 0.69, 0.69]


@pytest.mark.parametrize("kw", [
    {"patience": 2},
    {"patience": 1, "factor": 0.5, "cooldown": 2},
    {"patience": 0, "factor": 0.5, "threshold": 0.05, "threshold_mode": "abs", "min_lr": 0.02},
    {"mode": "max", "patience": 1, "factor": 0.3},
    {"mode": "max", "patience": 2, "threshold_mode": "abs", "threshold": 0.01, "cooldown": 1},
])
def test_reduce_on_plateau_matches_torch(torch, kw):
    pair = _Pair(torch)
    metrics = PLATEAU_METRICS if kw.get("mode") != "max" else [-m for m in PLATEAU_METRICS]
    pair.check(ReduceOnPlateau(pair.ours, **kw), torch.optim.lr_scheduler.ReduceLROnPlateau(pair.theirs, **kw),
               len(metrics), metrics)


def test_reduce_on_plateau_needs_a_metric():
    opt = SGD([Parameter("w", np.zeros(2))], lr=0.1)
    with pytest.raises(UserInputError, match="ReduceOnPlateau: step\\(metric\\) needs the monitored metric"):
        ReduceOnPlateau(opt).step()


@pytest.mark.parametrize("name,kw", [("step", {}), ("cosine", {}), ("plateau", {"patience": 1, "mode": "max"}),
                                     ("cosine", {"warmup_epochs": 3}), ("plateau", {"warmup_epochs": 2}),
                                     ("none", {"warmup_epochs": 2}), ("none", {})])
def test_schedule_state_round_trip(name, kw):
    metrics = [0.5, 0.6, 0.6, 0.6, 0.6, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7]
    opt = SGD([Parameter("w", np.zeros(2))], lr=0.2)
    sched = make_schedule(name, opt, epochs=12, **kw)
    for m in metrics[:5]:
        sched.step(m)
    saved_sched = json.loads(json.dumps(sched.state_dict()))
    saved_opt = opt.state_dict()
    opt2 = optimizer_from_state(saved_opt, [Parameter("w", np.zeros(2))])
    sched2 = schedule_from_state(saved_sched, opt2)
    assert opt2.lr == opt.lr
    for m in metrics[5:]:
        assert sched.step(m) == sched2.step(m)


def test_make_schedule_defaults_follow_the_run_length():
    opt = SGD([Parameter("w", np.zeros(2))], lr=1.0)
    s = make_schedule("step", opt, epochs=9)
    assert (s.step_size, s.gamma) == (3, 0.1)
    opt = SGD([Parameter("w", np.zeros(2))], lr=1.0)
    c = make_schedule("cosine", opt, epochs=10, warmup_epochs=2)
    lrs = [opt.lr] + [c.step() for _ in range(10)]
    assert lrs[2] == 1.0 and lrs[-1] == pytest.approx(0.0, abs=1e-15) and lrs[0] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- errors
def test_unknown_names_are_refused():
    p = [Parameter("w", np.zeros(2))]
    with pytest.raises(SpecError, match="unknown optimizer 'adamx'; expected one of sgd, adam, adamw, rmsprop"):
        make_optimizer("adamx", p)
    with pytest.raises(SpecError, match="SGD: unknown argument\\(s\\) betas"):
        make_optimizer("sgd", p, betas=(0.9, 0.99))
    with pytest.raises(SpecError, match="unknown schedule 'linear'; expected one of none, constant, step"):
        make_schedule("linear", SGD(p))


@pytest.mark.parametrize("make,match", [
    (lambda p: SGD(p, lr=-1), r"SGD: lr must be in \[0.0, inf\). Received: lr=-1"),
    (lambda p: SGD(p, lr=float("nan")), r"SGD: lr must be in"),
    (lambda p: SGD(p, lr=0.1, nesterov=True), "SGD: nesterov needs momentum > 0 and dampening = 0"),
    (lambda p: Adam(p, betas=(0.9, 1.0)), r"Adam: beta2 must be in \[0.0, 1.0\)"),
    (lambda p: AdamW(p, betas=0.9), r"AdamW: betas must be a pair"),
    (lambda p: RMSprop(p, alpha=1.5), r"RMSprop: alpha must be in \[0.0, 1.0\]"),
    (lambda p: SGD([]), "SGD: no parameters to optimise"),
    (lambda p: SGD([np.zeros(3)]), "SGD: item 0 is not a Parameter. Received: ndarray"),
    (lambda p: StepLR(SGD(p), 0), "StepLR: step_size must be an integer >= 1. Received: step_size=0"),
    (lambda p: ReduceOnPlateau(SGD(p), mode="up"), "ReduceOnPlateau: mode must be 'min' or 'max'"),
    (lambda p: WarmupLR(SGD(p), 2, after=StepLR(SGD(p), 1)), "WarmupLR: the schedule after the warm-up"),
])
def test_bad_hyperparameters_say_what_and_where(make, match):
    with pytest.raises(UserInputError, match=match):
        make([Parameter("w", np.zeros(2))])


def test_load_state_refuses_a_mismatch():
    p = [Parameter("w", np.zeros(2))]
    opt = SGD(p, momentum=0.9)
    p[0].grad[...] = 1
    opt.step()
    state = opt.state_dict()
    with pytest.raises(UserInputError, match="state is of optimiser 'sgd', not 'adam'"):
        Adam(p).load_state_dict(state)
    state["buffers"]["0.momentum_buffer"] = np.zeros(5)
    with pytest.raises(UserInputError, match=r"buffer '0.momentum_buffer' has shape \(5,\), parameter w has \(2,\)"):
        SGD(p, momentum=0.9).load_state_dict(state)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,kw", OPTIMISER_CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(OPTIMISER_CASES)])
def test_one_pass_compiled_steps_equal_the_numpy_steps(name, kw, dtype, monkeypatch):
    """SGD with momentum and Adam/AdamW run as one compiled pass per parameter; over several steps
    they stay within rounding (fused multiply-adds) of the NumPy steps, which the rest take."""
    import cnnkit.optim as optim_module

    results = []
    for one_pass in (True, False):
        if not one_pass:
            monkeypatch.setattr(optim_module, "_one_pass", lambda *arrays: False)
        rng = np.random.default_rng(5)
        params = make_params(rng, dtype)
        opt = make_optimizer(name, params, **kw)
        for _ in range(STEPS):
            for p in params:
                p.grad = rng.standard_normal(p.value.shape).astype(dtype)
            opt.step()
        results.append([p.value.copy() for p in params])
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for got, want in zip(*results):
        assert got.dtype == dtype and rel_err(got, want) <= tol
