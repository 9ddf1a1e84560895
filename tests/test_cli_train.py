"""``cnnkit train``: the run folder and its files, bad arguments, --out refusal, resume, Ctrl-C.

Runs on a tiny image folder (3 classes × 12 PNGs of 8×8) with a linear model, so each command
takes about a second.
"""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from cnnkit import runs
from cnnkit.cli import main
from cnnkit.errors import UserInputError

MODEL = "flatten-fc(3)"


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> str:
    from PIL import Image

    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for k, name in enumerate(["red", "green", "blue"]):
        (root / name).mkdir()
        for i in range(12):
            x = rng.integers(0, 140, (8, 8, 3))
            x[:, :, k] += 100
            Image.fromarray(x.astype(np.uint8)).save(root / name / f"{i:02d}.png")
    return str(root)


@pytest.fixture(autouse=True)
def quick_report(request, monkeypatch):
    """The report (matplotlib figures) is tested in its own files; here it is a stub except in
    tests that ask for the ``real_report`` fixture, which check that ``cnnkit train`` writes it."""
    if "real_report" in request.fixturenames:
        return
    import cnnkit.report

    monkeypatch.setattr(cnnkit.report, "write_report",
                        lambda run_dir, **kw: (Path(run_dir) / "report.html").write_text("<html></html>"))


def train(capsys, *args: str) -> tuple[int, list[str], str]:
    """Run ``cnnkit train ARGS``; returns (exit status, stdout lines, stderr)."""
    try:
        code = main(["train", *args])
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    out, err = capsys.readouterr()
    return code, out.splitlines(), err


def base(folder: str, out: Path | None = None, *extra: str) -> list[str]:
    args = ["--dataset", folder, "--model", MODEL, "--epochs", "2", "--batch-size", "8", "--quiet"]
    return args + (["--out", str(out)] if out is not None else []) + list(extra)


def model_weights(path: Path) -> dict[str, np.ndarray]:
    from cnnkit.io import load

    return load(path).state_dict()


# ----------------------------------------------------------------------------- the run folder
@pytest.fixture
def real_report():
    """Requested by tests that run the real report (see quick_report)."""


def test_train_writes_the_run_folder_and_prints_its_path_last(capsys, folder, tmp_path, real_report):
    out = tmp_path / "run"
    code, lines, err = train(capsys, *base(folder, out))
    assert code == 0, err
    assert lines == [str(out)]  # --quiet: the path only
    assert err == ""
    assert {p.name for p in out.iterdir()} == {"model.npz", "checkpoint.npz", "metrics.json", "history.json",
                                               "run.json", "report.html"}
    assert "Training curves" in (out / "report.html").read_text()
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == list(runs.METRICS_KEYS)
    assert 0 <= metrics["test_accuracy"] <= 1 and metrics["epochs"] == 2 and metrics["seed"] == 0
    assert metrics["model"] == MODEL and metrics["dataset"] == folder
    assert metrics["total_seconds"] >= metrics["train_seconds"] > 0
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert set(history["epochs"][0]) == {"epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr",
                                         "timings"}
    run = json.loads((out / "run.json").read_text())
    assert run["command"][:2] == ["cnnkit", "train"] and run["batch_size"] == 8 and run["optimizer"] == "adam"
    assert run["model_spec"]["layers"][-1]["outputs"] == 3 and run["class_names"] == ["blue", "green", "red"]
    assert set(run["preprocessing"]) == {"scale", "mean", "std"}
    assert set(run["versions"]) >= {"cnnkit", "numpy", "python"}
    from cnnkit.io import load

    model = load(out / "model.npz")
    assert model.class_names == ["blue", "green", "red"] and model.preprocessing == run["preprocessing"]


def test_a_non_finite_loss_exits_1_with_one_line(capsys, folder, tmp_path):
    out = tmp_path / "run"
    code, lines, err = train(capsys, "--dataset", folder, "--model", "flatten-fc(16)-relu-fc(3)", "--optimizer", "sgd",
                             "--lr", "1e30", "--batch-size", "8", "--quiet", "--out", str(out))
    assert code == 1 and lines == []
    assert re.fullmatch(r"cnnkit train: error: epoch 1, step \d+ of 4: the training loss is (nan|inf) "
                        r"\(lr=1e\+30\); try a lower learning rate\n", err)
    assert not (out / "model.npz").exists()


