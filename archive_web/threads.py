"""Reading: home, topic lists with filters, thread pages, message permalinks, raw messages, attachments."""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from functools import lru_cache
from typing import Any, cast
from urllib.parse import quote

from flask import Blueprint, Response, g, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from markupsafe import Markup
from sqlalchemy import bindparam, case, exists, func, select
from sqlalchemy.orm import joinedload, undefer

from passerelle.models import (
    Attachment,
    Category,
    CategoryFollow,
    Escalation,
    InboundMessage,
    MailingList,
    Member,
    Message,
    Organisation,
    Sheet,
    Tag,
    Topic,
    TopicFollow,
    topic_tags,
)
from passerelle.models.topic import OUTCOMES

from . import shortcache
from .app import NavItem
from .formats import ReaderFormats
from .render import body_blocks
from .sanitize import sanitize_html
from .web import (
    MAX_ID,
    Viewer,
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
UNCLASSIFIED = "none"
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
    counts, open_counts = shortcache.cache().get("category counts", _category_counts)
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


def _category_counts() -> tuple[dict[int | None, int], dict[int | None, int]]:
    """Topics per category, and those not closed (None: without category), in one pass over the topics."""
    counts: dict[int | None, int] = {}
    open_counts: dict[int | None, int] = {}
    for category_id, total, not_closed in db().execute(
        select(
            Topic.category_id,
            func.count(Topic.id),
            func.coalesce(func.sum(case((Topic.status != "closed", 1), else_=0)), 0),
        )
        .where(Topic.merged_into_id.is_(None))
        .group_by(Topic.category_id)
    ):
        counts[category_id] = int(total)
        if not_closed:
            open_counts[category_id] = int(not_closed)
    return counts, open_counts


# --------------------------------------------------------------------------------------------------------
# Topic lists
# --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RowCategory:
    id: int
    name: str
    slug: str
    url: str


@dataclass(frozen=True, slots=True)
class RowOrganisation:
    name: str


@dataclass(frozen=True, slots=True)
class RowAuthor:
    name: str
    email: str
    organisation: RowOrganisation | None

    def display(self) -> str:
        """As Member.display()."""
        return self.name or self.email


@dataclass(frozen=True, slots=True)
class RowTag:
    name: str


@dataclass(frozen=True, slots=True)
class TopicSummary:
    """What a row of a topic list shows of a topic (read as plain columns: no ORM objects to build, track
    and expire for 30 rows)."""

    id: int
    subject: str
    status: str
    outcome: str | None
    escalation_level: str | None
    message_count: int
    last_post_at: datetime
    category: RowCategory | None
    tags: list[RowTag]


@dataclass(frozen=True, slots=True)
class TopicRow:
    topic: TopicSummary
    # Author and tags are filled in only when the reader may read the topic in full (``readable``).
    author: RowAuthor | None
    readable: bool
    url: str
    badge: Markup
    last_post: Markup


@dataclass(frozen=True)
class TopicFilters:
    category_id: int | None = None
    # ?category=none: the topics not in any category yet (the home page links there).
    unclassified: bool = False
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
            "category": UNCLASSIFIED if self.unclassified else self.category_id,
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
    unclassified = category_id is None and request.args.get("category", "").strip() == UNCLASSIFIED
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
        category_id=category_id if category_id is not None or unclassified else int_arg("category"),
        unclassified=unclassified,
        tag=tag,
        status=status,
        outcome=outcome,
        country=country.upper(),
        border=border.upper(),
        organisation_id=int_arg("org"),
        page=page_arg(),
    )


_TOPIC_COLUMNS = (
    Topic.id,
    Topic.subject,
    Topic.status,
    Topic.outcome,
    Topic.escalation_level,
    Topic.message_count,
    Topic.last_post_at,
    Category.id,
    Category.name,
    Category.slug,
    Member.id,
    Member.name,
    Member.email,
    Organisation.name,
)


