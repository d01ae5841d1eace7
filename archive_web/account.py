"""The member's own page (delivery mode, follows, language, leaving) and the links mailed to members:
one-click unsubscribe (RFC 8058) and the confirmation of subscriptions and unproven commands.

Links from mails never change anything on GET (scanners and previewers fetch every URL): GET shows what
will happen and a button; the button's POST does it.
"""

from __future__ import annotations

import logging
import zoneinfo
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from sqlalchemy import select

from passerelle import tokens
from passerelle.models import Category, CategoryFollow, MailingList, Member, Subscription, Topic, TopicFollow
from passerelle.models.subscription import DELIVERY_MODES

from . import csrf
from .app import NavItem
from .web import MAX_ID, db, fail, member_required, now, settings, state, viewer

log = logging.getLogger(__name__)

bp = Blueprint("account", __name__)
NAV = (NavItem("account.account", _l("My account"), requires="member", order=80),)

UNSUBSCRIBE_PURPOSE = "unsubscribe"


def _int_form(name: str) -> int:
    value = request.form.get(name, "").strip()
    if not value.isascii() or not value.isdigit() or len(value) > 10 or not 0 < int(value) <= MAX_ID:
        fail(400, _("The value given for “%(name)s” is not valid.", name=name))
    return int(value)


def _own_subscription(subscription_id: int) -> Subscription:
    sub = db().get(Subscription, subscription_id)
    if sub is None or sub.member_id != viewer().member.id:  # type: ignore[union-attr]
        fail(404, _("There is no such subscription."))
    return sub


@bp.route("/account")
@member_required
def account() -> str:
    member = viewer().member
    assert member is not None
    session = db()
    subs = session.scalars(
        select(Subscription).where(Subscription.member_id == member.id).order_by(Subscription.list_id)
    ).all()
    topic_follows = session.execute(
        select(TopicFollow, Topic)
        .join(Topic, Topic.id == TopicFollow.topic_id)
        .where(TopicFollow.member_id == member.id)
        .order_by(Topic.last_post_at.desc())
    ).all()
    category_follows = session.execute(
        select(CategoryFollow, Category)
        .join(Category, Category.id == CategoryFollow.category_id)
        .where(CategoryFollow.member_id == member.id)
        .order_by(Category.name)
    ).all()
    followed_ids = {c.id for _f, c in category_follows}
    other_categories = [
        c
        for c in session.scalars(select(Category).order_by(Category.name)).all()
        if c.id not in followed_ids and c.list_id in viewer().member_list_ids
    ]
    return render_template(
        "account.html",
        member=member,
        subscriptions=subs,
        topic_follows=topic_follows,
        category_follows=category_follows,
        other_categories=other_categories,
        delivery_modes=DELIVERY_MODES,
        mail_languages=state().languages,
    )


@bp.route("/account/delivery", methods=["POST"])
@member_required
def delivery() -> Any:
    sub = _own_subscription(_int_form("subscription"))
    mode = request.form.get("mode", "")
    if mode not in DELIVERY_MODES:
        fail(400, _("Unknown delivery mode."))
    sub.delivery_mode = mode
    sub.updated_at = now()
    db().commit()
    log.info("member %s set delivery %s on subscription %s (web)", sub.member_id, mode, sub.id)
    flash(_("Your delivery mode is saved."), "success")
    return redirect(url_for("account.account"), code=303)


@bp.route("/account/resubscribe", methods=["POST"])
@member_required
def resubscribe() -> Any:
    """Come back to a list left earlier, or turn delivery on again after bounces (the address is proven:
    the member signed in with a link sent to it)."""
    sub = _own_subscription(_int_form("subscription"))
    if sub.status == "pending":
        fail(400, _("This subscription is waiting for its confirmation mail to be answered."))
    sub.status = "active"
    sub.bounce_score = 0.0
    sub.disabled_reason = ""
    sub.updated_at = now()
    db().commit()
    flash(_("You receive this forum's mail again."), "success")
    return redirect(url_for("account.account"), code=303)


@bp.route("/account/follow", methods=["POST"])
@member_required
def follow() -> Any:
    kind = request.form.get("kind", "")
    mode = request.form.get("mode", "")
    if kind not in ("topic", "category") or mode not in ("follow", "mute", "none"):
        fail(400, _("Choose follow, mute or neither."))
    target_id = _int_form("id")
    member_id = viewer().member.id  # type: ignore[union-attr]
    session = db()
    if kind == "topic":
        topic = session.get(Topic, target_id)
        if topic is None or topic.list_id not in viewer().member_list_ids:
            fail(404, _("There is no such topic."))
        model: Any = TopicFollow
        key = {"topic_id": target_id}
    else:
        cat = session.get(Category, target_id)
        if cat is None or cat.list_id not in viewer().member_list_ids:
            fail(404, _("There is no such category."))
        model = CategoryFollow
        key = {"category_id": target_id}
    row = session.get(model, (member_id, target_id))
    if mode == "none":
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(model(member_id=member_id, mode=mode, created_at=now(), **key))
    else:
        row.mode = mode
    session.commit()
    flash(_("Saved."), "success")
    return redirect(url_for("account.account"), code=303)


