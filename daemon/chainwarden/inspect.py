"""`chainwarden inspect`: one line per block of a bundle, every block accounted for."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from .bundle import read_bundle_file
from .certinfo import describe
from .chain import is_self_signed
from .report import iso_utc

EXIT_BY_SEVERITY = {"info": 0, "warning": 1, "error": 2}


def inspect_bundle(path: str, output_format: str = "text", *, now: datetime | None = None) -> int:
    now = now or datetime.now(UTC)
    reading = read_bundle_file(path)
    rows = []
    for block in reading.blocks:
        row: dict[str, object] = {
            "block": block.index,
            "line": block.line,
            "kind": block.kind,
            "label": block.label,
        }
        if block.cert is not None:
            info = describe(block.cert)
            role = "leaf" if info.is_end_entity else "root" if is_self_signed(info) else "intermediate"
            row.update(
                role=role,
                subject=info.subject,
                issuer=info.issuer,
                not_after=iso_utc(info.not_after),
                validity="expired" if now > info.not_after else "not yet valid" if now < info.not_before else "valid",
                sha256=info.sha256,
                consumer_readable=block.consumer_readable,
            )
        if block.error:
            row["error"] = block.error
        rows.append(row)
    problems = [p.to_json() for p in reading.problems]
    if output_format == "json":
        print(
            json.dumps({"bundle": path, "encoding": reading.encoding, "blocks": rows, "problems": problems}, indent=2)
        )
    else:
        print(f"{path}: {reading.encoding}, {len(reading.blocks)} block(s)")
        for row in rows:
            print(_text_row(row))
        for problem in reading.problems:
            print(f"  {problem.severity.value}: {problem.code.value}: {problem.message}")
    return max((EXIT_BY_SEVERITY[p.severity.value] for p in reading.problems), default=0)


def _text_row(row: dict[str, object]) -> str:
    where = f"block {row['block']}" + (f" (line {row['line']})" if row.get("line") else "")
    if "subject" in row:
        hidden = "" if row.get("consumer_readable", True) else "  [not read by OpenSSL/JVM]"
        verb = {"expired": "EXPIRED", "not yet valid": "NOT YET VALID, expires"}.get(str(row["validity"]), "expires")
        return (
            f"  {where}: {row['role']:<12} {row['subject']}\n"
            f"      issuer {row['issuer']}, {verb} {row['not_after']}, sha256 {str(row['sha256'])[:16]}{hidden}"
        )
    if row.get("kind") in ("private_key", "encrypted_private_key"):
        return f"  {where}: {row['kind']} (contents not shown)"
    return f"  {where}: {row.get('kind')}: {row.get('error', 'not a certificate')}"
