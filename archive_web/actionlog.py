"""The moderation log, held messages and spool states in the reader's language.

The gateway, the scheduler and the web pages store moderation actions, their details, held reasons and
spool states as short English texts (they are also read by operators in the database and the logs).
They are translated when shown: the action and "via" by name, the details and reasons by recognising the
few fixed English phrasings written by the code (gateway/commands.py, gateway/moderation.py,
gateway/rules/*.py, gateway/sheets.py, passerelle/escalations.py, archive_web/moderation.py). What the
people wrote (subjects, notes, names, addresses) is kept as it is; a text in no known form is shown
unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .labels import LEVEL, OUTCOME, ROLE, STATUS, SUBSCRIPTION_STATUS, label

ACTIONS = {
    "approve": _l("Held message approved"),
    "reject": _l("Held message rejected"),
    "discard": _l("Held message discarded"),
    "expire": _l("Held message expired"),
    "tag": _l("Tags"),
    "category": _l("Category"),
    "close": _l("Closed"),
    "reopen": _l("Reopened"),
    "escalate": _l("Escalated"),
    "merge": _l("Merged"),
    "split": _l("Split"),
    "split-from": _l("Split off"),
    "sheet": _l("Sheet created"),
    "sheet-edit": _l("Sheet edited"),
    "sheet-publish": _l("Sheet published"),
    "sheet-unpublish": _l("Sheet withdrawn"),
    "escalation-state": _l("Escalation followed up"),
    "escalation-note": _l("Escalation note"),
    "category-create": _l("Category created"),
    "category-update": _l("Category changed"),
    "category-merge": _l("Categories merged"),
    "topic-update": _l("Topic changed"),
    "member-add": _l("Member added"),
    "member-update": _l("Member changed"),
    "organisation": _l("Organisation saved"),
}
VIA = {
    "mail": _l("by mail"),
    "mail-confirmed": _l("by mail, confirmed"),
    "web": _l("on the web"),
    "web-confirmed": _l("on the web, confirmed"),
    "scheduler": _l("automatically"),
}
DECISIONS = {
    "approved": _l("Approved"),
    "rejected": _l("Rejected"),
    "discarded": _l("Discarded"),
    "expired": _l("Expired unreviewed"),
}
# States of the inbound spool and of the outbox (passerelle/models/inbound.py and outbox.py).
SPOOL_STATES = {
    "new": _l("Waiting"),
    "processing": _l("Being processed"),
    "done": _l("Archived"),
    "held": _l("Held for moderation"),
    "shunted": _l("Shunted"),
    "duplicate": _l("Duplicate"),
    "bounce": _l("Bounce"),
    "command": _l("Command"),
    "dropped": _l("Dropped"),
}
OUTBOX_STATES = {
    "pending": _l("Waiting"),
    "sending": _l("Being sent"),
    "sent": _l("Sent"),
    "failed": _l("Failed"),
}
SHEET_KINDS = {"obstacle": _l("Obstacle/Solution"), "practice": _l("Good practice")}
ESCALATION_STATES = {
    "escalated": _l("Escalated"),
    "acknowledged": _l("Acknowledged"),
    "in-progress": _l("In progress"),
    "resolved": _l("Resolved"),
    "withdrawn": _l("Withdrawn"),
}
DELIVERY_SHORT = {
    "instant": _l("every message"),
    "daily": _l("daily digest"),
    "weekly": _l("weekly digest"),
    "nomail": _l("no mail"),
}

_DASH = " — "
_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _with_rest(text: str, rest: str | None) -> str:
    return f"{text}{_DASH}{rest}" if rest else text


def _held(m: re.Match[str]) -> str:
    return _("held message #%(id)s from %(sender)s: %(subject)s", id=m["id"], sender=m["sender"] or "?",
             subject=m["rest"])


def _close(m: re.Match[str]) -> str:
    outcome = m["outcome"]
    text = _("no outcome") if outcome == "(no outcome)" else str(label(OUTCOME, outcome))
    return _with_rest(text, m["note"])


def _escalate(m: re.Match[str]) -> str:
    text = str(label(LEVEL, m["level"]))
    if m["already"]:
        text = _("%(level)s (already escalated)", level=text)
    return _with_rest(text, m["note"])


def _status_change(m: re.Match[str]) -> str:
    return _("status: %(old)s → %(new)s", old=label(STATUS, m["old"]), new=label(STATUS, m["new"]))


def _topic_update_part(part: str) -> str:
    for pattern, render in _TOPIC_UPDATE_PARTS:
        m = pattern.fullmatch(part)
        if m:
            return render(m)
    return part


_TOPIC_UPDATE_PARTS: list[_Rule] = [
    (re.compile(r"close (?P<outcome>[a-z-]+|\(no outcome\))(?P<note>)"),
     lambda m: _("closed: %(outcome)s", outcome=_close(m))),
    (re.compile(r"status (?P<old>[a-z]+) -> (?P<new>[a-z]+)"), _status_change),
    (re.compile(r"category -> none"), lambda m: _("no category")),
    (re.compile(r"category -> (?P<id>\d+)"), lambda m: _("category #%(id)s", id=m["id"])),
    (re.compile(r"tags ?(?P<tags>.*)"), lambda m: _("tags: %(tags)s", tags=m["tags"] or "—")),
]

# action -> rules tried in order on the whole detail text.
_RULES: dict[str, list[_Rule]] = {
    **{
        action: [(re.compile(r"held #(?P<id>\d+) from (?P<sender>\S*): (?P<rest>.*)", re.S), _held)]
        for action in ("approve", "reject", "discard", "expire")
    },
    "close": [(re.compile(r"(?P<outcome>[a-z-]+|\(no outcome\))(?: — (?P<note>.*))?", re.S), _close)],
    "escalate": [(
        re.compile(r"(?P<level>national|european)(?P<already> \(already escalated\))?(?:(?: —|:) (?P<note>.*))?",
                   re.S),
        _escalate,
    )],
    "reopen": [(re.compile(r"was (?P<status>[a-z]+)"),
                lambda m: _("was %(status)s", status=label(STATUS, m["status"])))],
    "tag": [(re.compile(r"\(no change\)"), lambda m: _("no change"))],
    "category": [(re.compile(r"(?P<name>.*) \(created\)", re.S),
                  lambda m: _("%(name)s (new category)", name=m["name"]))],
    "sheet": [(re.compile(r"(?P<kind>obstacle|practice) sheet #(?P<id>\d+)"),
               lambda m: _("%(kind)s sheet #%(id)s", kind=label(SHEET_KINDS, m["kind"]), id=m["id"]))],
    **{
        action: [(re.compile(r"sheet #(?P<id>\d+) version (?P<num>\d+)"),
                  lambda m: _("sheet #%(id)s, version %(num)s", id=m["id"], num=m["num"]))]
        for action in ("sheet-edit", "sheet-publish", "sheet-unpublish")
    },
    "escalation-state": [(
        re.compile(r"#(?P<id>\d+) (?P<old>[a-z-]+) → (?P<new>[a-z-]+)"),
        lambda m: _("escalation #%(id)s: %(old)s → %(new)s", id=m["id"], old=label(ESCALATION_STATES, m["old"]),
                    new=label(ESCALATION_STATES, m["new"])),
    )],
    "escalation-note": [(re.compile(r"#(?P<id>\d+)"), lambda m: _("escalation #%(id)s", id=m["id"]))],
    "merge": [(
        re.compile(r"topic #(?P<source>\d+) merged into #(?P<target>\d+) \((?P<num>\d+) messages\)"),
        lambda m: _("topic #%(source)s merged into #%(target)s (%(num)s messages)", source=m["source"],
                    target=m["target"], num=m["num"]),
    )],
    "split": [(
        re.compile(r"(?P<num>\d+) message\(s\) from (?P<mid><[^>]*>) moved to topic #(?P<id>\d+)"),
        lambda m: _("%(num)s messages from %(mid)s moved to topic #%(id)s", num=m["num"], mid=m["mid"],
                    id=m["id"]),
    )],
    "split-from": [(
        re.compile(r"(?P<num>\d+) message\(s\) split from topic #(?P<id>\d+)"),
        lambda m: _("%(num)s messages split from topic #%(id)s", num=m["num"], id=m["id"]),
    )],
    "category-create": [(
        re.compile(r"(?P<name>.*) \((?P<access>full|titles)\)", re.S),
        lambda m: _("%(name)s (public: %(access)s)", name=m["name"],
                    access=_("everything") if m["access"] == "full" else _("titles only")),
    )],
    "member-add": [(
        re.compile(r"(?P<email>\S+) \((?P<role>[a-z]+)\)"),
        lambda m: f"{m['email']} ({label(ROLE, m['role'])})",
    )],
    "member-update": [(
        re.compile(r"(?P<email>\S+): (?P<role>[a-z]+), (?P<status>[a-z]+), (?P<mode>[a-z]+)"),
        lambda m: f"{m['email']}: {label(ROLE, m['role'])}, {label(SUBSCRIPTION_STATUS, m['status'])}, "
                  f"{label(DELIVERY_SHORT, m['mode'])}",
    )],
    "topic-update": [(re.compile(r".+", re.S), lambda m: "; ".join(_topic_update_part(p) for p in m[0].split("; ")))],
}

# Why a message was held (gateway/rules/membership.py and size.py).
_HELD_REASONS: list[_Rule] = [
    (re.compile(r"(?P<who>.+) is not a member of (?P<list>\S+)", re.S),
     lambda m: _("%(who)s is not a member of the list %(list)s", who=m["who"], list=m["list"])),
    (re.compile(r"the first (?P<first>\d+) posts of a new member are checked by a moderator"
                r" \(this is post (?P<n>\d+)\)"),
     lambda m: _("The first %(first)s posts of a new member are checked by a moderator (this is post %(n)s).",
                 first=m["first"], n=m["n"])),
    (re.compile(r"the message is (?P<size>\d+) bytes, over the list's limit of (?P<limit>\d+) bytes"),
     lambda m: _("The message is %(size)s, over the list's limit of %(limit)s.", size=filesize(int(m["size"])),
                 limit=filesize(int(m["limit"])))),
]


def _apply(rules: list[_Rule], text: str) -> str | None:
    for pattern, render in rules:
        m = pattern.fullmatch(text)
        if m:
            return render(m)
    return None


def action_name(action: str) -> str:
    """The name of a logged moderation action in the reader's language (unknown ones as stored)."""
    return str(label(ACTIONS, action))


