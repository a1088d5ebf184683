"""The outbox: a submitted resubmission is immutable, an unsubmitted one is superseded in place, and the
daemon submits only once no pass about to follow could supersede what it wrote."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import queue
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chainwarden import pkigen
from chainwarden.cli import main as cli_main
from chainwarden.config import Config
from chainwarden.fixer import BundlePlan, FilePlan
from chainwarden.metrics import MetricsState
from chainwarden.outbox import (
    first_json_path,
    is_pending,
    latest_json_path,
    mark,
    output_json_path,
    pending_resubmissions,
    plan_target,
    write_plan,
)
from chainwarden.regenerate import Regenerator

HOST = "localhost"


# --------------------------------------------------------------------------------------------
# write_plan on synthetic plans


def _plan(source: Path, bundle_name: str, content: bytes, apply_at: str = "2030-01-01T10:00:00+00:00") -> FilePlan:
    """A plan moving connection "erp" of `source` to the outbox bundle `bundle_name`."""
    new_json = json.dumps(
        {"apply_at": apply_at, "external_connections": {"erp": {"server_cert": bundle_name}}}, indent=2
    ).encode()
    bundle = BundlePlan(str(source.parent / "erp.pem"), content, bundle_name, (), (), (), ("erp",))
    return FilePlan(
        str(source),
        source.read_bytes(),
        new_json,
        datetime(2030, 1, 1, 10, tzinfo=UTC),
        (bundle,),
        (),
        {"erp": bundle_name},
        apply_at,
    )


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "prod.json"
    path.write_text('{"external_connections": {"erp": {"server_cert": "erp.pem"}}}')
    return path


def test_submitted_resubmission_is_never_rewritten(tmp_path, source):
    """Once submitted, a resubmission JSON and its marker stay byte for byte; a different plan for the
    same source takes the next revision's name, and a re-run of the submitted plan writes nothing."""
    outbox = str(tmp_path / "outbox")
    first = write_plan(_plan(source, "erp-a.pem", b"A"), outbox)
    assert first.written and first.json_path == first_json_path(outbox, str(source))
    mark(first.json_path, "submitted")
    submitted = Path(first.json_path).read_bytes()
    marker = Path(first.json_path + ".submitted").read_bytes()

    assert write_plan(_plan(source, "erp-a.pem", b"A", "2030-02-02T10:00:00+00:00"), outbox) == type(first)(
        False, first.json_path, first.bundle_paths
    )  # the submitted plan again (a later pass, `fix --write`): nothing written, no new revision

    # Where `fix` says each plan goes: the submitted JSON for its own plan (nothing due), else the next name.
    assert plan_target(_plan(source, "erp-a.pem", b"A"), outbox) == (first.json_path, False)
    assert plan_target(_plan(source, "erp-b.pem", b"B"), outbox) == (output_json_path(outbox, str(source)), True)

    second = write_plan(_plan(source, "erp-b.pem", b"B"), outbox)
    assert second.written and second.json_path.endswith("-r2.resubmit.json")
    assert os.path.dirname(second.json_path) == outbox and Path(second.json_path).name.startswith("prod-")
    assert Path(first.json_path).read_bytes() == submitted
    assert Path(first.json_path + ".submitted").read_bytes() == marker
    assert json.loads(Path(second.json_path).read_bytes())["external_connections"]["erp"]["server_cert"] == "erp-b.pem"
    assert is_pending(second.json_path) and not is_pending(first.json_path)
    assert latest_json_path(outbox, str(source)) == output_json_path(outbox, str(source)) == second.json_path

    # An unsubmitted revision is superseded in place (the stable name), never a third file.
    third = write_plan(_plan(source, "erp-c.pem", b"C"), outbox)
    assert third.written and third.json_path == second.json_path
    assert not write_plan(_plan(source, "erp-c.pem", b"C"), outbox).written  # a re-run writes nothing
    assert sorted(p.name for p in Path(outbox).glob("*.resubmit.json")) == sorted(
        Path(p).name for p in (first.json_path, second.json_path)
    )
    # Only the latest revision counts as pending for the source.
    assert list(pending_resubmissions(outbox).values()) == [datetime(2030, 1, 1, 10, tzinfo=UTC).timestamp()]

    # Submitted in turn: the next plan goes to -r3, both earlier ones untouched.
    mark(third.json_path, "submitted")
    r2 = Path(third.json_path).read_bytes()
    fourth = write_plan(_plan(source, "erp-a.pem", b"A"), outbox)  # back to the first plan: a new submission
    assert fourth.written and fourth.json_path.endswith("-r3.resubmit.json")
    assert Path(third.json_path).read_bytes() == r2 and Path(first.json_path).read_bytes() == submitted
    assert Path(first.json_path + ".submitted").read_bytes() == marker


