"""Digest periods in each subscriber's own time zone.

A daily digest for local date D is due at D ``send_hour``:00 local time and covers the messages received
in [due(D - 1 day), due(D)); a weekly one exists only for dates D falling on ``weekly_day`` and covers
[due(D - 7 days), due(D)). Consecutive periods therefore tile time without gap or overlap, also across
daylight-saving changes (a local day is then 23 or 25 hours long).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

log = logging.getLogger(__name__)

KINDS = ("daily", "weekly")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True)
class Period:
    kind: str
    # The subscriber's local date the digest is sent on.
    local_date: date
    since: datetime
    until: datetime

    @property
    def key(self) -> str:
        """DigestRun.period_key: the local date ("2026-11-23") or the ISO week ("2026-W48")."""
        if self.kind == "daily":
            return self.local_date.isoformat()
        year, week, _ = self.local_date.isocalendar()
        return f"{year}-W{week:02d}"


def zone_for(name: str | None, default: str) -> ZoneInfo:
    """The member's time zone, or ``default`` when the stored name is unknown to the tz database."""
    for candidate in (name, default, "UTC"):
        if not candidate:
            continue
        try:
            return ZoneInfo(candidate)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("unknown time zone %r, falling back", candidate)
    return ZoneInfo("UTC")


def weekday_index(name: str) -> int:
    """"mon" -> 0 … "sun" -> 6; a clear error for anything else."""
    try:
        return WEEKDAYS.index(name.strip().lower()[:3])
    except ValueError:
        raise ValueError(f"digests.weekly_day must be one of {', '.join(WEEKDAYS)}, not {name!r}") from None


def due_at(local_date: date, zone: ZoneInfo, hour: int) -> datetime:
    """The UTC instant of ``hour``:00 on ``local_date`` in ``zone``.

    A wall time skipped by a DST jump is read with the offset before the jump (zoneinfo's fold=0), so
    the result always exists and is monotonic in ``local_date``.
    """
    return datetime.combine(local_date, time(hour), tzinfo=zone).astimezone(UTC)


def _step(kind: str) -> timedelta:
    return timedelta(days=1 if kind == "daily" else 7)


def period_for(kind: str, local_date: date, zone: ZoneInfo, hour: int) -> Period:
    if kind not in KINDS:
        raise ValueError(f"digest period must be one of {KINDS}, not {kind!r}")
    return Period(kind, local_date, due_at(local_date - _step(kind), zone, hour), due_at(local_date, zone, hour))


def latest_due_date(kind: str, now: datetime, zone: ZoneInfo, hour: int, weekday: int) -> date:
    """The newest local date whose digest of ``kind`` is due at ``now`` (due instant <= now)."""
    candidate = now.astimezone(zone).date()
    if due_at(candidate, zone, hour) > now:
        candidate -= timedelta(days=1)
    if kind == "weekly":
        candidate -= timedelta(days=(candidate.weekday() - weekday) % 7)
    return candidate


def due_periods(
    kind: str,
    now: datetime,
    zone: ZoneInfo,
    *,
    hour: int,
    weekday: int,
    last_until: datetime | None,
    catch_up_days: int,
) -> list[Period]:
    """The periods of ``kind`` due at ``now`` and not yet done, oldest first.

    ``last_until`` is the end of the newest period already done for this subscription (None: never):
    every later due period is returned (catch-up after downtime), but none older than ``catch_up_days``;
    a subscription never done gets only its newest due period. The first returned period starts at
    ``last_until`` when that is later than its natural start (the member changed time zone), so no
    message is ever in two digests.
    """
    if kind not in KINDS:
        raise ValueError(f"digest period must be one of {KINDS}, not {kind!r}")
    if not 0 <= hour <= 23:
        raise ValueError(f"digests.send_hour must be 0..23, not {hour!r}")
    step = _step(kind)
    newest = latest_due_date(kind, now, zone, hour, weekday)
    if last_until is None:
        return [period_for(kind, newest, zone, hour)]
    oldest_allowed = now.astimezone(zone).date() - timedelta(days=max(catch_up_days, 0))
    dates: list[date] = []
    current = newest
    while due_at(current, zone, hour) > last_until and current >= oldest_allowed:
        dates.append(current)
        current -= step
    if dates and due_at(current, zone, hour) > last_until:
        log.warning("%s digests older than %d days were not caught up (last done until %s)",
                    kind, catch_up_days, last_until.isoformat())
    periods = [period_for(kind, d, zone, hour) for d in reversed(dates)]
    if periods and periods[0].since < last_until:
        first = periods[0]
        periods[0] = Period(first.kind, first.local_date, last_until, first.until)
    return periods
