"""Write fix plans into the outbox atomically, track pending resubmissions, run the optional submit command."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .atomicio import write_atomic
from .connections import parse_apply_at
from .fixer import FilePlan
from .jsonedit import locate_values

log = logging.getLogger("chainwarden.outbox")

SUBMIT_TIMEOUT_SECONDS = 900
# atomicio's temp files: ".<target name>.<8 random characters of mkstemp>.tmp"
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
STALE_TEMP_SECONDS = 300.0


class OutboxError(Exception):
    """Writing into the outbox failed; nothing partial was left behind."""


RESUBMIT_SUFFIX = ".resubmit.json"
# A later revision of a source's resubmission: "<stem>-<digest>-r<n>.resubmit.json" (n >= 2). No other
# source's name can match: every first name ends in "-<8 hex digits>.resubmit.json", and hex has no "r".
_REVISION = re.compile(r"-r([0-9]+)\.resubmit\.json$")


def first_json_path(outbox: str, source: str) -> str:
    """The name of a source's first resubmission JSON (revision 1)."""
    digest = hashlib.sha256(os.path.abspath(source).encode()).hexdigest()[:8]
    return os.path.join(outbox, f"{Path(source).stem}-{digest}{RESUBMIT_SUFFIX}")


def revision_path(outbox: str, source: str, revision: int) -> str:
    first = first_json_path(outbox, source)
    return first if revision <= 1 else f"{first[: -len(RESUBMIT_SUFFIX)]}-r{revision}{RESUBMIT_SUFFIX}"


def revision_of(json_path: str) -> int:
    found = _REVISION.search(os.path.basename(json_path))
    return int(found.group(1)) if found else 1


def latest_json_path(outbox: str, source: str) -> str | None:
    """The source's resubmission JSON of the highest revision in the outbox (None when there is none)."""
    first = first_json_path(outbox, source)
    prefix = os.path.basename(first)[: -len(RESUBMIT_SUFFIX)]
    latest = first if os.path.lexists(first) else None
    try:
        names = os.listdir(outbox)
    except OSError:
        return latest
    best = 1
    for name in names:
        if not name.startswith(prefix + "-r"):
            continue
        found = _REVISION.search(name)
        if found and name == f"{prefix}-r{found.group(1)}{RESUBMIT_SUFFIX}" and int(found.group(1)) > best:
            best, latest = int(found.group(1)), os.path.join(outbox, name)
    return latest


def output_json_path(outbox: str, source: str) -> str:
    """Where the next plan for `source` goes: one stable name per source, so a newer plan supersedes an
    unsubmitted older one (pending or obsolete); a submitted one is never touched again, so once the
    latest was submitted the next plan takes the next revision's name ("...-r2.resubmit.json")."""
    latest = latest_json_path(outbox, source)
    if latest is None:
        return first_json_path(outbox, source)
    if is_submitted(latest):
        return revision_path(outbox, source, revision_of(latest) + 1)
    return latest


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    written: bool  # False: the outbox already held exactly this plan
    json_path: str
    bundle_paths: tuple[str, ...]


def already_pending(plan: FilePlan, json_path: str) -> bool:
    """The JSON at json_path is the plan's byte for byte but for apply_at, and its bundles are there:
    writing again changes nothing. Any other change of the source since (a rotated secret, a new
    baseurl, another connection) makes the plan a new one."""
    try:
        pending = Path(json_path).read_bytes()
    except OSError:
        return False
    if plan.new_json is None:
        return False
    ours, theirs = _without_apply_at(plan.new_json), _without_apply_at(pending)
    if ours is None or ours != theirs:
        return False
    outbox = os.path.dirname(json_path)
    return all((Path(outbox) / b.file_name).is_file() for b in plan.bundles)


def _without_apply_at(document: bytes) -> str | None:
    """The document's text with its apply_at value cut out; None when it cannot be read as such."""
    try:
        text = document.decode("utf-8")
        apply_at, _ = locate_values(text)
    except ValueError:  # UnicodeDecodeError included
        return None
    return text if apply_at is None else text[: apply_at.start] + text[apply_at.end :]


