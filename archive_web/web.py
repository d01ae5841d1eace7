"""Per-request helpers shared by every blueprint: database session, clock, signed-in reader, visibility.

Visibility rule (one place): a topic is readable in full by a reader who is a member of its list (an
active or bounce-disabled subscription), by operators, and by everyone when its category — or, without
category, its list — is open to the public in "full". Otherwise readers see its title, category and
status only: never bodies, authors, addresses or attachments.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn, TypeVar, cast
from urllib.parse import quote, urlsplit

from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from sqlalchemy import ColumnElement, false, func, or_, select, true
from sqlalchemy.orm import Session
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from passerelle.config import Settings
from passerelle.models import Category, MailingList, Member, Subscription, Topic

from .app import WebState

log = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])

MEMBER_STATUSES = ("active", "disabled")
# The largest id a form or query string may name (32-bit integer columns on PostgreSQL).
MAX_ID = 2**31 - 1
MODERATOR_ROLES = ("moderator", "owner")


def state() -> WebState:
    return cast(WebState, current_app.extensions["passerelle"])


def settings() -> Settings:
    return state().settings


def now() -> datetime:
    return state().clock()


def db() -> Session:
    """The request's session: a reader's for GET/HEAD, a writer's otherwise (closed after the request)."""
    if "db" not in g:
        st = state()
        factory = st.reader_factory if request.method in ("GET", "HEAD", "OPTIONS") else st.writer_factory
        g.db = factory()
    return cast(Session, g.db)


def discard_session() -> None:
    """Roll back and close the request's session (after an error, before rendering the error page)."""
    session_ = g.pop("db", None)
    if session_ is not None:
        try:
            session_.rollback()
        finally:
            session_.close()


class PageError(HTTPException):
    """An HTTP error whose description was written for readers (shown on the error page)."""

    _passerelle_message = True

    def __init__(self, code: int, message: str) -> None:
        super().__init__(description=message)
        self.code = code


def fail(code: int, message: str) -> NoReturn:
    """Stop with an error page saying ``message`` (already translated; never quote private content)."""
    raise PageError(code, message)


# --------------------------------------------------------------------------------------------------------
# The reader
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Viewer:
    member: Member | None = None
    member_list_ids: frozenset[int] = field(default_factory=frozenset)
    moderator_list_ids: frozenset[int] = field(default_factory=frozenset)
    is_operator: bool = False

    @property
    def signed_in(self) -> bool:
        return self.member is not None

    @property
    def is_member(self) -> bool:
        return bool(self.member_list_ids) or self.is_operator

    @property
    def is_moderator(self) -> bool:
        return bool(self.moderator_list_ids) or self.is_operator

    @property
    def see_everything(self) -> bool:
        return self.is_operator

    def moderates(self, list_id: int) -> bool:
        return self.is_operator or list_id in self.moderator_list_ids

    def can_read(self, list_id: int, public_access: str) -> bool:
        return self.is_operator or list_id in self.member_list_ids or public_access == "full"


ANONYMOUS = Viewer()


def viewer() -> Viewer:
    if "viewer" not in g:
        g.viewer = _load_viewer()
    return cast(Viewer, g.viewer)


def _load_viewer() -> Viewer:
    member_id = session.get("mid")
    expires = session.get("exp")
    if not isinstance(member_id, int) or not isinstance(expires, (int, float)):
        return ANONYMOUS
    if expires <= now().timestamp():
        session.pop("mid", None)
        session.pop("exp", None)
        return ANONYMOUS
    member = db().get(Member, member_id)
    if member is None:
        session.clear()
        return ANONYMOUS
    subs = db().scalars(select(Subscription).where(Subscription.member_id == member.id)).all()
    if member.is_operator:
        all_lists = frozenset(db().scalars(select(MailingList.id)).all())
        return Viewer(member=member, member_list_ids=all_lists, moderator_list_ids=all_lists, is_operator=True)
    active = [s for s in subs if s.status in MEMBER_STATUSES]
    return Viewer(
        member=member,
        member_list_ids=frozenset(s.list_id for s in active),
        moderator_list_ids=frozenset(s.list_id for s in active if s.role in MODERATOR_ROLES),
    )


def sign_in(member: Member) -> None:
    """Start a fresh session for ``member`` (a new CSRF token too: nothing from before signing in is kept)."""
    lang = session.get("lang")
    session.clear()
    session.permanent = True
    session["mid"] = member.id
    session["exp"] = now().timestamp() + settings().web.session_hours * 3600
    if lang:
        session["lang"] = lang
    g.pop("viewer", None)


def sign_out() -> None:
    lang = session.get("lang")
    session.clear()
    if lang:
        session["lang"] = lang
    g.pop("viewer", None)


def login_url(next_path: str | None = None) -> str:
    return url_for("auth.login", next=safe_next(next_path or request.full_path))


def member_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not viewer().signed_in:
            return redirect(login_url())
        return view(*args, **kwargs)

    return cast(F, wrapper)


