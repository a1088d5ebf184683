"""Render results for people (text) and for tools (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .report import Result, Severity, Verdict, iso_utc, sorted_problems

_MARK = {Verdict.OK: "OK   ", Verdict.WARNING: "WARN ", Verdict.ERROR: "ERROR"}


def results_json(results: Sequence[Result]) -> str:
    return json.dumps({"results": [r.to_json() for r in results]}, indent=2, ensure_ascii=False)


def plural(count: int, noun: str) -> str:
    """ "1 warning", "0 warnings", "2 errors" """
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def results_text(results: Sequence[Result]) -> str:
    blocks = [result_text(r) for r in results]
    # A connection file's own problems (invalid JSON, unusable connections) are results too, but
    # counted apart: "checked" counts what was verified.
    checked = [r for r in results if r.connection is not None or r.file is None]
    counts = {v: sum(1 for r in checked if r.verdict is v) for v in Verdict}
    summary = (
        f"{len(checked)} checked: {counts[Verdict.OK]} ok, "
        f"{plural(counts[Verdict.WARNING], 'warning')}, {plural(counts[Verdict.ERROR], 'error')}"
    )
    files = [r for r in results if r.connection is None and r.file is not None]
    if files:
        own = "its own" if len(files) == 1 else "their own"
        summary += f"; {plural(len(files), 'connection file')} with problems of {own} (above)"
    return "\n\n".join(blocks + [summary]) + "\n"


def result_text(result: Result) -> str:
    title = " > ".join(x for x in (result.file, result.connection) if x) or result.bundle or "bundle"
    head = f"{_MARK[result.verdict]} {title}"
    if result.endpoint:
        head += f"  ({result.endpoint})"
    lines = [head]
    if result.bundle and result.connection:
        lines.append(f"  bundle: {result.bundle}")
    problems = sorted_problems(result.problems)
    if problems:
        lines.append("  problems:")
        for p in problems:
            lines.append(f"    {p.severity.value:<7} {p.code.value}: {p.message}")
    if result.chain:
        lines.append("  chain:")
        for depth, entry in enumerate(result.chain):
            indent = "    " + "  " * depth + ("`- " if depth else "")
            where = "bundle, in a block OpenSSL and the JVM would not read" if entry.unread else entry.source.value
            lines.append(
                f"{indent}{entry.role.value}: {entry.subject}  "
                f"(expires {iso_utc(entry.not_after)[:10]}, from {where}, "
                f"sha256 {entry.sha256[:16]})"
            )
    for note in result.notes:
        if not note.startswith("path: "):  # the chain above draws the path
            lines.append(f"  note: {note}")
    if result.verdict is Verdict.OK and not any(p.severity is Severity.WARNING for p in result.problems):
        lines.append("  the bundle alone carries the endpoint's certificate to a trusted root")
    return "\n".join(lines)
