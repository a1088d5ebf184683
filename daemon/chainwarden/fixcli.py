"""`chainwarden fix`: show (or, with --write, write) completed bundles and the resubmission JSON."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from .aia import FetchPolicy, IntermediateFinder
from .bundle import BundleReading, read_bundle_bytes, read_bundle_file
from .checker import (
    ChainLookup,
    LazyBundles,
    PassInputs,
    ProbeKey,
    evaluate_pass,
    presented_chains,
    read_inputs,
    selected,
)
from .config import Config
from .connections import MAX_CONNECTION_JSON_BYTES
from .engine import Presented
from .fixer import FilePlan, IssuerFinder, needs_fix, plan_file
from .jsonedit import locate_values
from .outbox import OutboxError, is_submitted, output_json_path, plan_target, remember_source, write_plan
from .regularfile import read_regular
from .render import plural
from .report import Result, Severity, Verdict, iso_utc, overall_exit_code
from .roots import load_root_store

NAMES_SHOWN = 5


def issuer_finder(config: Config) -> IssuerFinder:
    finder = IntermediateFinder(FetchPolicy.from_config(config))

    def find(cert: x509.Certificate) -> tuple[list[tuple[x509.Certificate, str]], list[str]]:
        candidates, errors = finder.issuers_for(cert)
        return [(c.cert, c.origin) for c in candidates], errors

    return find


def build_plans(
    files: list[str],
    config: Config,
    *,
    now: datetime,
    connection: str | None,
    offline: bool,
    outbox: str,
) -> tuple[list[FilePlan], list[Result], list[Result]]:
    """(plans, the results as the connections are now, the results once the planned bundles are in place).

    With `connection`, only that connection is planned, but every connection of each file holding it
    is verified and reported: the resubmission JSON carries the whole file. A file that could not be
    read far enough to tell whether it holds the connection is reported with its own errors."""
    from .cli import UsageError

    inputs = read_inputs(files, now=now)
    if connection:
        inputs.files = [f for f in inputs.files if f.names is None or connection in f.names]
        if not inputs.files:
            raise UsageError(f"no connection named {connection!r} in {', '.join(files)}")
    connections = selected(inputs, None)
    presented = presented_chains(connections, config, offline=offline)
    results = evaluate_pass(inputs, presented, now, config)
    store = load_root_store(config.regenerate_trusted_roots)
    finder = issuer_finder(config)
    # Cached chains (ChainLookup) are found by (host, port) and loaded on demand; probes by (host, port, sni).
    by_endpoint: Mapping[Any, Presented] = (
        presented if isinstance(presented, ChainLookup) else {(k[0], k[1]): pres for k, pres in presented.items()}
    )
    plans = []
    for connection_file in inputs.files:
        try:
            source_bytes, _ = read_regular(connection_file.path, MAX_CONNECTION_JSON_BYTES + 1)
        except (OSError, ValueError):
            source_bytes = b""
        if not connection_file.connections or not source_bytes:
            # Nothing to plan; the report still lists the file, with the errors that say why.
            plans.append(FilePlan(connection_file.path, source_bytes, None, None, (), ()))
            continue
        plans.append(
            plan_file(
                connection_file,
                source_bytes,
                results,
                inputs.bundles,
                by_endpoint,
                store,
                finder,
                now,
                lead=timedelta(seconds=config.regenerate_apply_at_lead),
                include_leaf=config.regenerate_include_leaf,
                outbox=outbox,
                output_json=output_json_path(outbox, connection_file.path),
                only=connection,
            )
        )
    after = results_after(plans, results, inputs, presented, now, config, outbox=outbox)
    return plans, results, after


def results_after(
    plans: list[FilePlan],
    results: list[Result],
    inputs: PassInputs,
    presented: Mapping[ProbeKey, Presented],
    now: datetime,
    config: Config,
    *,
    outbox: str,
) -> list[Result]:
    """The results as they will be once the planned bundles are in place: every connection a plan moves
    to a new bundle, and every connection sharing a bundle with one (whether a certificate is unrelated
    depends on who uses the bundle), is verified again against the same endpoint chains; the rest, and
    the connection files' own results, stay as they are."""
    moved: dict[tuple[str, str], str] = {}
    readings: dict[str, BundleReading] = {}
    for plan in plans:
        for bundle in plan.bundles:
            path = os.path.join(outbox, bundle.file_name)
            readings[path] = read_bundle_bytes(bundle.content, path)
            moved.update({(plan.source, name): path for name in bundle.connections if name in plan.server_certs})
    if not moved:
        return results
    files = []
    affected = set(readings)
    for connection_file in inputs.files:
        connections = []
        for conn in connection_file.connections:
            new_path = moved.get((conn.file, conn.name))
            if new_path is not None:
                affected.add(conn.server_cert_path)
                conn = replace(conn, server_cert_path=new_path)
            connections.append(conn)
        files.append(replace(connection_file, connections=tuple(connections)))
    only = {(c.file, c.name) for f in files for c in f.connections if c.server_cert_path in affected}
    bundles = LazyBundles(read_bundle_file)
    bundles.update(inputs.bundles)
    bundles.update(readings)
    again = evaluate_pass(PassInputs(files, bundles), presented, now, config, only=only)
    by_key = {(r.file, r.connection): r for r in again}
    return [by_key.get((r.file, r.connection), r) if r.connection is not None else r for r in results]


