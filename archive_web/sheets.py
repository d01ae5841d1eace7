"""Obstacle/Solution and Good practice sheets on the web: list, read, create from a topic, edit (each save a
version), history, publish, and exports (printable HTML, CSV, JSON).

Who sees what (one place: :func:`access`):

* drafts: the moderators of the sheet's list only (others get the same 404 as for a sheet that does not
  exist);
* published sheets: members of the list read them in full; public readers read them in full when the
  topic's category is open to the public ("full"), else the title, kind, category and status only.

The domain logic (pre-fill, validation, versions) lives in gateway.sheets; this module is the web around it.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import func, select

from gateway import sheets as core
from passerelle.models import Category, MailingList, Member, ModerationAction, Sheet, SheetVersion, Topic
from passerelle.models.sheet import KINDS, LEVELS, STATUSES

from .app import NavItem
from .render import linkify
from .web import (
    MAX_ID,
    Viewer,
    db,
    fail,
    lists_by_id,
    login_url,
    now,
    public_access,
    settings,
    viewer,
)

log = logging.getLogger(__name__)

bp = Blueprint("sheets", __name__)
NAV = (NavItem("sheets.index", _l("Sheets"), order=40),)

KIND_LABELS = {"obstacle": _l("Obstacle/Solution"), "practice": _l("Good practice")}
STATUS_LABELS = {"draft": _l("Draft"), "published": _l("Published")}
LEVEL_LABELS = {"local": _l("Local"), "regional": _l("Regional"), "national": _l("National"),
                "european": _l("European")}
SOLUTION_LABELS = {
    "found": _l("Solution found"),
    "partial": _l("Partial solution"),
    "pending": _l("Pending (study or escalation under way)"),
    "none": _l("No solution (legal impossibility)"),
}
# Field labels; the obstacle and solution fields say something else on a good practice sheet.
FIELD_LABELS: dict[str, Any] = {
    "title": _l("Title"),
    "category": _l("Category"),
    "countries": _l("Countries"),
    "border": _l("Border"),
    "domain": _l("Legal or administrative domain"),
    "level": _l("Level competent to solve it"),
    "obstacle": _l("The obstacle"),
    "solution_status": _l("Solution status"),
    "solution": _l("The solution, or why there is none"),
    "legal_references": _l("Legal references"),
    "contacts": _l("Contacts"),
}
PRACTICE_LABELS: dict[str, Any] = {
    "obstacle": _l("The practice: context and what was done"),
    "solution": _l("Results and lessons learnt"),
    "level": _l("Level at which it was done"),
}
FIELD_HELP: dict[str, Any] = {
    "countries": _l("Two-letter codes separated by spaces, like FR DE."),
    "border": _l("Country codes joined by a dash, like DE-FR."),
    "legal_references": _l("One per line: articles, laws, directives, regulations, conventions."),
    "contacts": _l("One per line. Remember that a published sheet may be public."),
}


def field_label(name: str, kind: str) -> Any:
    if kind == "practice" and name in PRACTICE_LABELS:
        return PRACTICE_LABELS[name]
    return FIELD_LABELS.get(name, name)


def error_text(err: core.FieldError, kind: str = "obstacle") -> str:
    """A reader-facing sentence for a validation error (the field is named in the reader's language)."""
    name = str(field_label(err.field, kind))
    if err.code == "required":
        return _("“%(field)s” must not be empty.", field=name)
    if err.code == "too_long":
        return _("“%(field)s” is too long (at most %(max)d characters).", field=name, max=err.limit)
    if err.code == "invalid_characters":
        return _("“%(field)s” contains control characters; remove them.", field=name)
    if err.code == "bad_choice":
        return _("“%(value)s” is not one of the choices for “%(field)s”.", value=err.value, field=name)
    if err.code == "bad_country":
        return _("“%(value)s” is not a country code: give two letters, like FR or DE.", value=err.value)
    if err.code == "bad_border":
        return _("“%(value)s” is not a border: give country codes joined by a dash, like DE-FR.", value=err.value)
    if err.code == "unknown_category":
        return _("There is no category “%(value)s” in this forum.", value=err.value)
    return _("The value given for “%(field)s” is not valid.", field=name)


# --------------------------------------------------------------------------------------------------------
# Access
# --------------------------------------------------------------------------------------------------------

NONE, TITLE, FULL, MODERATE = "none", "title", "full", "moderate"


def access(sheet: Sheet, topic: Topic | None = None, v: Viewer | None = None) -> str:
    """"moderate" (read, edit, publish), "full", "title" (title, kind, category, status) or "none"."""
    v = v or viewer()
    if v.moderates(sheet.list_id):
        return MODERATE
    if sheet.status != "published":
        return NONE
    if topic is None and sheet.topic_id is not None:
        topic = db().get(Topic, sheet.topic_id)
    if topic is not None:
        level = public_access(topic)
    else:
        ml = lists_by_id().get(sheet.list_id)
        level = ml.default_public_access if ml else "titles"
    return FULL if v.can_read(sheet.list_id, level) else TITLE


def get_sheet(sheet_id: int, *, need: str = TITLE) -> tuple[Sheet, Topic | None, str]:
    sheet = db().get(Sheet, sheet_id)
    topic = db().get(Topic, sheet.topic_id) if sheet is not None and sheet.topic_id else None
    level = access(sheet, topic) if sheet is not None else NONE
    if sheet is None or level == NONE:
        fail(404, _("There is no such sheet, or it is not published yet."))
    order = (NONE, TITLE, FULL, MODERATE)
    if order.index(level) < order.index(need):
        if need == MODERATE:
            if not viewer().signed_in:
                raise _Redirect(login_url())
            fail(403, _("Only the forum's moderators can change sheets."))
        if not viewer().signed_in:
            raise _Redirect(login_url())
        fail(403, _("Only the title of this sheet is public. Members of the forum can read it in full."))
    return sheet, topic, level


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@bp.errorhandler(_Redirect)
def _redirect(exc: _Redirect) -> Any:
    return redirect(exc.location)


def category_names(list_id: int) -> list[str]:
    return list(db().scalars(select(Category.name).where(Category.list_id == list_id).order_by(Category.name)))


# --------------------------------------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------------------------------------


# A byte order mark first: Excel reads a CSV file without one in the machine's legacy code page (accents
# broken); with it, as UTF-8. Other readers (Python's "utf-8-sig", LibreOffice, pandas) skip it.
UTF8_BOM = "\ufeff"
CSV_SEPARATORS = {"comma": ",", "semicolon": ";"}


def _csv_separator() -> str:
    """The field separator asked for by ``?sep=``: commas (RFC 4180) unless ``semicolon``, which Excel
    set to a language whose decimal mark is a comma (French, German...) expects."""
    name = request.args.get("sep", "comma")
    if name not in CSV_SEPARATORS:
        fail(400, _("The value given for “%(name)s” is not valid.", name="sep"))
    return CSV_SEPARATORS[name]


def export_response(body: str, mimetype: str, filename: str) -> Response:
    if mimetype == "text/csv":
        separator = _csv_separator()
        if separator != ",":
            out = io.StringIO()
            rows = csv.reader(io.StringIO(body, newline=""))
            csv.writer(out, delimiter=separator, lineterminator="\r\n").writerows(rows)
            body = out.getvalue()
        body = UTF8_BOM + body
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Type"] = f"{mimetype}; charset=utf-8"
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def csv_text(header: list[str] | tuple[str, ...], rows: list[list[str]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


def json_text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, indent=2)


def _record(sheet: Sheet, level: str, **kw: Any) -> dict[str, Any]:
    return core.record(sheet, full=level in (FULL, MODERATE), base_url=settings().site.base_url, **kw)


# --------------------------------------------------------------------------------------------------------
# List
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetRow:
    sheet: Sheet
    topic: Topic | None
    level: str


def _visible_rows(kind: str, status: str) -> list[SheetRow]:
    v = viewer()
    stmt = select(Sheet, Topic).outerjoin(Topic, Topic.id == Sheet.topic_id)
    moderated = sorted(v.moderator_list_ids) if not v.is_operator else None
    if v.is_operator:
        pass
    elif moderated:
        stmt = stmt.where((Sheet.status == "published") | Sheet.list_id.in_(moderated))
    else:
        stmt = stmt.where(Sheet.status == "published")
    if kind:
        stmt = stmt.where(Sheet.kind == kind)
    if status:
        stmt = stmt.where(Sheet.status == status)
    stmt = stmt.order_by(func.coalesce(Sheet.published_at, Sheet.updated_at).desc(), Sheet.id.desc())
    rows = []
    for sheet, topic in db().execute(stmt).all():
        level = access(sheet, topic, v)
        if level != NONE:
            rows.append(SheetRow(sheet, topic, level))
    return rows


def _list_filters() -> tuple[str, str]:
    kind = request.args.get("kind", "").strip()
    if kind and kind not in KINDS:
        fail(400, _("Unknown kind of sheet “%(value)s”: obstacle or practice.", value=kind[:40]))
    status = request.args.get("status", "").strip()
    if status and status not in STATUSES:
        fail(400, _("Unknown status “%(value)s”.", value=status[:40]))
    return kind, status


@bp.route("/sheets")
def index() -> str:
    kind, status = _list_filters()
    rows = _visible_rows(kind, status)
    return render_template("sheets/index.html", rows=rows, kind=kind, status=status, kinds=KINDS,
                           statuses=STATUSES, kind_labels=KIND_LABELS, status_labels=STATUS_LABELS)


@bp.route("/sheets.csv")
def index_csv() -> Response:
    kind, status = _list_filters()
    rows = [core.csv_row(_record(r.sheet, r.level)) for r in _visible_rows(kind, status)]
    return export_response(csv_text(core.EXPORT_COLUMNS, rows), "text/csv", "sheets.csv")


@bp.route("/sheets.json")
def index_json() -> Response:
    kind, status = _list_filters()
    records = [_record(r.sheet, r.level) for r in _visible_rows(kind, status)]
    payload = {"generated_at": now().isoformat(), "count": len(records), "sheets": records}
    return export_response(json_text(payload), "application/json", "sheets.json")


# --------------------------------------------------------------------------------------------------------
# One sheet
# --------------------------------------------------------------------------------------------------------


def _author(member_id: int | None) -> Member | None:
    return db().get(Member, member_id) if member_id else None


def _view_context(sheet: Sheet, topic: Topic | None, level: str, *, data: dict[str, Any] | None = None,
                  title: str | None = None) -> dict[str, Any]:
    ml = db().get(MailingList, sheet.list_id)
    return {
        "sheet": sheet,
        "topic": topic,
        "level": level,
        "full": level in (FULL, MODERATE),
        "can_moderate": level == MODERATE,
        "data": core.normalize(data if data is not None else (sheet.data or {})),
        "title": title if title is not None else sheet.title,
        "mailing_list": ml,
        "field_label": lambda name: field_label(name, sheet.kind),
        "kind_labels": KIND_LABELS,
        "status_labels": STATUS_LABELS,
        "level_labels": LEVEL_LABELS,
        "solution_labels": SOLUTION_LABELS,
        "login_link": login_url(request.path),
        "settings_base_url": settings().site.base_url.rstrip("/"),
    }


@bp.route("/sheets/<id:sheet_id>")
def show(sheet_id: int) -> str:
    sheet, topic, level = get_sheet(sheet_id)
    return render_template("sheets/show.html", **_view_context(sheet, topic, level))


@bp.route("/sheets/<id:sheet_id>/print")
def printable(sheet_id: int) -> str:
    sheet, topic, level = get_sheet(sheet_id, need=FULL)
    return render_template("sheets/print.html", printed_at=now(), **_view_context(sheet, topic, level))


@bp.route("/sheets/<id:sheet_id>.json")
def show_json(sheet_id: int) -> Response:
    sheet, _topic, level = get_sheet(sheet_id)
    return export_response(json_text(_record(sheet, level)), "application/json", f"sheet-{sheet.id}.json")


@bp.route("/sheets/<id:sheet_id>.csv")
def show_csv(sheet_id: int) -> Response:
    sheet, _topic, level = get_sheet(sheet_id)
    body = csv_text(core.EXPORT_COLUMNS, [core.csv_row(_record(sheet, level))])
    return export_response(body, "text/csv", f"sheet-{sheet.id}.csv")


@bp.route("/sheets/<id:sheet_id>/history")
def history(sheet_id: int) -> str:
    sheet, topic, level = get_sheet(sheet_id, need=MODERATE)
    versions = db().execute(
        select(SheetVersion, Member)
        .outerjoin(Member, Member.id == SheetVersion.author_id)
        .where(SheetVersion.sheet_id == sheet.id)
        .order_by(SheetVersion.number.desc())
    ).all()
    return render_template("sheets/history.html", versions=versions, **_view_context(sheet, topic, level))


@bp.route("/sheets/<id:sheet_id>/v/<id:number>")
def version(sheet_id: int, number: int) -> str:
    sheet, topic, level = get_sheet(sheet_id, need=MODERATE)
    found = db().scalar(select(SheetVersion).where(SheetVersion.sheet_id == sheet.id, SheetVersion.number == number))
    if found is None:
        fail(404, _("This sheet has no version %(num)d.", num=number))
    context = _view_context(sheet, topic, level, data=found.data or {}, title=found.title)
    return render_template("sheets/show.html", shown_version=found, version_author=_author(found.author_id),
                           **context)


# --------------------------------------------------------------------------------------------------------
# Changes (moderators)
# --------------------------------------------------------------------------------------------------------


def _form_int(name: str) -> int:
    """A database id from the form (1 … MAX_ID: larger numbers cannot name anything)."""
    value = request.form.get(name, "").strip()
    if not value.isascii() or not value.isdigit() or len(value) > 10 or not 0 < int(value) <= MAX_ID:
        fail(400, _("The value given for “%(name)s” is not valid.", name=name))
    return int(value)


@bp.route("/sheets/new", methods=["POST"])
def create() -> Any:
    v = viewer()
    if not v.signed_in:
        return redirect(login_url(url_for("sheets.index")))
    topic_id = _form_int("topic")
    kind = request.form.get("kind", "").strip()
    if kind not in KINDS:
        fail(400, _("Unknown kind of sheet “%(value)s”: obstacle or practice.", value=kind[:40]))
    session = db()
    topic = session.get(Topic, topic_id)
    # A topic merged into another (#merge) lives on in its target: the sheet is about that one.
    for _hop in range(20):
        if topic is None or topic.merged_into_id is None:
            break
        topic = session.get(Topic, topic.merged_into_id)
    if topic is None or not v.moderates(topic.list_id):
        if topic is not None and v.signed_in:
            fail(403, _("Only the forum's moderators can make sheets."))
        fail(404, _("There is no such topic."))
    existing = session.scalar(select(Sheet.id).where(Sheet.topic_id == topic.id, Sheet.kind == kind))
    sheet = core.create_sheet_from_topic(session, settings(), topic, kind, v.member, now=now())
    if existing is None:
        session.add(ModerationAction(
            list_id=topic.list_id, topic_id=topic.id, actor_id=v.member.id if v.member else None, action="sheet",
            detail=f"{kind} sheet #{sheet.id}", via="web", created_at=now(),
        ))
        flash(_("A draft sheet was made from the topic: check and complete it, then publish it."), "success")
    else:
        flash(_("This topic already has a sheet of this kind: here it is."), "info")
    session.commit()
    return redirect(url_for("sheets.edit", sheet_id=sheet.id), code=303)


def _edit_page(sheet: Sheet, topic: Topic | None, *, title: str, data: dict[str, Any],
               errors: list[core.FieldError], status: int = 200, conflict: bool = False,
               form_version: int | None = None) -> tuple[str, int]:
    names = category_names(sheet.list_id)
    if data.get("category") and data["category"] not in names:
        names.append(data["category"])
    by_field: dict[str, list[str]] = {}
    for err in errors:
        by_field.setdefault(err.field, []).append(error_text(err, sheet.kind))
    context = _view_context(sheet, topic, MODERATE, data=data, title=title)
    body = render_template(
        "sheets/edit.html", errors=by_field, error_list=[(e.field, error_text(e, sheet.kind)) for e in errors],
        conflict=conflict, categories=names, levels=LEVELS, solution_statuses=core.SOLUTION_STATUSES,
        field_help=FIELD_HELP, form_version=form_version if form_version is not None else sheet.version,
        countries_text=" ".join(data.get("countries") or []) if isinstance(data.get("countries"), list)
        else str(data.get("countries") or ""),
        **context,
    )
    return body, status


@bp.route("/sheets/<id:sheet_id>/edit", methods=["GET", "POST"])
def edit(sheet_id: int) -> Any:
    sheet, topic, _level = get_sheet(sheet_id, need=MODERATE)
    if request.method == "GET":
        return _edit_page(sheet, topic, title=sheet.title, data=core.normalize(sheet.data or {}), errors=[])
    form = {name: request.form.get(name, "") for name in ("title", *core.FIELDS)}
    title, data, errors = core.validate(form, categories=category_names(sheet.list_id))
    raw_version = request.form.get("version", "").strip()
    if not raw_version.isascii() or not raw_version.isdigit() or len(raw_version) > 9:
        fail(400, _("The value given for “%(name)s” is not valid.", name="version"))
    if errors:
        return _edit_page(sheet, topic, title=title or form["title"], data=data, errors=errors,
                          status=400, form_version=int(raw_version))
    if int(raw_version) != sheet.version:
        # Someone saved a newer version since this form was loaded: show the reader what they typed, the
        # newer version is one click away; nothing is overwritten.
        return _edit_page(sheet, topic, title=title, data=data, errors=[], status=409, conflict=True,
                          form_version=sheet.version)
    session = db()
    saved = core.save_version(session, sheet, title, data, viewer().member, now=now())
    session.commit()
    if saved is None:
        flash(_("Nothing changed."), "info")
    else:
        flash(_("Sheet saved (version %(num)d).", num=saved.number), "success")
    return redirect(url_for("sheets.show", sheet_id=sheet.id), code=303)


@bp.route("/sheets/<id:sheet_id>/status", methods=["POST"])
def set_status(sheet_id: int) -> Any:
    sheet, _topic, _level = get_sheet(sheet_id, need=MODERATE)
    status = request.form.get("status", "").strip()
    if status not in STATUSES:
        fail(400, _("Unknown status “%(value)s”.", value=status[:40]))
    session = db()
    changed = core.set_status(session, sheet, status, viewer().member, now=now())
    session.commit()
    if not changed:
        flash(_("Nothing changed."), "info")
    elif status == "published":
        flash(_("The sheet is published."), "success")
    else:
        flash(_("The sheet is back to draft: only moderators see it."), "success")
    return redirect(url_for("sheets.show", sheet_id=sheet.id), code=303)


# --------------------------------------------------------------------------------------------------------
# The topic page: its sheets and escalations (templates/sheets/_topic_extras.html)
# --------------------------------------------------------------------------------------------------------


@bp.app_template_global()
def topic_sheets(topic: Topic) -> list[SheetRow]:
    """The sheets of ``topic`` the reader may see (drafts for its moderators only)."""
    v = viewer()
    rows = []
    for sheet in core.sheets_of_topic(db(), topic.id):
        level = access(sheet, topic, v)
        if level != NONE:
            rows.append(SheetRow(sheet, topic, level))
    return rows


@bp.app_template_global()
def sheet_kind_label(kind: str) -> Any:
    return KIND_LABELS.get(kind, kind)


@bp.app_template_global()
def sheet_status_label(status: str) -> Any:
    return STATUS_LABELS.get(status, status)


@bp.app_template_filter("sheet_text")
def sheet_text(value: str | None) -> Markup:
    """Text of a sheet field or a note: escaped, its URLs as links (white space kept by the stylesheet)."""
    return linkify(value or "")


@bp.app_template_global()
def sheet_kinds() -> tuple[str, ...]:
    return KINDS
