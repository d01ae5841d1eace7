"""APScheduler 3.x: runs the jobs of digests.jobs at fixed intervals in a background thread.

The scheduler holds no state of its own (in-memory job store): what is due is always computed from the
database, so a restart, or several processes each running a scheduler against one PostgreSQL database,
send nothing twice and skip nothing. Every job is called as ``func(settings, factory, now=clock())``.

Jobs (see :func:`default_jobs`):

* ``digests``: queue the daily/weekly digests due (every digests.tick_seconds);
* ``held-expiry``: gateway.moderation.expire_held (every digests.held_expiry_minutes);
* ``bounce-decay``: write decayed bounce scores back (every bounces.decay_every_hours);
* ``escalation-register``: mail the register of escalated obstacles to escalation.report_to once per
  period (passerelle.escalations.send_register_reports; checked hourly, nothing when report_to is empty).

The outbox is swept by the gateway's delivery thread (gateway.service), not here. To add a job (the
escalation register mailing, say), append a :class:`ScheduledJob` to the list :func:`default_jobs`
returns, or pass it to :func:`build_scheduler` as ``extra_jobs``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.orm import Session, sessionmaker

from passerelle.config import Settings
from passerelle.escalations import send_register_reports

from . import jobs

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
JobFunc = Callable[..., Any]


@dataclass(frozen=True)
class ScheduledJob:
    """``func(settings, factory, *, now)`` run every ``seconds``; it must be idempotent."""

    id: str
    func: JobFunc
    seconds: float


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_jobs(settings: Settings) -> list[ScheduledJob]:
    from gateway.moderation import expire_held

    return [
        ScheduledJob("digests", jobs.send_due_digests, float(settings.digests.tick_seconds)),
        ScheduledJob("held-expiry", expire_held, float(settings.digests.held_expiry_minutes) * 60),
        ScheduledJob("bounce-decay", jobs.decay_bounce_scores, float(settings.bounces.decay_every_hours) * 3600),
        ScheduledJob("escalation-register", send_register_reports, 3600.0),
    ]


def run_job(job: ScheduledJob, settings: Settings, factory: sessionmaker[Session], clock: Clock) -> Any:
    """Run one job now; an exception is logged (the next run retries), never propagated to APScheduler."""
    now = clock()
    try:
        result = job.func(settings, factory, now=now)
    except Exception:
        log.exception("scheduled job %s failed at %s", job.id, now.isoformat())
        return None
    log.debug("scheduled job %s done at %s: %r", job.id, now.isoformat(), result)
    return result


def build_scheduler(
    settings: Settings,
    factory: sessionmaker[Session],
    *,
    clock: Clock | None = None,
    extra_jobs: Sequence[ScheduledJob] = (),
) -> BackgroundScheduler:
    """A BackgroundScheduler (not started) with every job; each job first runs as soon as it is started."""
    clock = clock or utcnow
    scheduler = BackgroundScheduler(
        timezone=UTC,
        # One run of a job at a time; runs missed while the process slept collapse into one (the jobs
        # catch up by themselves from the database).
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
    )
    seen: set[str] = set()
    for job in [*default_jobs(settings), *extra_jobs]:
        if job.id in seen:
            raise ValueError(f"two scheduled jobs named {job.id!r}")
        if job.seconds <= 0:
            raise ValueError(f"scheduled job {job.id!r} needs a positive interval, not {job.seconds!r}")
        seen.add(job.id)
        scheduler.add_job(
            run_job,
            IntervalTrigger(seconds=job.seconds, timezone=UTC),
            args=(job, settings, factory, clock),
            id=job.id,
            name=job.id,
            next_run_time=datetime.now(UTC),
        )
    return scheduler


def run_all_once(
    settings: Settings, factory: sessionmaker[Session], *, now: datetime, extra_jobs: Sequence[ScheduledJob] = ()
) -> dict[str, Any]:
    """Every job once, synchronously, at ``now`` (CLI and tests); {job id: its result}."""
    return {job.id: run_job(job, settings, factory, lambda: now) for job in [*default_jobs(settings), *extra_jobs]}


__all__ = ["ScheduledJob", "build_scheduler", "default_jobs", "run_all_once", "run_job", "utcnow"]