@lru_cache(maxsize=256)
def _select_topics(see_everything: bool, member_list_ids: frozenset[int]) -> Any:
    # Statements are immutable: one per kind of reader (anonymous readers and operators all share one).
    return (
        select(*_TOPIC_COLUMNS, readable_clause(Viewer(member_list_ids=member_list_ids, is_operator=see_everything)))
        .select_from(Topic)
        .outerjoin(Category, Category.id == Topic.category_id)
        .outerjoin(Member, Member.id == Topic.author_id)
        .outerjoin(Organisation, Organisation.id == Member.organisation_id)
        .where(Topic.merged_into_id.is_(None))
    )


def select_topics() -> Any:
    """Rows of topics (not merged away) with their category, author and the author's organisation, and
    whether the reader may read each in full: one query (see _topic_rows)."""
    v = viewer()
    return _select_topics(v.see_everything, v.member_list_ids)


_TAGS_OF_TOPICS = (
    select(topic_tags.c.topic_id, Tag.name)
    .join(Tag, Tag.id == topic_tags.c.tag_id)
    .where(topic_tags.c.topic_id.in_(bindparam("topic_ids", expanding=True)))
    .order_by(Tag.name)
)


def _topic_rows(stmt: Any) -> list[TopicRow]:
    """The rows of ``stmt`` (a select_topics() query), with the tags of those the reader may read (one
    more query for the page), their links, badges and dates formatted."""
    session = db()
    result = session.execute(stmt).all()
    tags: dict[int, list[RowTag]] = defaultdict(list)
    readable_ids = [r[0] for r in result if r[-1]]
    if readable_ids:
        for topic_id, name in session.execute(_TAGS_OF_TOPICS, {"topic_ids": readable_ids}):
            tags[topic_id].append(RowTag(name))
    categories: dict[int, RowCategory] = {}
    formats = ReaderFormats()
    link = topic_url_prefix()
    rows = []
    for (
        topic_id, subject, status, outcome, level, message_count, last_post_at,
        category_id, category_name, category_slug, author_id, author_name, author_email, organisation_name,
        readable,
    ) in result:
        category = None
        if category_id is not None:
            category = categories.get(category_id)
            if category is None:
                category = categories[category_id] = RowCategory(
                    category_id, category_name, category_slug, category_url(category_id, category_slug)
                )
        author = None
        if readable and author_id is not None:
            org = RowOrganisation(organisation_name) if organisation_name is not None else None
            author = RowAuthor(author_name, author_email, org)
        summary = TopicSummary(
            topic_id, subject, status, outcome, level, message_count, last_post_at, category, tags.get(topic_id, [])
        )
        rows.append(
            TopicRow(
                summary,
                author,
                bool(readable),
                f"{link}{topic_id}",
                formats.status_badge(status, outcome, level),
                formats.time_tag(last_post_at, "short"),
            )
        )
    return rows


def _filtered(columns: Any, filters: TopicFilters) -> Any:
    """``select(columns)`` of the topics (not merged away) that ``filters`` keep. Categories are joined
    only when the visibility rule needs them: counting does not have to visit them."""
    stmt = select(columns).select_from(Topic).where(Topic.merged_into_id.is_(None))
    if filters.needs_full_access:
        stmt = stmt.outerjoin(Category, Category.id == Topic.category_id)
    return apply_filters(stmt, filters)


def apply_filters(stmt: Any, filters: TopicFilters) -> Any:
    if filters.category_id is not None:
        stmt = stmt.where(Topic.category_id == filters.category_id)
    elif filters.unclassified:
        stmt = stmt.where(Topic.category_id.is_(None))
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
    """The options of the filter form as (value, text) pairs (tags for members only)."""
    choices = dict(shortcache.cache().get("filter choices", _filter_choices))
    if not viewer().is_member:
        choices["tags"] = ()
    return choices


