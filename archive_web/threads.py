"""Reading: home, topic lists with filters, thread pages, message permalinks, raw messages, attachments."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.orm import contains_eager, undefer

from passerelle.models import (
    Attachment,
    Category,
    CategoryFollow,
    InboundMessage,
    MailingList,
    Member,
    Message,
    Organisation,
    Tag,
    Topic,
    TopicFollow,
    topic_tags,
)
from passerelle.models.topic import OUTCOMES

from .app import NavItem
from .render import body_blocks
from .sanitize import sanitize_html
from .web import (
    MAX_ID,
    can_read_category,
    can_read_topic,
    db,
    fail,
    lists_by_id,
    login_url,
    member_required,
    message_url,
    now,
    readable_clause,
    settings,
    viewer,
)

bp = Blueprint("threads", __name__)
NAV = (NavItem("threads.home", _l("Home"), order=10), NavItem("threads.topics", _l("Topics"), order=20))

STATUS_FILTERS = ("open", "answered", "closed", "escalated")
# Content types a browser may show inline from an attachment URL: images that cannot carry script, and
# plain text. Everything else — HTML, SVG, XML, PDF, office files — is a download (and nosniff).
INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp", "text/plain"})
_TOKEN_SAFE = re.compile(r"[^A-Za-z0-9!#$&+.^_`|~-]")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")
_BORDER = re.compile(r"^[A-Za-z]{2}(?:-[A-Za-z]{2})+$")


def int_arg(name: str, *, minimum: int = 1, maximum: int = MAX_ID) -> int | None:
    value = request.args.get(name, "").strip()
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10 or not minimum <= int(value) <= maximum:
        fail(400, _("The value given for “%(name)s” is not valid.", name=name))
    return int(value)


def page_arg() -> int:
    return int_arg("page", maximum=1000) or 1


# --------------------------------------------------------------------------------------------------------
# Home
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategoryRow:
    category: Category
    topics: int
    open: int


@bp.route("/")
def home() -> str:
    session = db()
    counts = dict(
        session.execute(
            select(Topic.category_id, func.count(Topic.id))
            .where(Topic.merged_into_id.is_(None))
            .group_by(Topic.category_id)
        ).all()
    )
    open_counts = dict(
        session.execute(
            select(Topic.category_id, func.count(Topic.id))
            .where(Topic.merged_into_id.is_(None), Topic.status != "closed")
            .group_by(Topic.category_id)
        ).all()
    )
    lists = sorted(lists_by_id().values(), key=lambda ml: ml.id)
    categories = session.scalars(select(Category).order_by(Category.list_id, Category.name)).all()
    by_list: dict[int, list[CategoryRow]] = defaultdict(list)
    for cat in categories:
        by_list[cat.list_id].append(CategoryRow(cat, counts.get(cat.id, 0), open_counts.get(cat.id, 0)))
    recent = _topic_rows(select_topics().order_by(Topic.last_post_at.desc(), Topic.id.desc()).limit(10))
    return render_template(
        "home.html",
        lists=lists,
        by_list=by_list,
        uncategorised=counts.get(None, 0),
        recent=recent,
    )


# --------------------------------------------------------------------------------------------------------
# Topic lists
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TopicRow:
    topic: Topic
    author: Member | None
    readable: bool


@dataclass(frozen=True)
class TopicFilters:
    category_id: int | None = None
    tag: str = ""
    status: str = ""
    outcome: str = ""
    country: str = ""
    border: str = ""
    organisation_id: int | None = None
    page: int = 1

    @property
    def needs_full_access(self) -> bool:
        # Who took part, and tags, are not shown to readers of titles-only topics: never filter on them there.
        return bool(self.tag or self.country or self.border or self.organisation_id)

    @property
    def active(self) -> bool:
        return bool(self.tag or self.status or self.outcome or self.country or self.border or self.organisation_id)

    def args(self, **changes: Any) -> dict[str, Any]:
        values = {
            "category": self.category_id,
            "tag": self.tag,
            "status": self.status,
            "outcome": self.outcome,
            "country": self.country,
            "border": self.border,
            "org": self.organisation_id,
            "page": self.page,
        }
        values.update(changes)
        return {k: v for k, v in values.items() if v not in (None, "") and not (k == "page" and v == 1)}


def parse_filters(category_id: int | None = None) -> TopicFilters:
    status = request.args.get("status", "").strip()
    if status and status not in STATUS_FILTERS:
        fail(400, _("Unknown status “%(value)s”.", value=status[:40]))
    outcome = request.args.get("outcome", "").strip()
    if outcome and outcome not in OUTCOMES:
        fail(400, _("Unknown outcome “%(value)s”.", value=outcome[:40]))
    country = request.args.get("country", "").strip()
    if country and not _COUNTRY.match(country):
        fail(400, _("A country is given as a two-letter code, like FR or DE."))
    border = request.args.get("border", "").strip()
    if border and not _BORDER.match(border):
        fail(400, _("A border is given as country codes joined by a dash, like DE-FR."))
    tag = request.args.get("tag", "").strip().lower()
    if len(tag) > 60 or "\x00" in tag:
        fail(400, _("The value given for “%(name)s” is not valid.", name="tag"))
    return TopicFilters(
        category_id=category_id if category_id is not None else int_arg("category"),
        tag=tag,
        status=status,
        outcome=outcome,
        country=country.upper(),
        border=border.upper(),
        organisation_id=int_arg("org"),
        page=page_arg(),
    )


def select_topics() -> Any:
    """Topics (not merged away) with their category and author loaded in the same query."""
    return (
        select(Topic, Member, readable_clause().label("readable"))
        .outerjoin(Category, Category.id == Topic.category_id)
        .outerjoin(Member, Member.id == Topic.author_id)
        .options(contains_eager(Topic.category))
        .where(Topic.merged_into_id.is_(None))
    )


def _topic_rows(stmt: Any) -> list[TopicRow]:
    return [TopicRow(topic=t, author=m, readable=bool(r)) for t, m, r in db().execute(stmt).unique().all()]


def apply_filters(stmt: Any, filters: TopicFilters) -> Any:
    if filters.category_id is not None:
        stmt = stmt.where(Topic.category_id == filters.category_id)
    if filters.status == "escalated":
        stmt = stmt.where(Topic.escalation_level.is_not(None))
    elif filters.status:
        stmt = stmt.where(Topic.status == filters.status)
    if filters.outcome:
        stmt = stmt.where(Topic.outcome == filters.outcome)
    if filters.tag:
        stmt = stmt.where(
            Topic.id.in_(
                select(topic_tags.c.topic_id).join(Tag, Tag.id == topic_tags.c.tag_id).where(Tag.name == filters.tag)
            )
        )
    if filters.country or filters.border or filters.organisation_id:
        # Topics in which someone of that organisation / country / border took part.
        people = select(Message.topic_id).join(Member, Member.id == Message.author_id).join(
            Organisation, Organisation.id == Member.organisation_id
        )
        if filters.organisation_id:
            people = people.where(Organisation.id == filters.organisation_id)
        if filters.country:
            people = people.where(Organisation.country == filters.country)
        if filters.border:
            people = people.where(Organisation.border == filters.border)
        stmt = stmt.where(Topic.id.in_(people))
    if filters.needs_full_access:
        stmt = stmt.where(readable_clause())
    return stmt


def filter_choices() -> dict[str, Any]:
    session = db()
    v = viewer()
    return {
        "categories": session.scalars(select(Category).order_by(Category.name)).all(),
        "tags": session.scalars(select(Tag.name).distinct().order_by(Tag.name)).all() if v.is_member else [],
        "countries": session.scalars(select(Organisation.country).distinct().order_by(Organisation.country)).all(),
        "borders": session.scalars(
            select(Organisation.border).where(Organisation.border != "").distinct().order_by(Organisation.border)
        ).all(),
        "organisations": session.scalars(select(Organisation).order_by(Organisation.name)).all(),
        "statuses": STATUS_FILTERS,
        "outcomes": OUTCOMES,
    }


@bp.route("/topics")
def topics() -> str:
    return _topic_list(parse_filters(), category=None)


@bp.route("/c/<id:category_id>")
@bp.route("/c/<id:category_id>/<slug>")
def category(category_id: int, slug: str = "") -> Any:
    cat = db().get(Category, category_id)
    if cat is None:
        fail(404, _("There is no such category."))
    if slug and slug != cat.slug:
        return redirect(url_for("threads.category", category_id=cat.id, slug=cat.slug, **request.args), code=301)
    return _topic_list(parse_filters(category_id=cat.id), category=cat)


def _topic_list(filters: TopicFilters, *, category: Category | None) -> str:
    size = settings().web.page_size
    stmt = apply_filters(select_topics(), filters)
    stmt = stmt.order_by(Topic.last_post_at.desc(), Topic.id.desc())
    rows = _topic_rows(stmt.limit(size + 1).offset((filters.page - 1) * size))
    count_stmt = apply_filters(
        select(func.count(Topic.id)).select_from(Topic).outerjoin(Category, Category.id == Topic.category_id).where(
            Topic.merged_into_id.is_(None)
        ),
        filters,
    )
    total = int(db().scalar(count_stmt) or 0)
    follow_mode = None
    v = viewer()
    if category is not None and v.signed_in:
        row = db().get(CategoryFollow, (v.member.id, category.id))  # type: ignore[union-attr]
        follow_mode = row.mode if row else None
    return render_template(
        "topics.html",
        rows=rows[:size],
        has_next=len(rows) > size,
        total=total,
        filters=filters,
        category=category,
        category_readable=can_read_category(category) if category is not None else None,
        follow_mode=follow_mode,
        choices=filter_choices(),
    )


# --------------------------------------------------------------------------------------------------------
# Thread page
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MessageView:
    message: Message
    blocks: list[Any]
    attachments: list[Attachment]
    has_html: bool
    parent_pk: int | None


def get_topic(topic_id: int) -> Topic:
    topic = db().get(Topic, topic_id)
    if topic is None:
        fail(404, _("There is no such topic."))
    return topic


@bp.route("/t/<id:topic_id>")
def topic(topic_id: int) -> Any:
    topic = get_topic(topic_id)
    if topic.merged_into_id and topic.merged_into_id != topic.id:
        return redirect(url_for("threads.topic", topic_id=topic.merged_into_id), code=301)
    readable = can_read_topic(topic)
    v = viewer()
    messages: list[MessageView] = []
    participants: dict[int, Member] = {}
    if readable:
        rows = db().execute(
            select(Message, Message.html.is_not(None).label("has_html"))
            .where(Message.topic_id == topic.id)
            .options(undefer(Message.body_text), undefer(Message.new_text))
            .order_by(Message.date, Message.id)
        ).unique().all()
        pks = [m.id for m, _h in rows]
        attachments: dict[int, list[Attachment]] = defaultdict(list)
        if pks:
            for att in db().scalars(
                select(Attachment).where(Attachment.message_pk.in_(pks)).order_by(Attachment.id)
            ):
                attachments[att.message_pk].append(att)
        for m, has_html in rows:
            if m.author is not None:
                participants[m.author.id] = m.author
            messages.append(
                MessageView(
                    message=m,
                    blocks=body_blocks(m.body_text, m.new_text),
                    attachments=attachments.get(m.id, []),
                    has_html=bool(has_html),
                    parent_pk=m.parent_id,
                )
            )
    author = db().get(Member, topic.author_id) if topic.author_id and readable else None
    follow_mode = None
    if v.signed_in:
        row = db().get(TopicFollow, (v.member.id, topic.id))  # type: ignore[union-attr]
        follow_mode = row.mode if row else None
    ml = lists_by_id().get(topic.list_id)
    return render_template(
        "topic.html",
        topic=topic,
        readable=readable,
        messages=messages,
        author=author,
        participants=sorted(participants.values(), key=lambda p: p.display().lower()),
        follow_mode=follow_mode,
        can_follow=v.signed_in and topic.list_id in v.member_list_ids,
        mailing_list=ml,
        post_address=settings().list_address(ml.name) if ml else "",
        login_link=login_url(request.path),
    )


@bp.route("/topics/<id:topic_id>")
def topic_alias(topic_id: int) -> Any:
    """Older links (command replies) name topics /topics/<id>."""
    return redirect(url_for("threads.topic", topic_id=topic_id), code=301)


@bp.route("/t/<id:topic_id>/follow", methods=["POST"])
@member_required
def follow_topic(topic_id: int) -> Any:
    topic = get_topic(topic_id)
    v = viewer()
    if topic.list_id not in v.member_list_ids:
        fail(403, _("Only members of this forum can follow its topics."))
    _set_follow(TopicFollow, topic_id=topic.id)
    return redirect(url_for("threads.topic", topic_id=topic.id), code=303)


@bp.route("/c/<id:category_id>/follow", methods=["POST"])
@member_required
def follow_category(category_id: int) -> Any:
    cat = db().get(Category, category_id)
    if cat is None:
        fail(404, _("There is no such category."))
    if cat.list_id not in viewer().member_list_ids:
        fail(403, _("Only members of this forum can follow its categories."))
    _set_follow(CategoryFollow, category_id=cat.id)
    return redirect(url_for("threads.category", category_id=cat.id, slug=cat.slug), code=303)


def _set_follow(model: Any, **key: int) -> None:
    mode = request.form.get("mode", "")
    if mode not in ("follow", "mute", "none"):
        fail(400, _("Choose follow, mute or neither."))
    member_id = viewer().member.id  # type: ignore[union-attr]
    session = db()
    row = session.get(model, (member_id, *key.values()))
    if mode == "none":
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(model(member_id=member_id, mode=mode, created_at=now(), **key))
    else:
        row.mode = mode
    session.commit()


# --------------------------------------------------------------------------------------------------------
# Messages: permalink, raw, formatted (HTML) version
# --------------------------------------------------------------------------------------------------------


def _find_message(mid: str) -> Message | None:
    mid = mid.strip()
    if mid.startswith("<") and mid.endswith(">"):
        mid = mid[1:-1]
    if not mid or len(mid) > 995:
        return None
    return db().scalar(select(Message).where(Message.message_id == mid))


def _not_readable() -> Any:
    if viewer().signed_in:
        fail(404, _("This message does not exist, or it is not visible to you."))
    fail(404, _("This message does not exist, or it is for members only: sign in to see it."))


@bp.route("/m/<path:mid>")
def message(mid: str) -> Any:
    msg = _find_message(mid)
    if msg is None:
        for suffix, view in (("/raw", _raw), ("/html", _formatted)):
            if mid.endswith(suffix):
                found = _find_message(mid[: -len(suffix)])
                if found is not None:
                    return view(found)
        fail(404, _("There is no message with this Message-ID in the archive."))
    return redirect(url_for("threads.topic", topic_id=msg.topic_id, _anchor=f"m{msg.id}"), code=302)


def _raw(msg: Message) -> Any:
    topic = get_topic(msg.topic_id)
    if not can_read_topic(topic):
        _not_readable()
    raw = None
    if msg.inbound_id is not None:
        inbound = db().get(InboundMessage, msg.inbound_id)
        raw = inbound.raw if inbound is not None else None
    if raw is None:
        fail(404, _("The original of this message was not kept."))
    response = Response(raw, mimetype="text/plain")
    response.headers["Content-Type"] = "text/plain; charset=utf-8"
    response.headers["Content-Disposition"] = "inline"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


def _formatted(msg: Message) -> Any:
    topic = get_topic(msg.topic_id)
    if not can_read_topic(topic):
        _not_readable()
    html = db().scalar(select(Message.html).where(Message.id == msg.id))
    if not html:
        return redirect(url_for("threads.topic", topic_id=topic.id, _anchor=f"m{msg.id}"), code=302)
    images = {
        a.content_id.strip("<>"): attachment_url(a)
        for a in db().scalars(select(Attachment).where(Attachment.message_pk == msg.id))
        if a.content_id and a.content_type in INLINE_TYPES and a.content_type.startswith("image/")
    }
    # sanitize_html keeps an allow-list of tags and attributes only: its output is safe to insert.
    body = Markup(sanitize_html(html, resolve_cid=images.get))  # noqa: S704
    return render_template("message_html.html", topic=topic, message=msg, body=body)


# --------------------------------------------------------------------------------------------------------
# Attachments
# --------------------------------------------------------------------------------------------------------


def attachment_url(att: Attachment) -> str:
    return url_for("threads.attachment", attachment_id=att.id, filename=att.filename or "attachment")


def _ascii_filename(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    folded = _TOKEN_SAFE.sub("_", folded).strip("._") or "attachment"
    return folded[:150]


def content_disposition(disposition: str, filename: str) -> str:
    """RFC 6266: an ASCII fallback name and the real name percent-encoded in filename* (RFC 8187)."""
    name = (filename or "attachment").replace("\r", " ").replace("\n", " ")
    return f"{disposition}; filename=\"{_ascii_filename(name)}\"; filename*=UTF-8''{quote(name, safe='')}"


@bp.route("/a/<id:attachment_id>/<path:filename>")
def attachment(attachment_id: int, filename: str) -> Any:
    att = db().get(Attachment, attachment_id)
    if att is None or filename != (att.filename or "attachment"):
        fail(404, _("There is no such attachment."))
    msg = db().get(Message, att.message_pk)
    topic = get_topic(msg.topic_id) if msg else None
    if msg is None or topic is None or not can_read_topic(topic):
        _not_readable()
    content_type = (att.content_type or "").split(";")[0].strip().lower()
    inline = content_type in INLINE_TYPES
    response = Response(att.data or b"", mimetype=content_type if inline else "application/octet-stream")
    if content_type == "text/plain":
        response.headers["Content-Type"] = "text/plain; charset=utf-8"
    response.headers["Content-Disposition"] = content_disposition("inline" if inline else "attachment", att.filename)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Cache-Control"] = "private, max-age=3600"
    return response


@bp.app_template_global()
def message_link(message_id: str, raw: bool = False) -> str:
    return message_url(message_id, raw=raw)


@bp.app_template_global()
def html_link(message_id: str) -> str:
    return message_url(message_id) + "/html"


@bp.app_template_global()
def attachment_link(att: Attachment) -> str:
    return attachment_url(att)


@bp.app_template_filter()
def filesize(size: int) -> str:
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{size / 1024:.0f} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def list_for(topic: Topic) -> MailingList | None:
    return lists_by_id().get(topic.list_id)