def plan_target(plan: FilePlan, outbox: str) -> tuple[str, bool]:
    """(the resubmission JSON that carries `plan`, whether writing it is due): the latest JSON of the
    source when it already carries the plan, pending or submitted (False: a re-run writes nothing), else
    where write_plan puts it (see output_json_path). What `fix` should show as its output."""
    latest = latest_json_path(outbox, plan.source)
    if plan.new_json is None:
        return latest or first_json_path(outbox, plan.source), False
    if latest is not None and already_pending(plan, latest) and (is_pending(latest) or is_submitted(latest)):
        return latest, False
    return output_json_path(outbox, plan.source), True


def write_plan(plan: FilePlan, outbox: str) -> WriteOutcome:
    """Bundles first (content-named, never overwriting one in use), then the JSON; each atomically.

    The JSON goes under the source's current name (see output_json_path): an unsubmitted older plan
    there is superseded; a submitted one, and its marker, stay as they are (the record of what was
    handed over), and a different plan takes the next revision's name. A plan the latest JSON already
    carries, pending or submitted, writes nothing."""
    latest = latest_json_path(outbox, plan.source)
    json_path, due = plan_target(plan, outbox)
    if plan.new_json is None:
        return WriteOutcome(False, json_path, ())
    bundle_targets = tuple(os.path.join(outbox, b.file_name) for b in plan.bundles)
    if not due:
        return WriteOutcome(False, json_path, bundle_targets)
    try:
        os.makedirs(outbox, mode=0o750, exist_ok=True)
        for bundle, target in zip(plan.bundles, bundle_targets, strict=True):
            if _same_content(target, bundle.content):
                continue
            write_atomic(target, bundle.content, mode=0o644)
        if is_submitted(json_path):  # submitted since it was chosen (a daemon's submit command): keep it
            json_path = revision_path(outbox, plan.source, revision_of(json_path) + 1)
        write_atomic(json_path, plan.new_json, mode=_source_mode(plan.source))
        _unmark(json_path, "obsolete")  # a newer plan supersedes what was set aside; never a submission
    except OSError as exc:
        raise OutboxError(f"outbox {outbox}: cannot write: {exc.strerror or exc}") from None
    for bundle in plan.bundles:
        for cert, origin in bundle.added:
            log.info("bundle %s: added %s (from %s)", bundle.file_name, cert.subject, origin)
        for cert, reason in bundle.dropped:
            log.info("bundle %s: dropped %s (%s)", bundle.file_name, cert.subject, reason)
    if latest is not None and latest != json_path:
        log.info("%s was submitted and is kept as it is; the newer plan gets its own name", latest)
    log.info("resubmission %s written; apply_at %s", json_path, plan.apply_at_text or "-")  # as in the file
    return WriteOutcome(True, json_path, bundle_targets)


def _same_content(path: str, content: bytes) -> bool:
    try:
        return Path(path).read_bytes() == content
    except OSError:
        return False


def _source_mode(source: str) -> int:
    """The source's permission bits: it holds secrets, so the copy is no more readable."""
    try:
        return stat.S_IMODE(os.stat(source).st_mode)
    except OSError:
        return 0o600


def remove_stale_temp_files(outbox: str, *, older_than: float = STALE_TEMP_SECONDS) -> int:
    """Delete the temp files of atomic writes that a crash (SIGKILL, power loss) interrupted.

    They are never outputs (nothing reads them), but one may hold a copy of a connection JSON with
    its secrets. Only files older than `older_than` go: a younger one may belong to a `fix --write`
    running right now.
    """
    removed = 0
    try:
        entries = list(os.scandir(outbox))
    except OSError:
        return 0
    cutoff = time.time() - older_than
    for entry in entries:
        if not _TEMP_NAME.match(entry.name):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except OSError as exc:
            log.warning("cannot remove the stale temp file %s: %s", entry.path, exc.strerror or exc)
    return removed


