"""Signing in by a one-time link sent by mail: no passwords to manage.

The link carries a random token; only its SHA-256 is stored (LoginToken), so a copy of the database does
not let anyone in. Opening the link shows a button and the POST of that button signs in: mail scanners
and link previewers fetch every URL of a mail, and must not use up (or use) the token. The same answer
is given whether the address is known or not, so the form does not tell who is a member.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, flash, redirect, render_template, request
from flask_babel import gettext as _
from sqlalchemy import select, update

from gateway.notices import queue_notice
from passerelle.models import LoginToken, MailingList, Member, Subscription

from .web import db, external_url, fail, now, safe_next, settings, sign_in, sign_out, viewer

log = logging.getLogger(__name__)

bp = Blueprint("auth", __name__)

# A new link is not sent to the same member more often than this (a form submitted in a loop must not
# flood a mailbox).
RESEND_AFTER = timedelta(seconds=60)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _list_for(member: Member) -> MailingList | None:
    session = db()
    sub = session.scalar(
        select(Subscription)
        .where(Subscription.member_id == member.id)
        .order_by(Subscription.status != "active", Subscription.id)
        .limit(1)
    )
    if sub is not None:
        return sub.mailing_list
    named = session.scalar(select(MailingList).where(MailingList.name == settings().lists.default_list))
    return named or session.scalar(select(MailingList).order_by(MailingList.id).limit(1))


def send_login_link(member: Member, next_path: str) -> bool:
    """Store a new token for ``member`` and queue the mail carrying it; False when one was sent just now."""
    session = db()
    current = now()
    recent = session.scalar(
        select(LoginToken.id).where(
            LoginToken.member_id == member.id,
            LoginToken.used_at.is_(None),
            LoginToken.created_at > current - RESEND_AFTER,
        )
    )
    if recent is not None:
        return False
    mailing_list = _list_for(member)
    if mailing_list is None:
        log.warning("no list to send a sign-in link from (member %s)", member.id)
        return False
    token = secrets.token_urlsafe(32)
    minutes = settings().web.login_link_minutes
    row = LoginToken(
        token_hash=token_hash(token),
        member_id=member.id,
        created_at=current,
        expires_at=current + timedelta(minutes=minutes),
    )
    session.add(row)
    session.flush()
    link = external_url("auth.confirm", token=token, next=next_path if next_path != "/" else None)
    # The name the member knows: the forum's (site.name when set), not the software's.
    site = settings().site.name or mailing_list.title or mailing_list.name
    body = _(
        "Hello,\n\nSomeone (probably you) asked to sign in to %(site)s with this address.\n"
        "Open this link to sign in; it works once, for %(minutes)d minutes:\n\n%(link)s\n\n"
        "If you did not ask for it, ignore this mail: nothing happens without the link.\n",
        site=site,
        minutes=minutes,
        link=link,
    )
    queue_notice(
        session,
        settings(),
        mailing_list,
        to=member.email,
        subject=_("Your sign-in link for %(site)s", site=site),
        body=body,
        now=current,
        kind="notice",
        dedupe_key=f"login:{row.token_hash[:32]}",
    )
    log.info("sign-in link queued for member %s", member.id)
    return True


@bp.route("/login", methods=["GET", "POST"])
def login() -> Any:
    next_path = safe_next(request.values.get("next"))
    if request.method == "GET":
        if viewer().signed_in:
            return redirect(next_path)
        return render_template("login.html", next_path=next_path, email="", error=None)
    raw = request.form.get("email", "")
    try:
        if len(raw) > 320:
            raise EmailNotValidError("too long")
        email = validate_email(raw.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        error = _("This is not a valid mail address.")
        return render_template("login.html", next_path=next_path, email=raw[:320], error=error), 400
    member = db().scalar(select(Member).where(Member.email == email))
    if member is not None:
        send_login_link(member, next_path)
        db().commit()
    else:
        log.info("sign-in asked for an unknown address")
    return render_template(
        "login_sent.html", email=email, minutes=settings().web.login_link_minutes, next_path=next_path
    )


def _valid_token(token: str) -> LoginToken | None:
    if not token or len(token) > 200:
        return None
    row = db().scalar(select(LoginToken).where(LoginToken.token_hash == token_hash(token)))
    if row is None or row.used_at is not None or row.expires_at <= now():
        return None
    return row


@bp.route("/login/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Any:
    next_path = safe_next(request.values.get("next"))
    row = _valid_token(token)
    if row is None:
        fail(400, _("This sign-in link has expired or was already used. Ask for a new one."))
    if request.method == "GET":
        return render_template("login_confirm.html", token=token, next_path=next_path)
    # Use the token once, even when two clicks race: only the UPDATE that finds it unused signs in.
    used = db().execute(
        update(LoginToken)
        .where(LoginToken.id == row.id, LoginToken.used_at.is_(None))
        .values(used_at=now())
        .execution_options(synchronize_session=False)
    )
    if used.rowcount != 1:  # type: ignore[attr-defined]
        fail(400, _("This sign-in link has expired or was already used. Ask for a new one."))
    member = db().get(Member, row.member_id)
    if member is None:
        fail(400, _("This sign-in link has expired or was already used. Ask for a new one."))
    db().commit()
    sign_in(member)
    flash(_("You are signed in."), "success")
    return redirect(next_path, code=303)


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    sign_out()
    flash(_("You are signed out."), "success")
    return redirect("/", code=303)
