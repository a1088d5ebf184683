"""Worker processes for large passes: same results as one process, and no result lost when a worker fails."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import pickle
import signal
import threading
import time
from pathlib import Path

import pytest

from chainwarden import parallel, pkigen
from chainwarden.bundle import read_bundle_bytes
from chainwarden.chaincache import ChainCache
from chainwarden.checker import evaluate_pass, read_inputs
from chainwarden.config import Config
from chainwarden.report import Code
from chainwarden.service import Daemon

NOW = pkigen.EPOCH + dt.timedelta(days=10)
PARENT = os.getpid()


def _started(markers: Path) -> Path:
    """Say that this process has claimed a piece (a file named by its pid)."""
    marker = markers / str(os.getpid())
    marker.touch()
    return marker


def _wait_for_workers(markers: Path, count: int) -> None:
    """Wait until `count` worker processes have claimed a piece each, so that no process can take
    every piece before the others start (pieces are claimed from a shared queue)."""
    deadline = time.monotonic() + 20
    while len([m for m in markers.iterdir() if m.name.isdigit() and m.name != str(PARENT)]) < count:
        assert time.monotonic() < deadline, "the workers never claimed a piece"
        time.sleep(0.01)


def _square_with_pid(markers: Path, workers: int):
    def work(share):
        _started(markers)
        # Every process, this one included, holds a piece before any goes on: otherwise the workers
        # may take every piece while this one is still forking the last of them.
        _wait_for_workers(markers, workers)
        _wait_for(lambda: (markers / str(PARENT)).exists(), "the parent never claimed a piece")
        return [(n * n, os.getpid()) for n in share]

    return work


def _wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + 20
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


@pytest.fixture
def small_shares(monkeypatch):
    """Let a handful of connections be spread over workers (the product waits for 500 each)."""
    monkeypatch.setattr(parallel, "MIN_JOBS_PER_WORKER", 1)


def test_map_chunks_keeps_order_and_really_uses_other_processes(tmp_path):
    """Results come back in the order of the jobs, computed by every process."""
    out = parallel.map_chunks(list(range(30)), _square_with_pid(tmp_path, 2), 3)
    assert [value for value, _ in out] == [n * n for n in range(30)]
    pids = {pid for _, pid in out}
    assert PARENT in pids and len(pids) == 3


def test_pieces_go_to_whichever_process_is_free(tmp_path):
    """A process slowed down (here the parent, stuck in its first piece) does fewer pieces: the other
    process claims every piece left meanwhile, instead of waiting with half of them for it."""

    def work(share):
        if os.getpid() == PARENT:
            deadline = time.monotonic() + 20
            while len(list(tmp_path.iterdir())) < 31:  # every other piece, done by the worker
                assert time.monotonic() < deadline, "the worker did not take the pieces left"
                time.sleep(0.01)
        else:
            (tmp_path / f"{os.getpid()}-{share[0]}").touch()
        return [(n, os.getpid()) for n in share]

    out = parallel.map_chunks(list(range(64)), work, 2)  # 32 pieces of 2
    assert [n for n, _ in out] == list(range(64))
    assert sum(1 for _, pid in out if pid == PARENT) == 2


def _fails_in_children(mode, markers: Path):
    def work(share):
        if os.getpid() != PARENT:
            _started(markers)
            if mode == "exit":
                os._exit(7)
            if mode == "raise":
                raise RuntimeError("boom")
            if mode == "signal":
                os.kill(os.getpid(), signal.SIGKILL)
            if mode == "hang":
                time.sleep(3600)  # the behaviour under test: a worker that never answers
        else:
            _wait_for_workers(markers, 1)
        return [n + 1 for n in share]

    return work


@pytest.mark.parametrize(
    ("mode", "said"),
    [
        ("exit", "failed (exit status 7)"),
        ("raise", "failed (exit status 1)"),
        ("signal", "failed (killed by signal 9)"),
        ("hang", "stopped making progress"),
    ],
)
def test_a_failing_worker_costs_time_never_a_result(mode, said, caplog, tmp_path):
    """The pieces a failed worker claimed are done again by the parent; no worker is left behind."""
    caplog.set_level(logging.WARNING, logger="chainwarden")
    out = parallel.map_chunks(list(range(20)), _fails_in_children(mode, tmp_path), 2, stall_seconds=1.0)
    assert out == [n + 1 for n in range(20)]
    assert any(said in r.getMessage() and "verified by the main process" in r.getMessage() for r in caplog.records)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)  # no child left behind, not even the killed one


def test_fork_failure_falls_back(monkeypatch, caplog):
    def no_fork():
        raise OSError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(parallel.os, "fork", no_fork)
    assert parallel.map_chunks([1, 2, 3, 4], lambda share: [n * 2 for n in share], 2) == [2, 4, 6, 8]
    assert "cannot start a verification worker" in caplog.text


def test_worker_count():
    assert parallel.worker_count(1, 100_000) == 1
    assert parallel.worker_count(4, 100_000) == 4
    assert parallel.worker_count(4, 1_200) == 2  # at least 500 connections each
    assert parallel.worker_count(0, 400) == 1
    assert 1 <= parallel.worker_count(0, 100_000) <= min(parallel.usable_cpus(), parallel.MAX_AUTO_WORKERS)


# --- a site whose results depend on every connection sharing a bundle ---------------------------


def _site(tmp_path: Path) -> tuple[Path, Path]:
    """Connections in two files; per-connection bundles, broken ones, and one bundle shared by two
    hierarchies whose users fall into different shares (its unrelated_certificate needs them all)."""
    pki = tmp_path / "pki"
    pki.mkdir()
    state = tmp_path / "state"
    cache = ChainCache(state / "chains")
    rsa = pkigen.three_tier("a0.example.test", kind="rsa", label="Alpha")
    ec = pkigen.three_tier("b0.example.test", kind="ec", label="Beta")
    stray = pkigen.make_root("Stray Root CA")
    (pki / "shared.pem").write_bytes(pkigen.pem_bundle(rsa.intermediate, rsa.root, ec.intermediate, ec.root, stray))
    (pki / "broken.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n")
    files = []
    for number in range(2):
        connections = {}
        for i in range(12):
            host = f"h{number}-{i}.example.test"
            hierarchy = rsa if (number, i % 2) != (1, 0) else ec  # Beta users only in the second file
            leaf = pkigen.make_leaf([host], hierarchy.intermediate, kind="ec")
            if i % 5 != 4:
                cache.store(host, 443, (leaf.cert, hierarchy.intermediate.cert))
            bundle = "pki/shared.pem"
            if i == 7:
                bundle = "pki/broken.pem"
            elif i % 3 == 1:
                bundle = f"pki/own-{number}-{i}.pem"
                parts = (hierarchy.intermediate, hierarchy.root) if i % 4 else (hierarchy.root,)
                (tmp_path / bundle).write_bytes(pkigen.pem_bundle(*parts))
            connections[f"c{i}"] = {"baseurl": f"https://{host}/api", "server_cert": bundle}
        path = tmp_path / f"conn-{number}.json"
        path.write_text(json.dumps({"external_connections": connections}))
        files.append(str(path))
    return tmp_path, state


def _as_json(results):
    return [r.to_json() for r in results]


def test_parallel_pass_equals_one_process(tmp_path, small_shares, monkeypatch):
    base, state = _site(tmp_path)
    paths = sorted(str(p) for p in base.glob("conn-*.json"))
    serial_config = Config(verify_probe=False, state_dir=str(state), verify_workers=1)
    parallel_config = Config(verify_probe=False, state_dir=str(state), verify_workers=3)
    serial = evaluate_pass(read_inputs(paths, now=NOW), _cached(paths, serial_config), NOW, serial_config)
    forks = []
    real_fork = parallel._fork
    monkeypatch.setattr(parallel, "_fork", lambda *a: forks.append(1) or real_fork(*a))
    inputs = read_inputs(paths, now=NOW)
    spread = evaluate_pass(inputs, _cached(paths, parallel_config), NOW, parallel_config)
    assert len(forks) == 2
    assert _as_json(spread) == _as_json(serial)
    unrelated = [r for r in spread if any(p.code is Code.UNRELATED_CERTIFICATE for p in r.problems)]
    stray = [p for r in unrelated for p in r.problems if p.code is Code.UNRELATED_CERTIFICATE]
    assert unrelated and all("Stray Root CA" in p.message for p in stray)
    assert set(inputs.bundles) == {str(p) for p in (base / "pki").iterdir()}  # read by whichever process


def _cached(paths, config):
    from chainwarden.checker import cached_chains

    return cached_chains(config)


def test_daemon_first_pass_in_workers_keeps_what_change_detection_needs(tmp_path, small_shares):
    base, state = _site(tmp_path)
    config = _daemon_config(base, state, workers=2)
    spread = Daemon(config, clock=lambda: NOW)
    alone = Daemon(_daemon_config(base, state, workers=1), clock=lambda: NOW)
    assert _as_json(spread.full_pass(probe=False)) == _as_json(alone.full_pass(probe=False))
    inventory = spread.inventory
    assert type(inventory.bundles) is dict
    assert set(inventory.bundles) == set(inventory.bundle_users())
    assert all(inventory.unchanged(path) for path in inventory.bundles)  # fingerprints came back too
    assert spread.metrics.snapshot().source_errors["bundle"] == 1  # broken.pem, counted once
    # A bundle read in a worker, then broken: the change is seen and judged.
    own = next(p for p in sorted(inventory.bundles) if "own-1-" in p)
    Path(own).write_bytes(b"")
    spread.changed_folders({str(base / "pki")})
    users = inventory.bundle_users()[own]
    states = spread.metrics.connection_states()
    assert all(states[key].result.verdict.value == "error" for key in users)


def _daemon_config(base: Path, state: Path, *, workers: int) -> Config:
    return Config(
        watch_connections=tuple(str(p) for p in sorted(base.glob("conn-*.json"))),
        verify_probe=False,
        state_dir=str(state),
        verify_workers=workers,
    )


def test_readings_and_results_survive_pickling():
    pki = pkigen.three_tier("pickle.example.test")
    reading = read_bundle_bytes(pkigen.pem_bundle(pki.intermediate, pki.root), "/b.pem")
    again = pickle.loads(pickle.dumps(reading))
    assert again == reading and again.blocks[0].cert is reading.blocks[0].cert  # the canonical object
    assert again.certificates() == reading.certificates()


def test_workers_never_wait_for_a_lock_held_when_they_were_forked(tmp_path, small_shares, monkeypatch, caplog):
    """A scrape may hold the metrics lock at the moment of the fork: the child inherits it held by a
    thread it does not have, so the child must not need it (a broken bundle read there is counted later)."""
    caplog.set_level(logging.WARNING, logger="chainwarden")
    base, state = _site(tmp_path)
    config = _daemon_config(base, state, workers=2)
    daemon = Daemon(config, clock=lambda: NOW)
    real_fork = parallel._fork

    def fork_while_locked(*args):
        with daemon.metrics._lock:  # as a scrape in progress would
            return real_fork(*args)

    monkeypatch.setattr(parallel, "_fork", fork_while_locked)
    monkeypatch.setattr(parallel, "STALL_SECONDS", 5.0)
    daemon.full_pass(probe=False)
    assert not [r for r in caplog.records if "verification worker" in r.getMessage()]
    assert daemon.metrics.snapshot().source_errors["bundle"] == 1


def test_workers_are_reaped_when_the_parent_share_fails():
    def work(share):
        if os.getpid() == PARENT:
            raise KeyboardInterrupt  # Ctrl-C during `check`, or any failure in the parent's share
        return [0] * len(share) * 100_000  # a payload larger than the pipe holds: the worker blocks

    with pytest.raises(KeyboardInterrupt):
        parallel.map_chunks(list(range(10)), work, 3)
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_cancel_stops_waiting_for_workers(tmp_path):
    """A stop request while workers hang ends the wait at once, workers stopped."""
    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 2

    started = time.monotonic()
    with pytest.raises(parallel.Cancelled):
        parallel.map_chunks(list(range(12)), _fails_in_children("hang", tmp_path), 3, cancelled=cancelled)
    assert time.monotonic() - started < parallel.STALL_SECONDS  # did not wait to judge it stalled
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_sigterm_during_the_first_pass_does_not_wait_for_workers(tmp_path, small_shares, monkeypatch):
    """systemd allows 15 s to stop: a stop request ends the first pass at once, workers included."""
    base, state = _site(tmp_path)
    config = _daemon_config(base, state, workers=2)
    daemon = Daemon(config, clock=lambda: NOW)
    monkeypatch.setattr(parallel, "_child_main", lambda *args: time.sleep(3600))  # a worker that hangs
    timer = threading.Timer(0.5, daemon.request_stop)
    timer.start()
    started = time.monotonic()
    daemon.run_forever()
    timer.join()
    assert time.monotonic() - started < 5
    with pytest.raises(ChildProcessError):
        os.waitpid(-1, os.WNOHANG)


def test_one_stalled_worker_does_not_cost_the_others_their_results(caplog, tmp_path):
    """Only the stuck worker's piece is done again; the pieces of a worker that finished meanwhile are kept."""
    caplog.set_level(logging.WARNING, logger="chainwarden")
    stuck = tmp_path / "stuck"
    done_here: list[int] = []

    finished = tmp_path / "finished"

    def work(share):
        if os.getpid() == PARENT:
            _wait_for_workers(tmp_path, 2)
            deadline = time.monotonic() + 20
            while not finished.exists():  # the other worker has delivered a piece of its own
                assert time.monotonic() < deadline
                time.sleep(0.01)
            done_here.append(share[0])
            return [n * 10 for n in share]
        try:
            os.close(os.open(stuck, os.O_CREAT | os.O_EXCL | os.O_WRONLY))  # the first worker here gets stuck
        except FileExistsError:
            _started(tmp_path)
            finished.touch()
            return [n * 10 for n in share]
        stuck.write_text(str(share[0]))
        _started(tmp_path)
        time.sleep(3600)  # the behaviour under test: a worker stuck without using CPU
        return []

    out = parallel.map_chunks(list(range(48)), work, 3, stall_seconds=1.0)
    assert out == [n * 10 for n in range(48)]
    assert len([r for r in caplog.records if "stopped making progress" in r.getMessage()]) == 1
    assert int(stuck.read_text()) in done_here  # redone here
    assert len(done_here) < 48  # but not the other worker's pieces