def test_obsolete_resubmission_is_superseded_in_place(tmp_path, source):
    """An obsolete (unsubmitted, set aside) resubmission is rewritten under its name by the next plan, even
    the same plan, and is pending again; its marker goes."""
    outbox = str(tmp_path / "outbox")
    first = write_plan(_plan(source, "erp-a.pem", b"A"), outbox)
    mark(first.json_path, "obsolete")
    assert not is_pending(first.json_path) and output_json_path(outbox, str(source)) == first.json_path
    again = write_plan(_plan(source, "erp-a.pem", b"A", "2030-03-03T10:00:00+00:00"), outbox)
    assert again.written and again.json_path == first.json_path
    assert is_pending(first.json_path) and not Path(first.json_path + ".obsolete").exists()
    assert b"2030-03-03" in Path(first.json_path).read_bytes()


def test_a_pending_plan_is_the_same_only_if_all_but_apply_at_is(tmp_path, source):
    """A re-run with another apply_at writes nothing; a source changed since (a rotated secret, say)
    makes the pending JSON outdated: it is rewritten, never left to be submitted as it was."""
    outbox = str(tmp_path / "outbox")

    def plan(token: str, apply_at: str) -> FilePlan:
        base = _plan(source, "erp-a.pem", b"A", apply_at)
        document = json.loads(base.new_json or b"{}")
        document["external_connections"]["erp"]["secrets"] = {"bearer_token": token}
        return dataclasses.replace(base, new_json=json.dumps(document, indent=2).encode())

    first = write_plan(plan("OLD", "2030-01-01T10:00:00+00:00"), outbox)
    assert first.written
    assert not write_plan(plan("OLD", "2030-02-02T10:00:00+00:00"), outbox).written
    rotated = write_plan(plan("NEW", "2030-02-02T10:00:00+00:00"), outbox)
    assert rotated.written and rotated.json_path == first.json_path
    assert b"NEW" in Path(first.json_path).read_bytes() and b"OLD" not in Path(first.json_path).read_bytes()


def test_revision_names_belong_to_their_source_only(tmp_path, source):
    """Another source whose name looks like a revision of this one is not taken for one."""
    outbox = tmp_path / "outbox"
    outbox.mkdir()
    first = Path(first_json_path(str(outbox), str(source)))
    lookalike = outbox / (first.name.removesuffix(".resubmit.json") + "-r7-0badc0de.resubmit.json")
    lookalike.write_text("{}")
    assert latest_json_path(str(outbox), str(source)) is None
    first.write_text("{}")
    assert latest_json_path(str(outbox), str(source)) == str(first)


# --------------------------------------------------------------------------------------------
# `chainwarden fix --write` after a submission


