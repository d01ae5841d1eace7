"""Search latency at scale: p50/p95 of rare-word, common-word and two-word queries.

    python benchmarks/search.py                      # 100k messages, SQLite
    python benchmarks/search.py --messages 1000000   # 1M (loading takes a few minutes)
    python benchmarks/search.py --database postgresql

The archive is bulk-inserted straight into the tables (multilingual posts, see benchmarks/_data.py), the
index built in one statement, then queries go through passerelle.search.search_messages exactly as the web
archive calls it (a signed-in member, first page, newest first, snippets included). Goal: p95 <= 100 ms
at 1M messages.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import bulk_load
from _harness import Stopwatch, common_arguments, percentile, report, workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, messages=100_000)
    parser.add_argument("--queries", type=int, default=100, help="queries of each kind (default 100)")
    parser.add_argument("--order", choices=("date", "relevance"), default="date")
    args = parser.parse_args(argv)

    from passerelle.db import create_schema, make_engine, make_session_factory
    from passerelle.search import SearchQuery, search_messages

    with workspace(args.database, keep=args.keep, name="search") as ws:
        engine = make_engine(ws.url, sqlite_immediate=False)
        create_schema(engine)
        load = Stopwatch()
        ids, gen = bulk_load(engine, args.messages)
        load_seconds = load.elapsed
        factory = make_session_factory(engine)
        rows: list[tuple[str, str]] = [
            ("messages", f"{ids['messages']:,} in {ids['topics']:,} topics ({args.database})"),
            ("load + index", f"{load_seconds:.1f}s"),
        ]
        members = frozenset({ids["list_id"]})
        worst = 0.0
        for kind in ("rare", "common", "two"):
            queries = gen.queries(kind, args.queries)
            for q in queries[:5]:  # warm the caches the way a running server has them
                with factory() as session:
                    search_messages(session, SearchQuery(text=q, member_list_ids=members, order=args.order))
            timings: list[float] = []
            hits = 0
            for q in queries:
                started = time.perf_counter()
                with factory() as session:
                    page = search_messages(session, SearchQuery(text=q, member_list_ids=members, order=args.order))
                    hits += len(page.hits)
                timings.append((time.perf_counter() - started) * 1000)
            p95 = percentile(timings, 95)
            worst = max(worst, p95)
            label = {"rare": "rare word", "common": "common word", "two": "two words"}[kind]
            rows.append((f"{label:12s} p50 / p95", f"{percentile(timings, 50):7.1f} / {p95:7.1f} ms"
                         f"   (max {max(timings):.0f} ms, {hits / len(queries):.1f} hits/page, e.g. {queries[0]!r})"))
        rows.append(("verdict", f"worst p95 {worst:.1f} ms: {'OK' if worst <= 100 else 'MISSES'} the 100 ms goal"))
        engine.dispose()
    report(f"search, order={args.order}", rows, goal="p95 <= 100 ms at 1M messages (SQLite)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
