"""The bad input corpus (tests/corpus): every case reported with its code and location, nothing crashes.

Each case is run
- through `chainwarden check --offline --format json` in this process, all cases in one run, in
  one connection JSON that also holds a healthy connection, which must stay ok;
- as the unprivileged user nobody (the permission cases need it: root reads everything);
- through one real daemon process watching a folder that holds every case at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from chainwarden import pkigen
from chainwarden.cli import main
from corpus.build import CANARY, HEALTHY, HOST, Built, build, connection, connection_file, dumps
from corpus.cases import CASES, BundleCase, Case, EntryCase, Expect, FileCase
from daemonproc import DaemonProcess, free_port

REPO = Path(__file__).resolve().parent.parent
Json = dict[str, Any]  # one result or problem of the JSON report
ROOT = os.geteuid() == 0
# The README's problem codes that are about the input itself (not about the chains in it).
INPUT_CODES = {
    "connection_invalid",
    "apply_at_invalid",
    "schedule_at_used",
    "bundle_unreadable",
    "block_unreadable",
    "format_nonstandard",
    "private_key_in_bundle",
    "duplicate_certificate",
    "client_cert_invalid",
}


# --- building ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_pki() -> tuple[pkigen.ThreeTier, pkigen.Issued]:
    return pkigen.three_tier(HOST, label="Corpus"), pkigen.make_root("Corpus Unrelated Root")


@pytest.fixture(scope="module")
def corpus(corpus_pki: tuple[pkigen.ThreeTier, pkigen.Issued]) -> Iterator[Built]:
    """The corpus in a folder every user may read (so that it can also be checked as nobody)."""
    root = Path(tempfile.mkdtemp(prefix="chainwarden-corpus-"))
    root.chmod(0o755)
    try:
        built = build(root, CASES, *corpus_pki)
        isolated(root)
        yield built
    finally:
        for folder, subfolders, _ in os.walk(root):  # top-down: unlock each folder before entering it
            for name in subfolders:
                if not os.path.islink(os.path.join(folder, name)):  # never a folder outside the corpus
                    os.chmod(os.path.join(folder, name), 0o700)
        shutil.rmtree(root, ignore_errors=True)


def isolated(root: Path) -> Path:
    """A configuration whose state folder (cached chains `check --offline` falls back to) is private."""
    config = root / "check.toml"
    config.write_text(f'[state]\ndir = "{root / "state"}"\n')
    return config


def check_args(built: Built, *extra: str) -> list[str]:
    return ["check", *built.paths(), "--offline", "--config", str(built.kit.root / "check.toml"), *extra]


def applies(case: Case, *, unprivileged: bool, daemon: bool = False) -> bool:
    """Whether the run can show this case (root reads any file; some paths are not for the daemon)."""
    if case.unprivileged and not unprivileged:
        return False
    return case.daemon if daemon else True


def fill(text: str, case: Case, built: Built) -> str:
    kit = built.kit
    file = built.files.get(case.name)
    return text.format(
        bundle=kit.bundle_path(case.name),
        file=file,
        shared=built.shared,
        pki=kit.bundles,
        root=kit.root,
        name=case.name,
    )


# --- the report -------------------------------------------------------------------------------


def serious(problems: list[Json]) -> dict[str, set[str]]:
    """code -> severities, for every problem above info."""
    out: dict[str, set[str]] = {}
    for problem in problems:
        if problem["severity"] != "info":
            out.setdefault(problem["code"], set()).add(problem["severity"])
    return out


def expected_codes(expect: Expect) -> dict[str, set[str]]:
    return {code: {severity} for code, severity in expect.codes.items()}


def located(problems: list[Json], expect: Expect, case: Case, built: Built) -> str | None:
    """None when a problem with the first expected code (any code, for info-only cases) carries every location."""
    code = next(iter(expect.codes), None)
    wanted = [fill(part, case, built) for part in expect.where]
    for problem in problems:
        if code in (None, problem["code"]) and all(part in problem["message"] for part in wanted):
            return None
    said = [p["message"] for p in problems if code in (None, p["code"])]
    return f"no {code} problem says {wanted}; it says {said}"


def misstated(problems: list[Json], expect: Expect) -> list[str]:
    return [
        f"a message holds {text!r}: {p['message']}" for text in expect.absent for p in problems if text in p["message"]
    ]


def case_failures(results: list[Json], case: Case, built: Built) -> list[str]:
    """What the JSON report gets wrong about one case (empty when it is right)."""
    shared = str(built.shared)
    by_key = {(r["file"], r["connection"]): r for r in results}
    expect = case.expect
    failures: list[str] = []
    if case.report == "connection":
        result = by_key.get((shared, case.name))
        if result is None:
            return ["no result for the connection"]
        if serious(result["problems"]) != expected_codes(expect):
            failures.append(f"problems {serious(result['problems'])} != expected {expected_codes(expect)}")
        if result["verdict"] != expect.verdict:
            failures.append(f"verdict {result['verdict']} != {expect.verdict}")
        if expect.complete is not None and result["complete"] is not expect.complete:
            failures.append(f"complete {result['complete']} != {expect.complete}")
        if (missing := located(result["problems"], expect, case, built)) is not None:
            failures.append(missing)
        failures += misstated(result["problems"], expect)
    elif case.report == "shared_file":
        if any(r["file"] == shared and r["connection"] == case.name for r in results):
            failures.append("an unusable connection got a result of its own")
        result = by_key.get((shared, None))
        if result is None:
            return ["no file-level result for the shared connection JSON"]
        if (missing := located(result["problems"], expect, case, built)) is not None:
            failures.append(missing)
    else:
        path = str(built.files[case.name])
        result = by_key.get((path, None))
        if not expect.codes:
            if result is not None:
                failures.append(f"unexpected file-level result {result['problems']}")
        elif result is None:
            failures.append("no file-level result")
        else:
            if serious(result["problems"]) != expected_codes(expect):
                failures.append(f"problems {serious(result['problems'])} != expected {expected_codes(expect)}")
            if result["verdict"] != expect.verdict:
                failures.append(f"verdict {result['verdict']} != {expect.verdict}")
            if (missing := located(result["problems"], expect, case, built)) is not None:
                failures.append(missing)
        for name in expect.ok:
            other = by_key.get((path, name))
            if other is None or other["verdict"] != "ok" or not other["complete"]:
                failures.append(f"connection {name} in the same file is not checked and ok: {other}")
    return failures


def report_failures(doc: Json, built: Built, *, unprivileged: bool) -> list[str]:
    results = doc["results"]
    shared = str(built.shared)
    failures: list[str] = []
    healthy = [r for r in results if r["file"] == shared and r["connection"] == HEALTHY]
    if len(healthy) != 1 or healthy[0]["verdict"] != "ok" or not healthy[0]["complete"]:
        failures.append(f"the healthy connection is not ok: {healthy}")
    names = {case.name for case in CASES} | {HEALTHY, "good"}
    for result in results:
        if result["connection"] is not None and result["connection"] not in names:
            failures.append(f"a result for an unknown connection {result['connection']!r}")
    shared_file = next((r for r in results if r["file"] == shared and r["connection"] is None), None)
    unusable = [case for case in CASES if case.report == "shared_file"]
    if shared_file is None or len(shared_file["problems"]) != len(unusable):
        failures.append(f"the shared file should carry one problem per unusable connection: {shared_file}")
    for case in CASES:
        if applies(case, unprivileged=unprivileged):
            failures += [f"{case.name}: {text}" for text in case_failures(results, case, built)]
    return failures


def secrets_said(text: str, built: Built) -> list[str]:
    """Secrets that reached the output: the bearer token, or any line of a private key."""
    found = [CANARY] if CANARY in text or "corpus-canary" in text else []
    for pem in (built.kit.key("none"), built.kit.key("pkcs8")):
        for line in pem.decode().splitlines():
            if not line.startswith("-----") and ":" not in line and line[:32] in text:
                found.append(line[:32])
    return found


def run_check(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    capsys.readouterr()
    code = main(args)
    out, _ = capsys.readouterr()
    return code, out


# --- the corpus itself ------------------------------------------------------------------------


def test_corpus_has_enough_cases_and_exercises_every_input_code() -> None:
    """At least 40 cases, unique names, and every input problem code of the README is exercised."""
    assert len(CASES) >= 40, len(CASES)
    assert len({case.name for case in CASES}) == len(CASES)
    readme = (REPO / "README.md").read_text()
    table = set(re.findall(r"^\| `(\w+)`(?:, `(\w+)`)? \[", readme, re.MULTILINE))
    documented = {code for row in table for code in row if code}
    assert INPUT_CODES <= documented, INPUT_CODES - documented
    exercised = {code for case in CASES for code in case.expect.codes}
    assert INPUT_CODES <= exercised, f"not exercised: {INPUT_CODES - exercised}"
    assert exercised <= documented, f"codes outside the README's table: {exercised - documented}"
    for case in CASES:
        assert case.what and (case.expect.where or not case.expect.codes), case.name
        assert case.expect.verdict in ("ok", "warning", "error"), case.name
    kinds = {type(case) for case in CASES}
    assert kinds == {BundleCase, EntryCase, FileCase}


# --- check --------------------------------------------------------------------------------------


def test_check_reports_every_case_with_its_code_and_location(corpus: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """One `check --offline --format json` over the whole corpus: every case as declared, the healthy one ok."""
    started = time.monotonic()
    code, out = run_check(check_args(corpus, "--format", "json"), capsys)
    assert time.monotonic() - started < 30, "the corpus (a 64 GiB bundle, a 50 MB JSON) must be read within limits"
    assert code == 2
    doc = json.loads(out)
    failures = report_failures(doc, corpus, unprivileged=not ROOT)
    assert not failures, "\n".join(failures)
    assert secrets_said(out, corpus) == []


def test_check_text_output_names_every_case(corpus: Built, capsys: pytest.CaptureFixture[str]) -> None:
    """The text report of the same corpus does not crash and names every connection it could read."""
    code, out = run_check(check_args(corpus), capsys)
    assert code == 2
    for case in CASES:
        if case.report == "connection":
            assert f"> {case.name}  (" in out, case.name
        elif case.report == "shared_file":
            assert f'connection "{case.name}' in out, case.name
    assert "OK    " + str(corpus.shared) + " > " + HEALTHY in out
    assert secrets_said(out, corpus) == []


def test_check_as_an_unprivileged_user(corpus: Built) -> None:
    """As nobody, or as root without its permission-bypassing capabilities when the checkout is out of
    nobody's reach (permissions apply either way): every case, including permission denied, as declared."""
    if ROOT:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: cannot drop privileges to test permission denied")
        prefix = [setpriv, "--reuid=nobody", "--regid=nogroup", "--clear-groups"]
    else:
        prefix = []  # already unprivileged; the in-process run covered the permission cases
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": "/tmp", "LANG": "C.UTF-8"}

    def can_import(prefix: list[str]) -> subprocess.CompletedProcess[str]:
        command = [*prefix, sys.executable, "-c", "import chainwarden"]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, cwd="/", env=env)

    probe = can_import(prefix)
    if probe.returncode != 0 and ROOT:
        # The checkout is out of nobody's reach (a private CI folder): stay root, but without the
        # capabilities that let root ignore permissions, so mode 000 files deny it as they would a user.
        prefix = [prefix[0], "--bounding-set=-dac_override,-dac_read_search"]
        probe = can_import(prefix)
    if probe.returncode != 0:
        pytest.skip(f"cannot run this interpreter and package unprivileged: {probe.stderr.strip()[-200:]}")
    command = [*prefix, sys.executable, "-m", "chainwarden", *check_args(corpus, "--format", "json")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd="/", env=env)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    failures = report_failures(json.loads(proc.stdout), corpus, unprivileged=True)
    assert not failures, "\n".join(failures)


