"""The network's overview: how many topics are opened and closed, where, how fast they are answered and
resolved, and which organisations take part most.

Pure query functions over the database (no web, no charts): the web page draws them with pygal, the CSV
export writes them as they are. Only aggregate counts and organisation/category names come out — never a
topic title or a message — so every figure may be shown to the public.

Definitions:

* a topic merged into another (#merge) is not counted: its messages were moved to the target;
* months are calendar months in the site's time zone (``site.default_timezone``), by ``Topic.created_at``
  for "opened" and ``Topic.closed_at`` for "closed";
* countries and borders are those of the organisations of the people who wrote in a topic (a topic with
  participants from France and Germany counts once for FR and once for DE);
* time to first answer: ``first_answer_at - created_at`` (the first message by someone else than the
  author); time to resolution: ``closed_at - created_at`` of topics closed as "solved"; time to close: the
  same over every closed topic except duplicates. Medians and 90th percentiles are linear interpolations
  between the closest ranks (as numpy's default), in hours.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from passerelle.models import Category, Member, Message, Organisation, Topic

FIGURES = ("months", "categories", "countries", "borders", "timings", "organisations")
# Cells a spreadsheet would read as a formula (OWASP "CSV injection"): prefixed with an apostrophe.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: object) -> str:
    """``value`` as a CSV cell that a spreadsheet shows as text, never runs as a formula."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    text = str(value)
    if text.startswith(_FORMULA_START):
        return "'" + text
    return text


def zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


@dataclass(frozen=True)
class Scope:
    """Which topics are counted: one list (None: all), created in [since, until) (local dates, None: open)."""

    list_id: int | None = None
    since: date | None = None
    until: date | None = None
    timezone: str = "UTC"

    def _bound(self, day: date) -> datetime:
        return datetime.combine(day, datetime.min.time(), tzinfo=zone(self.timezone)).astimezone(UTC)

    def topic_conditions(self) -> list[ColumnElement[bool]]:
        conditions: list[ColumnElement[bool]] = [Topic.merged_into_id.is_(None)]
        if self.list_id is not None:
            conditions.append(Topic.list_id == self.list_id)
        if self.since is not None:
            conditions.append(Topic.created_at >= self._bound(self.since))
        if self.until is not None:
            conditions.append(Topic.created_at < self._bound(self.until))
        return conditions

    def closed_conditions(self) -> list[ColumnElement[bool]]:
        """Closed topics counted in "closed per month": by the date they were closed."""
        conditions: list[ColumnElement[bool]] = [Topic.merged_into_id.is_(None), Topic.closed_at.is_not(None)]
        if self.list_id is not None:
            conditions.append(Topic.list_id == self.list_id)
        if self.since is not None:
            conditions.append(Topic.closed_at >= self._bound(self.since))
        if self.until is not None:
            conditions.append(Topic.closed_at < self._bound(self.until))
        return conditions


@dataclass(frozen=True)
class MonthRow:
    month: str  # "2026-11"
    opened: int
    closed: int


@dataclass(frozen=True)
class CountRow:
    label: str
    topics: int
    closed: int = 0
    open: int = 0


@dataclass(frozen=True)
class Stat:
    """Durations in hours: how many, median, 90th percentile, mean (None when there is none)."""

    count: int
    median_hours: float | None
    p90_hours: float | None
    mean_hours: float | None


@dataclass(frozen=True)
class Timings:
    first_answer: Stat
    resolution: Stat
    closing: Stat


@dataclass(frozen=True)
class OrgRow:
    name: str
    country: str
    messages: int
    topics_started: int
    topics_joined: int


@dataclass(frozen=True)
class Overview:
    scope: Scope
    total_topics: int
    open_topics: int
    closed_topics: int
    months: list[MonthRow] = field(default_factory=list)
    categories: list[CountRow] = field(default_factory=list)
    countries: list[CountRow] = field(default_factory=list)
    borders: list[CountRow] = field(default_factory=list)
    timings: Timings | None = None
    organisations: list[OrgRow] = field(default_factory=list)


# ============================================================================================ statistics


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0..100) by linear interpolation between closest ranks; None if empty."""
    if not values:
        return None
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be within 0..100, not {q!r}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = math.floor(position)
    high = math.ceil(position)
    if low == high:
        return float(ordered[low])
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def stat(hours: Sequence[float]) -> Stat:
    clean = [h for h in hours if h >= 0]
    if not clean:
        return Stat(0, None, None, None)
    return Stat(len(clean), percentile(clean, 50), percentile(clean, 90), sum(clean) / len(clean))


def _hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600


# ============================================================================================ figures


def _hour_bucket(session: Session, column: Any) -> Any:
    """SQL: the UTC hour of ``column`` as text "YYYY-MM-DD HH" (grouping by it keeps the result small —
    at most 24 rows a day — and exact for every time zone whose offset is whole hours)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")
    return func.strftime("%Y-%m-%d %H", column)