def _filter_choices() -> dict[str, Any]:
    # Plain rows, not ORM objects: there are hundreds of organisations, the form shows ids and names.
    session = db()
    categories = session.execute(select(Category.id, Category.name).order_by(Category.name)).all()
    tags = session.scalars(select(Tag.name).distinct().order_by(Tag.name)).all()
    organisations = session.execute(
        select(Organisation.id, Organisation.name, Organisation.country, Organisation.border).order_by(
            Organisation.name
        )
    ).all()
    # Country codes and borders are upper-case letters and dashes: Python sorts them as the database does.
    countries = sorted({country for _id, _name, country, _border in organisations})
    borders = sorted({border for _id, _name, _country, border in organisations if border})
    # Tuples of str/int pairs: formats.options() renders each select once per selected value.
    return {
        "categories": [(cat_id, name) for cat_id, name in categories],  # a list: topics.html prepends to it
        "tags": tuple((name, name) for name in tags),
        "countries": tuple((code, code) for code in countries),
        "borders": tuple((border, border) for border in borders),
        "organisations": tuple((org_id, name) for org_id, name, _country, _border in organisations),
        "statuses": STATUS_FILTERS,
        "outcomes": OUTCOMES,
    }


@bp.route("/topics")
def topics() -> Any:
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


def _topic_count(filters: TopicFilters) -> int:
    """How many topics ``filters`` keep (on every page of the list: kept a few seconds, see shortcache)."""
    v = viewer()
    # The count depends on the reader only when filtering needs full access (tags, participants).
    reader = (v.see_everything, v.member_list_ids) if filters.needs_full_access else None
    key = ("topic count", replace(filters, page=1), reader)
    return shortcache.cache().get(key, lambda: int(db().scalar(_filtered(func.count(Topic.id), filters)) or 0))


