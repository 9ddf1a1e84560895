"""One full MNIST epoch with the LeNet-5 recipe (docs/mnist.md, scripts/mnist_recipe.py), both sides.

Both sides start from the same initial weights (cnnkit's ``lenet5`` drawn from the seed, copied
into the PyTorch model) and read the same batches in the same order: each side iterates its own
:class:`cnnkit.data.loader.DataLoader` built identically (batch 128, shuffled by a generator from
the seed, the recipe's ``RandomCrop(2)`` augmentation, the recipe's preprocessing), so the
PyTorch side matches the augmentation exactly and both pay the same data-loading cost. A digest
of the labels in the order they were consumed is recorded for each side to show it.

Optimiser: the recipe's Adam (lr 0.002, betas (0.9, 0.999), eps 1e-8). The recipe's cosine
schedule is stepped once per epoch, so within the first epoch the rate is 0.002 on both sides and
no schedule is needed. The cnnkit step is the body of ``fit``'s loop (forward, loss, backward
without the input gradient, optimiser step, running loss and accuracy); the PyTorch step the
equivalent in ``channels_last``. Test accuracy after the epoch is measured (not timed) on the
10,000 test images, as a check that both learned the same way.
"""

from __future__ import annotations

import hashlib
import importlib.util
import statistics
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = ROOT.parent / "shared" / "data" / "mnist"


def recipe() -> dict:
    """The RECIPE dict of scripts/mnist_recipe.py (the one place it is written down)."""
    spec = importlib.util.spec_from_file_location("_mnist_recipe", ROOT / "scripts" / "mnist_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.RECIPE


def _loader(train, r: dict, seed: int):
    from cnnkit.data.loader import DataLoader, RandomCrop

    augment = [RandomCrop(a["padding"]) for a in r["augment"] if a["name"] == "random_crop"]
    if len(augment) != len(r["augment"]):
        raise ValueError(f"the benchmark knows only random_crop; the recipe has {r['augment']}")
    return DataLoader(train, r["batch_size"], shuffle=True, rng=np.random.default_rng(seed), augment=augment,
                      preprocessing=r["preprocessing"])


def _cnnkit_epoch(train, test_x, test_y, r: dict, seed: int, meter) -> dict:
    import cnnkit
    from cnnkit.kernels.losses import softmax_cross_entropy
    from cnnkit.optim import Adam

    o = r["optimizer"]
    model = cnnkit.resolve_model(r["model"], seed=seed)
    opt = Adam(model.parameters(), lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"], weight_decay=o["weight_decay"])
    digest, loss_sum, correct, seen = hashlib.sha256(), 0.0, 0, 0
    a = meter.snapshot()
    for x, y in _loader(train, r, seed):
        logits = model.forward(x)
        loss, dlogits = softmax_cross_entropy(logits, y)
        model.backward(dlogits, need_input_grad=False)
        opt.step()
        loss_sum += loss * len(y)
        correct += int((logits.argmax(axis=1) == y).sum())
        seen += len(y)
        digest.update(y.tobytes())
    b = meter.snapshot()
    test_acc = float((model.logits(test_x, batch_size=1000).argmax(axis=1) == test_y).mean())
    return _record(b[0] - a[0], meter.others(a, b), seen, loss_sum, correct, test_acc, digest)


def _torch_epoch(train, test_x, test_y, r: dict, seed: int, meter) -> dict:
    import torch
    import torch.nn.functional as F

    import cnnkit
    from benchmarks.peers import to_torch_input, torch_model

    o = r["optimizer"]
    net = torch_model(cnnkit.resolve_model(r["model"], seed=seed))
    opt = torch.optim.Adam(net.parameters(), lr=o["lr"], betas=tuple(o["betas"]), eps=o["eps"],
                           weight_decay=o["weight_decay"])
    digest, loss_sum, correct, seen = hashlib.sha256(), 0.0, 0, 0
    a = meter.snapshot()
    for x, y in _loader(train, r, seed):
        yt = torch.from_numpy(y)
        opt.zero_grad(set_to_none=True)
        logits = net(to_torch_input(x))
        loss = F.cross_entropy(logits, yt)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        correct += int((logits.argmax(dim=1) == yt).sum())
        seen += len(y)
        digest.update(y.tobytes())
    b = meter.snapshot()
    net.eval()
    with torch.inference_mode():
        pred = torch.cat([net(to_torch_input(test_x[i:i + 1000])).argmax(dim=1) for i in range(0, len(test_x), 1000)])
    test_acc = float((pred.numpy() == test_y).mean())
    return _record(b[0] - a[0], meter.others(a, b), seen, loss_sum, correct, test_acc, digest)


def _record(seconds, others, seen, loss_sum, correct, test_acc, digest) -> dict:
    return {"seconds": seconds, "img_s": seen / seconds, "others": others, "images": seen,
            "train_loss": loss_sum / seen, "train_accuracy": correct / seen, "test_accuracy": test_acc,
            "label_order_sha256": digest.hexdigest()[:16]}


def mnist_epoch(meter, threshold: float, data_dir: str | Path = DEFAULT_DATA_DIR, seed: int = 0, reps: int = 1,
                limit: int | None = None, log=print) -> dict:
    """Run the epoch ``reps`` times per side (order A B B A …); medians of the times."""
    from cnnkit.data import load_dataset
    from cnnkit.preprocess import apply_preprocessing

    r = recipe()
    train = load_dataset("mnist", "train", data_dir=data_dir)
    test = load_dataset("mnist", "test", data_dir=data_dir)
    if limit:
        train = train.subset(slice(0, limit))
    test_x = apply_preprocessing(test.x, r["preprocessing"], np.float32)
    runs: dict[str, list[dict]] = {"cnnkit": [], "torch": []}
    fns = {"cnnkit": _cnnkit_epoch, "torch": _torch_epoch}
    # the loader alone (its time is inside both sides' epochs)
    a = meter.snapshot()
    for _ in _loader(train, r, seed):
        pass
    b = meter.snapshot()
    loader_s = b[0] - a[0]
    for i in range(reps):
        for side in (("cnnkit", "torch") if i % 2 == 0 else ("torch", "cnnkit")):
            rec = fns[side](train, test_x, test.y, r, seed, meter)
            runs[side].append(rec)
            log(f"    {side}: {rec['seconds']:.1f} s ({rec['img_s']:.0f} img/s), test accuracy "
                f"{100 * rec['test_accuracy']:.2f}%, others used {100 * rec['others']:.0f}%")
    out = {"images": len(train), "full_epoch": limit is None, "reps": reps, "seed": seed,
           "batch_size": r["batch_size"], "optimizer": r["optimizer"], "augment": r["augment"],
           "preprocessing": r["preprocessing"], "loader_seconds": loader_s, "loader_others": meter.others(a, b),
           "same_order": runs["cnnkit"][0]["label_order_sha256"] == runs["torch"][0]["label_order_sha256"],
           "note": ("same initial weights and the same batches (one DataLoader per side, identically seeded, "
                    "RandomCrop(2) included); Adam lr 0.002; the recipe's cosine schedule does not change the "
                    "rate within the first epoch")}
    for side, recs in runs.items():
        clean = [x for x in recs if x["others"] <= threshold]
        use = clean or recs
        out[side] = {**recs[0], "seconds": statistics.median(x["seconds"] for x in use),
                     "img_s": statistics.median(x["img_s"] for x in use), "clean_runs": len(clean),
                     "runs": [{k: x[k] for k in ("seconds", "img_s", "others")} for x in recs]}
    out["ratio"] = out["cnnkit"]["img_s"] / out["torch"]["img_s"]
    return out
