"""Translated names of the values stored in the database (statuses, outcomes, modes, roles...)."""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask_babel import lazy_gettext as _l

STATUS = {"open": _l("Open"), "answered": _l("Answered"), "closed": _l("Closed"), "escalated": _l("Escalated")}
OUTCOME = {
    "solved": _l("Solved"),
    "study-needed": _l("Study needed"),
    "legal-impossibility": _l("Legal impossibility"),
    "duplicate": _l("Duplicate"),
    "no-action": _l("No action"),
}
LEVEL = {"national": _l("National level"), "european": _l("European level")}
ACCESS = {"full": _l("Public can read everything"), "titles": _l("Public sees titles only")}
DELIVERY = {
    "instant": _l("Every message, as it arrives"),
    "daily": _l("A daily digest"),
    "weekly": _l("A weekly digest"),
    "nomail": _l("No mail (read on the web)"),
}
ROLE = {"member": _l("Member"), "moderator": _l("Moderator"), "owner": _l("Owner")}
SUBSCRIPTION_STATUS = {
    "active": _l("Active"),
    "pending": _l("Waiting for confirmation"),
    "unsubscribed": _l("Unsubscribed"),
    "disabled": _l("Delivery stopped (bounces)"),
}
FOLLOW = {"follow": _l("Following"), "mute": _l("Muted")}
ORDER = {"date": _l("Newest first"), "relevance": _l("Most relevant first")}


def label(table: dict[str, Any], value: str | None) -> Any:
    if value is None:
        return ""
    return table.get(value, value)


def init_app(app: Flask) -> None:
    from . import actionlog

    actionlog.init_app(app)
    tables = {
        "status": STATUS,
        "outcome": OUTCOME,
        "level": LEVEL,
        "access": ACCESS,
        "delivery": DELIVERY,
        "role": ROLE,
        "substatus": SUBSCRIPTION_STATUS,
        "follow": FOLLOW,
        "order": ORDER,
    }

    def label_of(kind: str, value: str | None) -> Any:
        return label(tables[kind], value)

    def pair(value: str, kind: str) -> tuple[str, Any]:
        return value, label_of(kind, value)

    def zip_filter(first: Any, second: Any) -> list[tuple[Any, Any]]:
        return list(zip(first, second, strict=False))

    app.jinja_env.filters["pair"] = pair
    app.jinja_env.filters["zip"] = zip_filter
    app.jinja_env.globals["label"] = label_of
    app.jinja_env.globals["labels"] = tables