def _topic_list(filters: TopicFilters, *, category: Category | None) -> Any:
    size = settings().web.page_size
    newest_first = (Topic.last_post_at.desc(), Topic.id.desc())
    # The page's ids first, then their rows: sorting a category's topics carries ids only, not every
    # column of the topics, their authors and organisations (SQLite joins before it sorts).
    page = (
        _filtered(Topic.id, filters).order_by(*newest_first).limit(size + 1).offset((filters.page - 1) * size)
    ).subquery()
    rows = _topic_rows(select_topics().join(page, page.c.id == Topic.id).order_by(*newest_first))
    total = _topic_count(filters)
    if not rows and filters.page > 1:
        # Past the last page (an old link, a list that shrank): show the last page there is.
        last = max(1, -(-total // size))
        if last < filters.page:
            args = filters.args(page=last)
            if request.view_args:  # a category's own page: its id is in the path
                args.pop("category", None)
            args = dict(request.view_args, **args) if request.view_args else args
            return redirect(url_for(request.endpoint or "threads.topics", **args), code=302)
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
    # The permalink (/m/<Message-ID>; raw and formatted versions add /raw, /html) and the <time> of the date.
    link: str
    date: Markup


# The topic with its category and tags in one query (Session.get would load the tags with a second one).
_TOPIC_BY_ID = select(Topic).where(Topic.id == bindparam("topic_id")).options(joinedload(Topic.tags))


def get_topic(topic_id: int) -> Topic:
    topic = db().execute(_TOPIC_BY_ID, {"topic_id": topic_id}).unique().scalar_one_or_none()
    if topic is None:
        fail(404, _("There is no such topic."))
    return topic


# The thread page reads the topic (with category and tags), its list (for the posting address), whether
# it has sheets or escalations (most have neither: templates/sheets/_topic_extras.html is then skipped)...
_TOPIC_PAGE = (
    select(
        Topic,
        MailingList,
        exists().where(Sheet.topic_id == Topic.id).label("has_sheets"),
        exists().where(Escalation.topic_id == Topic.id).label("has_escalations"),
    )
    .join(MailingList, MailingList.id == Topic.list_id)
    .where(Topic.id == bindparam("topic_id"))
    .options(joinedload(Topic.tags))
)
# ... then its messages with their authors and attachments (a message with two attachments is two rows).
_MESSAGES_OF_TOPIC = (
    select(Message, Message.html.is_not(None).label("has_html"), Attachment)
    .outerjoin(Attachment, Attachment.message_pk == Message.id)
    .where(Message.topic_id == bindparam("topic_id"))
    .options(undefer(Message.body_text), undefer(Message.new_text))
    .order_by(Message.date, Message.id, Attachment.id)
)


@bp.route("/t/<id:topic_id>")
def topic(topic_id: int) -> Any:
    session = db()
    found = session.execute(_TOPIC_PAGE, {"topic_id": topic_id}).unique().one_or_none()
    if found is None:
        fail(404, _("There is no such topic."))
    topic, ml, has_sheets, has_escalations = found
    if topic.merged_into_id and topic.merged_into_id != topic.id:
        return redirect(url_for("threads.topic", topic_id=topic.merged_into_id), code=301)
    readable = can_read_topic(topic)
    v = viewer()
    messages: list[MessageView] = []
    participants: dict[int, Member] = {}
    if readable:
        attachments: dict[int, list[Attachment]] = defaultdict(list)
        rows: dict[int, tuple[Message, bool]] = {}
        for m, has_html, att in session.execute(_MESSAGES_OF_TOPIC, {"topic_id": topic.id}).unique():
            rows.setdefault(m.id, (m, has_html))
            if att is not None:
                attachments[m.id].append(att)
        formats = ReaderFormats()
        for m, has_html in rows.values():
            if m.author is not None:
                participants[m.author.id] = m.author
            messages.append(
                MessageView(
                    message=m,
                    blocks=body_blocks(m.body_text, m.new_text),
                    attachments=attachments.get(m.id, []),
                    has_html=bool(has_html),
                    parent_pk=m.parent_id,
                    link=message_url(m.message_id),
                    date=formats.time_tag(m.date),
                )
            )
    follow_mode = None
    if v.signed_in:
        row = session.get(TopicFollow, (v.member.id, topic.id))  # type: ignore[union-attr]
        follow_mode = row.mode if row else None
    return render_template(
        "topic.html",
        topic=topic,
        readable=readable,
        messages=messages,
        participants=sorted(participants.values(), key=lambda p: p.display().lower()),
        follow_mode=follow_mode,
        can_follow=v.signed_in and topic.list_id in v.member_list_ids,
        mailing_list=ml,
        post_address=settings().list_address(ml.name) if ml else "",
        login_link=login_url(request.path),
        show_extras=bool(has_sheets or has_escalations or v.moderates(topic.list_id)),
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
    # It exists (a 404 would say otherwise) but is for members: 403, and the error page offers to sign in.
    if viewer().signed_in:
        fail(403, _("This message is for the members of its list only."))
    fail(403, _("This message is for members only: sign in to see it."))


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


def _url_memo() -> dict[Any, str]:
    memo = g.get("url_memo")
    if memo is None:
        memo = g.url_memo = {}
    return cast(dict[Any, str], memo)


def topic_url_prefix() -> str:
    """The thread page of topic N is this plus N. A topic list links 30 topics: url_for builds one, the
    others share its prefix (the id is the last part of the route, a plain integer)."""
    memo = _url_memo()
    prefix = memo.get("topic")
    if prefix is None:
        prefix = memo["topic"] = url_for("threads.topic", topic_id=1).removesuffix("1")
    return prefix


def category_url(category_id: int, slug: str) -> str:
    key = ("category", category_id, slug)
    url = _url_memo().get(key)
    if url is None:
        url = _url_memo()[key] = url_for("threads.category", category_id=category_id, slug=slug)
    return url


@bp.app_template_global()
def tag_url(name: str) -> str:
    key = ("tag", name)
    url = _url_memo().get(key)
    if url is None:
        url = _url_memo()[key] = url_for("threads.topics", tag=name)
    return url


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
    from .actionlog import filesize as human_size  # in the reader's language: "69 o", "1,5 Mo"

    return human_size(size)


def list_for(topic: Topic) -> MailingList | None:
    return lists_by_id().get(topic.list_id)
