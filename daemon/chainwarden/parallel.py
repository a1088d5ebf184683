"""Spread one pass's evaluations over forked processes that inherit the inputs already read in memory.

The evaluation is pure Python and CPU-bound, so threads would not help. A forked child shares the
parent's inputs copy-on-write: only its results travel back, pickled through a pipe. Whatever goes
wrong in a child (it cannot be forked, it crashes, it stops making progress) costs time, never a
result: the parent then evaluates that share itself. A child dies with its parent.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import pickle
import select
import signal
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

log = logging.getLogger("chainwarden")

Job = TypeVar("Job")
Out = TypeVar("Out")

# Below this many jobs per process, forking and pickling cost more than they save.
MIN_JOBS_PER_WORKER = 500
MAX_AUTO_WORKERS = 8
# A worker that has neither used CPU time nor sent anything for this long is stuck (a lock it
# inherited held, say), not slow: it is stopped and its share done again.
STALL_SECONDS = 10.0
_CPU_CHECK_SECONDS = 0.5


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
    parts: list[bytes] = field(default_factory=list)
    cpu: int | None = None  # CPU clock ticks last seen
    progress: float = 0.0  # monotonic time it last used CPU or sent data
    done: bool = False  # reaped; fd closed
    result: list[Any] | None = None


def map_chunks(
    jobs: Sequence[Job],
    work: Callable[[Sequence[Job]], list[Out]],
    workers: int,
    *,
    stall_seconds: float | None = None,
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
        results = work(chunks[0])
        # Every worker is collected before any failed share is done again here: a worker that has
        # finished meanwhile must not be judged by the time that redoing took.
        _collect(
            [c for c in children if c is not None],
            STALL_SECONDS if stall_seconds is None else stall_seconds,
            cancelled,
        )
    except BaseException:
        _abandon(children)  # no worker may outlive the pass, blocked on a pipe nobody reads
        raise
    for chunk, child in zip(chunks[1:], children, strict=True):
        received = child.result if child is not None else None
        if received is None:
            if cancelled is not None and cancelled():
                raise Cancelled
            received = work(chunk)
        results.extend(received)
    return results


def _fork(chunk: Sequence[Job], work: Callable[[Sequence[Job]], list[Out]]) -> _Child | None:
    try:
        read_fd, write_fd = os.pipe()
    except OSError as exc:
        log.warning("cannot start a verification worker (%s); its share is verified by the main process", exc.strerror)
        return None
    parent = os.getpid()
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
        _child_main(parent, read_fd, write_fd, chunk, work)
    os.close(write_fd)
    return _Child(pid, read_fd, progress=time.monotonic())


def _child_main(
    parent: int, read_fd: int, write_fd: int, chunk: Sequence[Any], work: Callable[[Sequence[Any]], list[Any]]
) -> None:
    """Evaluate, send the pickled results, and leave without running the parent's exit handlers."""
    code = 1
    try:
        os.close(read_fd)
        _die_with(parent)
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


def _die_with(parent: int) -> None:
    """Be killed when the parent dies (Linux), so that no worker outlives a killed `check` or daemon."""
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before that took effect
        os._exit(1)


_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _collect(children: list[_Child], stall_seconds: float, cancelled: Callable[[], bool] | None) -> None:
    """Read every worker's results as they come (a full pipe would block it), into child.result.

    A worker that fails, or stalls (no CPU time used and nothing sent for `stall_seconds`), is
    stopped and keeps result None. Cancelled when `cancelled()` says so, after stopping them all.
    """
    poller = select.poll()  # not select(): a daemon may hold descriptors past FD_SETSIZE
    live = {child.fd: child for child in children}
    for fd in live:
        poller.register(fd, select.POLLIN)
    next_cpu_check = time.monotonic() + _CPU_CHECK_SECONDS
    while live:
        if cancelled is not None and cancelled():
            _abandon(list(live.values()))
            raise Cancelled
        for fd, _ in poller.poll(200):
            child = live[fd]
            part = os.read(fd, 1 << 16)  # a pipe holds 64 KiB
            if part:
                child.parts.append(part)
                child.progress = time.monotonic()
                continue
            poller.unregister(fd)
            del live[fd]
            _finish(child, stalled=False)
        now = time.monotonic()
        if now < next_cpu_check:
            continue
        next_cpu_check = now + _CPU_CHECK_SECONDS
        for fd, child in list(live.items()):
            cpu = _cpu_ticks(child.pid)
            if cpu is None or cpu != child.cpu:  # no /proc: only a stop request ends the wait
                child.cpu, child.progress = cpu, now
            elif now - child.progress > stall_seconds:
                poller.unregister(fd)
                del live[fd]
                _finish(child, stalled=True)


def _finish(child: _Child, *, stalled: bool) -> None:
    """Reap the child (killing it first if it stalled) and unpickle what it sent, or log why not."""
    os.close(child.fd)
    if stalled:
        _kill(child.pid)
    _, status = os.waitpid(child.pid, 0)
    child.done = True
    if stalled or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        why = "stopped making progress" if stalled else f"failed ({_describe_status(status)})"
        log.warning("a verification worker process %s; its share is verified by the main process", why)
        return
    try:
        child.result = pickle.loads(b"".join(child.parts))
    except Exception:  # noqa: BLE001 - a garbled payload is one more failure of the child
        log.warning("a verification worker process sent unreadable results; its share is verified again")
    finally:
        child.parts = []


def _cpu_ticks(pid: int) -> int | None:
    """User + system CPU time of `pid` in clock ticks, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            fields = handle.read().rsplit(b")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    except (OSError, IndexError, ValueError):
        return None


def _abandon(children: Sequence[_Child | None]) -> None:
    for child in children:
        if child is None or child.done:
            continue
        os.close(child.fd)
        _kill(child.pid)
        os.waitpid(child.pid, 0)
        child.done = True


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit status {os.WEXITSTATUS(status)}"
