"""The register of escalated obstacles: the list with its filters, each escalation with its follow-up,
moderators' forms (escalate a topic, change the state, add a note), and CSV/JSON exports.

Visibility: a topic's title, status and escalation (level, state, dates) are public like its title; the
notes — which may quote the discussion — are shown to whoever may read the topic in full. Moderators act on
the topics of the lists they moderate.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from passerelle import escalations as core
from passerelle.models import Escalation, Topic
from passerelle.models.escalation import STATES
from passerelle.models.topic import ESCALATION_LEVELS

from .app import NavItem
from .sheets import export_response
from .web import MAX_ID, can_read_topic, db, fail, login_url, now, settings, viewer

log = logging.getLogger(__name__)

bp = Blueprint("escalations", __name__)
NAV = (NavItem("escalations.index", _l("Escalations"), order=45),)

STATE_LABELS = {
    "escalated": _l("Escalated"),
    "acknowledged": _l("Acknowledged"),
    "in-progress": _l("In progress"),
    "resolved": _l("Resolved"),
    "withdrawn": _l("Withdrawn"),
}
LEVEL_LABELS = {"national": _l("National level"), "european": _l("European level")}
OPEN_FILTER = "open"


@dataclass(frozen=True)
class EntryView:
    entry: core.RegisterEntry
    readable: bool
    can_moderate: bool


def _views(entries: list[core.RegisterEntry]) -> list[EntryView]:
    v = viewer()
    return [EntryView(e, can_read_topic(e.topic, v), v.moderates(e.topic.list_id)) for e in entries]


def _filters() -> tuple[str, str]:
    state = request.args.get("state", "").strip()
    if state and state != OPEN_FILTER and state not in STATES:
        fail(400, _("Unknown state “%(value)s”.", value=state[:40]))
    level = request.args.get("level", "").strip()
    if level and level not in ESCALATION_LEVELS:
        fail(400, _("Unknown level “%(value)s”: national or european.", value=level[:40]))
    return state, level


def _entries(state: str, level: str) -> list[EntryView]:
    states = core.ACTIVE_STATES if state == OPEN_FILTER else ((state,) if state else None)
    entries = core.register(db(), states=states, level=level or None)
    # Topics merged away are followed on the topic they were merged into; their entries stay listed.
    return _views(entries)


def _records(views: list[EntryView]) -> list[dict[str, Any]]:
    base = settings().site.base_url
    return [core.entry_record(ev.entry, full=ev.readable, base_url=base) for ev in views]


@bp.route("/escalations")
def index() -> str:
    state, level = _filters()
    views = _entries(state, level)
    counts: dict[str, int] = {}
    for ev in _entries("", ""):
        counts[ev.entry.escalation.state] = counts.get(ev.entry.escalation.state, 0) + 1
    return render_template(
        "escalations/index.html", views=views, state=state, level=level, states=STATES,
        levels=ESCALATION_LEVELS, state_labels=STATE_LABELS, level_labels=LEVEL_LABELS, counts=counts,
        report_to=bool(str(settings().escalation.report_to).strip()), report_every=settings().escalation.report_every,
    )


@bp.route("/escalations.csv")
def index_csv() -> Response:
    state, level = _filters()
    return export_response(core.register_csv(_records(_entries(state, level))), "text/csv", "escalations.csv")


@bp.route("/escalations.json")
def index_json() -> Response:
    state, level = _filters()
    body = core.register_json(_records(_entries(state, level)), generated_at=now())
    return export_response(body, "application/json", "escalations.json")


def _get(escalation_id: int) -> EntryView:
    esc = db().get(Escalation, escalation_id)
    if esc is None:
        fail(404, _("There is no such escalation."))
    found = [e for e in core.register(db(), topic_id=esc.topic_id) if e.escalation.id == esc.id]
    if not found:
        fail(404, _("There is no such escalation."))
    return _views(found)[0]


@bp.route("/escalations/<id:escalation_id>")
def show(escalation_id: int) -> str:
    ev = _get(escalation_id)
    return render_template("escalations/show.html", ev=ev, states=STATES, state_labels=STATE_LABELS,
                           level_labels=LEVEL_LABELS, login_link=login_url(request.path))


def _text(name: str, *, limit: int = core.NOTE_MAX) -> str:
    value = request.form.get(name, "")
    value = value.replace("\r\n", "\n").strip()
    if len(value) > limit:
        fail(400, _("The note is too long (at most %(max)d characters).", max=limit))
    if any((ord(ch) < 32 and ch not in "\n\t") or ord(ch) == 0x7F for ch in value):
        fail(400, _("The note contains control characters; remove them."))
    return value


def _need_moderator(topic: Topic) -> None:
    v = viewer()
    if not v.signed_in:
        raise _Redirect(login_url(url_for("threads.topic", topic_id=topic.id)))
    if not v.moderates(topic.list_id):
        fail(403, _("Only the forum's moderators can escalate topics and follow escalations up."))


class _Redirect(Exception):
    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@bp.errorhandler(_Redirect)
def _redirect(exc: _Redirect) -> Any:
    return redirect(exc.location)


@bp.route("/escalations/new", methods=["POST"])
def create() -> Any:
    if not viewer().signed_in:
        return redirect(login_url(url_for("escalations.index")))
    raw = request.form.get("topic", "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10 or not 0 < int(raw) <= MAX_ID:
        fail(400, _("The value given for “%(name)s” is not valid.", name="topic"))
    topic = db().get(Topic, int(raw))
    if topic is None:
        fail(404, _("There is no such topic."))
    _need_moderator(topic)
    level = request.form.get("level", "").strip()
    if level not in ESCALATION_LEVELS:
        fail(400, _("Unknown level “%(value)s”: national or european.", value=level[:40]))
    note = _text("note")
    session = db()
    try:
        esc, created = core.escalate(session, topic, level, note=note, actor=viewer().member, now=now(), via="web")
    except core.SolvedTopicError:
        # Same rule as "#escalate" by mail: a topic closed as solved is reopened (or given another outcome)
        # before it goes to the register as an unresolved obstacle.
        session.rollback()
        flash(_("This topic is closed as solved, so it was not escalated. If the obstacle remains, reopen the "
                "topic or change its outcome, then escalate it."), "warning")
        return redirect(url_for("threads.topic", topic_id=topic.id), code=303)
    session.commit()
    if created:
        flash(_("The topic is escalated to the %(level)s and entered in the register.",
                level=str(LEVEL_LABELS[level]).lower()), "success")
    else:
        flash(_("The topic was already escalated to this level; your note was added."), "info")
    return redirect(url_for("escalations.show", escalation_id=esc.id), code=303)


@bp.route("/escalations/<id:escalation_id>", methods=["POST"])
def update(escalation_id: int) -> Any:
    esc = db().get(Escalation, escalation_id)
    topic = db().get(Topic, esc.topic_id) if esc is not None else None
    if esc is None or topic is None:
        fail(404, _("There is no such escalation."))
    _need_moderator(topic)
    state = request.form.get("state", "").strip() or esc.state
    if state not in STATES:
        fail(400, _("Unknown state “%(value)s”.", value=state[:40]))
    note = _text("note")
    session = db()
    changed = core.change_state(session, esc, state, actor=viewer().member, now=now(), note=note, via="web")
    session.commit()
    flash(_("Escalation updated.") if changed else _("Nothing changed."), "success" if changed else "info")
    return redirect(url_for("escalations.show", escalation_id=esc.id), code=303)


# --------------------------------------------------------------------------------------------------------
# The topic page (templates/sheets/_topic_extras.html)
# --------------------------------------------------------------------------------------------------------


@bp.app_template_global()
def topic_escalations(topic: Topic) -> list[EntryView]:
    return _views(core.register(db(), topic_id=topic.id))


@bp.app_template_global()
def escalation_state_label(state: str) -> Any:
    return STATE_LABELS.get(state, state)


@bp.app_template_global()
def escalation_levels() -> tuple[str, ...]:
    return ESCALATION_LEVELS
