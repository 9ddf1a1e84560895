"""Worker threads that run batch shards at once, in lockstep (used by :mod:`cnnkit.parallel`).

The calling thread runs shard 0 and one daemon thread per further shard runs the others; BLAS is
limited to one thread per caller meanwhile (threadpoolctl, imported on first use so that
``import cnnkit`` stays fast). A shard is a generator: each ``yield (reduce, part)`` is a barrier
where ``reduce([part of every shard])`` — run once, on the calling thread — gives the value sent
back into every shard (BatchNorm's batch statistics, the gradients to sum).
"""

from __future__ import annotations

import functools
import os
import queue
import threading
from contextlib import contextmanager
from typing import Any, Callable, Iterator

class _Workers:
    """Daemon threads that each run the functions put in their inbox; the caller runs shard 0."""

    def __init__(self, count: int) -> None:
        self.inboxes: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in range(count)]
        self.outbox: queue.SimpleQueue = queue.SimpleQueue()
        self.lock = threading.Lock()
        self.tag = 0
        for i, box in enumerate(self.inboxes):
            threading.Thread(target=self._loop, args=(box,), name=f"cnnkit-shard-{i + 1}", daemon=True).start()

    def _loop(self, box: queue.SimpleQueue) -> None:
        while True:
            tag, index, fn = box.get()
            try:
                result = (True, fn())
            except BaseException as exc:  # handed to the caller, which raises it
                result = (False, exc)
            self.outbox.put((tag, index, result))

    def run(self, fns: list[Callable[[], Any]]) -> list[Any]:
        """Run ``fns[0]`` here and the others on the workers; their results, in order."""
        self.tag += 1
        tag = self.tag
        for i, fn in enumerate(fns[1:]):
            self.inboxes[i].put((tag, i + 1, fn))
        results: list[Any] = [None] * len(fns)
        try:
            results[0] = (True, fns[0]())
        except BaseException as exc:
            results[0] = (False, exc)
        pending = len(fns) - 1
        while pending:
            t, i, result = self.outbox.get()
            if t == tag:  # results of a run left by an interrupt are dropped
                results[i] = result
                pending -= 1
        for ok, value in results:
            if not ok:
                raise value
        return [value for _, value in results]


_workers: _Workers | None = None
_workers_lock = threading.Lock()
_blas = None  # threadpoolctl's controller of the BLAS libraries, made on first use


def _reset_after_fork() -> None:
    global _workers, _workers_lock
    _workers, _workers_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _get_workers(count: int) -> _Workers:
    global _workers
    with _workers_lock:
        if _workers is None or len(_workers.inboxes) < count:
            _workers = _Workers(count)
        return _workers


def _sequential(fns: list[Callable[[], Any]]) -> list[Any]:
    return [fn() for fn in fns]


@contextmanager
def runner(count: int) -> Iterator[Callable[[list[Callable[[], Any]]], list[Any]]]:
    """A function that runs ``count`` shard functions: in threads with single-threaded BLAS, or
    one after the other on this thread (one shard, or the workers busy with another caller)."""
    if count == 1 or _blas_controller() is None:
        yield _sequential
        return
    workers = _get_workers(count - 1)
    if not workers.lock.acquire(blocking=False):
        yield _sequential
        return
    try:
        with _blas.limit(limits=1):
            yield workers.run
    finally:
        workers.lock.release()


def _blas_controller():
    """threadpoolctl's controller of the BLAS libraries (made once), or None without threadpoolctl:
    then shards run one after the other (same results) and a warning says what to install —
    threads with multi-threaded BLAS inside each would oversubscribe the cores."""
    global _blas
    if _blas is None:
        try:
            from threadpoolctl import ThreadpoolController
        except ImportError:
            import warnings

            warnings.warn("cnnkit runs batch shards in one thread: threadpoolctl is not installed "
                          "(pip install threadpoolctl) to run them on all cores", RuntimeWarning, stacklevel=4)
            _blas = False
            return None
        _blas = ThreadpoolController().select(user_api="blas")
    return _blas or None


def advance(gen, value):
    try:
        return False, gen.send(value)
    except StopIteration as stop:
        return True, stop.value


def drive(gens: list, run) -> list[Any]:
    """Run shard generators in lockstep: each ``yield (reduce, part)`` is a barrier where
    ``reduce([part of every shard])`` gives the value sent back to every shard."""
    values: list[Any] = [None] * len(gens)
    while True:
        steps = run([functools.partial(advance, g, v) for g, v in zip(gens, values)])
        if all(done for done, _ in steps):
            return [value for _, value in steps]
        if any(done for done, _ in steps):
            raise RuntimeError("batch shards out of step (a bug in cnnkit.parallel)")
        reduce = steps[0][1][0]
        values = [reduce([msg[1] for _, msg in steps])] * len(gens)
