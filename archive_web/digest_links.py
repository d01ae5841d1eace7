"""The signed links of digests and bounce notices: /d/follow/, /d/mute/, /d/open/ and /d/reenable/<token>.

They work without signing in: the token (passerelle.tokens, one purpose per action, see digests.links) says
who and what. Follow, mute and reenable never change anything on GET (mail scanners and link previewers
fetch every URL of a mail): GET shows the question and one button, whose POST does it. "open" only signs the
member in (for open_link_days after the digest was sent, so that topics of categories shown to members
only are readable) and goes to the topic; it writes nothing.

Pages speak the member's own language (the digest's), from digests/templates/digest.LANG.toml.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, redirect, render_template, request, url_for
from flask_babel import get_locale
from sqlalchemy import select

from digests.compose import LANGUAGES, Labels
from digests.links import ACTIONS, read_action_token
from gateway.bounce_score import ReenableError, reenable_delivery
from passerelle.models import Member, Subscription, Topic, TopicFollow
from passerelle.tokens import TokenError

from . import csrf
from .web import db, fail, now, settings, sign_in, viewer

log = logging.getLogger(__name__)

bp = Blueprint("digest_links", __name__)

MEMBER_STATUSES = ("active", "disabled")


def _labels(member: Member | None) -> Labels:
    if member is not None and member.language in LANGUAGES:
        return Labels(member.language)
    locale = get_locale()
    return Labels(locale.language if locale is not None else settings().site.default_language)


def _page(lab: Labels, title: str, message: str, *, ask: bool = False, code: int = 200,
          links: tuple[tuple[str, str], ...] = ()) -> Any:
    return render_template(
        "digest_link.html", title=title, message=message, ask=ask, confirm=lab("page_confirm"), links=links,
        lang=lab.language,
    ), code


def _invalid() -> Any:
    lab = _labels(None)
    return _page(lab, lab("page_confirm"), lab("page_invalid"), code=400,
                 links=((url_for("account.account"), lab("page_to_account")),))


@bp.route("/d/<action>/<token>", methods=["GET", "POST"])
@csrf.exempt
def link(action: str, token: str) -> Any:
    """The signed token is the proof (as for RFC 8058 one-click unsubscribe): no CSRF token is needed, and
    a forged POST can only do what the link's owner was offered."""
    if action not in ACTIONS or len(token) > 512:
        fail(404, _labels(None)("page_invalid"))
    try:
        data = read_action_token(settings(), action, token, now=now())
    except TokenError:
        return _invalid()
    if action == "reenable":
        return _reenable(data)
    member_id, topic_id = data.get("m"), data.get("t")
    if not isinstance(member_id, int) or not isinstance(topic_id, int):
        return _invalid()
    session = db()
    member = session.get(Member, member_id)
    if member is None:
        return _invalid()
    lab = _labels(member)
    topic = session.get(Topic, topic_id)
    if topic is None:
        return _page(lab, lab("page_confirm"), lab("page_gone"), code=404)
    sub = session.scalar(
        select(Subscription).where(Subscription.member_id == member.id, Subscription.list_id == topic.list_id)
    )
    is_member = sub is not None and sub.status in MEMBER_STATUSES
    if action == "open":
        return _open(token, member, topic, is_member)
    topic_url = url_for("threads.topic", topic_id=topic.id)
    if not is_member:
        ml = sub.mailing_list if sub is not None else None
        return _page(lab, lab(action), lab("page_not_member", list=ml.title or ml.name if ml else ""), code=403,
                     links=((url_for("account.account"), lab("page_to_account")),))
    if request.method == "GET":
        return _page(lab, lab(action), lab(f"page_{action}_question", topic=topic.subject), ask=True,
                     links=((topic_url, lab("page_to_topic")),))
    row = session.get(TopicFollow, (member.id, topic.id))
    if row is None:
        session.add(TopicFollow(member_id=member.id, topic_id=topic.id, mode=action, created_at=now()))
    else:
        row.mode = action
    session.commit()
    log.info("member %s: %s topic %s (digest link)", member.id, action, topic.id)
    return _page(lab, lab(action), lab(f"page_{action}_done", topic=topic.subject),
                 links=((topic_url, lab("page_to_topic")), (url_for("account.account"), lab("page_to_account"))))


def _open(token: str, member: Member, topic: Topic, is_member: bool) -> Any:
    fresh = settings().digests.open_link_days * 86400
    try:
        read_action_token(settings(), "open", token, now=now(), max_age=fresh)
    except TokenError:
        is_member = False
    v = viewer()
    # Never switch a browser signed in as someone else (a shared computer) to the digest's reader.
    if is_member and not v.signed_in:
        sign_in(member)
        log.info("member %s signed in by a digest link", member.id)
    return redirect(url_for("threads.topic", topic_id=topic.id), code=303)


def _reenable(data: dict[str, Any]) -> Any:
    sub_id = data.get("s")
    if not isinstance(sub_id, int):
        return _invalid()
    session = db()
    sub = session.get(Subscription, sub_id)
    if sub is None:
        return _invalid()
    member = sub.member
    lab = _labels(member)
    ml = sub.mailing_list
    fields = {"list": ml.title or ml.name, "email": member.email}
    account = ((url_for("account.account"), lab("page_to_account")),)
    if sub.status in ("unsubscribed", "pending"):
        return _page(lab, lab("page_confirm"), lab("page_not_member", **fields), code=403, links=account)
    if sub.status == "active":
        return _page(lab, lab("page_confirm"), lab("page_reenable_active", **fields), links=account)
    if request.method == "GET":
        return _page(lab, lab("page_confirm"), lab("page_reenable_question", **fields), ask=True, links=account)
    try:
        reenable_delivery(session, sub, now())
    except ReenableError:
        return _page(lab, lab("page_confirm"), lab("page_not_member", **fields), code=403, links=account)
    session.commit()
    return _page(lab, lab("page_confirm"), lab("page_reenable_done", **fields), links=account)
