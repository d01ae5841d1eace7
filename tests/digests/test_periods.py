"""Digest periods in the subscriber's time zone: send hour, weekly day, DST, catch-up, bad input."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from digests.periods import due_at, due_periods, latest_due_date, period_for, weekday_index, zone_for

PARIS = zone_for("Europe/Paris", "UTC")
MONTREAL = zone_for("America/Montreal", "UTC")
TOKYO = zone_for("Asia/Tokyo", "UTC")


def test_due_at_is_the_local_send_hour_in_utc() -> None:
    # November: Paris is UTC+1, Montreal UTC-5, Tokyo UTC+9 (no DST).
    assert due_at(date(2026, 11, 3), PARIS, 7) == datetime(2026, 11, 3, 6, tzinfo=UTC)
    assert due_at(date(2026, 11, 3), MONTREAL, 7) == datetime(2026, 11, 3, 12, tzinfo=UTC)
    assert due_at(date(2026, 11, 3), TOKYO, 7) == datetime(2026, 11, 2, 22, tzinfo=UTC)


def test_periods_tile_time_across_dst_changes() -> None:
    # Paris leaves summer time on 2026-10-25 (a 25-hour local day) and enters it on 2026-03-29 (23 hours).
    autumn = period_for("daily", date(2026, 10, 25), PARIS, 7)
    assert autumn.until - autumn.since == timedelta(hours=25)
    spring = period_for("daily", date(2026, 3, 29), PARIS, 7)
    assert spring.until - spring.since == timedelta(hours=23)
    # Consecutive days share their boundary: no gap, no overlap.
    days = [period_for("daily", date(2026, 3, 20) + timedelta(days=i), PARIS, 7) for i in range(20)]
    for before, after in itertools.pairwise(days):
        assert before.until == after.since


def test_an_hour_skipped_by_dst_still_gives_a_send_time() -> None:
    # 02:00 does not exist in Paris on 2026-03-29; the digest still has one well-defined instant.
    instant = due_at(date(2026, 3, 29), PARIS, 2)
    assert instant.tzinfo is UTC
    assert due_at(date(2026, 3, 28), PARIS, 2) < instant < due_at(date(2026, 3, 30), PARIS, 2)


def test_latest_due_date_daily_and_weekly() -> None:
    monday = weekday_index("mon")
    # 2026-11-04 (Wednesday) 06:59 Paris: today's digest is not due yet.
    now = datetime(2026, 11, 4, 5, 59, tzinfo=UTC)
    assert latest_due_date("daily", now, PARIS, 7, monday) == date(2026, 11, 3)
    assert latest_due_date("daily", now + timedelta(minutes=1), PARIS, 7, monday) == date(2026, 11, 4)
    assert latest_due_date("weekly", now, PARIS, 7, monday) == date(2026, 11, 2)
    # Monday 06:59 Paris: this week's is not due, last week's is.
    assert latest_due_date("weekly", datetime(2026, 11, 9, 5, 59, tzinfo=UTC), PARIS, 7, monday) == date(2026, 11, 2)
    assert latest_due_date("weekly", datetime(2026, 11, 9, 6, 0, tzinfo=UTC), PARIS, 7, monday) == date(2026, 11, 9)


def test_period_keys() -> None:
    assert period_for("daily", date(2026, 11, 23), PARIS, 7).key == "2026-11-23"
    assert period_for("weekly", date(2026, 11, 23), PARIS, 7).key == "2026-W48"
    # ISO week of a date in the first days of January belongs to the previous year.
    assert period_for("weekly", date(2027, 1, 1), PARIS, 7).key == "2026-W53"


def test_first_run_gets_only_the_newest_period() -> None:
    now = datetime(2026, 11, 6, 9, tzinfo=UTC)
    periods = due_periods("daily", now, PARIS, hour=7, weekday=0, last_until=None, catch_up_days=14)
    assert [p.key for p in periods] == ["2026-11-06"]


def test_catch_up_after_downtime_one_per_missed_period() -> None:
    last = due_at(date(2026, 11, 2), PARIS, 7)
    now = datetime(2026, 11, 6, 9, tzinfo=UTC)
    periods = due_periods("daily", now, PARIS, hour=7, weekday=0, last_until=last, catch_up_days=14)
    assert [p.key for p in periods] == ["2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06"]
    assert periods[0].since == last
    # Nothing due again once done.
    assert due_periods("daily", now, PARIS, hour=7, weekday=0, last_until=periods[-1].until, catch_up_days=14) == []


def test_catch_up_is_bounded() -> None:
    last = due_at(date(2026, 9, 1), PARIS, 7)
    now = datetime(2026, 11, 6, 9, tzinfo=UTC)
    periods = due_periods("daily", now, PARIS, hour=7, weekday=0, last_until=last, catch_up_days=3)
    assert [p.key for p in periods] == ["2026-11-03", "2026-11-04", "2026-11-05", "2026-11-06"]


def test_moving_time_zone_never_puts_a_message_in_two_digests() -> None:
    # Done in Paris up to 2026-11-03 06:00 UTC; the member moves to Tokyo, where 07:00 on the 4th is
    # 2026-11-03 22:00 UTC: the next period starts where the last one ended.
    last = due_at(date(2026, 11, 3), PARIS, 7)
    now = datetime(2026, 11, 3, 23, tzinfo=UTC)
    periods = due_periods("daily", now, TOKYO, hour=7, weekday=0, last_until=last, catch_up_days=14)
    assert [p.key for p in periods] == ["2026-11-04"]
    assert periods[0].since == last
    assert periods[0].until == datetime(2026, 11, 3, 22, tzinfo=UTC)


def test_garbage_settings_give_clear_errors() -> None:
    now = datetime(2026, 11, 6, 9, tzinfo=UTC)
    with pytest.raises(ValueError, match="weekly_day"):
        weekday_index("funday")
    with pytest.raises(ValueError, match="send_hour"):
        due_periods("daily", now, PARIS, hour=25, weekday=0, last_until=None, catch_up_days=1)
    with pytest.raises(ValueError, match="daily"):
        due_periods("hourly", now, PARIS, hour=7, weekday=0, last_until=None, catch_up_days=1)
    # An unknown time zone name falls back to the site default rather than crashing the tick.
    assert zone_for("Mars/Olympus_Mons", "Europe/Paris").key == "Europe/Paris"
    assert zone_for("", "Also/Wrong").key == "UTC"
    assert zone_for("../../etc/passwd", "Europe/Paris").key == "Europe/Paris"