class OfflineSite:
    """Connections whose bundles hold their leaf and root, the intermediate waiting in intermediates_dir:
    `fix --offline` completes them without any endpoint."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pkis = {name: pkigen.three_tier(HOST, label=f"Outbox {name}") for name in ("erp", "crm")}
        for folder in ("pki", "inter", "roots"):
            (root / folder).mkdir()
        for name, pki in self.pkis.items():
            (root / "pki" / f"{name}.pem").write_bytes(pkigen.pem_bundle(pki.leaf, pki.root))
            (root / "inter" / f"{name}.pem").write_bytes(pki.intermediate.pem)
            (root / "roots" / f"{name}.pem").write_bytes(pki.root.pem)
        self.json = root / "prod.json"
        self.outbox = root / "outbox"
        self.config = root / "cw.toml"
        self.config.write_text(
            f'[state]\ndir = "{root / "state"}"\n[verify]\ntrusted_roots = "{root / "roots"}"\n'
            f'[regenerate]\ntrusted_roots = "{root / "roots"}"\nintermediates_dir = "{root / "inter"}"\n'
            f'outbox = "{self.outbox}"\n'
        )

    def write_connections(self, *names: str) -> None:
        connections = {n: {"baseurl": f"https://{HOST}:1", "server_cert": f"pki/{n}.pem"} for n in names}
        self.json.write_text(json.dumps({"apply_at": "2026-01-01T09:30:00+00:00", "external_connections": connections}))

    def fix_write(self, capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
        argv = ["fix", str(self.json), "--config", str(self.config), "--offline", "--write", "--format", "json"]
        code = cli_main(argv)
        out = json.loads(capsys.readouterr().out)
        assert code in (0, 1), out  # 1: offline, the planned bundle no longer shows the leaf
        entry: dict[str, object] = out["files"][0]
        return entry


def test_fix_write_never_overwrites_a_submitted_resubmission(tmp_path, capsys):
    """`fix --write` after the resubmission was submitted: the submitted JSON and its marker stay, the newer
    plan is written beside it under the next revision's name (and shown under that name)."""
    site = OfflineSite(tmp_path)
    site.write_connections("erp")
    first = site.fix_write(capsys)
    assert first["written"] is True
    first_path = Path(str(first["output"]))
    assert first_path.exists() and first_path.name.endswith(".resubmit.json")
    mark(str(first_path), "submitted")
    submitted = first_path.read_bytes()
    marker = Path(f"{first_path}.submitted").read_bytes()

    again = site.fix_write(capsys)  # the submitted plan once more: nothing to write
    assert again["written"] is False
    assert again["output"] == str(first_path)  # named as the file that already carries it
    assert sorted(p.name for p in site.outbox.glob("*.resubmit.json")) == [first_path.name]

    site.write_connections("erp", "crm")  # crm breaks too: a newer plan for the same source
    second = site.fix_write(capsys)
    second_path = Path(str(second["output"]))
    assert second["written"] is True and second_path != first_path
    assert second_path.name == first_path.name.replace(".resubmit.json", "-r2.resubmit.json")
    assert set(json.loads(second_path.read_text())["external_connections"]) == {"erp", "crm"}
    assert first_path.read_bytes() == submitted and Path(f"{first_path}.submitted").read_bytes() == marker
    assert Path(f"{second_path}.source").read_text().strip() == str(site.json)
    assert is_pending(str(second_path)) and not is_pending(str(first_path))


# --------------------------------------------------------------------------------------------
# The daemon submits once nothing queued could supersede what it wrote


class FakeRegenerator:
    def __init__(self) -> None:
        self.ready: dict[str, tuple[str, float]] = {}
        self.submitted = 0

    def ready_since(self) -> float | None:
        return min((since for _, since in self.ready.values()), default=None)

    def submit_ready(self) -> None:
        self.submitted += 1
        self.ready = {}


def test_daemon_defers_submission_while_a_pass_is_queued(tmp_path, monkeypatch):
    """A resubmission written by one pass is not submitted while another command waits (the probed pass
    after start-up, a burst of changes): only once the queue is empty, or after the longest deferral."""
    from chainwarden import service
    from chainwarden.service import Command, Daemon

    daemon = Daemon(Config(state_dir=str(tmp_path / "state")))
    fake = FakeRegenerator()
    daemon.regenerator = fake
    daemon._submit_when_settled()
    assert fake.submitted == 0  # nothing waits

    fake.ready["/srv/prod.json"] = ("/out/prod-12345678.resubmit.json", time.monotonic())
    daemon.commands.put(Command("full"))
    daemon._submit_when_settled()
    assert fake.submitted == 0 and fake.ready  # a pass about to follow could supersede it

    assert daemon.commands.get_nowait().kind == "full"
    with pytest.raises(queue.Empty):
        daemon.commands.get_nowait()
    daemon._submit_when_settled()
    assert fake.submitted == 1 and not fake.ready

    # Changes that never pause do not hold a submission back for ever.
    monkeypatch.setattr(service, "SUBMIT_DEFER_MAX_SECONDS", 0.0)
    fake.ready["/srv/prod.json"] = ("/out/prod-12345678.resubmit.json", time.monotonic() - 1)
    daemon.commands.put(Command("folders", frozenset({"/srv"})))
    daemon._submit_when_settled()
    assert fake.submitted == 2

    # Never while stopping.
    fake.ready["/srv/prod.json"] = ("/out/prod-12345678.resubmit.json", time.monotonic())
    daemon.request_stop()
    while not daemon.commands.empty():
        daemon.commands.get_nowait()
    daemon._submit_when_settled()
    assert fake.submitted == 2