def moderator_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from flask_babel import gettext as _

        v = viewer()
        if not v.signed_in:
            return redirect(login_url())
        if not v.is_moderator:
            fail(403, _("This page is for the forum's moderators."))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def operator_required(view: F) -> F:
    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from flask_babel import gettext as _

        v = viewer()
        if not v.signed_in:
            return redirect(login_url())
        if not v.is_operator:
            fail(403, _("This page is for the forum's operators."))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def safe_next(value: str | None) -> str:
    """A local path to go back to after signing in or changing language; anything else becomes "/"."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value.rstrip("?") or "/"


# --------------------------------------------------------------------------------------------------------
# Visibility
# --------------------------------------------------------------------------------------------------------


def lists_by_id() -> dict[int, MailingList]:
    if "lists" not in g:
        g.lists = {ml.id: ml for ml in db().scalars(select(MailingList)).all()}
    return cast(dict[int, MailingList], g.lists)


def public_access(topic: Topic) -> str:
    if topic.category is not None:
        return topic.category.public_access
    ml = lists_by_id().get(topic.list_id)
    return ml.default_public_access if ml else "titles"


def category_access(category: Category) -> str:
    return category.public_access


def can_read_topic(topic: Topic, v: Viewer | None = None) -> bool:
    return (v or viewer()).can_read(topic.list_id, public_access(topic))


def can_read_category(category: Category, v: Viewer | None = None) -> bool:
    return (v or viewer()).can_read(category.list_id, category.public_access)


def readable_clause(v: Viewer | None = None) -> ColumnElement[bool]:
    """SQL: the topic is readable in full (the query must outer-join Category on Topic.category_id)."""
    v = v or viewer()
    if v.see_everything:
        return true()
    default_full = select(MailingList.id).where(MailingList.default_public_access == "full")
    public_full = or_(
        Category.public_access == "full",
        (Topic.category_id.is_(None)) & Topic.list_id.in_(default_full),
    )
    if v.member_list_ids:
        return or_(Topic.list_id.in_(sorted(v.member_list_ids)), public_full)
    return public_full


def nothing() -> ColumnElement[bool]:
    return false()


def topic_count(*conditions: ColumnElement[bool]) -> int:
    return int(db().scalar(select(func.count(Topic.id)).where(*conditions)) or 0)


# --------------------------------------------------------------------------------------------------------
# URLs
# --------------------------------------------------------------------------------------------------------


def message_url(message_id: str, *, raw: bool = False, external: bool = False) -> str:
    """/m/<Message-ID, percent-encoded> (or .../raw): the permalink of a message."""
    path = "/m/" + quote(message_id, safe="@!$&'()*+,;=:~-._")
    if raw:
        path += "/raw"
    if external:
        return settings().site.base_url.rstrip("/") + path
    return path


def site_title() -> str:
    """The name readers see for the site (page titles and header, feeds, sign-in mail): ``site.name`` when
    set, else the title of the forum (``lists.default_list``, e.g. "Forum du réseau transfrontalier"), else
    "Passerelle". Kept a few seconds like the other per-page values (shortcache)."""
    configured = str(settings().site.name)
    if configured:
        return configured
    from . import shortcache

    def default_list_title() -> str:
        name = settings().lists.default_list
        return db().scalar(select(MailingList.title).where(MailingList.name == name)) or "Passerelle"

    return shortcache.cache().get(("site-title",), default_list_title)


def external_url(endpoint: str, **values: Any) -> str:
    """An absolute URL on the configured public address (site.base_url), for mails and feeds."""
    return settings().site.base_url.rstrip("/") + url_for(endpoint, **values)


def init_app(app: Flask) -> None:
    @app.teardown_request
    def _close_db(_exc: BaseException | None) -> None:
        discard_session()

    @app.after_request
    def _security_headers(response: Response) -> Response:
        headers = response.headers
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "same-origin")
        # No script at all: every page works without JavaScript, and injected markup cannot run any.
        headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; img-src 'self' data:; style-src 'self'; form-action 'self';"
            " frame-ancestors 'none'; base-uri 'none'",
        )
        if "mid" in session:
            headers.setdefault("Cache-Control", "private, no-store")
        return response

    @app.context_processor
    def _page_globals() -> dict[str, Any]:
        st = state()
        try:
            v = viewer()
        except Exception:  # a broken database must not break the error page too
            log.exception("could not load the signed-in reader")
            v = ANONYMOUS
        allowed = {
            "": True,
            "member": v.signed_in,
            "moderator": v.is_moderator,
            "operator": v.is_operator,
        }
        nav = [item for item in st.nav if allowed.get(item.requires, False)]
        try:
            site_name = site_title()
        except Exception:  # the error page of a broken database still needs a name
            log.exception("could not read the forum's title")
            site_name = st.settings.site.name or "Passerelle"
        return {
            "viewer": v,
            "nav_items": nav,
            "site_name": site_name,
            "languages": st.languages,
            "here": request.full_path.rstrip("?") if request else "/",
        }

    @app.before_request
    def _reject_bad_paths() -> None:
        # NUL bytes and lone surrogates in a path reach no page; answer 404 rather than let a driver choke.
        if "\x00" in request.path:
            abort(404)
