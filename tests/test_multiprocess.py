"""Several worker processes on one database: every message archived once, every copy delivered once.

Real OS processes (multiprocessing, spawn) each run the gateway's worker and deliverer in a loop against
the same spool and outbox, as several `passerelle` processes would in production: three on PostgreSQL
(rows claimed with FOR UPDATE SKIP LOCKED), two on SQLite (one writer at a time, BEGIN IMMEDIATE). The
relay is a real SMTP sink in the test process; what it received is the ground truth.
"""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from gateway.inbound import spool_message
from passerelle.config import load_settings
from passerelle.db import create_schema, make_engine, make_session_factory, session_scope
from passerelle.models import InboundMessage, Message, OutboxMessage, Topic
from tests.factories import make_list, make_member
from tests.smtp_sink import SmtpSink

SUBSCRIBERS = [f"reader{i}@members.example.org" for i in range(5)]
AUTHORS = [f"author{i}@members.example.org" for i in range(4)]


def _overrides(var_dir: Path, url: str, relay_port: int) -> dict[str, dict[str, Any]]:
    return {
        "paths": {"var_dir": str(var_dir)},
        "database": {"url": url},
        "site": {"base_url": "http://archive.test"},
        "lists": {"domain": "forum.test"},
        # Small batches so that the processes interleave instead of one taking everything.
        "relay": {"host": "127.0.0.1", "port": relay_port, "retry_initial_seconds": 1, "batch_size": 10},
        "smtp": {"port": 0},
        "dmarc": {"enabled": False},
        "web": {"port": 0},
    }


def _worker_main(overrides: dict[str, dict[str, Any]], deadline: float, results: Any) -> None:
    """One worker process: process the spool and deliver the outbox until both are drained."""
    from gateway.delivery import deliver_pending
    from gateway.worker import process_pending

    settings = load_settings(environ={}, overrides=overrides)
    engine = make_engine(settings.database.url)
    factory = make_session_factory(engine)
    processed = sent = 0
    idle_rounds = 0
    try:
        while time.time() < deadline:
            now = datetime.now(UTC)
            done = process_pending(settings, factory, now=now, limit=5)
            stats = deliver_pending(settings, factory, now=now, max_batches=1)
            did = _count(done) + stats.claimed
            processed += _count(done)
            sent += stats.sent
            if did:
                idle_rounds = 0
                continue
            with session_scope(factory) as session:
                left = session.scalar(
                    select(func.count()).select_from(InboundMessage).where(
                        InboundMessage.status.in_(("new", "processing")))
                ) + session.scalar(
                    select(func.count()).select_from(OutboxMessage).where(
                        OutboxMessage.status.in_(("pending", "sending")))
                )
            idle_rounds += 1
            if not left and idle_rounds > 3:
                break
            time.sleep(0.05)
        results.put(("ok", processed, sent))
    except BaseException as exc:
        results.put(("error", repr(exc), 0))
        raise
    finally:
        engine.dispose()


def _count(value: Any) -> int:
    """process_pending's result as a number of rows handled (an int, a sequence or a stats object)."""
    if isinstance(value, int):
        return value
    if hasattr(value, "__len__"):
        return len(value)
    for name in ("processed", "handled", "claimed"):
        if hasattr(value, name):
            return int(getattr(value, name))
    raise TypeError(f"cannot count what process_pending returned: {value!r}")


def _parent(n: int) -> int | None:
    # One in three posts answers an earlier one (sometimes itself an answer), often one still in the spool:
    # the workers race on thread placement.
    return n - 1 - (n % 5) if n % 3 == 2 and n >= 5 else None


def _chain(n: int) -> list[int]:
    """Ancestors of post n, oldest first (what real clients put in References)."""
    chain: list[int] = []
    parent = _parent(n)
    while parent is not None:
        chain.insert(0, parent)
        parent = _parent(parent)
    return chain


def _raw(n: int, *, author: str, parent: int | None, date: datetime) -> bytes:
    headers = [
        f"From: Author {author.split('@')[0]} <{author}>",
        "To: forum@forum.test",
        f"Subject: {'Re: ' if parent is not None else ''}Obstacle {parent if parent is not None else n}",
        f"Date: {format_datetime(date)}",
        f"Message-ID: <mp-{n}@members.example.org>",
    ]
    if parent is not None:
        references = " ".join(f"<mp-{a}@members.example.org>" for a in _chain(n))
        headers += [f"In-Reply-To: <mp-{parent}@members.example.org>", f"References: {references}"]
    body = f"Message {n}: les travailleurs frontaliers et la fiscalité, réponse {n}.\n"
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode()