def test_bundle_rewritten_while_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A bundle rewritten in place, non-stop, during checks: every check finishes with a well-formed
    report and the other connection stays ok; once writing stops, the final content is what is judged."""
    pki = pkigen.three_tier(HOST, label="Rewrite")
    good = pki.intermediate.pem + pki.root.pem + pki.leaf.pem
    versions = [good, good[: len(good) // 2], b"", pki.root.pem + pki.leaf.pem, good.replace(b"\n", b" "), b"\0" * 3000]
    moving, steady = tmp_path / "moving.pem", tmp_path / "steady.pem"
    moving.write_bytes(good)
    steady.write_bytes(good)
    conns, config = tmp_path / "conns.json", isolated(tmp_path)
    conns.write_text(connection_file([("moving", dumps(connection(moving))), ("steady", dumps(connection(steady)))]))
    stop = threading.Event()
    writes = 0

    def writer() -> None:
        nonlocal writes
        while not stop.is_set():
            for data in versions:
                with open(moving, "r+b") as handle:  # in place: truncate, then write in two halves
                    handle.truncate(0)
                    handle.write(data[: len(data) // 2])
                    handle.flush()
                    handle.write(data[len(data) // 2 :])
                writes += 1

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    checks, deadline = 0, time.monotonic() + 60
    try:
        # At least 25 checks, and until the bundle has been rewritten 100 times while they ran.
        while checks < 25 or writes < 100:
            assert time.monotonic() < deadline, f"{checks} checks, {writes} rewrites"
            code, out = run_check(
                ["check", str(conns), "--offline", "--config", str(config), "--format", "json"], capsys
            )
            checks += 1
            assert code in (0, 1, 2)
            results = {r["connection"]: r for r in json.loads(out)["results"]}
            assert results["steady"]["verdict"] == "ok"
            assert results["moving"]["verdict"] in ("ok", "warning", "error")
    finally:
        stop.set()
        thread.join(timeout=10)
    moving.write_bytes(pki.intermediate.pem + pki.leaf.pem)
    code, out = run_check(["check", str(conns), "--offline", "--config", str(config), "--format", "json"], capsys)
    results = {r["connection"]: r for r in json.loads(out)["results"]}
    assert serious(results["moving"]["problems"]) == {"missing_root": {"error"}}
    assert results["steady"]["verdict"] == "ok" and code == 2


# --- the daemon ---------------------------------------------------------------------------------


Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@contextlib.contextmanager
def running_daemon(config: Path) -> Iterator[DaemonProcess]:
    daemon = DaemonProcess(config)
    try:
        yield daemon
    finally:
        daemon.stop()
        if daemon.proc.stdout is not None:
            daemon.proc.stdout.close()  # DaemonProcess leaves its log pipe open (a ResourceWarning)


def label(text: str) -> str:
    """A label value as exported: characters UTF-8 cannot carry are written as escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def series(metrics: Metrics, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    want = {(key, label(value)) for key, value in labels.items()}
    return {ls: v for (n, ls), v in metrics.items() if n == name and want <= set(ls)}


def problem_codes(metrics: Metrics, name: str, **labels: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for ls, value in series(metrics, name, **labels).items():
        found = dict(ls)
        if value == 1.0 and found["severity"] != "info":
            out.setdefault(found["code"], set()).add(found["severity"])
    return out


def daemon_failures(metrics: Metrics, built: Built, cases: list[Case]) -> list[str]:
    shared = str(built.shared)
    failures: list[str] = []

    def complete(file: str, name: str) -> float | None:
        found = series(metrics, "chainwarden_chain_complete", file=file, connection=name)
        return next(iter(found.values())) if len(found) == 1 else None

    if complete(shared, HEALTHY) != 1.0:
        failures.append("healthy: chain_complete is not 1")
    if problem_codes(metrics, "chainwarden_chain_problem", file=shared, connection=HEALTHY):
        failures.append("healthy: has problems")
    for case in cases:
        expect = case.expect
        codes = expected_codes(expect)
        if case.report == "connection":
            got = problem_codes(metrics, "chainwarden_chain_problem", file=shared, connection=case.name)
            if got != codes:
                failures.append(f"{case.name}: chain_problem {got} != {codes}")
            if expect.complete is not None and complete(shared, case.name) != float(expect.complete):
                failures.append(f"{case.name}: chain_complete {complete(shared, case.name)} != {expect.complete}")
        elif case.report == "shared_file":
            if complete(shared, case.name) is not None:
                failures.append(f"{case.name}: an unusable connection is exported as a connection")
            if problem_codes(metrics, "chainwarden_file_problem", file=shared) != {"connection_invalid": {"error"}}:
                failures.append(f"{case.name}: no connection_invalid file_problem on {shared}")
        else:
            path = str(built.files[case.name])
            got = problem_codes(metrics, "chainwarden_file_problem", file=path)
            if got != codes:
                failures.append(f"{case.name}: file_problem {got} != {codes}")
            for name in expect.ok:
                if complete(path, name) != 1.0:
                    failures.append(f"{case.name}: connection {name} in it is not complete")
    return failures


def test_daemon_watches_the_whole_corpus(tmp_path: Path, corpus_pki: tuple[pkigen.ThreeTier, pkigen.Issued]) -> None:
    """One real daemon watching every case at once: alive, each case exported with its codes, healthy complete."""
    built = build(tmp_path / "corpus", CASES, *corpus_pki)
    cases = [case for case in CASES if applies(case, unprivileged=not ROOT, daemon=True)]
    # Files kept out of the watched folder are named one by one (a folder named so is a folder to watch).
    named = [str(p) for p in built.files.values() if p.parent == built.kit.elsewhere and not p.is_dir()]
    port = free_port()
    config = tmp_path / "chainwarden.toml"
    watched = [str(built.kit.conns), *named]
    config.write_text(
        f'[watch]\nconnections = {json.dumps(watched)}\npoll_interval = "0.2s"\n'
        f'[verify]\nprobe = false\n[schedule]\ninterval = "1h"\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n[state]\ndir = "{tmp_path / "state"}"\n'
    )
    with running_daemon(config) as daemon:
        last: list[str] = []

        def settled() -> bool:
            last[:] = daemon_failures(daemon.metrics(), built, cases)
            return not last

        try:
            daemon.wait_for(settled, "every corpus case exported", timeout=60)
        except AssertionError as exc:
            raise AssertionError("\n".join(last) + "\n" + str(exc)) from None
        assert daemon.proc.poll() is None, "the daemon must still run"
        text = daemon.scrape()
        internal = series(daemon.metrics(), "chainwarden_source_errors_total", reason="internal")
        assert not any(internal.values()), internal
        assert "Traceback" not in daemon.log and "unexpectedly" not in daemon.log, daemon.log
        assert secrets_said(text + daemon.log, built) == []
        # Still responsive: a change to the healthy bundle is followed.
        built.kit.healthy_bundle.write_bytes(corpus_pki[0].intermediate.pem + corpus_pki[0].leaf.pem)
        daemon.wait_for(
            lambda: (
                problem_codes(daemon.metrics(), "chainwarden_chain_problem", file=str(built.shared), connection=HEALTHY)
                == {"missing_root": {"error"}}
            ),
            "the healthy connection follows its bundle",
        )
        assert daemon.stop() == 0


def test_daemon_follows_a_burst_of_rewrites_to_the_final_state(tmp_path: Path) -> None:
    """A bundle rewritten 200 times in a burst (in place, by rename, half-written, broken): the daemon
    survives and settles on the final content, twice in a row."""
    pki = pkigen.three_tier(HOST, label="Burst")
    good = pki.intermediate.pem + pki.root.pem + pki.leaf.pem
    no_root = pki.intermediate.pem + pki.leaf.pem
    broken = [b"", good[:700], good.replace(b"\n", b"\\n"), b"\xff" * 5000, good + pki.leaf.key_pem()]
    (tmp_path / "conns").mkdir()
    (tmp_path / "pki").mkdir()
    bundle, steady = tmp_path / "pki" / "burst.pem", tmp_path / "pki" / "steady.pem"
    bundle.write_bytes(good)
    steady.write_bytes(good)
    source = tmp_path / "conns" / "burst.json"
    source.write_text(connection_file([("burst", dumps(connection(bundle))), ("steady", dumps(connection(steady)))]))
    port = free_port()
    config = tmp_path / "chainwarden.toml"
    config.write_text(
        f'[watch]\nconnections = ["{tmp_path / "conns"}"]\n[verify]\nprobe = false\n'
        f'[metrics]\nlisten = "127.0.0.1:{port}"\n[state]\ndir = "{tmp_path / "state"}"\n'
    )

    def burst(final: bytes) -> None:
        for i in range(200):
            data = broken[i % len(broken)] if i < 199 else final
            if i % 3 == 0:
                tmp = bundle.with_name(f".burst-{i}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, bundle)
            else:
                with open(bundle, "r+b") as handle:
                    handle.truncate(0)
                    handle.write(data)

    def codes() -> dict[str, set[str]]:
        return problem_codes(daemon.metrics(), "chainwarden_chain_problem", file=str(source), connection="burst")

    def complete(name: str) -> float | None:
        return daemon.value("chainwarden_chain_complete", file=str(source), connection=name)

    with running_daemon(config) as daemon:
        daemon.wait_for(lambda: complete("burst") == 1.0, "burst complete at start")
        burst(no_root)
        daemon.wait_for(lambda: codes() == {"missing_root": {"error"}}, "only missing_root after the first burst")
        assert complete("burst") == 0.0
        burst(good)
        daemon.wait_for(lambda: complete("burst") == 1.0 and codes() == {}, "complete and clean after the second burst")
        assert complete("steady") == 1.0
        assert daemon.proc.poll() is None and "Traceback" not in daemon.log, daemon.log
        daemon.signal(signal.SIGTERM)
        assert daemon.stop() == 0
