"""Spread one pass's evaluations over forked processes that inherit the inputs already read in memory.

The evaluation is pure Python and CPU-bound, so threads would not help. A forked child shares the
parent's inputs copy-on-write: only its results travel back, pickled through a pipe. Whatever goes
wrong in a child (it cannot be forked, it crashes, it hangs past a deadline) costs time, never a
result: the parent then evaluates that share itself.
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import select
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

log = logging.getLogger("chainwarden")

Job = TypeVar("Job")
Out = TypeVar("Out")

# Below this many jobs per process, forking and pickling cost more than they save.
MIN_JOBS_PER_WORKER = 500
MAX_AUTO_WORKERS = 8
# A child gets this long, or this many times the parent's own share of the work, whichever is longer.
CHILD_MIN_SECONDS = 20.0
CHILD_SLOWDOWN = 5.0


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def worker_count(setting: int, jobs: int) -> int:
    """Processes to use for `jobs` evaluations: `setting` (0: one per usable CPU), fewer for small passes."""
    if not hasattr(os, "fork"):
        return 1
    wanted = setting if setting > 0 else min(usable_cpus(), MAX_AUTO_WORKERS)
    return max(1, min(wanted, jobs // MIN_JOBS_PER_WORKER))


class Cancelled(Exception):
    """The caller asked to stop while workers were still busy; they are gone, and the pass is abandoned."""


@dataclass
class _Child:
    pid: int
    fd: int


def map_chunks(
    jobs: Sequence[Job],
    work: Callable[[Sequence[Job]], list[Out]],
    workers: int,
    *,
    child_min_seconds: float | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[Out]:
    """work(jobs), computed in `workers` processes (this one included), results in the order of `jobs`.

    While waiting for workers, `cancelled()` is asked a few times a second: when it says yes, the
    workers are stopped and Cancelled is raised (a daemon told to stop does not wait for them).
    """
    if workers <= 1 or len(jobs) < 2:
        return work(jobs)
    size = -(-len(jobs) // workers)
    chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    children: list[_Child | None] = []
    try:
        children.extend(_fork(chunk, work) for chunk in chunks[1:])
        started = time.monotonic()
        results = work(chunks[0])
    except BaseException:
        _abandon(children)  # no worker may outlive the pass, blocked on a pipe nobody reads
        raise
    floor = CHILD_MIN_SECONDS if child_min_seconds is None else child_min_seconds
    allowance = max(floor, (time.monotonic() - started) * CHILD_SLOWDOWN)
    deadline = time.monotonic() + allowance
    for index, (chunk, child) in enumerate(zip(chunks[1:], children, strict=True)):
        try:
            received = _collect(child, deadline, cancelled) if child is not None else None
        except Cancelled:
            _abandon(children[index + 1 :])
            raise
        if received is None:
            received = work(chunk)
        results.extend(received)
    return results


def _fork(chunk: Sequence[Job], work: Callable[[Sequence[Job]], list[Out]]) -> _Child | None:
    try:
        read_fd, write_fd = os.pipe()
    except OSError as exc:
        log.warning("cannot start a verification worker (%s); its share is verified by the main process", exc.strerror)
        return None
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns on fork() with threads running; the child only computes and exits.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:
        os.close(read_fd)
        os.close(write_fd)
        log.warning("cannot start a verification worker (%s); its share is verified by the main process", exc.strerror)
        return None
    if pid == 0:
        _child_main(read_fd, write_fd, chunk, work)
    os.close(write_fd)
    return _Child(pid, read_fd)


def _child_main(read_fd: int, write_fd: int, chunk: Sequence[Any], work: Callable[[Sequence[Any]], list[Any]]) -> None:
    """Evaluate, send the pickled results, and leave without running the parent's exit handlers."""
    code = 1
    try:
        os.close(read_fd)
        # No collector in a child that lives for one share: it would rescan the parent's objects (time)
        # and write to their pages (memory shared copy-on-write); what cycles it leaves die with it.
        gc.disable()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)  # a stop request ends the child at once
        payload = memoryview(pickle.dumps(work(chunk), protocol=pickle.HIGHEST_PROTOCOL))
        while payload:
            payload = payload[os.write(write_fd, payload) :]
        code = 0
    except BaseException:  # noqa: BLE001 - any failure only means the parent does this share itself
        code = 1
    finally:
        os._exit(code)


def _collect(child: _Child, deadline: float, cancelled: Callable[[], bool] | None = None) -> list[Any] | None:
    """The child's results, or None (it failed or ran out of time, and is gone) so the parent does them."""
    parts: list[bytes] = []
    timed_out = stop = False
    poller = select.poll()  # not select(): a daemon may hold descriptors past FD_SETSIZE
    poller.register(child.fd, select.POLLIN)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if cancelled is not None and cancelled():
                stop = True
                break
            if not poller.poll(min(left, 0.2) * 1000):
                continue
            part = os.read(child.fd, 1 << 16)  # a pipe holds 64 KiB
            if not part:
                break
            parts.append(part)
    finally:
        os.close(child.fd)
    if timed_out or stop:
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    _, status = os.waitpid(child.pid, 0)
    if stop:
        raise Cancelled
    if timed_out or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        why = "did not finish in time" if timed_out else f"failed ({_describe_status(status)})"
        log.warning("a verification worker process %s; its share is verified by the main process", why)
        return None
    try:
        received: list[Any] = pickle.loads(b"".join(parts))
    except Exception:  # noqa: BLE001 - a garbled payload is one more failure of the child
        log.warning("a verification worker process sent unreadable results; its share is verified again")
        return None
    return received


def _abandon(children: Sequence[_Child | None]) -> None:
    for child in children:
        if child is None:
            continue
        os.close(child.fd)
        try:
            os.kill(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(child.pid, 0)


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"