def test_a_failing_report_exits_1_but_keeps_the_run(capsys, folder, tmp_path, monkeypatch):
    import cnnkit.report

    def broken(run_dir, **kw):
        raise RuntimeError("boom")

    monkeypatch.setattr(cnnkit.report, "write_report", broken)
    out = tmp_path / "run"
    code, lines, err = train(capsys, *base(folder, out))
    assert code == 1 and lines[-1] == str(out)
    assert f"the run is saved in {out}, but report.html failed: RuntimeError: boom" in err
    assert (out / "model.npz").is_file() and (out / "metrics.json").is_file()


def test_without_quiet_a_summary_line_comes_before_the_path(capsys, folder, tmp_path):
    out = tmp_path / "run"
    args = [a for a in base(folder, out) if a != "--quiet"]
    code, lines, err = train(capsys, *args)
    assert code == 0 and lines[-1] == str(out)
    assert lines[-2].startswith("test accuracy ") and "2 epochs trained in" in lines[-2]
    assert "epoch 2/2  loss" in err  # plain progress lines (stderr is not a terminal here)


def test_the_default_run_folder_is_named_by_time_model_and_dataset(capsys, folder, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, lines, _ = train(capsys, *base(folder))
    assert code == 0
    assert re.fullmatch(r"runs/\d{8}-\d{6}-inline-tiny\d*", lines[-1])
    assert (tmp_path / lines[-1] / "model.npz").is_file()


def test_the_same_settings_give_bit_identical_models(capsys, folder, tmp_path):
    for name in ("a", "b"):
        assert train(capsys, *base(folder, tmp_path / name, "--seed", "5"))[0] == 0
    a, b = model_weights(tmp_path / "a" / "model.npz"), model_weights(tmp_path / "b" / "model.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    ha, hb = (json.loads((tmp_path / n / "history.json").read_text())["epochs"] for n in ("a", "b"))
    assert [{k: v for k, v in e.items() if k != "timings"} for e in ha] == \
           [{k: v for k, v in e.items() if k != "timings"} for e in hb]


# ----------------------------------------------------------------------------- bad arguments
@pytest.mark.parametrize("args, message", [
    (["--epochs", "0"], "argument --epochs: expected a positive integer; received '0'"),
    (["--batch-size", "many"], "argument --batch-size: expected a positive integer; received 'many'"),
    (["--lr", "-1"], "argument --lr: expected a positive number"),
    (["--lr", "nan"], "argument --lr: expected a positive number"),
    (["--seed", "-3"], "argument --seed: expected an integer >= 0"),
    (["--optimizer", "lbfgs"], "argument --optimizer: invalid choice: 'lbfgs'"),
    (["--resume"], "--resume needs --out DIR"),
    (["--model", "nonsense"], "unknown model 'nonsense'"),
    (["--dataset", "no-such-dataset"], "unknown dataset 'no-such-dataset'"),
    (["--model", "flatten-fc(5)"], r"outputs \(5,\) but .* has 3 classes"),
    (["--augment", "rotate"], "unknown augmentation 'rotate'"),
    (["--schedule", "linear"], "argument --schedule: invalid choice: 'linear'"),
])
def test_bad_arguments_exit_2_with_one_clear_line(capsys, folder, tmp_path, args, message):
    full = ["--dataset", folder, "--model", MODEL, *args]
    if "--resume" not in args:
        full += ["--out", str(tmp_path / "run")]
    code, lines, err = train(capsys, *full)
    assert code == 2
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and re.search(message, errors[0]), err
    assert "Traceback" not in err and lines == []
    assert not (tmp_path / "run" / "model.npz").exists()


def test_a_non_empty_out_is_refused_and_left_alone(capsys, folder, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("precious")
    code, _, err = train(capsys, *base(folder, out))
    assert code == 2 and "--out" in err and "is not empty; pass --resume" in err
    assert [p.name for p in out.iterdir()] == ["notes.txt"] and (out / "notes.txt").read_text() == "precious"


def test_bad_arguments_leave_no_out_folder_behind(capsys, folder, tmp_path):
    out = tmp_path / "new-run"
    code, _, err = train(capsys, "--dataset", folder, "--model", "nosuchmodel", "--out", str(out), "--quiet")
    assert code == 2 and "unknown model 'nosuchmodel'" in err
    code, _, err = train(capsys, *base(folder, out, "--augment", "rotate"))
    assert code == 2
    assert not out.exists()


def test_overwrite_replaces_the_run_files_only(capsys, folder, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, *base(folder, out))[0] == 0
    (out / "notes.txt").write_text("keep me")
    (out / ".model.npz.123-abcd.cnnkit-tmp").write_bytes(b"half a file")  # left by a kill -9
    code, lines, _ = train(capsys, *base(folder, out, "--overwrite", "--seed", "1"))
    assert code == 0 and lines[-1] == str(out)
    assert (out / "notes.txt").read_text() == "keep me"
    assert not (out / ".model.npz.123-abcd.cnnkit-tmp").exists()
    assert json.loads((out / "metrics.json").read_text())["seed"] == 1


def test_resume_and_overwrite_together_are_refused(capsys, folder, tmp_path):
    code, _, err = train(capsys, *base(folder, tmp_path / "run", "--resume", "--overwrite"))
    assert code == 2 and "--resume and --overwrite contradict each other" in err


# ----------------------------------------------------------------------------- resume and Ctrl-C
def test_resume_without_a_checkpoint_starts_from_scratch_and_says_so(capsys, folder, tmp_path):
    out = tmp_path / "run"
    code, lines, err = train(capsys, *base(folder, out, "--resume"))
    assert code == 0 and lines[-1] == str(out)
    assert "has no checkpoint yet: starting from scratch" in err
    assert train(capsys, *base(folder, tmp_path / "fresh"))[0] == 0
    a, b = model_weights(out / "model.npz"), model_weights(tmp_path / "fresh" / "model.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_continues_to_more_epochs_bit_identically(capsys, folder, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, *base(folder, out, "--epochs", "1"))[0] == 0
    code, _, err = train(capsys, "--out", str(out), "--resume", "--epochs", "3", "--quiet")
    assert code == 0, err
    assert train(capsys, *base(folder, tmp_path / "straight", "--epochs", "3"))[0] == 0
    a, b = model_weights(out / "model.npz"), model_weights(tmp_path / "straight" / "model.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 3


def test_resume_refuses_other_settings(capsys, folder, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, *base(folder, out, "--epochs", "1"))[0] == 0
    code, _, err = train(capsys, *base(folder, out, "--resume", "--batch-size", "4"))
    assert code == 2 and "drop --batch-size 4 (the run has 8)" in err


def test_ctrl_c_saves_a_checkpoint_exits_130_and_resume_is_bit_identical(capsys, folder, tmp_path, monkeypatch):
    import cnnkit.train
    from cnnkit.callbacks import Callback

    class CtrlC(Callback):
        def on_batch_end(self, state):
            if (state.epoch, state.step) == (2, 2):
                os.kill(os.getpid(), signal.SIGINT)

    real_fit = cnnkit.train.fit
    monkeypatch.setattr(cnnkit.train, "fit", lambda *a, **kw: real_fit(*a, callbacks=[CtrlC()], **kw))
    out = tmp_path / "run"
    code, lines, err = train(capsys, *base(folder, out, "--epochs", "3"))
    assert code == 130 and lines[-1] == str(out)
    assert f"continue with: cnnkit train --out {out} --resume" in err
    assert (out / "checkpoint.npz").is_file() and not (out / "model.npz").exists()
    monkeypatch.setattr(cnnkit.train, "fit", real_fit)
    assert train(capsys, "--out", str(out), "--resume", "--quiet")[0] == 0
    assert train(capsys, *base(folder, tmp_path / "straight", "--epochs", "3"))[0] == 0
    a, b = model_weights(out / "model.npz"), model_weights(tmp_path / "straight" / "model.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_memory_warning_before_training(capsys, folder, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "available_memory", lambda: 1000)
    code, _, err = train(capsys, *base(folder, tmp_path / "run"))
    assert code == 0
    assert re.search(r"warning: a batch of 8 needs about .* of activation memory \(forward \+ backward\), more "
                     r"than the 1000 B available", err)


def test_each_dataset_has_its_recipe_and_flags_override_it():
    import argparse

    from cnnkit.cli.train import _settings

    def settings(**given):
        keys = ("model", "dataset", "data_dir", "cache_dir", "epochs", "batch_size", "optimizer", "lr", "schedule",
                "augment", "seed")
        return _settings(argparse.Namespace(resume=False, **{k: given.get(k) for k in keys}), None)

    s = settings()
    assert (s["model"], s["dataset"], s["epochs"], s["batch_size"], s["optimizer"], s["lr"], s["schedule"],
            s["augment"]) == ("shapes-net", "shapes", 10, 64, "adam", 0.003, "cosine", "crop=2,flip")
    assert settings(optimizer="sgd")["lr"] is None  # the recipe's rate belongs to its optimiser
    assert settings(epochs=3, lr=0.1)["epochs"] == 3 and settings(lr=0.1)["lr"] == 0.1
    assert settings(dataset="mnist")["model"] == "lenet5" and settings(dataset="MNIST")["augment"] == "crop=2"
    folder = settings(dataset="/some/folder")
    assert folder["model"] == "shapes-net" and folder["augment"] == "none" and folder["lr"] is None


def test_run_json_records_schedule_and_augmentation(capsys, folder, tmp_path):
    out = tmp_path / "run"
    assert train(capsys, *base(folder, out, "--augment", "flip", "--schedule", "step"))[0] == 0
    run = json.loads((out / "run.json").read_text())
    assert run["augment"] == "flip" and run["schedule"] == "step"
    assert run["command"][-6:] == ["--schedule", "step", "--augment", "flip", "--seed", "0"]
    lrs = [e["lr"] for e in json.loads((out / "history.json").read_text())["epochs"]]
    assert lrs == pytest.approx([0.001, 0.0001])  # step: divided by 10 every max(1, epochs // 3) epochs


# ----------------------------------------------------------------------------- runs.py helpers
def test_short_names():
    assert runs.short_name("shapes-net") == "shapes-net"
    assert runs.short_name("specs/tiny.json") == "tiny"
    assert runs.short_name("/data/flowers/") == "flowers"
    assert runs.short_name("runs/x/model.npz") == "x"
    assert runs.short_name("conv(6,5)-relu-fc(10)") == "inline"
    assert runs.short_name("a b?c") == "a_b_c"


def test_new_run_dir_adds_a_suffix_when_taken(tmp_path):
    first = runs.new_run_dir("lenet5", "mnist", root=tmp_path, now=0)
    second = runs.new_run_dir("lenet5", "mnist", root=tmp_path, now=0)
    third = runs.new_run_dir("lenet5", "mnist", root=tmp_path, now=0)
    assert first.name.endswith("-lenet5-mnist") and re.fullmatch(r"\d{8}-\d{6}-lenet5-mnist", first.name)
    assert second.name == first.name + "-2" and third.name == first.name + "-3"


def test_prepare_out_dir_rules(tmp_path):
    assert runs.prepare_out_dir(tmp_path / "new").is_dir()
    (tmp_path / "new" / "x").write_text("1")
    with pytest.raises(UserInputError, match="is not empty; pass --resume"):
        runs.prepare_out_dir(tmp_path / "new")
    assert runs.prepare_out_dir(tmp_path / "new", resume=True).is_dir()
    (tmp_path / "file").write_text("1")
    with pytest.raises(UserInputError, match="exists and is not a folder"):
        runs.prepare_out_dir(tmp_path / "file", overwrite=True)


def test_write_json_is_strict_json_with_nan_as_null(tmp_path):
    runs.write_json(tmp_path / "m.json", {"a": float("nan"), "b": [1.5, float("inf")]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": None, "b": [1.5, None]}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_memory_estimate_follows_the_summary_and_the_batch_size():
    from cnnkit.spec import resolve_model
    from cnnkit.summarize import summary

    model = resolve_model("shapes-net", (32, 32, 3), classes=6)
    s = summary(model, batch_size=64)
    assert runs.batch_memory_bytes(model, 64) == s.memory_train + s.input_bytes
    assert runs.batch_memory_bytes(model, 128) == 2 * runs.batch_memory_bytes(model, 64)
    assert runs.memory_warning(model, 64, available=1 << 40) is None
    assert "--batch-size 31 or less would fit" in runs.memory_warning(
        model, 64, available=runs.batch_memory_bytes(model, 64) // 2 - 1)
