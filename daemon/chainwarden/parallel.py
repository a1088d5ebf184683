"""Spread one pass's evaluations over forked processes that inherit the inputs already read in memory.

The evaluation is pure Python and CPU-bound, so threads would not help. A forked child shares the
parent's inputs copy-on-write: only its results travel back, pickled into a memory file. The jobs
are cut into pieces that every process, this one included, claims one at a time from a shared
queue (a pipe), so a process slowed down by a busy neighbour simply does fewer of them. Whatever
goes wrong in a child (it cannot be forked, it crashes, it stops making progress) costs time,
never a result: the parent then evaluates the pieces it did not deliver. A child dies with its parent.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os
import pickle
import select
import signal
import struct
import tempfile
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
# Pieces per process: enough that the processes finish within a small piece of each other, few
# enough that each piece's pickle (which repeats the CA facts its results share) stays cheap.
PIECES_PER_PROCESS = 16
# A worker that has neither used CPU time nor sent anything for this long is stuck (a lock it
# inherited held, say), not slow: it is stopped and its pieces done again.
STALL_SECONDS = 10.0
_CPU_CHECK_SECONDS = 0.5
_INDEX = struct.Struct("<I")
_RECORD = struct.Struct("<IQ")  # piece index, pickle length


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


class _PieceQueue:
    """Piece numbers in a pipe whose write end is closed: a 4-byte read claims one (reads of a pipe
    are atomic between processes), an empty read means none is left."""

    def __init__(self, count: int) -> None:
        self.read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, b"".join(_INDEX.pack(i) for i in range(count)))  # far below the pipe's 64 KiB
        finally:
            os.close(write_fd)

    def claim(self) -> int | None:
        data = os.read(self.read_fd, _INDEX.size)
        return _INDEX.unpack(data)[0] if len(data) == _INDEX.size else None

    def close(self) -> None:
        os.close(self.read_fd)


@dataclass
class _Child:
    pid: int
    fd: int  # a byte per piece done; end of file when the child has exited
    results_fd: int  # the memory file its pickled pieces are written to
    cpu: int | None = None  # CPU clock ticks last seen
    progress: float = 0.0  # monotonic time it last used CPU or sent data
    done: bool = False  # reaped; descriptors closed
    result: dict[int, list[Any]] | None = None  # piece number -> its results, when all were readable


def map_chunks(
    jobs: Sequence[Job],
    work: Callable[[Sequence[Job]], list[Out]],
    workers: int,
    *,
    stall_seconds: float | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> list[Out]:
    """work(jobs), computed in `workers` processes (this one included), results in the order of `jobs`.

    `work` is called on consecutive pieces of `jobs`. While waiting for workers, `cancelled()` is
    asked a few times a second: when it says yes, the workers are stopped and Cancelled is raised
    (a daemon told to stop does not wait for them).
    """
    if workers <= 1 or len(jobs) < 2:
        return work(jobs)
    size = -(-len(jobs) // (workers * PIECES_PER_PROCESS))
    pieces = [jobs[i : i + size] for i in range(0, len(jobs), size)]
    queue = _PieceQueue(len(pieces))
    children: list[_Child | None] = []
    done: dict[int, list[Out]] = {}
    try:
        children.extend(_fork(queue, pieces, work) for _ in range(workers - 1))
        while (index := queue.claim()) is not None:
            done[index] = work(pieces[index])
        # Every worker is collected before any failed piece is done again here: a worker that has
        # finished meanwhile must not be judged by the time that redoing took.
        _collect(
            [c for c in children if c is not None],
            STALL_SECONDS if stall_seconds is None else stall_seconds,
            cancelled,
        )
    except BaseException:
        _abandon(children)  # no worker may outlive the pass
        raise
    finally:
        queue.close()
    for child in children:
        if child is not None and child.result is not None:
            done.update(child.result)
    results: list[Out] = []
    for index, piece in enumerate(pieces):
        received = done.get(index)
        if received is None:
            if cancelled is not None and cancelled():
                raise Cancelled
            received = work(piece)
        results.extend(received)
    return results


def _fork(
    queue: _PieceQueue, pieces: Sequence[Sequence[Job]], work: Callable[[Sequence[Job]], list[Out]]
) -> _Child | None:
    try:
        results_fd = _memory_file()
    except OSError as exc:
        log.warning("cannot start a verification worker (%s); its share is verified by the main process", exc.strerror)
        return None
    try:
        read_fd, write_fd = os.pipe()
    except OSError as exc:
        os.close(results_fd)
        log.warning("cannot start a verification worker (%s); its share is verified by the main process", exc.strerror)
        return None
    parent = os.getpid()
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns on fork() with threads running; the child only computes and exits.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError as exc:
        for fd in (read_fd, write_fd, results_fd):
            os.close(fd)
        log.warning("cannot start a verification worker (%s); its share is verified by the main process", exc.strerror)
        return None
    if pid == 0:
        _child_main(parent, read_fd, write_fd, results_fd, queue, pieces, work)
    os.close(write_fd)
    return _Child(pid, read_fd, results_fd, progress=time.monotonic())


def _memory_file() -> int:
    """A descriptor of an anonymous file in memory (a plain temporary file where memfd is missing)."""
    if hasattr(os, "memfd_create"):
        return os.memfd_create("chainwarden-worker-results", os.MFD_CLOEXEC)
    handle = tempfile.TemporaryFile()
    try:
        return os.dup(handle.fileno())
    finally:
        handle.close()


def _child_main(
    parent: int,
    read_fd: int,
    write_fd: int,
    results_fd: int,
    queue: _PieceQueue,
    pieces: Sequence[Sequence[Any]],
    work: Callable[[Sequence[Any]], list[Any]],
) -> None:
    """Claim and evaluate pieces, write each one's pickled results, and leave without running the
    parent's exit handlers."""
    code = 1
    try:
        os.close(read_fd)
        _die_with(parent)
        # No collector in a child that lives for one pass: it would rescan the parent's objects (time)
        # and write to their pages (memory shared copy-on-write); what cycles it leaves die with it.
        gc.disable()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)  # a stop request ends the child at once
        while (index := queue.claim()) is not None:
            payload = pickle.dumps(work(pieces[index]), protocol=pickle.HIGHEST_PROTOCOL)
            _write_all(results_fd, _RECORD.pack(index, len(payload)))
            _write_all(results_fd, payload)
            os.write(write_fd, b".")  # progress, for the parent's stall check
        code = 0
    except BaseException:  # noqa: BLE001 - any failure only means the parent does these pieces itself
        code = 1
    finally:
        os._exit(code)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
    """Wait for every worker to exit, watching its progress, and read its results into child.result.

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
            if os.read(fd, 1 << 16):  # progress bytes
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
    """Reap the child (killing it first if it stalled) and unpickle what it wrote, or log why not."""
    os.close(child.fd)
    if stalled:
        _kill(child.pid)
    _, status = os.waitpid(child.pid, 0)
    child.done = True
    try:
        if stalled or not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            why = "stopped making progress" if stalled else f"failed ({_describe_status(status)})"
            log.warning("a verification worker process %s; its share is verified by the main process", why)
            return
        try:
            child.result = _read_pieces(child.results_fd)
        except Exception:  # noqa: BLE001 - a garbled payload is one more failure of the child
            log.warning("a verification worker process sent unreadable results; its share is verified again")
    finally:
        os.close(child.results_fd)


def _read_pieces(fd: int) -> dict[int, list[Any]]:
    """Every record the child wrote: piece number -> its unpickled results."""
    size = os.fstat(fd).st_size
    data = os.pread(fd, size, 0)
    if len(data) != size:
        raise ValueError("short read of a worker's results")
    pieces: dict[int, list[Any]] = {}
    at = 0
    while at < size:
        index, length = _RECORD.unpack_from(data, at)
        at += _RECORD.size
        if at + length > size:
            raise ValueError("truncated worker results")
        pieces[index] = pickle.loads(data[at : at + length])
        at += length
    return pieces


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
        os.close(child.results_fd)
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
