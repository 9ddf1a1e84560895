"""Training progress on stderr: a tqdm bar on a terminal, plain periodic lines otherwise
(readable CI logs), nothing when quiet.

Each display shows the running loss and accuracy of the epoch, images per second and the
estimated time left for the whole run; every epoch ends with one summary line.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from .errors import UserInputError

LINE_INTERVAL = 10.0  # seconds between plain progress lines within an epoch


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """``epoch 2/5  loss 0.412 acc 86.1%  val loss 0.300 acc 90.2%  lr 0.001  3.1 s  1520 img/s``"""
    t = record["timings"]
    val = ""
    if record.get("val_loss") is not None:
        val = f"  val loss {record['val_loss']:.4f} acc {_pct(record['val_accuracy'])}"
    return (f"epoch {record['epoch']}/{epochs}  loss {record['train_loss']:.4f} acc {_pct(record['train_accuracy'])}"
            f"{val}  lr {record['lr']:.3g}  {t['train_seconds']:.1f} s  {t['images_per_second']:.0f} img/s")


class Progress:
    """Silent display; the base of the others."""

    def __init__(self, epochs: int, steps: int, examples: int, stream=None) -> None:
        self.epochs, self.steps, self.examples = epochs, steps, examples
        self.stream = stream if stream is not None else sys.stderr
        self.epoch = 1
        self.start_seen = 0
        self._rate: float | None = None

    def start_epoch(self, epoch: int, step: int, seen: int) -> None:
        self.epoch, self.start_seen = epoch, seen

    def update(self, step: int, partial: dict[str, float], seconds: float) -> None:
        pass

    def end_epoch(self, record: dict[str, Any]) -> None:
        pass

    def interrupted(self, checkpoint, saved_epochs: int) -> None:
        pass

    def close(self) -> None:
        pass

    # -- shared figures
    def _figures(self, partial: dict[str, float], seconds: float) -> tuple[float, float, float, float]:
        """(loss, accuracy, images/s, seconds left for the whole run)."""
        seen = max(partial["seen"], 1)
        rate = (partial["seen"] - self.start_seen) / seconds if seconds > 0 else 0.0
        if rate > 0:
            self._rate = rate
        left_images = (self.epochs - self.epoch + 1) * self.examples - partial["seen"]
        eta = left_images / self._rate if self._rate else float("nan")
        return partial["loss_sum"] / seen, partial["correct"] / seen, rate, eta

    def _say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)


class LineProgress(Progress):
    """One line every :data:`LINE_INTERVAL` seconds within an epoch, and one per epoch."""

    def start_epoch(self, epoch: int, step: int, seen: int) -> None:
        super().start_epoch(epoch, step, seen)
        self._last = time.perf_counter()

    def update(self, step: int, partial: dict[str, float], seconds: float) -> None:
        now = time.perf_counter()
        if now - self._last < LINE_INTERVAL:
            return
        self._last = now
        loss, acc, rate, eta = self._figures(partial, seconds)
        self._say(f"epoch {self.epoch}/{self.epochs}  step {step}/{self.steps}  loss {loss:.4f} acc {_pct(acc)}  "
                  f"{rate:.0f} img/s  ETA {_clock(eta) if eta == eta else '?'}")

    def end_epoch(self, record: dict[str, Any]) -> None:
        self._say(epoch_line(record, self.epochs))

    def interrupted(self, checkpoint, saved_epochs: int) -> None:
        if checkpoint is not None:
            self._say(f"interrupted: stopped cleanly in epoch {self.epoch}; checkpoint written to {checkpoint}")
        else:
            self._say(f"interrupted in epoch {self.epoch}; the last checkpoint is of epoch {saved_epochs}")


class BarProgress(LineProgress):
    """A tqdm bar per epoch with loss, accuracy, images/s and the run's ETA."""

    def start_epoch(self, epoch: int, step: int, seen: int) -> None:
        from tqdm import tqdm

        super().start_epoch(epoch, step, seen)
        self.bar = tqdm(total=self.steps, initial=step, desc=f"epoch {epoch}/{self.epochs}", unit="batch",
                        file=self.stream, leave=False, dynamic_ncols=True)

    def update(self, step: int, partial: dict[str, float], seconds: float) -> None:
        loss, acc, rate, eta = self._figures(partial, seconds)
        self.bar.set_postfix_str(f"loss {loss:.4f} acc {_pct(acc)} {rate:.0f} img/s ETA "
                                 f"{_clock(eta) if eta == eta else '?'}", refresh=False)
        self.bar.update(step - self.bar.n)

    def end_epoch(self, record: dict[str, Any]) -> None:
        self.close()
        super().end_epoch(record)

    def interrupted(self, checkpoint, saved_epochs: int) -> None:
        self.close()
        super().interrupted(checkpoint, saved_epochs)

    def close(self) -> None:
        bar = getattr(self, "bar", None)
        if bar is not None:
            bar.close()
            self.bar = None


def make_progress(mode: Any, *, epochs: int, steps: int, examples: int, stream=None) -> Progress:
    """``"auto"`` (bar on a terminal, lines otherwise), ``"bar"``, ``"lines"``, or False/None/"none"."""
    stream = stream if stream is not None else sys.stderr
    if mode in (False, None, "none", "quiet"):
        return Progress(epochs, steps, examples, stream)
    if mode in (True, "auto"):
        mode = "bar" if getattr(stream, "isatty", lambda: False)() else "lines"
    if mode == "bar":
        return BarProgress(epochs, steps, examples, stream)
    if mode == "lines":
        return LineProgress(epochs, steps, examples, stream)
    raise UserInputError(f"progress must be 'auto', 'bar', 'lines' or False. Received: {mode!r}")