def _arrange(engine: Engine, count: int, now: datetime) -> None:
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        ml = make_list(session, "forum")
        for address in SUBSCRIBERS:
            make_member(session, address, mailing_list=ml, mode="instant")
        # Authors are members who take no mail: each post then has exactly the 5 readers as recipients.
        for address in AUTHORS:
            make_member(session, address, mailing_list=ml, mode="nomail")
    for n in range(count):
        raw = _raw(n, author=AUTHORS[n % len(AUTHORS)], parent=_parent(n), date=now + timedelta(seconds=n))
        spool_message(factory, raw, source="smtp", envelope_from=AUTHORS[n % len(AUTHORS)],
                      envelope_to=["forum@forum.test"], list_name="forum", now=now)


def _run_workers(overrides: dict[str, dict[str, Any]], processes: int, timeout: float) -> list[tuple]:
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    deadline = time.time() + timeout
    procs = [ctx.Process(target=_worker_main, args=(overrides, deadline, results), name=f"worker-{i}")
             for i in range(processes)]
    for p in procs:
        p.start()
    outcomes = []
    try:
        for _ in procs:
            outcomes.append(results.get(timeout=timeout + 30))
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()
                p.join()
    return outcomes


def _check(engine: Engine, sink: SmtpSink, count: int, outcomes: list[tuple], processes: int) -> None:
    assert all(o[0] == "ok" for o in outcomes), outcomes
    factory = make_session_factory(engine)
    with session_scope(factory) as session:
        statuses = Counter(session.scalars(select(InboundMessage.status)))
        assert statuses == {"done": count}, statuses
        ids = list(session.scalars(select(Message.message_id)))
        assert sorted(ids) == sorted(f"mp-{n}@members.example.org" for n in range(count))
        outbox = Counter(session.scalars(select(OutboxMessage.status)))
        assert outbox == {"sent": count * len(SUBSCRIBERS)}, outbox
        # Races on threading must not split threads: a reply is in its parent's topic.
        topic_of = {r.message_id: r.topic_id for r in session.execute(select(Message.message_id, Message.topic_id))}
        split = {
            n: (topic_of[f"mp-{n}@members.example.org"], topic_of[f"mp-{_chain(n)[0]}@members.example.org"])
            for n in range(count) if _parent(n) is not None
            and topic_of[f"mp-{n}@members.example.org"] != topic_of[f"mp-{_chain(n)[0]}@members.example.org"]
        }
        assert not split, f"replies not in their thread's topic (post: (its topic, root's topic)): {split}"
        roots = sum(1 for n in range(count) if _parent(n) is None)
        assert session.scalar(select(func.count()).select_from(Topic)) == roots
    deliveries = Counter()
    for rcpt, received in sink.deliveries():
        deliveries[(rcpt.lower(), received.message["Message-ID"])] += 1
    expected = {(r, f"<mp-{n}@members.example.org>") for r in SUBSCRIBERS for n in range(count)}
    assert set(deliveries) == expected
    twice = {k: v for k, v in deliveries.items() if v != 1}
    assert not twice, f"delivered more than once: {twice}"
    # The work was really shared between the processes.
    assert sum(1 for o in outcomes if o[1] > 0) >= 2, outcomes
    assert sum(o[1] for o in outcomes) >= count


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as s:
        yield s


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    from tests.pg_cluster import fresh_database

    engine = make_engine(fresh_database(postgres_url, "multiprocess"))
    create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'multi.db'}")
    create_schema(engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


@pytest.mark.postgres
@pytest.mark.slow
def test_three_worker_processes_on_postgresql(pg_engine: Engine, sink: SmtpSink, tmp_path: Path) -> None:
    count = 150
    _arrange(pg_engine, count, datetime.now(UTC) - timedelta(minutes=5))
    outcomes = _run_workers(_overrides(tmp_path / "var", _url(pg_engine), sink.port), processes=3, timeout=120)
    sink.wait_for(count * len(SUBSCRIBERS), timeout=10)
    _check(pg_engine, sink, count, outcomes, 3)


@pytest.mark.slow
def test_two_worker_processes_on_sqlite(sqlite_engine: Engine, sink: SmtpSink, tmp_path: Path) -> None:
    count = 60
    _arrange(sqlite_engine, count, datetime.now(UTC) - timedelta(minutes=5))
    outcomes = _run_workers(_overrides(tmp_path / "var", _url(sqlite_engine), sink.port), processes=2, timeout=120)
    sink.wait_for(count * len(SUBSCRIBERS), timeout=10)
    _check(sqlite_engine, sink, count, outcomes, 2)
