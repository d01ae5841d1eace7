"""Atom feeds (RFC 4287) — latest messages, per category, per search — and mbox exports of a topic and of
a category.

Feeds follow the reader's visibility like every page: a topic the reader may not read appears by its
title only (no content, no author). Feed readers rarely sign in, so a members-only category's feed is in
practice a feed of titles. mbox exports of what the reader may not read are refused.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, NoReturn

from flask import Blueprint, Response, request, stream_with_context
from flask_babel import gettext as _
from sqlalchemy import select
from sqlalchemy.orm import undefer

from passerelle.models import Category, InboundMessage, Message, Topic
from passerelle.search import SearchHit, SearchQuery, search_messages

from .search import parse_search_query
from .threads import get_topic
from .web import (
    can_read_category,
    can_read_topic,
    db,
    external_url,
    fail,
    message_url,
    settings,
    site_title,
    viewer,
)

bp = Blueprint("feeds", __name__)

ATOM_NS = "http://www.w3.org/2005/Atom"
FEED_SIZE = 50
MBOX_BATCH = 200
# XML 1.0 cannot carry most control characters, not even escaped: they are dropped from feed text.
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
_FROM_LINE = re.compile(rb"^(>*From )", re.MULTILINE)


def _clean(value: str) -> str:
    return _XML_INVALID.sub("", value or "")


def _iso(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _atom(title: str, self_url: str, alternate_url: str, feed_id: str, hits: tuple[SearchHit, ...]) -> Response:
    ET.register_namespace("", ATOM_NS)
    feed = ET.Element(f"{{{ATOM_NS}}}feed")

    def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ATOM_NS}}}{tag}", attrs)
        if text is not None:
            el.text = _clean(text)
        return el

    site = site_title()
    sub(feed, "title", f"{title} · {site}")
    sub(feed, "id", feed_id)
    sub(feed, "link", rel="self", href=self_url)
    sub(feed, "link", rel="alternate", type="text/html", href=alternate_url)
    author = sub(feed, "author")
    sub(author, "name", site)
    updated = max((h.date for h in hits), default=datetime(2000, 1, 1, tzinfo=UTC))
    sub(feed, "updated", _iso(updated))
    texts = _texts([h.message_pk for h in hits if h.readable])
    base = settings().site.base_url.rstrip("/")
    for hit in hits:
        entry = sub(feed, "entry")
        topic_url = f"{base}/t/{hit.topic_id}"
        if hit.readable:
            sub(entry, "title", hit.subject or hit.topic_subject)
            sub(entry, "id", message_url(hit.message_id, external=True))
            sub(entry, "link", rel="alternate", type="text/html", href=f"{topic_url}#m{hit.message_pk}")
            if hit.author_name:
                entry_author = sub(entry, "author")
                sub(entry_author, "name", hit.author_name)
            sub(entry, "content", texts.get(hit.message_pk, ""), type="text")
        else:
            # Titles only: the topic, by its title, and nothing else.
            sub(entry, "title", hit.topic_subject)
            sub(entry, "id", topic_url)
            sub(entry, "link", rel="alternate", type="text/html", href=topic_url)
        sub(entry, "updated", _iso(hit.date))
        if hit.category_name:
            sub(entry, "category", term=hit.category_name)
    body = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return Response(body, mimetype="application/atom+xml")


def _texts(pks: list[int]) -> dict[int, str]:
    if not pks:
        return {}
    rows = db().execute(
        select(Message.id, Message.new_text, Message.body_text).where(Message.id.in_(pks))
    ).all()
    return {r.id: (r.new_text or r.body_text or "") for r in rows}


def _visibility() -> dict[str, Any]:
    v = viewer()
    return {"member_list_ids": v.member_list_ids, "see_everything": v.see_everything}


@bp.route("/feeds/latest.atom")
def latest() -> Response:
    page = search_messages(db(), SearchQuery(browse=True, page_size=FEED_SIZE, **_visibility()))
    return _atom(
        _("Latest messages"),
        external_url("feeds.latest"),
        external_url("threads.home"),
        external_url("feeds.latest"),
        page.hits,
    )


@bp.route("/feeds/c/<id:category_id>.atom")
def category(category_id: int) -> Response:
    cat = db().get(Category, category_id)
    if cat is None:
        fail(404, _("There is no such category."))
    page = search_messages(db(), SearchQuery(category_id=cat.id, page_size=FEED_SIZE, **_visibility()))
    return _atom(
        cat.name,
        external_url("feeds.category", category_id=cat.id),
        external_url("threads.category", category_id=cat.id, slug=cat.slug),
        external_url("feeds.category", category_id=cat.id),
        page.hits,
    )


@bp.route("/feeds/search.atom")
def search() -> Response:
    query = parse_search_query(page_size=FEED_SIZE)
    hits = search_messages(db(), query).hits if not query.is_empty else ()
    args = {k: v for k, v in request.args.items() if k != "page"}
    return _atom(
        _("Search: %(terms)s", terms=query.text or "…"),
        external_url("feeds.search", **args),
        external_url("search.search", **args),
        external_url("feeds.search", **args),
        hits,
    )


# --------------------------------------------------------------------------------------------------------
# mbox (mboxrd: "From " lines in bodies get one more ">")
# --------------------------------------------------------------------------------------------------------


def _synthesised(msg: Message) -> bytes:
    """A message rebuilt from the archive when the original bytes were not kept."""
    em = EmailMessage()
    em["From"] = f"{msg.from_name} <{msg.from_addr}>" if msg.from_name else (msg.from_addr or "unknown@invalid")
    em["Subject"] = msg.subject or ""
    em["Date"] = format_datetime(msg.date)
    em["Message-ID"] = f"<{msg.message_id}>"
    if msg.in_reply_to:
        em["In-Reply-To"] = msg.in_reply_to if msg.in_reply_to.startswith("<") else f"<{msg.in_reply_to}>"
    if msg.references:
        em["References"] = msg.references
    em.set_content(msg.body_text or "")
    return bytes(em)


def _mbox_entry(msg: Message, raw: bytes | None) -> bytes:
    data = raw if raw is not None else _synthesised(msg)
    data = data.replace(b"\r\n", b"\n")
    head, sep, body = data.partition(b"\n\n")
    body = _FROM_LINE.sub(rb">\1", body)
    sender = (msg.from_addr or "MAILER-DAEMON").replace(" ", "_").encode("ascii", "replace")
    when = msg.date.astimezone(UTC).strftime("%a %b %d %H:%M:%S %Y").encode("ascii")
    data = head + sep + body
    if not data.endswith(b"\n"):
        data += b"\n"
    return b"From " + sender + b" " + when + b"\n" + data + b"\n"


def _mbox_stream(topic_ids_query: Any) -> Iterator[bytes]:
    session = db()
    last_id = 0
    while True:
        batch = session.scalars(
            select(Message)
            .where(Message.topic_id.in_(topic_ids_query), Message.id > last_id)
            .options(undefer(Message.body_text))
            .order_by(Message.id)
            .limit(MBOX_BATCH)
        ).all()
        if not batch:
            return
        inbound_ids = [m.inbound_id for m in batch if m.inbound_id is not None]
        raws: dict[int, bytes] = {}
        if inbound_ids:
            raws = dict(
                session.execute(
                    select(InboundMessage.id, InboundMessage.raw).where(InboundMessage.id.in_(inbound_ids))
                ).all()
            )
        for msg in sorted(batch, key=lambda m: (m.date, m.id)):
            yield _mbox_entry(msg, raws.get(msg.inbound_id) if msg.inbound_id is not None else None)
        last_id = batch[-1].id
        session.expunge_all()


def _mbox_response(topic_ids_query: Any, filename: str) -> Response:
    response = Response(stream_with_context(_mbox_stream(topic_ids_query)), mimetype="application/mbox")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


def members_only_export() -> NoReturn:
    # The topic or category exists (its title is public): 403 rather than 404, with a way to sign in.
    if viewer().signed_in:
        fail(403, _("This export is for the members of its list only."))
    fail(403, _("This export is for members only: sign in to download it."))


@bp.route("/t/<id:topic_id>/mbox")
def topic_mbox(topic_id: int) -> Response:
    topic = get_topic(topic_id)
    if not can_read_topic(topic):
        members_only_export()
    return _mbox_response(select(Topic.id).where(Topic.id == topic.id), f"topic-{topic.id}.mbox")


@bp.route("/c/<id:category_id>/mbox")
def category_mbox(category_id: int) -> Response:
    cat = db().get(Category, category_id)
    if cat is None:
        fail(404, _("There is no such category."))
    if not can_read_category(cat):
        members_only_export()
    return _mbox_response(select(Topic.id).where(Topic.category_id == cat.id), f"{cat.slug}.mbox")
