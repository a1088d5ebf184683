"""`chainwarden fix`: show (or, with --write, write) completed bundles and the resubmission JSON."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509

from .aia import FetchPolicy, IntermediateFinder
from .checker import ChainLookup, evaluate_pass, presented_chains, read_inputs, selected
from .config import Config
from .connections import MAX_CONNECTION_JSON_BYTES
from .engine import Presented
from .fixer import FilePlan, IssuerFinder, needs_fix, plan_file
from .outbox import OutboxError, output_json_path, remember_source, write_plan
from .regularfile import read_regular
from .report import Result, iso_utc
from .roots import load_root_store


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
) -> tuple[list[FilePlan], list[Result]]:
    from .cli import UsageError

    inputs = read_inputs(files, now=now)
    connections = selected(inputs, connection)
    if connection and not connections:
        raise UsageError(f"no connection named {connection!r} in {', '.join(files)}")
    presented = presented_chains(connections, config, offline=offline)
    results = evaluate_pass(inputs, presented, now, config, connection_name=connection)
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
    return plans, results


def run_fix(args: argparse.Namespace, config: Config) -> int:
    now = datetime.now(UTC)
    outbox = os.path.abspath(args.outbox or config.outbox)
    plans, results = build_plans(
        args.files, config, now=now, connection=args.connection, offline=args.offline, outbox=outbox
    )
    outputs = []
    write_failed = False
    for plan in plans:
        entry = _plan_json(plan, outbox)
        entry["unfixable"] = _unfixable(plan, results)
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
        print(_text(outputs, plans, outbox, args.write), end="")
    return _exit_code(plans, results, write_failed)


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


def _exit_code(plans: list[FilePlan], results: list[Result], write_failed: bool) -> int:
    if write_failed or any(p.failures for p in plans):
        return 2
    fixed = {(p.source, name) for p in plans for name in p.server_certs}
    remaining = [r for r in results if (r.file, r.connection) not in fixed]
    if any(r.verdict.value == "error" for r in remaining):
        return 2
    if any(r.verdict.value == "warning" for r in remaining):
        return 1
    return 0


def _plan_json(plan: FilePlan, outbox: str) -> dict[str, object]:
    output = output_json_path(outbox, plan.source)
    return {
        "source": plan.source,
        "output": output if plan.changes else None,
        "apply_at": plan.apply_at_text,
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
        "diff": plan.json_diff(output) if plan.changes else "",
    }


def _text(outputs: list[dict[str, object]], plans: list[FilePlan], outbox: str, write: bool) -> str:
    lines: list[str] = []
    for entry, plan in zip(outputs, plans, strict=True):
        lines.append(f"{plan.source}:")
        for failure in plan.failures:
            if failure.problem:
                lines.append(f"  error   {failure.problem.code.value}: {failure.problem.message}")
        unfixable = entry.get("unfixable", [])
        for item in unfixable if isinstance(unfixable, list) else []:
            lines.append(f"  not fixable by a bundle: {item['connection']}: {item['reason']}")
        if not plan.changes:
            lines.append("  nothing to change" if not plan.failures else "  nothing written for this file")
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
        lines.append(f"  resubmission JSON {entry['output']} (apply_at {entry['apply_at']}):")
        if plan.moves_rollout_earlier:
            lines.append(
                "  note: the source's apply_at is later than the new one: this moves the rollout earlier; "
                "edit apply_at in the resubmission if the planned window matters"
            )
        lines.extend("    " + line for line in str(entry["diff"]).splitlines())
        if "error" in entry:
            lines.append(f"  error   {entry['error']}")
        elif write:
            lines.append("  written" if entry.get("written") else "  already in the outbox: nothing written")
    if not write and any(p.changes for p in plans):
        lines.append("dry run: nothing written; add --write to write these files")
    return "\n".join(lines) + "\n"
