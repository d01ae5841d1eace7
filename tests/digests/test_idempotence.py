"""A digest is never sent twice nor skipped: two schedulers at once, a crash mid-way, a restart."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

import digests.jobs
from digests.jobs import send_due_digests
from passerelle.config import Settings
from passerelle.db import make_engine, make_session_factory
from passerelle.models import DigestRun, OutboxMessage
from tests.digests.builders import make_topic
from tests.factories import make_list, make_member

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 3, 6, 30, tzinfo=UTC)  # after 07:00 in Paris on the 3rd


@pytest.fixture
def forum(db: Session) -> list[int]:
    ml = make_list(db, now=T0)
    author, _ = make_member(db, "author@example.org", mailing_list=ml, now=T0)
    sub_ids = []
    for i in range(12):
        _, sub = make_member(db, f"reader{i}@example.org", mailing_list=ml, mode="daily", now=T0,
                             language=("fr", "en", "de", "it", "es")[i % 5])
        sub_ids.append(sub.id)
    make_topic(db, ml, "Navettes transfrontalières", at=datetime(2026, 11, 2, 10, tzinfo=UTC), author=author)
    db.commit()
    return sub_ids


def _counts(factory: sessionmaker[Session]) -> tuple[int, int]:
    with factory() as s:
        runs = s.scalar(select(func.count(DigestRun.id)))
        rows = s.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.kind == "digest"))
        return int(runs or 0), int(rows or 0)


def test_two_schedulers_at_once_send_each_digest_once(forum: list[int], settings: Settings,
                                                       session_factory: sessionmaker[Session]) -> None:
    engines = [make_engine(settings.database.url) for _ in range(2)]
    results = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def scheduler(index: int) -> None:
        try:
            barrier.wait()
            results.append(send_due_digests(settings, make_session_factory(engines[index]), now=DUE))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=scheduler, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for engine in engines:
        engine.dispose()
    assert not errors, errors
    assert sum(r.sent for r in results) == len(forum)
    # The second one found each digest done, either before it started or when it tried to do it.
    assert all(r.failed == 0 for r in results)
    assert _counts(session_factory) == (len(forum), len(forum))


def test_a_crash_before_commit_leaves_nothing_and_the_next_tick_sends(
    forum: list[int], settings: Settings, session_factory: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_queue = digests.jobs.queue_message
    calls = {"n": 0}

    def crash_on_third(*args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full")  # the process dies between DigestRun and the outbox row
        return real_queue(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(digests.jobs, "queue_message", crash_on_third)
    first = send_due_digests(settings, session_factory, now=DUE)
    assert (first.sent, first.failed) == (len(forum) - 1, 1)
    assert _counts(session_factory) == (len(forum) - 1, len(forum) - 1)

    # "Restart": the next tick does exactly the missing one.
    monkeypatch.setattr(digests.jobs, "queue_message", real_queue)
    second = send_due_digests(settings, session_factory, now=DUE.replace(minute=31))
    assert (second.sent, second.empty, second.failed) == (1, 0, 0)
    assert _counts(session_factory) == (len(forum), len(forum))
    third = send_due_digests(settings, session_factory, now=DUE.replace(minute=32))
    assert (third.sent, third.empty) == (0, 0)


def test_digest_waits_for_mail_still_in_the_spool(forum: list[int], settings: Settings, db: Session,
                                                   session_factory: sessionmaker[Session]) -> None:
    from gateway.inbound import spool_message

    # A message spooled at 06:59 local (05:59Z) and not processed yet belongs to the 07:00 digest.
    spool_message(session_factory, b"Subject: late\r\n\r\nbody\r\n", source="smtp", envelope_from="a@example.org",
                  envelope_to=["forum@forum.test"], list_name="forum", now=datetime(2026, 11, 3, 5, 59, tzinfo=UTC))
    waiting = send_due_digests(settings, session_factory, now=datetime(2026, 11, 3, 6, 1, tzinfo=UTC))
    assert waiting.waiting == len(forum) and waiting.sent == 0
    assert _counts(session_factory) == (0, 0)
    # The spool was not processed within digests.spool_wait_minutes: the digests go anyway.
    late = send_due_digests(settings, session_factory, now=datetime(2026, 11, 3, 6, 31, tzinfo=UTC))
    assert late.sent == len(forum)
