"""``cnnkit report RUN_DIR``: (re)write RUN_DIR/report.html."""

from __future__ import annotations

from . import add_command


def register(sub) -> None:
    p = add_command(sub, "report", func=run,
                    help="(re)write RUN_DIR/report.html: one self-contained page with the run's figures")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by cnnkit train")


def run(args) -> int:
    import sys
    from pathlib import Path

    from ..io import load
    from ..report import _write

    model = None
    if Path(args.run_dir).is_dir():  # a missing or corrupt model.npz: ModelFormatError, exit 1
        model = load(Path(args.run_dir) / "model.npz")
    path, problems = _write(args.run_dir, model)
    for problem in problems:
        print(f"cnnkit report: warning: section not drawn: {problem}", file=sys.stderr)
    print(path)
    return 0