def run_fix(args: argparse.Namespace, config: Config) -> int:
    now = datetime.now(UTC)
    outbox = os.path.abspath(args.outbox or config.outbox)
    plans, results, after = build_plans(
        args.files, config, now=now, connection=args.connection, offline=args.offline, outbox=outbox
    )
    outputs = []
    write_failed = False
    for plan in plans:
        entry = _plan_json(plan, outbox)
        entry["unfixable"] = _unfixable(plan, results)
        entry["not_planned"] = _not_planned(plan, results, args.connection)
        entry["remaining"] = _remaining(plan, after)
        if args.write and plan.changes:
            try:
                outcome = write_plan(plan, outbox)
                if outcome.written:
                    remember_source(outcome.json_path, plan.source)
                entry["written"] = outcome.written
            except OutboxError as exc:
                entry["error"] = str(exc)
                write_failed = True
        outputs.append(entry)
    if args.format == "json":
        print(json.dumps({"files": outputs}, indent=2))
    else:
        print(_text(outputs, plans, outbox, args.write, after, write_failed, args.connection), end="")
    return _exit_code(plans, after, write_failed)


def _unfixable(plan: FilePlan, results: list[Result]) -> list[dict[str, str]]:
    """Broken connections no new bundle can mend, with the error that says why."""
    handled = set(plan.server_certs) | {c.connection for c in plan.failures}
    out: list[dict[str, str]] = []
    for result in results:
        if result.file == plan.source and result.connection is None:
            # The connection file's own errors (a broken connection is not in the plan at all).
            out.extend(
                {"connection": "(file)", "reason": p.message} for p in result.problems if p.severity.value == "error"
            )
            continue
        if result.file != plan.source or result.connection is None or result.connection in handled:
            continue
        if result.verdict.value != "error" or needs_fix(result):
            continue
        reason = next(p.message for p in result.problems if p.severity.value == "error")
        out.append({"connection": result.connection, "reason": reason})
    return out


def _not_planned(plan: FilePlan, results: list[Result], connection: str | None) -> list[str]:
    """With --connection: the file's other connections a new bundle could mend, left as they are."""
    if connection is None:
        return []
    return [
        r.connection
        for r in results
        if r.file == plan.source and r.connection is not None and r.connection != connection and needs_fix(r)
    ]


def _remaining(plan: FilePlan, after: list[Result]) -> list[dict[str, str | None]]:
    """Everything still wrong once the planned bundles are in place: each error and warning of every
    connection of the file, and of the file itself (errors first). It is what the summary counts and
    the exit code stands for; `failures` and `unfixable` say why an error could not be mended."""
    out: list[dict[str, str | None]] = []
    for severity in (Severity.ERROR, Severity.WARNING):
        for result in after:
            if result.file != plan.source:
                continue
            out.extend(
                {
                    "connection": result.connection,
                    "severity": problem.severity.value,
                    "code": problem.code.value,
                    "message": problem.message,
                }
                for problem in result.problems
                if problem.severity is severity
            )
    return out


def _exit_code(plans: list[FilePlan], after: list[Result], write_failed: bool) -> int:
    """What the connections will be once the planned bundles are in place (written or not): 2 when
    something stays broken (not fixable by a bundle, a fix failed, a write failed), 1 when warnings
    remain, else 0."""
    if write_failed or any(p.failures for p in plans):
        return 2
    return overall_exit_code(after)


def _plan_json(plan: FilePlan, outbox: str) -> dict[str, object]:
    output, due = plan_target(plan, outbox)  # the file that carries the plan, written now or before
    held = plan.changes and not due  # the outbox already holds this plan: its apply_at, no diff
    return {
        "source": plan.source,
        "output": output if plan.changes else None,
        # False: the outbox already holds this plan (pending or submitted); nothing would be written.
        "due": bool(plan.changes and due),
        "submitted": bool(held and is_submitted(output)),
        "apply_at": _held_apply_at(output) if held else plan.apply_at_text,
        "written": False,
        "moves_rollout_earlier": plan.moves_rollout_earlier,
        "connections": dict(plan.server_certs),
        "bundles": [
            {
                "replaces": b.source,
                "file": os.path.join(outbox, b.file_name),
                "connections": list(b.connections),
                "certificates": [
                    {"subject": c.subject, "sha256": c.sha256, "not_after": iso_utc(c.not_after)}
                    for c in b.certificates
                ],
                "added": [{"subject": c.subject, "origin": origin} for c, origin in b.added],
                "dropped": [{"subject": c.subject, "reason": reason} for c, reason in b.dropped],
            }
            for b in plan.bundles
        ],
        "failures": [c.problem.to_json() for c in plan.failures if c.problem],
        "diff": plan.json_diff(output) if plan.changes and not held else "",
    }


