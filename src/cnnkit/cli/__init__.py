"""The ``cnnkit`` command line. It only parses arguments and calls the library.

Each sub-command lives in its own module here with a ``register(subparsers)`` function that adds
its parser and sets ``func`` (a callable taking the parsed ``args`` and returning an exit status).

Exit status (INTERFACE.md): 0 success; 2 bad arguments or bad user input (``UserInputError``,
a ``ValueError``); 1 other failures (``CnnkitError``, ``OSError``, anything unexpected). One line
on stderr, never a traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from .. import __version__
from ..errors import CnnkitError, UserInputError

# Modules of this package that define sub-commands, in the order --help lists them.
COMMAND_MODULES = (
    "summary",
    "calc",
    "train",
    "check_gradients",
    "visualize",
    "report",
    "evaluate",
    "predict",
    "convert",
    "detect",
    "profile",
)


class Parser(argparse.ArgumentParser):
    """argparse with exit status 2 and one clear line for bad arguments."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cnnkit", description="Build, check, train, look inside and deploy CNNs, on NumPy.",
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cnnkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except Exception as e:  # one broken command must not take --version and the others down
            _register_broken(sub, name, e)
            continue
        module.register(sub)
    return parser


def _register_broken(sub, name: str, error: Exception) -> None:
    """A stand-in for a sub-command whose module failed to import: using it is an internal error."""

    def fail(args) -> int:
        raise RuntimeError(f"the {name!r} command could not be loaded: {type(error).__name__}: {error}")

    p = sub.add_parser(name.replace("_", "-"), help="(unavailable: failed to load)", add_help=False)
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=fail, _parser=p)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("cnnkit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (cnnkit summary … | head): stop quietly, as SIGPIPE would
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit
        except (OSError, ValueError):
            pass
        return 141
    except UserInputError as e:
        if args.debug:
            raise
        sub = getattr(args, "_parser", None)
        if sub is not None:
            sub.print_usage(sys.stderr)
        print(f"cnnkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (CnnkitError, OSError) as e:
        if args.debug:
            raise
        print(f"cnnkit {args.command}: error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # an internal error: still one line, unless --debug
        if args.debug:
            raise
        print(f"cnnkit {args.command}: internal error: {type(e).__name__}: {e} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 1


def add_command(sub, name: str, help: str, func, description: str | None = None) -> argparse.ArgumentParser:
    """Add a sub-command parser whose errors print its own usage; ``func(args) -> int``."""
    p = sub.add_parser(name, help=help, description=description or help,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func, _parser=p)
    return p


def parse_hwc(text: str) -> tuple[int, int, int]:
    """``'32x32x3'`` → (32, 32, 3) (height × width × channels); argparse type."""
    parts = text.lower().replace("×", "x").split("x")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected HxWxC with positive integers, e.g. 32x32x3; received {text!r}")
    return values  # type: ignore[return-value]


def positive_int(text: str) -> int:
    """A positive integer; argparse type."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer; received {text!r}")
    return value