@bp.route("/account/preferences", methods=["POST"])
@member_required
def preferences() -> Any:
    member = db().get(Member, viewer().member.id)  # type: ignore[union-attr]
    assert member is not None
    language = request.form.get("language", "")
    timezone = request.form.get("timezone", "").strip()
    if language not in state().languages:
        fail(400, _("This language is not offered here."))
    try:
        if not timezone or len(timezone) > 64:
            raise zoneinfo.ZoneInfoNotFoundError(timezone)
        zoneinfo.ZoneInfo(timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        fail(400, _("Unknown time zone: use a name like Europe/Paris."))
    name = request.form.get("name", "").strip()
    if len(name) > 200 or any(ord(ch) < 32 for ch in name):
        fail(400, _("The value given for “%(name)s” is not valid.", name="name"))
    member.language = language
    member.timezone = timezone
    member.name = name
    db().commit()
    flash(_("Your preferences are saved."), "success")
    return redirect(url_for("account.account"), code=303)


@bp.route("/account/unsubscribe-all", methods=["POST"])
@member_required
def unsubscribe_all() -> Any:
    session = db()
    member_id = viewer().member.id  # type: ignore[union-attr]
    subs = session.scalars(
        select(Subscription).where(Subscription.member_id == member_id, Subscription.status != "unsubscribed")
    ).all()
    for sub in subs:
        sub.status = "unsubscribed"
        sub.updated_at = now()
    session.commit()
    log.info("member %s unsubscribed from %d list(s) (web)", member_id, len(subs))
    flash(_("You are unsubscribed from every list: no more mail from this forum."), "success")
    return redirect(url_for("account.account"), code=303)


# --------------------------------------------------------------------------------------------------------
# One-click unsubscribe (RFC 8058)
# --------------------------------------------------------------------------------------------------------


def _subscription_from_token(token: str) -> Subscription:
    try:
        data = tokens.unsign(settings(), UNSUBSCRIBE_PURPOSE, token, now=now())
    except tokens.TokenError:
        fail(400, _("This unsubscribe link is not valid. Sign in to manage your subscriptions."))
    session = db()
    sub: Subscription | None = None
    if isinstance(data.get("s"), int):
        sub = session.get(Subscription, data["s"])
    elif isinstance(data.get("list"), str) and isinstance(data.get("email"), str):
        sub = session.scalar(
            select(Subscription)
            .join(Member, Member.id == Subscription.member_id)
            .join(MailingList, MailingList.id == Subscription.list_id)
            .where(MailingList.name == data["list"], Member.email == data["email"].lower())
        )
    if sub is None:
        fail(404, _("This subscription no longer exists."))
    return sub


@bp.route("/u/<token>", methods=["GET", "POST"])
@csrf.exempt
def unsubscribe(token: str) -> Any:
    """GET: a page with one button. POST (the button, or a mail client's RFC 8058 one-click POST with the
    body ``List-Unsubscribe=One-Click``): unsubscribe. The signed token is the proof; no CSRF token can
    travel in a one-click POST, and the worst a forged POST can do is what the link's owner asked for."""
    sub = _subscription_from_token(token)
    if request.method == "POST":
        if sub.status != "unsubscribed":
            sub.status = "unsubscribed"
            sub.updated_at = now()
            db().commit()
            log.info("subscription %s unsubscribed by one-click link", sub.id)
        return render_template("unsubscribe.html", sub=sub, done=True, token=token)
    return render_template("unsubscribe.html", sub=sub, done=sub.status == "unsubscribed", token=token)


# --------------------------------------------------------------------------------------------------------
# Confirmation links (subscriptions, commands sent without proof of sender)
# --------------------------------------------------------------------------------------------------------


@bp.route("/confirm/<token>", methods=["GET", "POST"])
def confirm(token: str) -> Any:
    from flask_babel import get_locale

    from gateway.commands import confirm_token, describe_token

    if len(token) > 100:
        fail(404, _("This confirmation link is not valid."))
    language = get_locale().language if get_locale() else None
    if request.method == "GET":
        result = describe_token(db(), settings(), token, now=now(), language=language)
        return render_template("confirm.html", result=result, token=token, done=False), 200 if result.ok else 400
    result = confirm_token(db(), settings(), token, now=now(), via="web-confirmed", language=language)
    if result.ok:
        db().commit()
    return render_template("confirm.html", result=result, token=token, done=result.ok), 200 if result.ok else 400
