"""In the daemon: after each verification, complete broken bundles into the outbox and optionally submit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Config
from .engine import Presented
from .fixcli import issuer_finder
from .fixer import needs_fix, plan_file
from .metrics import MetricsState
from .outbox import (
    OutboxError,
    is_pending,
    is_submitted,
    latest_json_path,
    mark,
    output_json_path,
    pending_resubmissions,
    remember_source,
    remove_stale_temp_files,
    submit,
    write_plan,
)
from .report import Code, Problem, Result, Severity
from .roots import load_root_store

if TYPE_CHECKING:
    from .service import Inventory

log = logging.getLogger("chainwarden.regenerate")


class Regenerator:
    """Plans and writes in each pass; submits only once the daemon says no pass is about to follow.

    A written resubmission waits in `ready` until `submit_ready`: the daemon calls it when nothing
    else is queued, so a plan that a pass already underway is about to supersede is never handed over.
    """

    def __init__(
        self,
        config: Config,
        metrics: MetricsState,
        clock: Callable[[], datetime],
        *,
        ready: Mapping[str, tuple[str, float]] | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.clock = clock
        self.stopping = stopping  # a submit command is stopped when this says so
        self.finder = issuer_finder(config)
        self.needs_retry = False
        # source -> (its resubmission JSON waiting to be submitted, since when: time.monotonic())
        self.ready: dict[str, tuple[str, float]] = dict(ready or {}) if config.regenerate_submit_command else {}
        self._attempted: set[str] = set()  # JSONs this process ran the submit command on, as they are now
        self._said_submitted: dict[str, str] = {}  # source -> the submitted JSON it was last told to carry
        self._last_failure: dict[tuple[str, str], str] = {}
        self._failures: dict[tuple[str, str], str] = {}  # the last fix_failed reason logged per connection
        removed = remove_stale_temp_files(config.outbox)
        if removed:
            log.info("outbox %s: removed %d temp file(s) left by an interrupted write", config.outbox, removed)

    def after_evaluation(
        self, inventory: Inventory, results: Sequence[Result], presented: Mapping[Any, Presented]
    ) -> dict[tuple[str, str], list[Problem]]:
        """Write what is needed; returns extra problems (fix_failed) per connection for the metrics."""
        extra: dict[tuple[str, str], list[Problem]] = {}
        self.needs_retry = False
        keys = [(r.file, r.connection) for r in results if r.file and r.connection]
        self.metrics.touch_regeneration_series(
            keys, {file for file, _ in keys}, submit=bool(self.config.regenerate_submit_command)
        )
        outbox = self.config.outbox
        touched_files = {r.file for r in results if r.connection is not None}
        # A plan covers every connection of its file, not only those this pass re-evaluated: the
        # resubmission carries the whole file and supersedes the previous one, so a connection left
        # out would go back to its broken bundle. The others' latest verdicts are the published ones.
        latest = {key: state.result for key, state in self.metrics.connection_states().items()}
        latest.update({(r.file, r.connection): r for r in results if r.file is not None and r.connection is not None})
        store = None
        for path in sorted(f for f in touched_files if f):
            connection_file = inventory.files.get(path)
            if connection_file is None or not connection_file.connections:
                continue
            file_results = [r for (file, _), r in latest.items() if file == path]
            file_results += [r for r in results if r.file == path and r.connection is None]
            json_path = output_json_path(outbox, path)
            if not any(needs_fix(r) for r in file_results):
                if all(r.connection is not None for r in file_results) and is_pending(json_path):
                    self._retire_obsolete(json_path, path, file_results, connection_file)
                continue
            try:
                source_bytes = Path(path).read_bytes()
            except OSError as exc:
                log.warning("cannot re-read %s to plan a fix: %s", path, exc.strerror or exc)
                continue
            store = store or load_root_store(self.config.regenerate_trusted_roots)
            plan = plan_file(
                connection_file,
                source_bytes,
                file_results,
                inventory.bundles,
                presented,
                store,
                self.finder,
                self.clock(),
                lead=timedelta(seconds=self.config.regenerate_apply_at_lead),
                include_leaf=self.config.regenerate_include_leaf,
                outbox=outbox,
                output_json=json_path,
            )
            for failure in plan.failures:
                self.metrics.count_regeneration(path, failure.connection, "failed")
                message = failure.problem.message if failure.problem else "unknown reason"
                if self._last_failure.get((path, failure.connection)) != message:
                    log.warning("%s", message)
                    self._last_failure[(path, failure.connection)] = message
                if failure.problem:
                    extra.setdefault((path, failure.connection), []).append(failure.problem)
                    self._log_failure((path, failure.connection), failure.problem.message)
            if not plan.changes:
                continue
            try:
                outcome = write_plan(plan, outbox)
            except OutboxError as exc:
                log.error("%s; will retry", exc)
                self.metrics.count_source_error("outbox")
                self.needs_retry = True
                for name in plan.server_certs:
                    self.metrics.count_regeneration(path, name, "failed")
                    extra.setdefault((path, name), []).append(Problem(Code.FIX_FAILED, Severity.ERROR, str(exc)))
                continue
            if outcome.written:
                remember_source(outcome.json_path, path)
                self._attempted.discard(outcome.json_path)
                if plan.moves_rollout_earlier:
                    log.warning(
                        "%s: the resubmission %s moves the rollout earlier than the source's apply_at "
                        "(a planned window is lost; [regenerate] apply_at_lead sets how far ahead it is)",
                        path,
                        outcome.json_path,
                    )
            elif is_submitted(outcome.json_path) and self._said_submitted.get(path) != outcome.json_path:
                self._said_submitted[path] = outcome.json_path
                log.info(
                    "%s: this plan was already submitted as %s; nothing new to write (the source still "
                    "points at the old bundles until it is updated)",
                    path,
                    outcome.json_path,
                )
            for name in plan.server_certs:
                self._failures.pop((path, name), None)
                self.metrics.count_regeneration(path, name, "written" if outcome.written else "unchanged")
            if self.config.regenerate_submit_command and is_pending(outcome.json_path):
                # Written now, or this very plan already waiting unsubmitted (written by `fix --write`, or
                # by an earlier run stopped before it could submit): handed over once no pass follows.
                if outcome.written or outcome.json_path not in self._attempted:
                    since = self.ready.get(path, ("", time.monotonic()))[1]
                    self.ready[path] = (outcome.json_path, since)
        self.metrics.set_pending_apply_at(pending_resubmissions(outbox))
        return extra

    def ready_since(self) -> float | None:
        """time.monotonic() of the oldest resubmission waiting to be submitted (None: none waits)."""
        return min((since for _, since in self.ready.values()), default=None)

    def submit_ready(self) -> None:
        """Run the submit command on each resubmission still waiting, if it is still its source's
        current, unsubmitted plan (a later pass may have marked it obsolete or replaced it)."""
        command = self.config.regenerate_submit_command
        ready, self.ready = self.ready, {}
        for source, (json_path, _) in sorted(ready.items()):
            if not command or json_path in self._attempted or not is_pending(json_path):
                continue
            if latest_json_path(self.config.outbox, source) != json_path:
                continue
            self._attempted.add(json_path)
            ok, message = submit(
                command, json_path, timeout=self.config.regenerate_submit_timeout, stopping=self.stopping
            )
            self.metrics.record_submission(source, ok)
            level = logging.INFO if ok else logging.WARNING if self.stopping() else logging.ERROR
            log.log(level, "%s for %s", message, json_path)
            if ok:
                try:
                    mark(json_path, "submitted")
                except OSError as exc:
                    log.error("cannot mark %s submitted: %s", json_path, exc.strerror or exc)
                    self.metrics.count_source_error("outbox")
        if ready:
            self.metrics.set_pending_apply_at(pending_resubmissions(self.config.outbox))

    def _log_failure(self, key: tuple[str, str], message: str) -> None:
        """Why a regeneration failed (metrics carry only the code): once per connection and reason."""
        if self._failures.get(key) != message:
            self._failures[key] = message
            log.warning("regeneration failed: %s", message)

    def _retire_obsolete(self, json_path: str, source: str, results: Sequence[Result], connection_file: object) -> None:
        """The source is healthy again (the admin resubmitted): an unsubmitted older plan is obsolete."""
        if any(r.verdict.value == "error" for r in results):
            return
        try:
            mark(json_path, "obsolete")
        except OSError as exc:
            log.warning("cannot mark %s obsolete: %s", json_path, exc.strerror or exc)
            return
        log.info("%s is healthy now; the unsubmitted resubmission %s is marked obsolete", source, json_path)
