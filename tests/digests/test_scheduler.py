"""The APScheduler wiring: the job list, a real background run with a fake clock, bad job definitions."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from digests.scheduler import ScheduledJob, build_scheduler, default_jobs, run_all_once
from passerelle.config import Settings
from passerelle.models import DigestRun, OutboxMessage, Subscription
from tests.digests.builders import make_topic
from tests.factories import make_list, make_member

T0 = datetime(2026, 11, 2, 0, 0, tzinfo=UTC)
FAKE_NOW = datetime(2026, 11, 3, 6, 30, tzinfo=UTC)


@pytest.fixture
def forum(db: Session) -> Subscription:
    ml = make_list(db, now=T0)
    author, _ = make_member(db, "author@example.org", mailing_list=ml, now=T0)
    _, sub = make_member(db, "reader@example.org", mailing_list=ml, mode="daily", now=T0)
    make_topic(db, ml, "Apprentissage transfrontalier", at=datetime(2026, 11, 2, 10, tzinfo=UTC), author=author)
    db.commit()
    return sub


def test_job_list(settings: Settings) -> None:
    from gateway.moderation import expire_held

    jobs = {job.id: job for job in default_jobs(settings)}
    assert set(jobs) == {"digests", "held-expiry", "bounce-decay", "escalation-register"}
    assert jobs["digests"].seconds == settings.digests.tick_seconds
    assert jobs["bounce-decay"].seconds == settings.bounces.decay_every_hours * 3600
    assert jobs["held-expiry"].func is expire_held
    assert jobs["held-expiry"].seconds == settings.digests.held_expiry_minutes * 60


def test_background_scheduler_runs_the_jobs_with_the_injected_clock(
    forum: Subscription, settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    seen: list[datetime] = []

    def probe(settings: Settings, factory: sessionmaker[Session], *, now: datetime) -> None:
        seen.append(now)

    scheduler = build_scheduler(settings, session_factory, clock=lambda: FAKE_NOW,
                                extra_jobs=[ScheduledJob("probe", probe, 3600)])
    assert {job.id for job in scheduler.get_jobs()} == {
        "digests", "held-expiry", "bounce-decay", "escalation-register", "probe"
    }
    scheduler.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with session_factory() as s:
                if s.scalar(select(func.count(DigestRun.id))):
                    break
            time.sleep(0.05)
    finally:
        scheduler.shutdown(wait=True)
    assert seen == [FAKE_NOW]
    with session_factory() as s:
        run = s.scalars(select(DigestRun)).one()
        assert (run.subscription_id, run.period_key, run.outcome) == (forum.id, "2026-11-03", "sent")
        assert s.scalar(select(func.count(OutboxMessage.id)).where(OutboxMessage.kind == "digest")) == 1


def test_a_failing_job_is_logged_and_does_not_stop_the_others(
    forum: Subscription, settings: Settings, session_factory: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(settings: Settings, factory: sessionmaker[Session], *, now: datetime) -> None:
        raise RuntimeError("boom")

    results = run_all_once(settings, session_factory, now=FAKE_NOW, extra_jobs=[ScheduledJob("broken", broken, 60)])
    assert results["broken"] is None
    assert results["digests"].sent == 1
    assert "scheduled job broken failed" in caplog.text


def test_bad_job_definitions_are_refused(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    def noop(settings: Settings, factory: sessionmaker[Session], *, now: datetime) -> None:
        return None

    with pytest.raises(ValueError, match="two scheduled jobs named 'digests'"):
        build_scheduler(settings, session_factory, extra_jobs=[ScheduledJob("digests", noop, 60)])
    with pytest.raises(ValueError, match="positive interval"):
        build_scheduler(settings, session_factory, extra_jobs=[ScheduledJob("x", noop, 0)])
