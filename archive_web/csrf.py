"""CSRF protection for every POST form: a random token in the (signed) session, echoed by each form.

Views that cannot carry a token — RFC 8058 one-click unsubscribe, POSTed by mail clients with only the
signed link as proof — are marked with :func:`exempt`.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app, request, session
from markupsafe import Markup, escape

F = TypeVar("F", bound=Callable[..., Any])

FIELD = "csrf_token"
SESSION_KEY = "csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def exempt(view: F) -> F:
    view._csrf_exempt = True  # type: ignore[attr-defined]
    return view


def token() -> str:
    value = session.get(SESSION_KEY)
    if not isinstance(value, str) or len(value) < 32:
        value = secrets.token_urlsafe(32)
        session[SESSION_KEY] = value
    return value


def hidden_field() -> Markup:
    return Markup('<input type="hidden" name="%s" value="%s">') % (FIELD, escape(token()))


def is_valid(submitted: str | None) -> bool:
    expected = session.get(SESSION_KEY)
    if not isinstance(expected, str) or not submitted:
        return False
    return hmac.compare_digest(expected.encode(), submitted.encode("utf-8", "replace"))


def init_app(app: Flask) -> None:
    app.jinja_env.globals["csrf_token"] = token
    app.jinja_env.globals["csrf_field"] = hidden_field

    @app.before_request
    def _check_csrf() -> None:
        if request.method not in UNSAFE_METHODS:
            return
        view = current_app.view_functions.get(request.endpoint or "")
        if view is None or getattr(view, "_csrf_exempt", False):
            return
        if not is_valid(request.form.get(FIELD)):
            from flask_babel import gettext as _

            from .web import fail

            fail(
                400,
                _(
                    "This form has expired or did not come from this site. Go back, reload the page and "
                    "try again."
                ),
            )
