"""Formatting done for every row of a page (a topic list shows 30 topics, a thread page all its posts).

Babel formats a date by parsing the locale's pattern, rebasing to the reader's time zone and looking up
month names each time, which dominated topic lists. A formatted date, and a status badge, depend on
nothing but their inputs and the reader's language and time zone: they are memoised on exactly those, in
bounded per-process caches that never need invalidating (a changed topic status or date is another key).
The Jinja filters ``dateformat``, ``timeformat`` and ``datetimeformat`` of Flask-Babel are replaced by
memoised ones with the same output.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Any

import flask_babel
from flask import Flask
from flask_babel import get_locale, get_timezone
from markupsafe import Markup, escape

from .labels import LEVEL, OUTCOME, STATUS, label

_FORMATTERS = {
    "date": flask_babel.format_date,
    "time": flask_babel.format_time,
    "datetime": flask_babel.format_datetime,
}


def _reader_key() -> tuple[str, str]:
    """The reader's language and time zone: what a formatted value depends on besides itself."""
    return str(get_locale()), str(get_timezone())


@lru_cache(maxsize=8192)
def _formatted(kind: str, value: date, fmt: str | None, _language: str, _zone: str) -> str:
    # Called with the language and zone of the current request, which Flask-Babel's functions read.
    return _FORMATTERS[kind](value, fmt)


def _format(kind: str, value: Any, fmt: str | None) -> str:
    if not isinstance(value, date):  # None ("now"), or something Babel will reject with its own error
        return _FORMATTERS[kind](value, fmt)
    return _formatted(kind, value, fmt, *_reader_key())


def format_date(value: Any = None, format: str | None = None) -> str:
    return _format("date", value, format)


def format_time(value: Any = None, format: str | None = None) -> str:
    return _format("time", value, format)


def format_datetime(value: Any = None, format: str | None = None) -> str:
    return _format("datetime", value, format)


@lru_cache(maxsize=8192)
def _time_tag(value: datetime, fmt: str, _language: str, _zone: str) -> Markup:
    if fmt == "medium":
        text = f"{flask_babel.format_date(value, 'medium')}, {flask_babel.format_time(value, 'short')}"
    else:
        text = flask_babel.format_datetime(value, fmt)
    return Markup('<time datetime="{}">{}</time>').format(value.isoformat(), text)


def time_tag(value: datetime, fmt: str = "medium") -> Markup:
    """``<time datetime="ISO">date</time>`` in the reader's language and time zone ("medium": date and
    short time; otherwise a Babel datetime format)."""
    return _time_tag(value, fmt, *_reader_key())


@lru_cache(maxsize=512)
def _status_badge(status: str, outcome: str | None, level: str | None, _language: str) -> Markup:
    if status == "closed":
        text = escape(label(STATUS, "closed"))
        if outcome:
            text += Markup(" — ") + escape(label(OUTCOME, outcome))
        html = Markup('<span class="badge badge-closed">{}</span>').format(text)
    else:
        html = Markup('<span class="badge badge-{}">{}</span>').format(status, label(STATUS, status))
    if level:
        html += Markup(' <span class="badge badge-escalated">{} ({})</span>').format(
            label(STATUS, "escalated"), label(LEVEL, level)
        )
    return html


def status_badge(status: str, outcome: str | None = None, level: str | None = None) -> Markup:
    """The status badge of a topic (with its outcome once closed), and its escalation badge if any."""
    return _status_badge(status, outcome or None, level or None, str(get_locale()))


class ReaderFormats:
    """time_tag() and status_badge() bound to the current reader's language and time zone, looked up once
    for a page of rows rather than once per row."""

    def __init__(self) -> None:
        self.language, self.zone = _reader_key()

    def time_tag(self, value: datetime, fmt: str = "medium") -> Markup:
        return _time_tag(value, fmt, self.language, self.zone)

    def status_badge(self, status: str, outcome: str | None = None, level: str | None = None) -> Markup:
        return _status_badge(status, outcome or None, level or None, self.language)


def options(choices: Any, selected: Any) -> Markup:
    """The ``<option>`` elements of a select: ``choices`` are (value, text) pairs; the one whose value
    reads as ``selected`` is selected (a filter form shows 200 organisations: no template loop). A tuple
    of plain pairs (the filter form's, kept by shortcache) is rendered once per selected value."""
    if isinstance(choices, tuple):
        try:
            return _options(choices, str(selected))
        except TypeError:  # something unhashable in it: render it afresh
            pass
    return _render_options(choices, str(selected))


@lru_cache(maxsize=256)
def _options(choices: tuple[tuple[Any, Any], ...], chosen: str) -> Markup:
    return _render_options(choices, chosen)


def _render_options(choices: Any, chosen: str) -> Markup:
    out = []
    for value, text in choices:
        out.append(
            f'<option value="{escape(value)}"{" selected" if str(value) == chosen else ""}>{escape(text)}</option>'
        )
    return Markup("".join(out))  # noqa: S704 (every value and text above went through escape())


def init_app(app: Flask) -> None:
    """Replace Flask-Babel's date filters by the memoised ones; expose the helpers to templates."""
    app.jinja_env.filters.update(
        dateformat=format_date, timeformat=format_time, datetimeformat=format_datetime
    )
    app.jinja_env.globals.update(time_tag=time_tag, status_badge_html=status_badge, options_html=options)