def test_regenerator_submits_only_what_is_still_due(tmp_path, source):
    """submit_ready hands over a waiting resubmission only while it is its source's latest, unsubmitted,
    not obsolete plan; each at most once per process; a success leaves the .submitted marker."""
    outbox = str(tmp_path / "outbox")
    log = tmp_path / "submitted.log"
    script = "import sys; open(sys.argv[2], 'a').write(sys.argv[1] + '\\n')"
    config = Config(
        state_dir=str(tmp_path / "state"),
        regenerate_outbox=outbox,
        regenerate_submit_command=(sys.executable, "-c", script, "{json}", str(log)),
    )
    metrics = MetricsState()
    regenerator = Regenerator(config, metrics, lambda: datetime.now(UTC))
    first = write_plan(_plan(source, "erp-a.pem", b"A"), outbox)
    regenerator.ready[str(source)] = (first.json_path, time.monotonic())
    mark(first.json_path, "obsolete")  # a later pass found the source healthy
    regenerator.submit_ready()
    assert not log.exists() and not regenerator.ready

    again = write_plan(_plan(source, "erp-b.pem", b"B"), outbox)  # pending again, under the same name
    assert again.json_path == first.json_path
    regenerator.ready[str(source)] = (again.json_path, time.monotonic())
    regenerator.submit_ready()
    assert log.read_text().splitlines() == [again.json_path]
    assert Path(again.json_path + ".submitted").exists() and not is_pending(again.json_path)

    newer = write_plan(_plan(source, "erp-c.pem", b"C"), outbox)
    assert newer.json_path.endswith("-r2.resubmit.json")
    regenerator.ready[str(source)] = (again.json_path, time.monotonic())  # no longer the latest
    regenerator.submit_ready()
    assert log.read_text().splitlines() == [again.json_path]


def test_a_later_plan_keeps_every_fix_of_its_file(tmp_path, caplog):
    """crm is fixed and submitted; then erp breaks and only erp is re-evaluated: the next resubmission
    (it supersedes the first, whole file) still carries crm's fix, never crm's broken bundle."""
    import dataclasses as dc

    from chainwarden.config import load_config
    from chainwarden.service import Daemon

    site = OfflineSite(tmp_path)
    erp = site.pkis["erp"]
    (tmp_path / "pki" / "erp.pem").write_bytes(pkigen.pem_bundle(erp.leaf, erp.intermediate, erp.root))
    site.write_connections("erp", "crm")
    config = dc.replace(
        load_config(str(site.config)),
        watch_connections=(str(site.json),),
        verify_probe=False,
        regenerate_enabled=True,
    )
    daemon = Daemon(config)
    daemon._load_regenerator()  # what start() does, without the watcher, scheduler and HTTP server
    daemon.full_pass(probe=False)
    (first,) = sorted(site.outbox.glob("*.resubmit.json"))
    servers = json.loads(first.read_text())["external_connections"]
    assert servers["erp"]["server_cert"] == "pki/erp.pem" or servers["erp"]["server_cert"].endswith("pki/erp.pem")
    crm_fixed = servers["crm"]["server_cert"]
    assert "crm-" in crm_fixed
    mark(str(first), "submitted")
    caplog.set_level(logging.INFO, logger="chainwarden")
    daemon.full_pass(probe=False)  # the same plan again: said once, nothing written
    daemon.full_pass(probe=False)
    said = [r.getMessage() for r in caplog.records if "was already submitted as" in r.getMessage()]
    assert len(said) == 1 and str(first) in said[0]
    assert sorted(site.outbox.glob("*.resubmit.json")) == [first]

    (tmp_path / "pki" / "erp.pem").write_bytes(pkigen.pem_bundle(erp.leaf, erp.root))  # erp breaks
    daemon.changed_folders({str(tmp_path / "pki")})
    later = [p for p in sorted(site.outbox.glob("*.resubmit.json")) if p != first]
    assert len(later) == 1
    servers = json.loads(later[0].read_text())["external_connections"]
    assert "erp-" in servers["erp"]["server_cert"] and servers["crm"]["server_cert"] == crm_fixed


