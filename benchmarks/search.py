"""Search latency at scale: p50/p95 of rare-word, common-word and two-word queries.

    python benchmarks/search.py                      # 100k messages, SQLite
    python benchmarks/search.py --messages 1000000   # 1M (loading takes a few minutes)
    python benchmarks/search.py --database postgresql
    python benchmarks/search.py --messages 1000000 --keep     # keeps the archive and its queries
    python benchmarks/search.py --reuse /tmp/passerelle-search-XXXX   # measures a kept SQLite archive again

The archive is bulk-inserted straight into the tables (multilingual posts, see benchmarks/_data.py), the
index built in one statement, then queries go through passerelle.search.search_messages exactly as the web
archive calls it (a signed-in member, first page, newest first, snippets included). Goal: p95 <= 100 ms
at 1M messages.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import bulk_load
from _harness import Stopwatch, common_arguments, percentile, report, workspace


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, messages=100_000)
    parser.add_argument("--queries", type=int, default=100, help="queries of each kind (default 100)")
    parser.add_argument("--order", choices=("date", "relevance"), default="date")
    parser.add_argument("--reuse", type=Path, metavar="DIR",
                        help="a dir kept by an earlier SQLite run with --keep: its archive and queries are reused")
    args = parser.parse_args(argv)
    if args.reuse:
        if args.database != "sqlite":
            parser.error("--reuse measures a kept SQLite archive (a PostgreSQL cluster is not kept running)")
        if not (args.reuse / QUERIES_FILE).is_file() or not (args.reuse / "passerelle.db").is_file():
            parser.error(f"{args.reuse} is not a dir kept by a SQLite run with --keep (no {QUERIES_FILE})")
        return _measure_kept(args)

    from passerelle.db import create_schema, make_engine, make_session_factory

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
        queries = {kind: gen.queries(kind, args.queries) for kind in KINDS}
        if args.keep and args.database == "sqlite":
            (ws.path / QUERIES_FILE).write_text(json.dumps({"ids": ids, "queries": queries}))
        rows += _measure(factory, frozenset({ids["list_id"]}), queries, args.order)
        engine.dispose()
    report(f"search, order={args.order}", rows, goal="p95 <= 100 ms at 1M messages (SQLite)")
    return 0


KINDS = ("rare", "common", "two")
QUERIES_FILE = "queries.json"


def _measure_kept(args: argparse.Namespace) -> int:
    from passerelle.db import make_engine, make_session_factory

    saved = json.loads((args.reuse / QUERIES_FILE).read_text())
    ids = saved["ids"]
    engine = make_engine(f"sqlite:///{args.reuse / 'passerelle.db'}", sqlite_immediate=False)
    rows: list[tuple[str, str]] = [("messages", f"{ids['messages']:,} in {ids['topics']:,} topics (sqlite, kept)")]
    queries = {kind: saved["queries"][kind][: args.queries] for kind in KINDS}
    rows += _measure(make_session_factory(engine), frozenset({ids["list_id"]}), queries, args.order)
    engine.dispose()
    report(f"search, order={args.order}", rows, goal="p95 <= 100 ms at 1M messages (SQLite)")
    return 0


def _measure(factory: Any, members: frozenset[int], all_queries: dict[str, list[str]],
             order: str) -> list[tuple[str, str]]:
    from passerelle.search import SearchQuery, search_messages

    rows: list[tuple[str, str]] = []
    worst = 0.0
    for kind in KINDS:
        queries = all_queries[kind]
        for q in queries[:5]:  # warm the caches the way a running server has them
            with factory() as session:
                search_messages(session, SearchQuery(text=q, member_list_ids=members, order=order))
        timings: list[float] = []
        hits = 0
        for q in queries:
            started = time.perf_counter()
            with factory() as session:
                page = search_messages(session, SearchQuery(text=q, member_list_ids=members, order=order))
                hits += len(page.hits)
            timings.append((time.perf_counter() - started) * 1000)
        p95 = percentile(timings, 95)
        worst = max(worst, p95)
        label = {"rare": "rare word", "common": "common word", "two": "two words"}[kind]
        rows.append((f"{label:12s} p50 / p95", f"{percentile(timings, 50):7.1f} / {p95:7.1f} ms"
                     f"   (max {max(timings):.0f} ms, {hits / len(queries):.1f} hits/page, e.g. {queries[0]!r})"))
    rows.append(("verdict", f"worst p95 {worst:.1f} ms: {'OK' if worst <= 100 else 'MISSES'} the 100 ms goal"))
    return rows


if __name__ == "__main__":
    sys.exit(main())
