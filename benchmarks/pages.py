"""Web archive latency: thread page and topic list p50/p95 with 4 concurrent clients.

    python benchmarks/pages.py                      # 50k messages, 4 clients, SQLite
    python benchmarks/pages.py --messages 200000 --clients 8 --requests 300

The real Flask app (archive_web.create_app) is served by the same threaded WSGI server `passerelle serve`
uses, in its own process, over an archive bulk-loaded into the tables (12 categories, ~4 posts per topic,
multilingual text). Each client is a separate process with a keep-alive HTTP connection, alternating
thread pages (recent topics more often, as readers do) and topic lists (all topics, a category, page 2).
Latency is measured by the clients, from request to last byte. Goal: p95 <= 25 ms.
"""

from __future__ import annotations

import argparse
import http.client
import logging
import multiprocessing
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import bulk_load
from _harness import common_arguments, overrides_for, percentile, report, workspace


def _serve(overrides: dict[str, Any], port: int, ready: Any) -> None:
    from werkzeug.serving import make_server

    from archive_web import create_app
    from passerelle.config import load_settings

    settings = load_settings(environ={}, overrides=overrides)
    app = create_app(settings)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request would flood the output
    server = make_server("127.0.0.1", port, app, threaded=True)
    ready.set()
    server.serve_forever()


def _client(port: int, paths: list[tuple[str, str]], start: Any, results: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    timings: list[tuple[str, float, int]] = []
    start.wait()
    for kind, path in paths:
        began = time.perf_counter()
        try:
            conn.request("GET", path, headers={"Accept-Language": "fr"})
            response = conn.getresponse()
            response.read()
            status = response.status
        except (http.client.HTTPException, OSError):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", path, headers={"Accept-Language": "fr"})
            response = conn.getresponse()
            response.read()
            status = response.status
        timings.append((kind, (time.perf_counter() - began) * 1000, status))
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.close()
    results.put(timings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, messages=50_000)
    parser.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    parser.add_argument("--requests", type=int, default=250, help="requests per client (default 250)")
    args = parser.parse_args(argv)

    from sqlalchemy import select

    from passerelle.db import create_schema, make_engine
    from passerelle.models import Category, Topic
    from tests.smtp_sink import free_port

    with workspace(args.database, keep=args.keep, name="pages") as ws:
        engine = make_engine(ws.url)
        create_schema(engine)
        ids, _gen = bulk_load(engine, args.messages)
        with engine.connect() as conn:
            topic_ids = conn.execute(select(Topic.id).order_by(Topic.last_post_at.desc())).scalars().all()
            category_ids = conn.execute(select(Category.id)).scalars().all()
        engine.dispose()

        rng = random.Random(11)

        def plan() -> list[tuple[str, str]]:
            out = []
            for i in range(args.requests):
                if i % 2 == 0:
                    # Readers mostly open recent topics; sometimes an old one from a search or a link.
                    index = int(rng.expovariate(1 / 200)) if rng.random() < 0.8 else rng.randrange(len(topic_ids))
                    out.append(("thread page", f"/t/{topic_ids[min(index, len(topic_ids) - 1)]}"))
                else:
                    out.append(("topic list", rng.choice(
                        ["/topics", "/topics?page=2", f"/c/{rng.choice(category_ids)}", "/"])))
            return out

        ctx = multiprocessing.get_context("spawn")
        port = free_port()
        ready = ctx.Event()
        server = ctx.Process(target=_serve, args=(overrides_for(ws), port, ready), daemon=True)
        server.start()
        try:
            if not ready.wait(60):
                raise RuntimeError("the web app did not start")
            # Warm-up: templates compiled, caches filled, as on a server that has been running.
            warm, go = ctx.Queue(), ctx.Event()
            go.set()
            warmer = ctx.Process(target=_client, args=(port, plan()[:40], go, warm))
            warmer.start()
            warm.get(timeout=300)
            warmer.join()
            start, results = ctx.Event(), ctx.Queue()
            clients = [ctx.Process(target=_client, args=(port, plan(), start, results)) for _ in range(args.clients)]
            for c in clients:
                c.start()
            time.sleep(2)
            began = time.perf_counter()
            start.set()
            timings = [t for _ in clients for t in results.get(timeout=1800)]
            wall = time.perf_counter() - began
            for c in clients:
                c.join()
        finally:
            server.terminate()
            server.join()
    errors = [t for t in timings if t[2] != 200]
    rows = [("archive", f"{ids['messages']:,} messages in {ids['topics']:,} topics ({args.database}),"
                        f" {args.clients} concurrent clients")]
    worst = 0.0
    for kind in ("thread page", "topic list"):
        values = [ms for k, ms, status in timings if k == kind and status == 200]
        p95 = percentile(values, 95)
        worst = max(worst, p95)
        rows.append((f"{kind} p50 / p95", f"{percentile(values, 50):6.1f} / {p95:6.1f} ms  (max {max(values):.0f} ms,"
                                            f" {len(values)} requests)"))
    rows.append(("throughput", f"{len(timings) / wall:.0f} pages/s"))
    if errors:
        rows.append(("errors", f"{len(errors)} responses not 200, e.g. {errors[0]}"))
    rows.append(("verdict", f"worst p95 {worst:.1f} ms: {'OK' if worst <= 25 and not errors else 'MISSES'}"
                            " the 25 ms goal"))
    report("web archive pages", rows, goal="p95 <= 25 ms with 4 concurrent clients")
    return 0 if not errors else 1


if __name__ == "__main__":
    sys.exit(main())