def _busy(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


def test_a_slow_worker_that_keeps_computing_is_waited_for(caplog):
    """Uneven shares: the parent's is instant, a worker's takes longer than the stall limit, but it
    uses CPU all along, so it is not taken for stuck."""
    caplog.set_level(logging.WARNING, logger="chainwarden")

    def work(share):
        if os.getpid() != PARENT:
            _busy(2.0)
        return list(share)

    assert parallel.map_chunks(list(range(4)), work, 2, stall_seconds=0.7) == [0, 1, 2, 3]
    assert not caplog.records


WORKER_OUTLIVES = """
import os, sys, time
sys.path.insert(0, sys.argv[2])
from chainwarden import parallel
parent = os.getpid()
def work(share):
    if os.getpid() != parent:
        with open(sys.argv[1] + ".tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename(sys.argv[1] + ".tmp", sys.argv[1])
        while True:
            pass
    while not os.path.exists(sys.argv[1]):  # leave the worker a piece to claim
        time.sleep(0.01)
    return list(share)
parallel.map_chunks(list(range(4)), work, 2, stall_seconds=3600)
"""


def _gone(pid):
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"  # killed, waiting for init to reap it


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_die_with_their_parent(tmp_path):
    """A `check` or daemon killed by PID (SIGKILL, or a signal to the main process only) leaves no worker."""
    import subprocess
    import sys

    pid_file = tmp_path / "worker.pid"
    repo = Path(__file__).resolve().parent.parent / "daemon"
    parent = subprocess.Popen([sys.executable, "-c", WORKER_OUTLIVES, str(pid_file), str(repo)])
    try:
        deadline = time.monotonic() + 20
        while not (pid_file.exists() and pid_file.read_text()):
            assert time.monotonic() < deadline and parent.poll() is None
            time.sleep(0.02)
        worker = int(pid_file.read_text())
        assert not _gone(worker)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while not _gone(worker):
        assert time.monotonic() < deadline, "the worker outlived its parent"
        time.sleep(0.02)


def test_a_bundle_that_changes_during_the_first_pass_is_judged_again(tmp_path, small_shares, monkeypatch):
    """Two processes that read two versions of a shared bundle judged its users inconsistently: the
    daemon forgets that bundle's fingerprint and looks at its folder again."""
    from chainwarden import service

    base, state = _site(tmp_path)
    shared = str(base / "pki" / "shared.pem")
    real = service._fingerprint_and_data

    def older_in_workers(path):
        if path == shared and os.getpid() != PARENT:
            data = pkigen.pem_bundle(pkigen.make_root("Before The Edit Root CA"))
            return f"{len(data)}:before", data, None
        return real(path)

    monkeypatch.setattr(service, "_fingerprint_and_data", older_in_workers)
    config = _daemon_config(base, state, workers=2)
    daemon = Daemon(config, clock=lambda: NOW)
    daemon.full_pass(probe=False)
    assert not daemon.inventory.unchanged(shared)
    queued = daemon.commands.get_nowait()
    assert queued.kind == "folders" and str(base / "pki") in queued.folders
    monkeypatch.setattr(service, "_fingerprint_and_data", real)
    daemon.changed_folders(set(queued.folders))
    alone = Daemon(_daemon_config(base, state, workers=1), clock=lambda: NOW)
    alone.full_pass(probe=False)
    judged = {k: s.result.to_json() for k, s in daemon.metrics.connection_states().items()}
    assert judged == {k: s.result.to_json() for k, s in alone.metrics.connection_states().items()}
