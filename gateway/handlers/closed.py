"""A reply to a closed topic: not distributed; the author gets a polite notice with the topic's link."""

from __future__ import annotations

import logging

from gateway.compose import archive_urls
from gateway.context import MailContext
from gateway.notices import queue_notice
from gateway.templates import render
from passerelle.models import Topic

from . import Outcome
from .notify import language_for, reply_address

log = logging.getLogger(__name__)


def closed_topic(ctx: MailContext, topic: Topic) -> Outcome:
    ml, settings = ctx.mailing_list, ctx.settings
    topic_url, _ = archive_urls(settings, topic_id=topic.id, message_id=ctx.parsed.message_id)
    to = reply_address(ctx)
    if to is not None:
        subject, body = render(
            "topic_closed",
            language_for(ctx),
            subject=ctx.parsed.subject or "-",
            topic_subject=topic.subject,
            topic_url=topic_url,
            list=ml.name,
            list_title=ml.title or ml.name,
            list_address=settings.list_address(ml.name),
            owner_address=settings.list_address(ml.name, "-owner"),
        )
        queue_notice(
            ctx.session, settings, ml, to=to, subject=subject, body=body, now=ctx.now,
            dedupe_key=f"closed:{ctx.inbound.id}", in_reply_to=ctx.parsed.message_id,
        )
    reason = f"reply to closed topic #{topic.id} ({topic.subject[:80]}): not distributed" + (
        f"; {to} was told" if to else ""
    )
    log.info("inbound #%s <%s>: %s", ctx.inbound.id, ctx.parsed.message_id, reason)
    return Outcome("dropped", reason[:2000], topic_id=topic.id)
