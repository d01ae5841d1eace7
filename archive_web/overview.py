"""The network's overview page: topics opened and closed per month, per category, per country and border,
time to first answer and to resolution, the most active organisations — as charts and tables, and CSV.

Charts are drawn by pygal on the server as SVG documents, shown with ``<img>`` (no script runs in an
image; the page's Content-Security-Policy stays script-free), each with a caption, a text alternative and
the same figures in a table. Every figure is an aggregate (passerelle.overview): the page is public.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import pygal
from flask import Blueprint, Response, current_app, render_template, request
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from pygal.style import Style

from passerelle import overview as core
from passerelle.overview import FIGURES, Overview, Scope

from .app import NavItem
from .sheets import csv_text, export_response
from .web import MAX_ID, db, fail, lists_by_id, now, settings

log = logging.getLogger(__name__)

bp = Blueprint("overview", __name__)
NAV = (NavItem("overview.index", _l("Overview"), order=50),)

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
CHART_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1c2430",
    foreground_strong="#1c2430",
    foreground_subtle="#4f5b6b",
    opacity=".9",
    opacity_hover="1",
    colors=("#0b5cad", "#1b6b3a", "#8a4b00", "#a4161a", "#5b3f8c", "#4f5b6b"),
    font_family="system-ui, 'Segoe UI', Roboto, 'Noto Sans', Arial, sans-serif",
    label_font_size=13,
    major_label_font_size=13,
    legend_font_size=14,
    title_font_size=16,
    value_font_size=12,
)
FIGURE_TITLES = {
    "months": _l("Topics opened and closed per month"),
    "categories": _l("Topics per category"),
    "countries": _l("Topics per country of the participants"),
    "borders": _l("Topics per border"),
    "timings": _l("Time to first answer and to resolution"),
    "organisations": _l("Most active organisations"),
}
FIGURE_ALTS = {
    "months": _l("Bar chart of the topics opened and closed each month. The same figures are in the table "
                 "below the chart."),
    "categories": _l("Horizontal bar chart of the open and closed topics of each category. The same figures "
                     "are in the table below the chart."),
    "countries": _l("Horizontal bar chart of the topics in which organisations of each country took part. The "
                    "same figures are in the table below the chart."),
    "borders": _l("Horizontal bar chart of the topics in which organisations of each border took part. The "
                  "same figures are in the table below the chart."),
    "timings": _l("Bar chart of the median and 90th percentile of the time to first answer, to resolution and "
                  "to closing. The same figures are in the table below the chart."),
    "organisations": _l("Horizontal bar chart of the messages written and topics started by the most active "
                        "organisations. The same figures are in the table below the chart."),
}
MEASURE_LABELS = {
    "first_answer": _l("First answer"),
    "resolution": _l("Resolution (solved)"),
    "closing": _l("Closing (any outcome)"),
}


# --------------------------------------------------------------------------------------------------------
# Scope from the query string
# --------------------------------------------------------------------------------------------------------


def _month_arg(name: str) -> date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    match = _MONTH.match(value)
    if not match or not 1 <= int(match.group(2)) <= 12 or not 1970 <= int(match.group(1)) <= 9999:
        fail(400, _("“%(name)s” must be a month written as YYYY-MM, like 2026-11.", name=name))
    return date(int(match.group(1)), int(match.group(2)), 1)


def _next_month(day: date) -> date:
    return date(day.year + 1, 1, 1) if day.month == 12 else date(day.year, day.month + 1, 1)


def scope_from_request() -> Scope:
    list_arg = request.args.get("list", "").strip()
    list_id = None
    if list_arg:
        if not list_arg.isascii() or not list_arg.isdigit() or len(list_arg) > 10 or not 0 < int(list_arg) <= MAX_ID:
            fail(400, _("The value given for “%(name)s” is not valid.", name="list"))
        list_id = int(list_arg)
        if list_id not in lists_by_id():
            fail(404, _("There is no such forum."))
    since = _month_arg("from")
    to = _month_arg("to")
    if since and to and to < since:
        fail(400, _("The end month comes before the start month."))
    return Scope(list_id=list_id, since=since, until=_next_month(to) if to else None,
                 timezone=settings().site.default_timezone)


def scope_args() -> dict[str, str]:
    return {k: request.args[k] for k in ("list", "from", "to") if request.args.get(k, "").strip()}


# --------------------------------------------------------------------------------------------------------
# Charts
# --------------------------------------------------------------------------------------------------------


def _label(figure: str, value: str) -> str:
    if figure == "categories" and not value:
        return _("No category")
    return value


def _chart(kind: Any, figure: str, **config: Any) -> Any:
    return kind(
        style=CHART_STYLE,
        js=[],
        width=860,
        height=config.pop("height", 380),
        legend_at_bottom=True,
        legend_at_bottom_columns=3,
        truncate_label=40,
        truncate_legend=40,
        print_values=False,
        no_data_text=_("No data yet"),
        # The page gives each chart its heading and caption; a title inside the image would repeat them.
        title=None,
        **config,
    )


def _count_axis(chart: Any, values: list[int]) -> None:
    """Whole numbers on the axis of counts (pygal would otherwise draw 0.2, 0.4... for small counts)."""
    top = max(values, default=0)
    if top <= 0:
        return
    step = max(1, math.ceil(top / 10))
    chart.y_labels = list(range(0, top + step, step))


def _hours_scale(values: list[float | None]) -> tuple[float, str]:
    known = [v for v in values if v is not None]
    if known and max(known) >= 48:
        return 24.0, _("days")
    return 1.0, _("hours")


def render_chart(figure: str, ov: Overview) -> bytes:
    """The SVG of one figure."""
    if figure == "months":
        chart = _chart(pygal.Bar, figure, x_label_rotation=-40 if len(ov.months) > 8 else 0,
                       show_minor_x_labels=len(ov.months) <= 24)
        chart.x_labels = [r.month for r in ov.months]
        if len(ov.months) > 24:
            chart.x_labels_major = [r.month for r in ov.months if r.month.endswith("-01")]
        if ov.months:
            chart.add(_("Opened"), [r.opened for r in ov.months])
            chart.add(_("Closed"), [r.closed for r in ov.months])
            _count_axis(chart, [max(r.opened, r.closed) for r in ov.months])
    elif figure in ("categories", "countries", "borders"):
        rows = list(getattr(ov, figure))[:15]
        chart = _chart(pygal.HorizontalStackedBar, figure, height=max(260, 90 + 34 * len(rows)))
        # Largest at the top: pygal draws the first label at the bottom of a horizontal chart.
        rows = list(reversed(rows))
        chart.x_labels = [_label(figure, r.label) for r in rows]
        if rows:
            chart.add(_("Open"), [r.open for r in rows])
            chart.add(_("Closed"), [r.closed for r in rows])
            _count_axis(chart, [r.topics for r in rows])
    elif figure == "timings":
        t = ov.timings
        stats = [("first_answer", t.first_answer), ("resolution", t.resolution), ("closing", t.closing)] if t else []
        scale, unit = _hours_scale([s.p90_hours for _n, s in stats])
        chart = _chart(pygal.Bar, figure, y_title=unit)
        chart.x_labels = [str(MEASURE_LABELS[n]) for n, _s in stats]
        if any(s.count for _n, s in stats):
            chart.add(_("Median"), [round(s.median_hours / scale, 1) if s.median_hours is not None else None
                                    for _n, s in stats])
            chart.add(_("90th percentile"), [round(s.p90_hours / scale, 1) if s.p90_hours is not None else None
                                             for _n, s in stats])
    elif figure == "organisations":
        rows = list(reversed(ov.organisations))
        chart = _chart(pygal.HorizontalBar, figure, height=max(260, 90 + 40 * len(rows)))
        chart.x_labels = [f"{r.name} ({r.country})" for r in rows]
        if rows:
            chart.add(_("Messages"), [r.messages for r in rows])
            chart.add(_("Topics started"), [r.topics_started for r in rows])
            _count_axis(chart, [max(r.messages, r.topics_started) for r in rows])
    else:
        fail(404, _("There is no such figure."))
    return bytes(chart.render())


CACHE_SECONDS = 300
CACHE_ENTRIES = 64


@dataclass
class _Cache:
    """Overviews computed recently, per scope: one page view asks for the page, six charts and maybe the
    CSV, all from one computation (every figure is an aggregate: the same for every reader)."""

    entries: dict[Scope, tuple[datetime, Overview]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _cache() -> _Cache:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    return app.extensions.setdefault("passerelle.overview", _Cache())  # type: ignore[no-any-return]


def _compute(scope: Scope) -> Overview:
    cache = _cache()
    current = now()
    with cache.lock:
        hit = cache.entries.get(scope)
        if hit is not None and current - hit[0] < timedelta(seconds=CACHE_SECONDS):
            return hit[1]
    started = time.perf_counter()
    result = core.build_overview(db(), scope)
    log.info("overview computed in %.0f ms (%d topics)", (time.perf_counter() - started) * 1000,
             result.total_topics)
    with cache.lock:
        if len(cache.entries) >= CACHE_ENTRIES:
            cache.entries.clear()
        cache.entries[scope] = (current, result)
    return result


# --------------------------------------------------------------------------------------------------------
# Pages
# --------------------------------------------------------------------------------------------------------


def _duration(hours: float | None) -> str:
    if hours is None:
        return "—"
    if hours < 1:
        return _("%(num)d min", num=round(hours * 60))
    # Babel writes the number as the reader's language does ("24,0 h" in French, "24.0 h" in English).
    if hours < 48:
        return _("%(num)s h", num=format_decimal(hours, "#,##0.0"))
    return _("%(num)s days", num=format_decimal(hours / 24, "#,##0.0"))


@bp.route("/overview")
def index() -> str:
    scope = scope_from_request()
    ov = _compute(scope)
    tables = {figure: core.figure_table(ov, figure) for figure in FIGURES}
    lists = sorted(lists_by_id().values(), key=lambda ml: ml.id)
    return render_template(
        "overview/index.html", ov=ov, figures=FIGURES, tables=tables, titles=FIGURE_TITLES, alts=FIGURE_ALTS,
        measure_labels=MEASURE_LABELS, args=scope_args(), lists=lists, duration=_duration,
        label_of=_label,
    )


@bp.route("/overview/chart/<figure>.svg")
def chart(figure: str) -> Response:
    if figure not in FIGURES:
        fail(404, _("There is no such figure."))
    scope = scope_from_request()
    svg = render_chart(figure, _compute(scope))
    response = Response(svg, mimetype="image/svg+xml")
    # The SVG carries its own <style>; nothing in it may run or load anything (pygal also writes a small
    # inline script of settings: blocked here, and never run from an <img> anyway).
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    response.headers["Cache-Control"] = "public, max-age=300"
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.route("/overview/<figure>.csv")
def figure_csv(figure: str) -> Response:
    if figure not in FIGURES:
        fail(404, _("There is no such figure."))
    header, rows = core.figure_table(_compute(scope_from_request()), figure)
    body = csv_text(header, [[core.spreadsheet_safe(c) for c in row] for row in rows])
    return export_response(body, "text/csv", f"overview-{figure}.csv")


@bp.route("/overview.csv")
def all_csv() -> Response:
    ov = _compute(scope_from_request())
    rows = [[core.spreadsheet_safe(c) for c in row] for row in core.long_rows(ov)]
    return export_response(csv_text(["figure", "label", "measure", "value"], rows), "text/csv", "overview.csv")
