"""Logging to stderr: plain timestamps on a terminal, syslog priority prefixes (no timestamps) under journald."""

from __future__ import annotations

import logging
import os
import sys

_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


class JournalFormatter(logging.Formatter):
    """`<N>message`: journald reads the priority from the prefix and adds its own timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        priority = _PRIORITY.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in text.splitlines())


def under_journald() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM")) or bool(os.environ.get("INVOCATION_ID"))


def setup_logging(level: str = "info") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if under_journald():
        handler.setFormatter(JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter (scheduler runs, watchdog internals, time zone lookups) stays out of the operator's log.
    for noisy in ("apscheduler", "watchdog", "tzlocal"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