def _hours_between(session: Session, later: Any, earlier: Any) -> Any:
    """SQL: ``later - earlier`` in hours, as a number (no datetime is decoded in Python)."""
    if session.get_bind().dialect.name == "postgresql":
        return func.extract("epoch", later - earlier) / 3600.0
    return (func.julianday(later) - func.julianday(earlier)) * 24.0


def _local_months(rows: Iterable[tuple[str, int]], tz: ZoneInfo) -> Counter[str]:
    out: Counter[str] = Counter()
    for bucket, count in rows:
        if not bucket:
            continue
        # UTC offsets stay within ±14 hours: only the first and last day of a month can be in another
        # local month, the only hours worth converting.
        day = int(bucket[8:10])
        if 2 <= day <= 27:
            out[bucket[:7]] += int(count)
            continue
        utc = datetime(int(bucket[:4]), int(bucket[5:7]), day, int(bucket[11:13]), tzinfo=UTC)
        out[utc.astimezone(tz).strftime("%Y-%m")] += int(count)
    return out


def _month_range(first: str, last: str) -> list[str]:
    year, month = map(int, first.split("-"))
    end_year, end_month = map(int, last.split("-"))
    out = []
    while (year, month) <= (end_year, end_month):
        out.append(f"{year:04d}-{month:02d}")
        month += 1
        if month == 13:
            year, month = year + 1, 1
    return out


def topics_per_month(session: Session, scope: Scope) -> list[MonthRow]:
    """Topics opened and closed in each calendar month, months without any included between the first
    and the last."""
    tz = zone(scope.timezone)
    opened_bucket = _hour_bucket(session, Topic.created_at)
    closed_bucket = _hour_bucket(session, Topic.closed_at)
    opened = _local_months(session.execute(
        select(opened_bucket, func.count()).where(*scope.topic_conditions()).group_by(opened_bucket)).all(), tz)
    closed = _local_months(session.execute(
        select(closed_bucket, func.count()).where(*scope.closed_conditions()).group_by(closed_bucket)).all(), tz)
    keys = set(opened) | set(closed)
    if not keys:
        return []
    return [MonthRow(m, opened.get(m, 0), closed.get(m, 0)) for m in _month_range(min(keys), max(keys))]


def topics_per_category(session: Session, scope: Scope) -> list[CountRow]:
    """Topics per category (most first); topics without a category under the label ""."""
    rows = session.execute(
        select(Category.name, Topic.status, func.count(Topic.id))
        .select_from(Topic)
        .outerjoin(Category, Category.id == Topic.category_id)
        .where(*scope.topic_conditions())
        .group_by(Category.name, Topic.status)
    ).all()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, status, count in rows:
        entry = totals[name or ""]
        entry[0] += count
        if status == "closed":
            entry[1] += count
    result = [CountRow(name, t, c, t - c) for name, (t, c) in totals.items()]
    return sorted(result, key=lambda r: (-r.topics, r.label == "", r.label.lower()))


@dataclass(frozen=True)
class Participation:
    """Who took part where, from one pass over the messages: per (topic, organisation) how many messages."""

    # (topic id, topic status, organisation id, messages)
    rows: list[tuple[int, str, int, int]]
    organisations: dict[int, Organisation]


def participation(session: Session, scope: Scope) -> Participation:
    rows = session.execute(
        select(Message.topic_id, Topic.status, Member.organisation_id, func.count())
        .select_from(Message)
        .join(Topic, Topic.id == Message.topic_id)
        .join(Member, Member.id == Message.author_id)
        .where(*scope.topic_conditions(), Member.organisation_id.is_not(None))
        .group_by(Message.topic_id, Topic.status, Member.organisation_id)
    ).all()
    orgs = {o.id: o for o in session.scalars(select(Organisation))} if rows else {}
    return Participation([(int(t), str(s), int(o), int(n)) for t, s, o, n in rows], orgs)


def _per_key(part: Participation, key: Any) -> list[CountRow]:
    seen: set[tuple[str, int]] = set()
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for topic_id, status, org_id, _n in part.rows:
        org = part.organisations.get(org_id)
        label = key(org) if org is not None else ""
        if not label or (label, topic_id) in seen:
            continue
        seen.add((label, topic_id))
        entry = totals[label]
        entry[0] += 1
        if status == "closed":
            entry[1] += 1
    result = [CountRow(k, t, c, t - c) for k, (t, c) in totals.items()]
    return sorted(result, key=lambda r: (-r.topics, r.label))


def topics_per_country(session: Session, scope: Scope, part: Participation | None = None) -> list[CountRow]:
    """Topics in which someone of an organisation of each country took part."""
    return _per_key(part or participation(session, scope), lambda o: o.country)


def topics_per_border(session: Session, scope: Scope, part: Participation | None = None) -> list[CountRow]:
    """Topics in which someone of an organisation working on each border took part."""
    return _per_key(part or participation(session, scope), lambda o: o.border)


