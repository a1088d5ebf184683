"""Write fix plans into the outbox atomically, track pending resubmissions, run the optional submit command."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .atomicio import write_atomic
from .connections import parse_apply_at
from .fixer import FilePlan

log = logging.getLogger("chainwarden.outbox")

SUBMIT_TIMEOUT_SECONDS = 900
# atomicio's temp files: ".<target name>.<8 random characters of mkstemp>.tmp"
_TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
STALE_TEMP_SECONDS = 300.0


class OutboxError(Exception):
    """Writing into the outbox failed; nothing partial was left behind."""


def output_json_path(outbox: str, source: str) -> str:
    """One stable name per source file: a newer plan supersedes an unsubmitted older one."""
    digest = hashlib.sha256(os.path.abspath(source).encode()).hexdigest()[:8]
    return os.path.join(outbox, f"{Path(source).stem}-{digest}.resubmit.json")


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    written: bool  # False: the outbox already held exactly this plan
    json_path: str
    bundle_paths: tuple[str, ...]


def already_pending(plan: FilePlan, json_path: str) -> bool:
    """The pending JSON already points the same connections at the same bundles: writing again changes nothing."""
    try:
        pending = json.loads(Path(json_path).read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError):
        return False
    connections = pending.get("external_connections") if isinstance(pending, dict) else None
    if not isinstance(connections, dict):
        return False
    for name, value in plan.server_certs.items():
        entry = connections.get(name)
        if not isinstance(entry, dict) or entry.get("server_cert") != value:
            return False
    outbox = os.path.dirname(json_path)
    return all((Path(outbox) / b.file_name).is_file() for b in plan.bundles)


def write_plan(plan: FilePlan, outbox: str) -> WriteOutcome:
    """Bundles first (content-named, never overwriting one in use), then the JSON; each atomically."""
    json_path = output_json_path(outbox, plan.source)
    if plan.new_json is None:
        return WriteOutcome(False, json_path, ())
    if already_pending(plan, json_path) and is_pending(json_path):
        return WriteOutcome(False, json_path, tuple(os.path.join(outbox, b.file_name) for b in plan.bundles))
    try:
        os.makedirs(outbox, mode=0o750, exist_ok=True)
        bundle_paths = []
        for bundle in plan.bundles:
            target = os.path.join(outbox, bundle.file_name)
            bundle_paths.append(target)
            if _same_content(target, bundle.content):
                continue
            write_atomic(target, bundle.content, mode=0o644)
        write_atomic(json_path, plan.new_json, mode=_source_mode(plan.source))
        clear_marks(json_path)  # a newer plan supersedes what was submitted or set aside before
    except OSError as exc:
        raise OutboxError(f"outbox {outbox}: cannot write: {exc.strerror or exc}") from None
    for bundle in plan.bundles:
        for cert, origin in bundle.added:
            log.info("bundle %s: added %s (from %s)", bundle.file_name, cert.subject, origin)
        for cert, reason in bundle.dropped:
            log.info("bundle %s: dropped %s (%s)", bundle.file_name, cert.subject, reason)
    log.info("resubmission %s written; apply_at %s", json_path, plan.apply_at_text or "-")  # as in the file
    return WriteOutcome(True, json_path, tuple(bundle_paths))


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


def clear_marks(json_path: str) -> None:
    for state in MARKERS:
        try:
            os.unlink(f"{json_path}.{state}")
        except FileNotFoundError:
            pass


def is_pending(json_path: str) -> bool:
    return Path(json_path).exists() and not any(Path(f"{json_path}.{state}").exists() for state in MARKERS)


def submit(command: tuple[str, ...], json_path: str) -> tuple[bool, str]:
    """Run the operator's submit command; its output is not logged (it may echo secrets)."""
    argv = [part.replace("{json}", json_path) for part in command]
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=SUBMIT_TIMEOUT_SECONDS,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"submit command {argv[0]} could not run: {exc}"
    if proc.returncode == 0:
        return True, f"submit command {argv[0]} succeeded"
    return False, f"submit command {argv[0]} exited {proc.returncode}"