def pending_resubmissions(outbox: str) -> dict[str, float]:
    """apply_at (unix seconds) of each resubmission JSON waiting in the outbox, keyed by its source file."""
    out: dict[str, float] = {}
    try:
        entries = list(Path(outbox).glob("*.resubmit.json"))
    except OSError:
        return out
    entries.sort(key=lambda entry: (revision_of(str(entry)), entry.name))  # a source's latest revision last
    for entry in entries:
        if not is_pending(str(entry)):
            continue
        try:
            document = json.loads(entry.read_bytes().decode("utf-8-sig"))
            moment: datetime = parse_apply_at(document["apply_at"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        source = _source_of(entry)
        out[source or str(entry)] = moment.timestamp()
    return out


def _source_of(entry: Path) -> str | None:
    try:
        return Path(str(entry) + ".source").read_text().strip() or None
    except OSError:
        return None


def remember_source(json_path: str, source: str) -> None:
    """A small side file naming the source, so metrics can label the pending JSON by it."""
    content = (os.path.abspath(source) + "\n").encode()
    if _same_content(json_path + ".source", content):
        return
    try:
        write_atomic(json_path + ".source", content, mode=0o644)
    except OSError as exc:
        log.warning("cannot record the source of %s: %s", json_path, exc.strerror or exc)


MARKERS = ("submitted", "obsolete")


def mark(json_path: str, state: str) -> None:
    """Record that a resubmission JSON was submitted (or became obsolete), leaving it where it is
    so its relative bundle paths keep working."""
    stamp = datetime.now().astimezone().isoformat(timespec="seconds")
    write_atomic(f"{json_path}.{state}", (stamp + "\n").encode(), mode=0o644)


def _unmark(json_path: str, state: str) -> None:
    try:
        os.unlink(f"{json_path}.{state}")
    except FileNotFoundError:
        pass


def is_submitted(json_path: str) -> bool:
    """The submit command took this JSON: it is the record of what was handed over, never rewritten."""
    return os.path.lexists(f"{json_path}.submitted")


def is_pending(json_path: str) -> bool:
    return Path(json_path).exists() and not any(Path(f"{json_path}.{state}").exists() for state in MARKERS)


def submit(
    command: tuple[str, ...],
    json_path: str,
    *,
    timeout: float = SUBMIT_TIMEOUT_SECONDS,
    stopping: Callable[[], bool] = lambda: False,
) -> tuple[bool, str]:
    """Run the operator's submit command in the outbox folder (where the JSON's relative paths start),
    for at most `timeout` seconds, and no longer once `stopping()` says so; its output is not logged
    (it may echo the JSON, secrets included)."""
    argv = [part.replace("{json}", json_path) for part in command]
    try:
        proc = subprocess.Popen(
            argv,
            cwd=os.path.dirname(json_path) or ".",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: what it starts is stopped with it
        )
    except OSError as exc:
        return False, f"submit command {argv[0]} could not run: {exc.strerror or exc}"
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if stopping() or time.monotonic() >= deadline:
            _end(proc)
            why = "the daemon is stopping" if stopping() else f"it ran longer than {timeout:g} s"
            return False, f"submit command {argv[0]} was stopped: {why}"
        try:
            proc.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            pass
    if proc.returncode == 0:
        return True, f"submit command {argv[0]} succeeded"
    if proc.returncode < 0:
        return False, f"submit command {argv[0]} was killed by signal {-proc.returncode}"
    return False, f"submit command {argv[0]} exited {proc.returncode}"


def _end(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to its whole process group (a script's curl or az too), then SIGKILL after 2 s; reaped."""
    _signal_group(proc, signal.SIGTERM)
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        _signal_group(proc, signal.SIGKILL)
        proc.wait()
    _signal_group(proc, signal.SIGKILL)  # what it started and left behind when it exited


def _signal_group(proc: subprocess.Popen[bytes], signum: int) -> None:
    try:
        os.killpg(proc.pid, signum)
    except (ProcessLookupError, PermissionError):
        if proc.poll() is None:  # no group of its own (it left it): the command at least
            proc.send_signal(signum)
