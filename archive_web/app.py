"""The application factory.

Every page module is a blueprint listed in :data:`BLUEPRINTS`; a module exposes ``bp`` (its Blueprint) and
may expose ``NAV`` (a tuple of :class:`NavItem`) for the navigation bar of ``base.html``. Adding a module
(sheets, overview...) is one line in BLUEPRINTS, or ``create_app(..., extra_blueprints=("pkg.module",))``.
Routes take database ids with the ``<id:name>`` converter (1 … 2**31-1; anything else is a 404).
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, g, render_template, request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.exceptions import HTTPException, InternalServerError
from werkzeug.routing import IntegerConverter

from passerelle.config import Settings
from passerelle.db import make_engine, make_session_factory
from passerelle.tokens import secret_key

log = logging.getLogger(__name__)

BLUEPRINTS: tuple[str, ...] = (
    "archive_web.core",
    "archive_web.threads",
    "archive_web.search",
    "archive_web.auth",
    "archive_web.account",
    "archive_web.moderation",
    "archive_web.feeds",
    "archive_web.status",
    "archive_web.sheets",
    "archive_web.escalations",
    "archive_web.overview",
    "archive_web.digest_links",
)

# Who may see a navigation entry.
NAV_REQUIRES = ("", "member", "moderator", "operator")


class IdConverter(IntegerConverter):
    """``<id:name>``: a database id. Numbers beyond a 32-bit integer column cannot name anything: 404,
    instead of an overflow error from the database driver."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(map, min=1, max=2**31 - 1)


@dataclass(frozen=True)
class NavItem:
    """An entry of the navigation bar: ``label`` is a lazy_gettext string, ``requires`` one of NAV_REQUIRES."""

    endpoint: str
    label: Any
    requires: str = ""
    order: int = 100

    def __post_init__(self) -> None:
        if self.requires not in NAV_REQUIRES:
            raise ValueError(f"NavItem.requires must be one of {NAV_REQUIRES}, not {self.requires!r}")


@dataclass
class WebState:
    """What every request needs, kept on ``app.extensions["passerelle"]`` (one per app, no globals)."""

    settings: Settings
    # Readers' sessions (GET) never wait for a writer; writers' sessions (POST) take SQLite's write lock
    # when they begin, so that a web form and the gateway queue instead of one failing midway.
    reader_factory: sessionmaker[Session]
    writer_factory: sessionmaker[Session]
    clock: Callable[[], datetime]
    nav: list[NavItem] = field(default_factory=list)
    # Engines create_app made itself (none when the caller gave a session factory on another database).
    owned_engines: list[Engine] = field(default_factory=list)

    def dispose(self) -> None:
        """Close the connections of the engines this app created (tests, or an app being replaced)."""
        for engine in self.owned_engines:
            engine.dispose()

    @property
    def languages(self) -> tuple[str, ...]:
        return tuple(self.settings.site.languages)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _writer_factory(
    settings: Settings, reader: sessionmaker[Session], owned: list[Engine]
) -> sessionmaker[Session]:
    bind = reader.kw.get("bind")
    if bind is None or bind.dialect.name != "sqlite":
        return reader
    database = bind.url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return reader
    engine = make_engine(
        bind.url.render_as_string(hide_password=False),
        busy_timeout=settings.database.sqlite_busy_timeout,
        sqlite_immediate=True,
    )
    owned.append(engine)
    return make_session_factory(engine)


def create_app(
    settings: Settings,
    *,
    session_factory: sessionmaker[Session] | None = None,
    clock: Callable[[], datetime] | None = None,
    extra_blueprints: Iterable[str] = (),
) -> Flask:
    """The web archive for ``settings``; ``session_factory`` defaults to the configured database."""
    from . import csrf, formats, i18n, labels, shortcache, web

    app = Flask(__name__)
    app.url_map.converters["id"] = IdConverter
    app.config.update(
        SECRET_KEY=secret_key(settings),
        SESSION_COOKIE_NAME="passerelle_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.site.base_url.startswith("https://"),
        PERMANENT_SESSION_LIFETIME=timedelta(hours=settings.web.session_hours),
        # Forms are small; nothing is uploaded through the web archive.
        MAX_CONTENT_LENGTH=256 * 1024,
        MAX_FORM_MEMORY_SIZE=256 * 1024,
        JSON_AS_ASCII=False,
    )
    owned: list[Engine] = []
    if session_factory is None:
        engine = make_engine(
            settings.database.url, busy_timeout=settings.database.sqlite_busy_timeout, sqlite_immediate=False
        )
        owned.append(engine)
        session_factory = make_session_factory(engine)
    state = WebState(
        settings=settings,
        reader_factory=session_factory,
        writer_factory=_writer_factory(settings, session_factory, owned),
        clock=clock or _utcnow,
        owned_engines=owned,
    )
    app.extensions["passerelle"] = state

    i18n.init_app(app, state)
    csrf.init_app(app)
    web.init_app(app)
    labels.init_app(app)
    formats.init_app(app)
    shortcache.init_app(app)

    for name in (*BLUEPRINTS, *extra_blueprints):
        module = importlib.import_module(name)
        app.register_blueprint(module.bp)
        state.nav.extend(getattr(module, "NAV", ()))
    state.nav.sort(key=lambda item: item.order)

    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)
    return app


def _http_error(exc: HTTPException) -> Any:
    if exc.code is None or exc.code < 400:
        return exc
    return _error_page(exc.code, exc.description if getattr(exc, "_passerelle_message", False) else None)


def _unexpected_error(exc: Exception) -> Any:
    if isinstance(exc, HTTPException):
        return _http_error(exc)
    # The reader sees a generic page: an exception's text may quote private content.
    log.exception("unexpected error on %s %s", request.method, request.path)
    return _error_page(500, None)


def _error_page(code: int, message: str | None) -> Any:
    from . import web

    # The request's session may be broken (the error came from the database): start afresh, and load the
    # reader again through a new session (or show the page as to an anonymous reader if that fails too).
    web.discard_session()
    g.pop("viewer", None)
    g.pop("lists", None)
    try:
        body = render_template("error.html", code=code, message=message)
    except Exception:  # the page itself failed (database down...): a bare page, still without details
        log.exception("error page %s could not be rendered", code)
        title = InternalServerError.description if code >= 500 else "Error"
        body = f"<!doctype html><title>{code}</title><h1>{code}</h1><p>{title}</p>"
    return body, code