def via_name(via: str) -> str:
    return str(label(VIA, via))


def action_detail(action: str, detail: str | None) -> str:
    """The detail of a logged moderation action in the reader's language: the fixed English phrasing is
    translated, what people wrote is kept; a detail in no known form is shown as stored."""
    if not detail:
        return ""
    rules = _RULES.get(action)
    translated = _apply(rules, detail) if rules else None
    return translated if translated is not None else detail


def held_reason(reason: str | None) -> str:
    """Why a message was held, in the reader's language (a reason in no known form as stored)."""
    if not reason:
        return ""
    translated = _apply(_HELD_REASONS, reason)
    return translated if translated is not None else reason


def held_decision(decision: str | None) -> str:
    return str(label(DECISIONS, decision))


def filesize(size: int) -> str:
    """A size in bytes for people, with the reader's decimal separator and unit ("69 o", "1,5 Mo")."""
    from flask_babel import format_decimal

    if size < 1024:
        return _("%(num)s B", num=format_decimal(size, "#,##0"))
    if size < 1024 * 1024:
        return _("%(num)s KB", num=format_decimal(round(size / 1024), "#,##0"))
    return _("%(num)s MB", num=format_decimal(size / (1024 * 1024), "#,##0.0"))


def init_app(app: Flask) -> None:
    globals_: dict[str, Any] = {
        "action_name": action_name,
        "via_name": via_name,
        "action_detail": action_detail,
        "held_reason": held_reason,
        "held_decision": held_decision,
        "spool_states": SPOOL_STATES,
        "outbox_states": OUTBOX_STATES,
    }
    app.jinja_env.globals.update(globals_)
    app.jinja_env.filters["human_size"] = filesize