def test_submit_runs_in_the_outbox_and_is_stopped_by_a_stop_or_its_timeout(tmp_path):
    """The submit command starts in the outbox (the JSON's relative paths start there), is ended when
    the daemon stops or after its timeout, and a signal death is said as such."""
    from chainwarden.outbox import submit

    json_path = tmp_path / "outbox" / "prod.resubmit.json"
    json_path.parent.mkdir()
    json_path.write_text("{}")
    where = tmp_path / "cwd.txt"
    ok, message = submit(
        (sys.executable, "-c", f"import os; open({str(where)!r}, 'w').write(os.getcwd())", "{json}"), str(json_path)
    )
    assert ok and where.read_text() == str(json_path.parent), message

    hang = (sys.executable, "-c", "import time; time.sleep(600)", "{json}")
    stop = {"now": False}
    started = time.monotonic()

    def stopping() -> bool:
        stop["now"] = stop["now"] or time.monotonic() - started > 0.5
        return stop["now"]

    ok, message = submit(hang, str(json_path), stopping=stopping)
    assert not ok and "the daemon is stopping" in message
    ok, message = submit(hang, str(json_path), timeout=0.5)
    assert not ok and "ran longer than 0.5 s" in message
    ok, message = submit(
        (sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)", "{json}"), str(json_path)
    )
    assert not ok and message.endswith("was killed by signal 15")


def test_a_dry_run_of_a_plan_already_submitted_says_so(tmp_path, capsys):
    """No diff with a new apply_at and no "add --write" when the outbox already holds the plan."""
    site = OfflineSite(tmp_path)
    site.write_connections("erp")
    first = Path(str(site.fix_write(capsys)["output"]))
    mark(str(first), "submitted")
    cli_main(["fix", str(site.json), "--config", str(site.config), "--offline"])
    text = capsys.readouterr().out
    assert f"resubmission JSON {first}: already in the outbox with this plan (submitted)" in text
    assert "add --write" not in text and "+++ " not in text
    cli_main(["fix", str(site.json), "--config", str(site.config), "--offline", "--format", "json"])
    entry = json.loads(capsys.readouterr().out)["files"][0]
    assert entry["due"] is False and entry["submitted"] is True and entry["output"] == str(first)
    held = json.loads(first.read_text())["apply_at"]
    assert entry["apply_at"] == held and entry["diff"] == ""  # the file's own, not a new one


def test_a_stopped_submit_command_takes_what_it_started_with_it(tmp_path):
    """A capture script's own children (curl, az...) end with it, not re-parented to init."""
    from chainwarden.outbox import submit

    json_path = tmp_path / "prod.resubmit.json"
    json_path.write_text("{}")
    pid_file = tmp_path / "child.pid"
    script = f"sleep 600 & echo $! > {pid_file}; wait"
    ok, message = submit(("sh", "-c", script, "{json}"), str(json_path), timeout=1.0)
    assert not ok and "ran longer than" in message
    child = int(pid_file.read_text())

    def alive() -> bool:
        try:
            return Path(f"/proc/{child}/stat").read_text().split()[2] != "Z"
        except (FileNotFoundError, ProcessLookupError):
            return False

    deadline = time.monotonic() + 10
    while alive():
        assert time.monotonic() < deadline, "the command's child outlived it"
        time.sleep(0.05)
