"""Personalised fan-out: outbox -> relay, in recipient deliveries per second.

    python benchmarks/fanout.py                          # 10 posts x 500 subscribers = 5000 copies, SQLite
    python benchmarks/fanout.py --messages 20 --subscribers 1000
    python benchmarks/fanout.py --database postgresql --deliverers 2

Posts are archived through the real worker (so the outbox rows are the ones production writes), then the
clock runs while gateway.delivery.deliver_pending sends every copy to a local aiosmtpd relay running in
its own process (standing in for Postfix). Every copy is personalised: its own SMTP transaction with a
VERP return path, List-Unsubscribe/-Post with the recipient's own token, Archived-At, List-* headers.
Goal: >= 500 deliveries/s (Mailman 3: ~66 personalised deliveries/s).
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import Generator
from _harness import common_arguments, overrides_for, report, settings_for, workspace


def _relay(port: int, ready: Any, counter: Any, sample: Any) -> None:
    """A minimal relay: accepts everything, counts recipients, keeps one message to check personalisation."""
    import asyncio

    from aiosmtpd.controller import Controller

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            with counter.get_lock():
                counter.value += len(envelope.rcpt_tos)
            if sample[0] == b"\x00":
                data = envelope.original_content or envelope.content
                data = data if isinstance(data, bytes) else data.encode()
                sample[: min(len(data), 8000)] = data[:8000]
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=port, decode_data=False)
    controller.start()
    ready.set()
    try:
        asyncio.run(asyncio.sleep(3600))
    finally:
        controller.stop()


def _deliverer(overrides: dict[str, Any], start: Any, results: Any) -> None:
    from gateway.delivery import deliver_pending
    from passerelle.config import load_settings
    from passerelle.db import make_engine, make_session_factory

    settings = load_settings(environ={}, overrides=overrides)
    engine = make_engine(settings.database.url, busy_timeout=settings.database.sqlite_busy_timeout)
    factory = make_session_factory(engine)
    start.wait()  # every deliverer is imported and connected: the clock starts now
    began = time.time()
    stats = deliver_pending(settings, factory, now=datetime.now(UTC) + timedelta(seconds=1))
    results.put((stats.sent, stats.failed, stats.retried, began, time.time()))
    engine.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, messages=10)
    parser.add_argument("--subscribers", type=int, default=500, help="instant subscribers (default 500)")
    parser.add_argument("--deliverers", type=int, default=1, help="delivery processes (default 1)")
    args = parser.parse_args(argv)

    from sqlalchemy import func, select

    from gateway.inbound import spool_message
    from gateway.worker import process_pending
    from passerelle.db import create_schema, make_engine, make_session_factory, session_scope
    from passerelle.models import Member, OutboxMessage, Subscription
    from tests.factories import make_list, make_member
    from tests.smtp_sink import free_port

    ctx = multiprocessing.get_context("spawn")
    relay_port = free_port()
    ready, counter, sample = ctx.Event(), ctx.Value("q", 0), ctx.Array("c", 8001)
    relay = ctx.Process(target=_relay, args=(relay_port, ready, counter, sample), daemon=True)
    relay.start()
    ready.wait(30)
    try:
        with workspace(args.database, keep=args.keep, name="fanout") as ws:
            overrides = overrides_for(ws, relay={"port": relay_port, "batch_size": 200})
            settings = settings_for(ws, relay={"port": relay_port, "batch_size": 200})
            engine = make_engine(ws.url)
            create_schema(engine)
            factory = make_session_factory(engine)
            now = datetime.now(UTC)
            with session_scope(factory) as session:
                ml = make_list(session, "forum")
                make_member(session, "author@members.example.org", name="Camille Martin", mailing_list=ml,
                            mode="nomail")
                session.flush()
                session.execute(Member.__table__.insert(), [
                    {"email": f"reader{i}@readers{i % 50}.example.org", "name": f"Reader {i}", "language": "fr",
                     "timezone": "Europe/Paris", "is_operator": False, "created_at": now}
                    for i in range(args.subscribers)])
                ids = session.scalars(select(Member.id).where(Member.email.like("reader%"))).all()
                session.execute(Subscription.__table__.insert(), [
                    {"member_id": i, "list_id": ml.id, "role": "member", "delivery_mode": "instant",
                     "status": "active", "accepted_posts": 0, "bounce_score": 0.0, "disabled_reason": "",
                     "created_at": now} for i in ids])
            gen = Generator(seed=5)
            for n in range(args.messages):
                raw = (f"From: Camille Martin <author@members.example.org>\r\nTo: forum@{settings.lists.domain}\r\n"
                       f"Subject: {gen.subject('fr')}\r\nDate: {format_datetime(now)}\r\n"
                       f"Message-ID: <fanout-{n}@members.example.org>\r\nMIME-Version: 1.0\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
                       + gen.body("fr").replace("\n", "\r\n") + "\r\n").encode()
                spool_message(factory, raw, source="smtp", envelope_from="author@members.example.org",
                              envelope_to=[f"forum@{settings.lists.domain}"], list_name="forum", now=now)
            process_pending(settings, factory, now=now, limit=args.messages + 10)
            with session_scope(factory) as session:
                queued = session.scalar(select(func.count()).select_from(OutboxMessage))
            expected = args.messages * args.subscribers
            if queued != expected:
                raise RuntimeError(f"expected {expected} outbox rows, the worker queued {queued}")
            engine.dispose()

            results, go = ctx.Queue(), ctx.Event()
            procs = [ctx.Process(target=_deliverer, args=(overrides, go, results)) for _ in range(args.deliverers)]
            for p in procs:
                p.start()
            time.sleep(3)  # interpreter start and imports are not part of the figure
            go.set()
            outcomes = [results.get(timeout=3600) for _ in procs]
            elapsed = max(o[4] for o in outcomes) - min(o[3] for o in outcomes)
            for p in procs:
                p.join()
            sent = sum(o[0] for o in outcomes)
            failed = sum(o[1] + o[2] for o in outcomes)
    finally:
        relay.terminate()
        relay.join()
    copy = bytes(sample[:]).rstrip(b"\0").decode("utf-8", "replace")
    personalised = all(h in copy for h in ("List-Unsubscribe:", "List-Unsubscribe-Post:", "Archived-At:", "List-Id:"))
    rate = sent / elapsed
    rows = [
        ("copies", f"{args.messages} posts x {args.subscribers} subscribers = {expected} ({args.database},"
                   f" {args.deliverers} deliverer process{'es' if args.deliverers > 1 else ''})"),
        ("delivered", f"{sent} sent, {failed} failed or deferred, relay counted {counter.value}"),
        ("personalised", "yes: List-Unsubscribe(+Post), Archived-At, List-Id, VERP" if personalised
         else "NO (headers missing in the copy the relay received)"),
        ("rate", f"{rate:.0f} deliveries/s ({elapsed:.1f}s)"),
        ("verdict", f"{'OK' if rate >= 500 else 'MISSES'} the 500 deliveries/s goal"),
    ]
    report("personalised fan-out to a local relay", rows, goal=">= 500 deliveries/s (Mailman 3: ~66/s)")
    return 0 if sent == expected else 1


if __name__ == "__main__":
    sys.exit(main())