def response_times(session: Session, scope: Scope) -> Timings:
    first = session.scalars(
        select(_hours_between(session, Topic.first_answer_at, Topic.created_at))
        .where(*scope.topic_conditions(), Topic.first_answer_at.is_not(None))
    ).all()
    rows = session.execute(
        select(_hours_between(session, Topic.closed_at, Topic.created_at), Topic.outcome)
        .where(*scope.topic_conditions(), Topic.status == "closed", Topic.closed_at.is_not(None))
    ).all()
    solved = [float(h) for h, outcome in rows if outcome == "solved" and h is not None]
    closing = [float(h) for h, outcome in rows if outcome != "duplicate" and h is not None]
    return Timings(first_answer=stat([float(h) for h in first if h is not None]), resolution=stat(solved),
                   closing=stat(closing))


def active_organisations(session: Session, scope: Scope, *, limit: int = 10,
                         part: Participation | None = None) -> list[OrgRow]:
    """The organisations whose people wrote the most messages (then started the most topics)."""
    part = part or participation(session, scope)
    if not part.rows:
        return []
    messages: Counter[int] = Counter()
    topics: Counter[int] = Counter()
    for _topic_id, _status, org_id, n in part.rows:
        messages[org_id] += n
        topics[org_id] += 1
    started = dict(
        session.execute(
            select(Member.organisation_id, func.count(Topic.id))
            .select_from(Topic)
            .join(Member, Member.id == Topic.author_id)
            .where(*scope.topic_conditions(), Member.organisation_id.is_not(None))
            .group_by(Member.organisation_id)
        ).all()
    )
    rows = [
        OrgRow(part.organisations[oid].name, part.organisations[oid].country, int(count),
               int(started.get(oid, 0)), int(topics[oid]))
        for oid, count in messages.items() if oid in part.organisations
    ]
    rows.sort(key=lambda r: (-r.messages, -r.topics_started, r.name.lower()))
    return rows[:limit]


def build_overview(session: Session, scope: Scope, *, organisations: int = 10) -> Overview:
    """Every figure for ``scope``."""
    counts = dict(
        session.execute(
            select(Topic.status, func.count(Topic.id)).where(*scope.topic_conditions()).group_by(Topic.status)
        ).all()
    )
    total = int(sum(counts.values()))
    closed = int(counts.get("closed", 0))
    part = participation(session, scope)
    return Overview(
        scope=scope,
        total_topics=total,
        open_topics=total - closed,
        closed_topics=closed,
        months=topics_per_month(session, scope),
        categories=topics_per_category(session, scope),
        countries=topics_per_country(session, scope, part),
        borders=topics_per_border(session, scope, part),
        timings=response_times(session, scope),
        organisations=active_organisations(session, scope, limit=organisations, part=part),
    )


# ============================================================================================ CSV


def figure_table(overview: Overview, figure: str) -> tuple[list[str], list[list[object]]]:
    """(header, rows) of one figure, for its CSV file and the table under its chart."""
    if figure == "months":
        return ["month", "opened", "closed"], [[r.month, r.opened, r.closed] for r in overview.months]
    if figure in ("categories", "countries", "borders"):
        key = {"categories": "category", "countries": "country", "borders": "border"}[figure]
        rows = getattr(overview, figure)
        return [key, "topics", "closed", "open"], [[r.label, r.topics, r.closed, r.open] for r in rows]
    if figure == "timings":
        t = overview.timings or Timings(Stat(0, None, None, None), Stat(0, None, None, None),
                                        Stat(0, None, None, None))
        out: list[list[object]] = []
        for name, s in (("first_answer", t.first_answer), ("resolution", t.resolution), ("closing", t.closing)):
            out.append([name, s.count, _round(s.median_hours), _round(s.p90_hours), _round(s.mean_hours)])
        return ["measure", "topics", "median_hours", "p90_hours", "mean_hours"], out
    if figure == "organisations":
        return (
            ["organisation", "country", "messages", "topics_started", "topics_joined"],
            [[r.name, r.country, r.messages, r.topics_started, r.topics_joined] for r in overview.organisations],
        )
    raise ValueError(f"unknown figure {figure!r}: one of {', '.join(FIGURES)}")


def _round(value: float | None) -> float | str:
    return "" if value is None else round(value, 2)


def long_rows(overview: Overview) -> Iterable[list[object]]:
    """Every figure as (figure, label, measure, value) rows: one CSV file for all of them."""
    yield ["totals", "all", "topics", overview.total_topics]
    yield ["totals", "all", "open", overview.open_topics]
    yield ["totals", "all", "closed", overview.closed_topics]
    for figure in FIGURES:
        header, rows = figure_table(overview, figure)
        for row in rows:
            label = row[0]
            for measure, value in zip(header[1:], row[1:], strict=True):
                if figure == "organisations" and measure == "country":
                    continue
                yield [figure, label, measure, value]


__all__ = [
    "FIGURES",
    "CountRow",
    "MonthRow",
    "OrgRow",
    "Overview",
    "Participation",
    "Scope",
    "Stat",
    "Timings",
    "active_organisations",
    "build_overview",
    "figure_table",
    "long_rows",
    "participation",
    "percentile",
    "response_times",
    "spreadsheet_safe",
    "stat",
    "topics_per_border",
    "topics_per_category",
    "topics_per_country",
    "topics_per_month",
]
