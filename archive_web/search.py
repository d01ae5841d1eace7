"""The search page: one box, and criteria (author, organisation, country, border, category, tag, status,
dates, titles only) in a folded form; results with highlighted snippets, newest first or by relevance.

What a reader may see is decided inside passerelle.search (SearchQuery.member_list_ids / see_everything).
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from flask import Blueprint, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from passerelle.models import Category, Organisation, Tag
from passerelle.search import ORDERS, STATUS_FILTERS, SearchError, SearchPage, SearchQuery, search_messages

from .app import NavItem
from .web import MAX_ID, db, fail, settings, viewer

bp = Blueprint("search", __name__)
NAV = (NavItem("search.search", _l("Search"), order=30),)

MAX_TEXT = 500
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_BORDER = re.compile(r"^[A-Za-z]{2}(?:-[A-Za-z]{2})+$")
# The query-string names of the criteria, for links (next page, feed of this search).
ARG_NAMES = ("q", "author", "org", "country", "border", "category", "tag", "status", "from", "to", "titles", "order")


def _int(name: str) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10 or not 0 < int(value) <= MAX_ID:
        fail(400, _("The value given for “%(name)s” is not valid.", name=name))
    return int(value)


def _date(name: str) -> date | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    try:
        if len(value) != 10:
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        fail(400, _("Dates are written year-month-day, like 2026-11-02."))


def parse_search_query(*, page_size: int | None = None, browse: bool = False) -> SearchQuery:
    """The SearchQuery described by the request's query string, for the signed-in (or anonymous) reader."""
    args = request.args
    text = args.get("q", "")
    author = args.get("author", "")
    tag = args.get("tag", "").strip().lower()
    if len(text) > MAX_TEXT or len(author) > 200 or len(tag) > 60:
        fail(400, _("The search is too long."))
    if any("\x00" in value for value in (text, author, tag)):
        fail(400, _("The search contains characters that cannot be searched."))
    country = args.get("country", "").strip()
    if country and not _COUNTRY.match(country):
        fail(400, _("A country is given as a two-letter code, like FR or DE."))
    border = args.get("border", "").strip()
    if border and not _BORDER.match(border):
        fail(400, _("A border is given as country codes joined by a dash, like DE-FR."))
    status = args.get("status", "").strip()
    if status and status not in STATUS_FILTERS:
        fail(400, _("Unknown status “%(value)s”.", value=status[:40]))
    order = args.get("order", "date").strip() or "date"
    if order not in ORDERS:
        fail(400, _("Unknown sort order."))
    v = viewer()
    query = SearchQuery(
        text=text,
        author=author,
        organisation_id=_int("org"),
        country=country.upper(),
        border=border.upper(),
        category_id=_int("category"),
        tag=tag,
        status=status,
        date_from=_date("from"),
        date_to=_date("to"),
        titles_only=args.get("titles", "") in ("1", "on", "true"),
        order=order,
        page=1 if (page := _int("page")) is None else page,
        page_size=page_size or settings().web.page_size,
        member_list_ids=v.member_list_ids,
        see_everything=v.see_everything,
        browse=browse,
    )
    try:
        query.validate()
    except SearchError:
        fail(400, _("This search cannot be run: check the dates and the page number."))
    return query


def current_args(**changes: Any) -> dict[str, Any]:
    values = {name: request.args.get(name, "") for name in (*ARG_NAMES, "page")}
    values.update(changes)
    return {k: v for k, v in values.items() if v not in ("", None)}


@bp.route("/search")
def search() -> str:
    query = parse_search_query()
    page: SearchPage | None = None
    if not query.is_empty:
        page = search_messages(db(), query)
    v = viewer()
    criteria_used = any(
        request.args.get(name) for name in ("author", "org", "country", "border", "category", "tag", "status",
                                            "from", "to", "titles")
    )
    session = db()
    choices = {
        "categories": session.scalars(select(Category).order_by(Category.name)).all(),
        "organisations": session.scalars(select(Organisation).order_by(Organisation.name)).all(),
        "countries": session.scalars(select(Organisation.country).distinct().order_by(Organisation.country)).all(),
        "borders": session.scalars(
            select(Organisation.border).where(Organisation.border != "").distinct().order_by(Organisation.border)
        ).all(),
        "tags": session.scalars(select(Tag.name).distinct().order_by(Tag.name)).all() if v.is_member else [],
        "statuses": STATUS_FILTERS,
    }
    return render_template(
        "search.html",
        query=query,
        page=page,
        criteria_used=criteria_used,
        choices=choices,
        quick_query=query.text,
        prev_url=url_for("search.search", **current_args(page=query.page - 1)) if page and page.has_prev else None,
        next_url=url_for("search.search", **current_args(page=query.page + 1)) if page and page.has_next else None,
        feed_url=url_for("feeds.search", **current_args(page="")),
        members_only_hint=not v.signed_in,
    )