def _held_apply_at(json_path: str) -> str | None:
    """The apply_at of a resubmission JSON already in the outbox (None when it cannot be read)."""
    try:
        text = read_regular(json_path, MAX_CONNECTION_JSON_BYTES + 1)[0].decode("utf-8")
        span, _ = locate_values(text)
    except (OSError, ValueError):
        return None
    return None if span is None else str(json.loads(text[span.start : span.end]))


def _text(
    outputs: list[dict[str, object]],
    plans: list[FilePlan],
    outbox: str,
    write: bool,
    after: list[Result],
    write_failed: bool,
    connection: str | None = None,
) -> str:
    lines: list[str] = []
    for entry, plan in zip(outputs, plans, strict=True):
        lines.append(f"{plan.source}:")
        for failure in plan.failures:
            if failure.problem:
                lines.append(f"  error   {failure.problem.code.value}: {failure.problem.message}")
        unfixable = entry.get("unfixable", [])
        for item in unfixable if isinstance(unfixable, list) else []:
            lines.append(f"  not fixable by a bundle: {item['connection']}: {item['reason']}")
        not_planned = entry.get("not_planned")
        if isinstance(not_planned, list) and not_planned:
            lines.append(
                f"  left broken (only {connection} is fixed with --connection; the resubmission carries them "
                f"as they are): {_names(not_planned)}"
            )
        if not plan.changes:
            lines.append("  nothing to change" if not plan.failures else "  nothing written for this file")
            lines.extend(_remaining_text(entry.get("remaining")))
            continue
        for bundle in plan.bundles:
            lines.append(
                f"  new bundle {os.path.join(outbox, bundle.file_name)} "
                f"(replaces {bundle.source} for {', '.join(bundle.connections)}):"
            )
            added = {c.sha256: origin for c, origin in bundle.added}
            for cert in bundle.certificates:
                mark = f"  + added from {added[cert.sha256]}" if cert.sha256 in added else ""
                lines.append(f"    {cert.subject}  (expires {iso_utc(cert.not_after)[:10]}){mark}")
            for cert, reason in bundle.dropped:
                lines.append(f"    - dropped {cert.subject}: {reason}")
        if not entry.get("due"):
            state = "submitted" if entry.get("submitted") else "pending, not yet submitted"
            lines.append(f"  resubmission JSON {entry['output']}: already in the outbox with this plan ({state})")
            lines.append("  nothing to write: the bundles and connections above are what it carries")
            lines.extend(_remaining_text(entry.get("remaining")))
            continue
        lines.append(f"  resubmission JSON {entry['output']} (apply_at {entry['apply_at']}):")
        if plan.moves_rollout_earlier:
            lines.append(
                "  note: the source's apply_at is later than the new one: this moves the rollout earlier; "
                "edit apply_at in the resubmission if the planned window matters"
            )
        lines.extend("    " + line for line in str(entry["diff"]).split("\n")[:-1])
        if "error" in entry:
            lines.append(f"  error   {entry['error']}")
        elif write:
            lines.append("  written" if entry.get("written") else "  already in the outbox: nothing written")
        lines.extend(_remaining_text(entry.get("remaining")))
    if not write and any(entry.get("due") for entry in outputs):
        lines.append("dry run: nothing written; add --write to write these files")
    summary = _after_summary(after, any(p.changes for p in plans))
    lines.append(summary + ("; but writing failed (the error is above)" if write_failed else ""))
    return "\n".join(lines) + "\n"


def _remaining_text(remaining: object) -> list[str]:
    """One line per severity and code: "  remains: warning wrong_order (erp, crm)"."""
    grouped: dict[tuple[str, str], list[str]] = {}
    for item in remaining if isinstance(remaining, list) else []:
        grouped.setdefault((item["severity"], item["code"]), []).append(item["connection"] or "(file)")
    return [f"  remains: {severity} {code} ({_names(names)})" for (severity, code), names in grouped.items()]


def _names(names: list[str]) -> str:
    """ "a, b, c" with at most NAMES_SHOWN names, then "and N more"."""
    names = list(dict.fromkeys(names))
    shown = ", ".join(names[:NAMES_SHOWN])
    if len(names) > NAMES_SHOWN:
        shown += f" and {len(names) - NAMES_SHOWN} more"
    return shown


def _after_summary(after: list[Result], changes: bool) -> str:
    """The verdicts the exit code stands for."""
    checked = [r for r in after if r.connection is not None]
    counts = {v: sum(1 for r in checked if r.verdict is v) for v in Verdict}
    files = sum(1 for r in after if r.connection is None and r.verdict is not Verdict.OK)
    summary = (
        f"{'once these bundles are in place' if changes else 'as things are'}: "
        f"{plural(len(checked), 'connection')}: {counts[Verdict.OK]} ok, "
        f"{plural(counts[Verdict.WARNING], 'warning')}, {plural(counts[Verdict.ERROR], 'error')}"
    )
    if files:
        summary += f"; {plural(files, 'connection file')} with problems of {'its' if files == 1 else 'their'} own"
    return summary
