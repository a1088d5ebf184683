"""Garbage-collector thresholds for a process that keeps a large heap of long-lived, acyclic objects."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 10_000
OLD_THRESHOLD = 100


def tune_collector() -> None:
    """Collect the youngest generation every 10,000 net allocations instead of Python's 700, and the
    oldest after 100 middle collections instead of 10.

    A verification pass allocates hundreds of thousands of objects (facts, readings, results) that
    live until the next pass and form no cycles. With the default thresholds the collector rescans
    them again and again, finding nothing: a tenth of a pass at 10,000 connections, and a full
    collection of about 0.1 s ends each pass. Young cycles are still collected within 10,000
    allocations; only cycles that survive into the oldest generation wait longer. A threshold set
    lower on purpose (or 0, collector off) is kept.
    """
    young, middle, old = gc.get_threshold()
    if 0 < young < YOUNG_THRESHOLD:
        gc.set_threshold(YOUNG_THRESHOLD, middle, max(old, OLD_THRESHOLD))


@contextmanager
def frozen_after() -> Iterator[None]:
    """The collector off for one verification pass, and what is alive at its end moved to the
    permanent generation (gc.freeze), never to be scanned again.

    For a first pass: it creates a million objects that form no cycles and live as long as the
    process (facts, readings, results); a collection during the pass, or the one that ages them all
    into the oldest generation after it, only rescans them (about 0.1 s at 10,000 connections).
    Whatever cyclic garbage that one pass leaves (the tests check that it leaves none) is never freed.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if was_enabled:
            gc.enable()
