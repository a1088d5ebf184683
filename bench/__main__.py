"""`python -m bench [--quick] [--n 1000,10000]`: measure the performance figures on this machine and print a table.

Full run (`make bench`, about 3 minutes on 2 cores, plus about 15 seconds the first time to generate the corpus):
figure 1 at N = 1,000 and 10,000; figures 2-4 on a daemon watching N = 10,000 connections (200
changes, 60 s idle); figure 5 with K = 500 endpoints. `--quick` is a smoke run: N = 1,000 only,
40 changes, 10 s idle, K = 100. No target is asserted: the table says whether each is met.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import daemonrun, figures, probing
from .corpus import corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: N=1000, 40 changes, 10 s idle, K=100")
    parser.add_argument("--n", help="comma-separated corpus sizes for figure 1 (default 1000,10000)")
    parser.add_argument("--figures", default="1,2,3,4,5", help="which figures to measure (default all)")
    parser.add_argument("--changes", type=int, help="figure 2: bundle replacements (default 200)")
    parser.add_argument("--idle", type=float, help="figure 4: idle seconds (default 60)")
    parser.add_argument("--k", type=int, help="figure 5: TLS endpoints (default 500)")
    parser.add_argument("--repeats", type=int, help="figure 1: fresh-process runs, median kept (default 5)")
    parser.add_argument("--regenerate", action="store_true", help="generate the corpus again even if cached")
    parser.add_argument("--json", type=Path, help="also write every raw measurement to this file")
    args = parser.parse_args(argv)

    quick = args.quick
    sizes = [int(x) for x in (args.n or ("1000" if quick else "1000,10000")).split(",")]
    changes = args.changes or (40 if quick else 200)
    idle = args.idle or (10.0 if quick else 60.0)
    k = args.k or (100 if quick else 500)
    repeats = args.repeats or (1 if quick else 5)
    wanted = {int(x) for x in args.figures.split(",")}
    daemon_n = max(sizes)

    def log(text: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)

    started = time.monotonic()
    described = figures.machine()
    rows: list[figures.Row] = []
    raw: dict[str, object] = {"machine": described}
    corpora = {n: corpus(n, log=log, regenerate=args.regenerate) for n in sizes}

    if 1 in wanted:
        offline = []
        for n in sizes:
            fig = figures.offline(corpora[n], openssl_sample=min(300, n), repeats=repeats, log=log)
            offline.append(fig.summary())
            rows += figures.offline_rows(fig, targets=n >= 10_000)
        raw["offline"] = offline
    if wanted & {2, 3, 4}:
        result = daemonrun.run(corpora[daemon_n], changes=changes, idle_seconds=idle, scrapes=30, log=log)
        summary = result.summary()
        raw["daemon"] = summary
        rows += [row for row in figures.daemon_rows(summary) if int(row[0][0]) in wanted]
    if 5 in wanted:
        probe = probing.run(k, openssl_sample=k if not quick else min(k, 50), log=log)
        raw["probe"] = probe.summary()
        rows += figures.probe_rows(probe.summary())

    took = time.monotonic() - started
    print(f"\nchainwarden benchmark{' (--quick)' if quick else ''}: {took / 60:.1f} minutes\n")
    for key, value in described.items():
        print(f"- {key}: {value}")
    print()
    print(figures.table(rows))
    print(
        "\nFigure 1 runs each pass in a fresh process (imports excluded); the floor is a bare loop that only "
        "loads the same certificates and checks each signature once. openssl loops are timed on a sample "
        "where noted and extrapolated linearly. Ratio: 'x floor' and '% of the target' are better when "
        "lower, 'x faster' when higher."
    )
    if args.json:
        args.json.write_text(json.dumps(raw, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
