"""Site-wide pages: the language switcher, robots.txt."""

from __future__ import annotations

from flask import Blueprint, Response, redirect, request, session
from flask_babel import gettext as _

from .web import fail, safe_next, state

bp = Blueprint("core", __name__)


@bp.route("/lang/<code>")
def set_language(code: str) -> Response:
    """Remember the reader's language in the session and go back to the page they were on."""
    if code not in state().languages:
        fail(404, _("This language is not offered here."))
    session["lang"] = code
    return redirect(safe_next(request.args.get("next")), code=303)  # type: ignore[return-value]


@bp.route("/robots.txt")
def robots() -> Response:
    # Exports, raw messages, feeds of searches and account pages are for people, not crawlers.
    private = ("/search", "/m/", "/a/", "/account", "/mod", "/d/", "/u/", "/confirm/")
    body = "User-agent: *\n" + "".join(f"Disallow: {path}\n" for path in private)
    return Response(body, mimetype="text/plain")
