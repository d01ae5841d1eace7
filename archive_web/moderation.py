"""Moderators' pages: held messages, categories, a topic's status/category/tags, members, organisations.

Every change is recorded as a ModerationAction (via="web"), like the commands moderators send by mail.
Moderators act on the lists they moderate; operators on every list.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import func, or_, select, update

from gateway.command_parse import normalize_tag
from gateway.moderation import decide_held
from passerelle.mail.parse import MessageParseError, parse_message
from passerelle.models import (
    Category,
    CategoryFollow,
    HeldMessage,
    InboundMessage,
    MailingList,
    Member,
    ModerationAction,
    Organisation,
    Subscription,
    Tag,
    Topic,
)
from passerelle.models.category import PUBLIC_ACCESS
from passerelle.models.subscription import DELIVERY_MODES, ROLES
from passerelle.models.subscription import STATUSES as SUBSCRIPTION_STATUSES
from passerelle.models.topic import OUTCOMES
from passerelle.models.topic import STATUSES as TOPIC_STATUSES
from passerelle.text import slugify

from .app import NavItem
from .render import linkify
from .web import MAX_ID, db, fail, moderator_required, now, settings, viewer

log = logging.getLogger(__name__)

bp = Blueprint("moderation", __name__, url_prefix="/moderation")
NAV = (NavItem("moderation.queue", _l("Moderation"), requires="moderator", order=90),)

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_BORDER = re.compile(r"^[A-Z]{2}(?:-[A-Z]{2})+$")
PREVIEW_CHARS = 20_000


# --------------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------------


def _moderated_lists() -> list[MailingList]:
    v = viewer()
    lists = db().scalars(select(MailingList).order_by(MailingList.id)).all()
    return [ml for ml in lists if v.moderates(ml.id)]


def _check_list(list_id: int) -> MailingList:
    ml = db().get(MailingList, list_id)
    if ml is None or not viewer().moderates(ml.id):
        fail(404, _("There is no such list among those you moderate."))
    return ml


def _int_field(name: str, *, required: bool = True) -> int | None:
    value = request.form.get(name, "").strip()
    if not value and not required:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10 or not 0 < int(value) <= MAX_ID:
        fail(400, _("The value given for “%(name)s” is not valid.", name=name))
    return int(value)


def _text_field(name: str, *, max_length: int, required: bool = False, multiline: bool = False) -> str:
    value = request.form.get(name, "")
    value = value.replace("\r\n", "\n").strip()
    if required and not value:
        fail(400, _("“%(name)s” must not be empty.", name=name))
    if len(value) > max_length:
        fail(400, _("“%(name)s” is too long (at most %(max)d characters).", name=name, max=max_length))
    forbidden = {ch for ch in value if ord(ch) < 32 and not (multiline and ch in "\n\t")}
    if forbidden or "\x7f" in value:
        fail(400, _("The value given for “%(name)s” is not valid.", name=name))
    return value


def _log(list_id: int, action: str, detail: str, topic_id: int | None = None) -> None:
    db().add(
        ModerationAction(
            list_id=list_id,
            topic_id=topic_id,
            actor_id=viewer().member.id if viewer().member else None,  # type: ignore[union-attr]
            action=action,
            detail=detail[:2000],
            via="web",
            created_at=now(),
        )
    )


def _language() -> str:
    locale = get_locale()
    return locale.language if locale else settings().site.default_language


# --------------------------------------------------------------------------------------------------------
# Held messages
# --------------------------------------------------------------------------------------------------------


@bp.route("/")
@moderator_required
def queue() -> str:
    list_ids = [ml.id for ml in _moderated_lists()]
    held = db().scalars(
        select(HeldMessage)
        .where(HeldMessage.list_id.in_(list_ids), HeldMessage.decision.is_(None))
        .order_by(HeldMessage.created_at, HeldMessage.id)
        .limit(500)
    ).all()
    recent = db().scalars(
        select(ModerationAction)
        .where(ModerationAction.list_id.in_(list_ids))
        .order_by(ModerationAction.created_at.desc(), ModerationAction.id.desc())
        .limit(20)
    ).all()
    actor_ids = {a.actor_id for a in recent if a.actor_id}
    actors = {m.id: m for m in db().scalars(select(Member).where(Member.id.in_(actor_ids)))}
    return render_template("mod/queue.html", held=held, recent=recent, actors=actors, lists=_moderated_lists())


def _held(held_id: int) -> HeldMessage:
    held = db().get(HeldMessage, held_id)
    if held is None or not viewer().moderates(held.list_id):
        fail(404, _("There is no such held message."))
    return held


@bp.route("/held/<id:held_id>", methods=["GET", "POST"])
@moderator_required
def held(held_id: int) -> Any:
    item = _held(held_id)
    if request.method == "POST":
        action = request.form.get("action", "")
        if action not in ("approve", "reject", "discard"):
            fail(400, _("Choose approve, reject or discard."))
        reason = _text_field("reason", max_length=2000, multiline=True)
        result = decide_held(
            db(), settings(), item, action, actor=viewer().member, now=now(), reason=reason, via="web",
            language=_language(),
        )
        db().commit()
        flash(result.message, "success" if result.changed else "warning")
        return redirect(url_for("moderation.queue"), code=303)
    inbound = db().get(InboundMessage, item.inbound_id)
    preview: Markup | None = None
    attachments: list[tuple[str, str, int]] = []
    parse_error = False
    if inbound is not None and inbound.raw is not None:
        try:
            parsed = parse_message(inbound.raw, max_bytes=settings().lists.max_message_bytes)
            preview = linkify(parsed.text[:PREVIEW_CHARS])
            attachments = [(a.filename, a.content_type, a.size) for a in parsed.attachments]
        except MessageParseError:
            parse_error = True
    return render_template(
        "mod/held.html", item=item, inbound=inbound, preview=preview, attachments=attachments, parse_error=parse_error
    )


# --------------------------------------------------------------------------------------------------------
# Categories
# --------------------------------------------------------------------------------------------------------


@bp.route("/categories", methods=["GET", "POST"])
@moderator_required
def categories() -> Any:
    lists = _moderated_lists()
    if request.method == "POST":
        ml = _check_list(_int_field("list") or 0)
        name = _text_field("name", max_length=120, required=True)
        description = _text_field("description", max_length=2000, multiline=True)
        access = request.form.get("public_access", "")
        if access not in PUBLIC_ACCESS:
            fail(400, _("Choose what the public may read."))
        slug = slugify(name, max_length=120)
        if db().scalar(select(Category.id).where(Category.list_id == ml.id, Category.slug == slug)):
            fail(400, _("A category with this name already exists."))
        cat = Category(
            list_id=ml.id, name=name, slug=slug, description=description, public_access=access, created_at=now()
        )
        db().add(cat)
        db().flush()
        _log(ml.id, "category-create", f"{name} ({access})")
        db().commit()
        flash(_("Category “%(name)s” created.", name=name), "success")
        return redirect(url_for("moderation.categories"), code=303)
    list_ids = [ml.id for ml in lists]
    cats = db().scalars(select(Category).where(Category.list_id.in_(list_ids)).order_by(Category.name)).all()
    counts = dict(
        db().execute(
            select(Topic.category_id, func.count(Topic.id))
            .where(Topic.category_id.in_([c.id for c in cats]))
            .group_by(Topic.category_id)
        ).all()
    )
    return render_template(
        "mod/categories.html", categories=cats, counts=counts, lists=lists, access_choices=PUBLIC_ACCESS
    )


def _category(category_id: int) -> Category:
    cat = db().get(Category, category_id)
    if cat is None or not viewer().moderates(cat.list_id):
        fail(404, _("There is no such category."))
    return cat


@bp.route("/categories/<id:category_id>", methods=["POST"])
@moderator_required
def category_update(category_id: int) -> Any:
    cat = _category(category_id)
    name = _text_field("name", max_length=120, required=True)
    description = _text_field("description", max_length=2000, multiline=True)
    access = request.form.get("public_access", "")
    if access not in PUBLIC_ACCESS:
        fail(400, _("Choose what the public may read."))
    slug = slugify(name, max_length=120)
    clash = db().scalar(
        select(Category.id).where(Category.list_id == cat.list_id, Category.slug == slug, Category.id != cat.id)
    )
    if clash:
        fail(400, _("A category with this name already exists."))
    changes = []
    if name != cat.name:
        changes.append(f"renamed {cat.name} -> {name}")
    if access != cat.public_access:
        changes.append(f"public access {cat.public_access} -> {access}")
    cat.name, cat.slug, cat.description, cat.public_access = name, slug, description, access
    _log(cat.list_id, "category-update", "; ".join(changes) or f"{name}: description")
    db().commit()
    flash(_("Category “%(name)s” saved.", name=name), "success")
    return redirect(url_for("moderation.categories"), code=303)


@bp.route("/categories/<id:category_id>/merge", methods=["POST"])
@moderator_required
def category_merge(category_id: int) -> Any:
    """Move every topic of this category into another, tagging them with the old category's name so that
    the finer classification is kept, then remove this category."""
    source = _category(category_id)
    target = _category(_int_field("target") or 0)
    if target.id == source.id:
        fail(400, _("Choose another category to merge into."))
    if target.list_id != source.list_id:
        fail(400, _("Both categories must belong to the same list."))
    session = db()
    tag_name = normalize_tag(source.slug) or normalize_tag(source.name) or f"category-{source.id}"
    tag = session.scalar(select(Tag).where(Tag.list_id == source.list_id, Tag.name == tag_name))
    if tag is None:
        tag = Tag(list_id=source.list_id, name=tag_name)
        session.add(tag)
        session.flush()
    topics = session.scalars(select(Topic).where(Topic.category_id == source.id)).all()
    for topic in topics:
        topic.category_id = target.id
        if tag not in topic.tags:
            topic.tags.append(tag)
    # Followers of the old category follow the new one (unless they already chose something there).
    existing = set(
        session.scalars(select(CategoryFollow.member_id).where(CategoryFollow.category_id == target.id)).all()
    )
    for follow in session.scalars(select(CategoryFollow).where(CategoryFollow.category_id == source.id)).all():
        if follow.member_id in existing:
            session.delete(follow)
    session.flush()
    session.execute(
        update(CategoryFollow)
        .where(CategoryFollow.category_id == source.id)
        .values(category_id=target.id)
        .execution_options(synchronize_session=False)
    )
    _log(source.list_id, "category-merge", f"{source.name} -> {target.name} ({len(topics)} topics, tag {tag_name})")
    session.delete(source)
    session.commit()
    flash(
        _(
            "“%(source)s” merged into “%(target)s”: %(count)d topics moved and tagged #%(tag)s.",
            source=source.name,
            target=target.name,
            count=len(topics),
            tag=tag_name,
        ),
        "success",
    )
    return redirect(url_for("moderation.categories"), code=303)


# --------------------------------------------------------------------------------------------------------
# A topic: status, outcome, category, tags
# --------------------------------------------------------------------------------------------------------


@bp.route("/topics/<id:topic_id>", methods=["GET", "POST"])
@moderator_required
def topic(topic_id: int) -> Any:
    session = db()
    item = session.get(Topic, topic_id)
    if item is None or not viewer().moderates(item.list_id):
        fail(404, _("There is no such topic."))
    cats = session.scalars(select(Category).where(Category.list_id == item.list_id).order_by(Category.name)).all()
    if request.method == "GET":
        return render_template(
            "mod/topic.html", topic=item, categories=cats, statuses=TOPIC_STATUSES, outcomes=OUTCOMES,
            tags=" ".join(t.name for t in item.tags),
        )
    status = request.form.get("status", "")
    outcome = request.form.get("outcome", "")
    if status not in TOPIC_STATUSES:
        fail(400, _("Unknown status “%(value)s”.", value=status[:40]))
    if outcome and outcome not in OUTCOMES:
        fail(400, _("Unknown outcome “%(value)s”.", value=outcome[:40]))
    category_id = _int_field("category", required=False)
    if category_id is not None and category_id not in {c.id for c in cats}:
        fail(400, _("There is no such category."))
    raw_tags = _text_field("tags", max_length=1000)
    tag_names = sorted({t for t in (normalize_tag(w) for w in re.split(r"[\s,;]+", raw_tags)) if t})
    changes: list[str] = []
    if status == "closed":
        if item.status != "closed" or item.outcome != (outcome or None):
            changes.append(f"close {outcome or '(no outcome)'}")
            if item.status != "closed":
                item.closed_at = now()
            item.status = "closed"
            item.outcome = outcome or None
    elif item.status == "closed" or status != item.status:
        changes.append(f"status {item.status} -> {status}")
        item.status = status
        item.outcome = None
        item.closed_at = None
    if category_id != item.category_id:
        changes.append(f"category -> {category_id or 'none'}")
        item.category_id = category_id
    current_tags = {t.name for t in item.tags}
    if set(tag_names) != current_tags:
        changes.append("tags " + " ".join(tag_names))
        tags = []
        for name in tag_names:
            tag = session.scalar(select(Tag).where(Tag.list_id == item.list_id, Tag.name == name))
            if tag is None:
                tag = Tag(list_id=item.list_id, name=name)
                session.add(tag)
                session.flush()
            tags.append(tag)
        item.tags = tags
    resolved = []
    if changes and item.status == "closed" and item.outcome == "solved":
        # As with "#close solved" by mail: a solved topic's open escalations are marked resolved in the register.
        from passerelle.escalations import resolve_on_close

        resolved = resolve_on_close(session, item, actor=viewer().member, now=now(), via="web")
    if changes:
        _log(item.list_id, "topic-update", "; ".join(changes), topic_id=item.id)
        session.commit()
        flash(_("Topic saved."), "success")
        if resolved:
            flash(_("The topic is solved: its open escalations are marked resolved in the register."), "info")
    else:
        flash(_("Nothing changed."), "info")
    return redirect(url_for("threads.topic", topic_id=item.id), code=303)


# --------------------------------------------------------------------------------------------------------
# Members and organisations
# --------------------------------------------------------------------------------------------------------


@bp.route("/members", methods=["GET", "POST"])
@moderator_required
def members() -> Any:
    session = db()
    lists = _moderated_lists()
    if request.method == "POST":
        ml = _check_list(_int_field("list") or 0)
        raw = request.form.get("email", "")
        try:
            if len(raw) > 320:
                raise EmailNotValidError("too long")
            email = validate_email(raw.strip(), check_deliverability=False).normalized.lower()
        except EmailNotValidError:
            fail(400, _("This is not a valid mail address."))
        name = _text_field("name", max_length=200)
        org_id = _int_field("organisation", required=False)
        if org_id is not None and session.get(Organisation, org_id) is None:
            fail(400, _("There is no such organisation."))
        role = request.form.get("role", "member")
        if role not in ROLES:
            fail(400, _("Unknown role."))
        member = session.scalar(select(Member).where(Member.email == email))
        if member is None:
            member = Member(email=email, name=name, organisation_id=org_id, language=ml.language or "fr",
                            timezone=settings().site.default_timezone, created_at=now())
            session.add(member)
            session.flush()
        sub = session.scalar(select(Subscription).where(Subscription.member_id == member.id,
                                                        Subscription.list_id == ml.id))
        if sub is None:
            session.add(Subscription(member_id=member.id, list_id=ml.id, role=role, delivery_mode="instant",
                                     status="active", created_at=now()))
        else:
            sub.status, sub.role, sub.updated_at = "active", role, now()
        _log(ml.id, "member-add", f"{email} ({role})")
        session.commit()
        flash(_("%(email)s is a member of %(list)s.", email=email, list=ml.title or ml.name), "success")
        return redirect(url_for("moderation.member", member_id=member.id), code=303)
    query = request.args.get("q", "").strip()[:200]
    stmt = (
        select(Member, Subscription)
        .join(Subscription, Subscription.member_id == Member.id)
        .where(Subscription.list_id.in_([ml.id for ml in lists]))
        .order_by(Member.email)
    )
    if query:
        like = f"%{query.lower()}%"
        stmt = stmt.where(or_(func.lower(Member.email).like(like), func.lower(Member.name).like(like)))
    rows = session.execute(stmt.limit(500)).all()
    orgs = session.scalars(select(Organisation).order_by(Organisation.name)).all()
    return render_template("mod/members.html", rows=rows, lists=lists, organisations=orgs, roles=ROLES, q=query)


@bp.route("/members/<id:member_id>", methods=["GET", "POST"])
@moderator_required
def member(member_id: int) -> Any:
    session = db()
    item = session.get(Member, member_id)
    if item is None:
        fail(404, _("There is no such member."))
    subs = [s for s in session.scalars(select(Subscription).where(Subscription.member_id == item.id))
            if viewer().moderates(s.list_id)]
    if not subs and not viewer().is_operator:
        fail(404, _("There is no such member."))
    orgs = session.scalars(select(Organisation).order_by(Organisation.name)).all()
    if request.method == "GET":
        return render_template(
            "mod/member.html", item=item, subscriptions=subs, organisations=orgs, roles=ROLES,
            statuses=SUBSCRIPTION_STATUSES, modes=DELIVERY_MODES,
        )
    item.name = _text_field("name", max_length=200)
    org_id = _int_field("organisation", required=False)
    if org_id is not None and session.get(Organisation, org_id) is None:
        fail(400, _("There is no such organisation."))
    item.organisation_id = org_id
    for sub in subs:
        role = request.form.get(f"role-{sub.id}", sub.role)
        status = request.form.get(f"status-{sub.id}", sub.status)
        mode = request.form.get(f"mode-{sub.id}", sub.delivery_mode)
        if role not in ROLES or status not in SUBSCRIPTION_STATUSES or mode not in DELIVERY_MODES:
            fail(400, _("Unknown role, status or delivery mode."))
        if (role, status, mode) != (sub.role, sub.status, sub.delivery_mode):
            _log(sub.list_id, "member-update", f"{item.email}: {role}, {status}, {mode}")
            sub.role, sub.status, sub.delivery_mode, sub.updated_at = role, status, mode, now()
    session.commit()
    flash(_("Member saved."), "success")
    return redirect(url_for("moderation.member", member_id=item.id), code=303)


@bp.route("/organisations", methods=["GET", "POST"])
@moderator_required
def organisations() -> Any:
    session = db()
    if request.method == "POST":
        org_id = _int_field("id", required=False)
        name = _text_field("name", max_length=200, required=True)
        country = _text_field("country", max_length=2, required=True).upper()
        kind = _text_field("kind", max_length=40)
        border = _text_field("border", max_length=20).upper()
        if not _COUNTRY.match(country):
            fail(400, _("A country is given as a two-letter code, like FR or DE."))
        if border:
            border = "-".join(sorted(border.split("-")))
            if not _BORDER.match(border):
                fail(400, _("A border is given as country codes joined by a dash, like DE-FR."))
        clash = session.scalar(
            select(Organisation.id).where(Organisation.name == name, Organisation.id != (org_id or 0))
        )
        if clash:
            fail(400, _("An organisation with this name already exists."))
        if org_id is None:
            org = Organisation(name=name, country=country, kind=kind, border=border)
            session.add(org)
        else:
            found = session.get(Organisation, org_id)
            if found is None:
                fail(404, _("There is no such organisation."))
            org = found
            org.name, org.country, org.kind, org.border = name, country, kind, border
        for ml in _moderated_lists()[:1]:
            _log(ml.id, "organisation", f"{name} ({country}{', ' + border if border else ''})")
        session.commit()
        flash(_("Organisation “%(name)s” saved.", name=name), "success")
        return redirect(url_for("moderation.organisations"), code=303)
    orgs = session.scalars(select(Organisation).order_by(Organisation.name)).all()
    counts = dict(
        session.execute(select(Member.organisation_id, func.count(Member.id)).group_by(Member.organisation_id)).all()
    )
    return render_template("mod/organisations.html", organisations=orgs, counts=counts)
