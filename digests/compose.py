"""Digest mails: plain text and HTML alternatives, in the subscriber's language.

Replying, and threading: a digest is a message of its own (own Message-ID, no In-Reply-To/References),
sent From the list's -request address like every mail Passerelle writes, so it never joins a topic, and
"Reply" on the whole digest reaches the command robot, which answers it, never the forum. Each topic
carries a "Reply" mailto: link to the list address with "Re: <topic subject>" and In-Reply-To set to the
topic's newest message (RFC 6068 allows any header in a mailto: URL): clients that honour In-Reply-To
thread the answer by reference, the others by subject (the gateway's subject fallback).
"""

from __future__ import annotations

import html
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_datetime

from gateway.notices import build_notice
from passerelle.config import Settings
from passerelle.models import MailingList, Member

from . import links
from .content import DigestContent, DigestTopic
from .periods import Period

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
LANGUAGES = ("fr", "en", "de", "it", "es")


class Labels:
    """The digest's words in one language (digests/templates/digest.LANG.toml), English for missing keys."""

    def __init__(self, language: str) -> None:
        self.language = language if language in LANGUAGES else "en"
        self._own = _load(self.language)
        self._fallback = _load("en")

    def __call__(self, key: str, **fields: Any) -> str:
        text = self._own.get(key, self._fallback.get(key))
        if text is None:
            raise KeyError(f"digest label {key!r} missing from digest.{self.language}.toml and digest.en.toml")
        return str(text).format(**fields) if fields else str(text)

    def count(self, key: str, n: int) -> str:
        """``key_one`` or ``key_other`` by the language's plural rule (CLDR: French 0 is singular too)."""
        form = Locale.parse(self.language).plural_form(n)
        return self(f"{key}_one" if form == "one" else f"{key}_other", n=n)

    def outcome(self, value: str | None) -> str:
        return self(f"outcome_{value}") if value and f"outcome_{value}" in self._fallback else (value or "")

    def level(self, value: str | None) -> str:
        return self(f"level_{value}") if value and f"level_{value}" in self._fallback else (value or "")


@cache
def _load(language: str) -> dict[str, Any]:
    path = TEMPLATE_DIR / f"digest.{language}.toml"
    if not path.is_file():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


@dataclass(frozen=True)
class Recipient:
    member: Member
    subscription_id: int
    language: str
    zone: ZoneInfo


def digest_message_id(settings: Settings, subscription_id: int, period: Period) -> str:
    """Stable per subscription and period: a retried send is recognisably the same mail."""
    return f"digest.{period.kind}.{period.key}.{subscription_id}@{settings.lists.domain}"


def _topic_links(settings: Settings, recipient: Recipient, topic: DigestTopic, now: datetime) -> dict[str, str]:
    mid = recipient.member.id
    return {
        "read": links.topic_url(settings, topic.topic_id),
        "follow": links.action_url(settings, "follow", member_id=mid, topic_id=topic.topic_id, now=now),
        "mute": links.action_url(settings, "mute", member_id=mid, topic_id=topic.topic_id, now=now),
        "open": links.action_url(settings, "open", member_id=mid, topic_id=topic.topic_id, now=now),
    }


def _status_line(labels: Labels, topic: DigestTopic) -> str:
    parts = []
    if topic.group == "closed" and topic.outcome:
        parts.append(labels("outcome", outcome=labels.outcome(topic.outcome)))
    if topic.escalation_level:
        parts.append(labels("escalated_to", level=labels.level(topic.escalation_level)))
    return " · ".join(parts)


def _summary(lab: Labels, content: DigestContent) -> str:
    return lab("summary", topics=lab.count("topics", len(content.topics)),
               messages=lab.count("messages", content.message_count))


def _title(lab: Labels, period: Period, list_label: str) -> str:
    when = format_date(period.local_date, "full", locale=lab.language)
    return lab(f"title_{period.kind}", list=list_label, date=when)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line if line.strip() else "" for line in text.splitlines())


def render_text(
    settings: Settings, mailing_list: MailingList, content: DigestContent, period: Period, recipient: Recipient,
    *, now: datetime, unsubscribe_url: str,
) -> str:
    lab = Labels(recipient.language)
    list_label = mailing_list.title or mailing_list.name
    list_address = settings.list_address(mailing_list.name)
    title = _title(lab, period, list_label)
    out = [title, "=" * min(len(title), 76), "",
           _summary(lab, content), ""]
    for category, groups in content.grouped():
        heading = category or lab("uncategorised")
        out += ["", f"## {heading}", ""]
        for group, topics in groups:
            out += [f"### {lab('group_' + group)}", ""]
            for topic in topics:
                urls = _topic_links(settings, recipient, topic, now)
                out.append(f"* {topic.subject}")
                status = _status_line(lab, topic)
                if status:
                    out.append(f"  {status}")
                if topic.new_count:
                    out.append(f"  {lab.count('message_count', topic.new_count)}")
                hidden = topic.new_count - len(topic.messages)
                if hidden > 0:
                    out.append(f"  {lab.count('more_messages', hidden)}")
                for message in topic.messages:
                    when = format_datetime(message.date, "short", tzinfo=recipient.zone, locale=lab.language)
                    out += ["", f"  {message.author} — {when}{' ' + lab('cut') if message.truncated else ''}",
                            _indent(message.excerpt)]
                out += [
                    "",
                    f"  {lab('read')}: {urls['read']}",
                    f"  {lab('open')}: {urls['open']}",
                    f"  {lab('reply')}: {links.reply_mailto(list_address, topic.subject, topic.reply_to_message_id)}",
                    f"  {lab('follow')}: {urls['follow']}",
                    f"  {lab('mute')}: {urls['mute']}",
                    "",
                ]
    out += [
        "-- ",
        lab("how_to_reply", list_address=list_address),
        lab(f"footer_{period.kind}", list=list_label),
        lab("footer_settings", account_url=links.account_url(settings)),
        lab("footer_unsubscribe", unsubscribe_url=unsubscribe_url,
            request_address=settings.list_address(mailing_list.name, "-request")),
    ]
    return "\n".join(out).rstrip() + "\n"


def render_html(
    settings: Settings, mailing_list: MailingList, content: DigestContent, period: Period, recipient: Recipient,
    *, now: datetime, unsubscribe_url: str,
) -> str:
    """The HTML alternative. Everything that comes from members (subjects, names, text, category names)
    goes through html.escape; URLs too (quote=True escapes & and " inside href attributes)."""
    lab = Labels(recipient.language)
    e = html.escape
    list_label = mailing_list.title or mailing_list.name
    list_address = settings.list_address(mailing_list.name)
    title = _title(lab, period, list_label)

    def a(url: str, text: str) -> str:
        return f'<a href="{e(url, quote=True)}">{e(text)}</a>'

    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{e(lab.language)}"><head><meta charset="utf-8"><title>{e(title)}</title></head>',
        '<body style="font-family:sans-serif;max-width:46em;margin:auto;color:#222">',
        f"<h1 style=\"font-size:1.3em\">{e(title)}</h1>",
        f"<p>{e(_summary(lab, content))}</p>",
    ]
    for category, groups in content.grouped():
        heading = category or lab("uncategorised")
        parts.append(f'<h2 style="font-size:1.15em;border-bottom:1px solid #ccc">{e(heading)}</h2>')
        for group, topics in groups:
            parts.append(f'<h3 style="font-size:1em;color:#555">{e(lab("group_" + group))}</h3>')
            for topic in topics:
                urls = _topic_links(settings, recipient, topic, now)
                parts.append('<div style="margin:0 0 1.2em 0">')
                parts.append(f'<p style="margin:0"><strong>{a(urls["read"], topic.subject)}</strong></p>')
                status = _status_line(lab, topic)
                meta = [status] if status else []
                if topic.new_count:
                    meta.append(lab.count("message_count", topic.new_count))
                hidden = topic.new_count - len(topic.messages)
                if hidden > 0:
                    meta.append(lab.count("more_messages", hidden))
                if meta:
                    parts.append(f'<p style="margin:0;color:#666;font-size:.9em">{e(" · ".join(meta))}</p>')
                for message in topic.messages:
                    when = format_datetime(message.date, "short", tzinfo=recipient.zone, locale=lab.language)
                    cut = f" {lab('cut')}" if message.truncated else ""
                    byline = f"{message.author} — {when}{cut}"
                    parts.append(
                        f'<p style="margin:.6em 0 0 0;font-size:.9em;color:#444">{e(byline)}</p>'
                        '<blockquote style="margin:.2em 0 0 .8em;padding-left:.6em;border-left:3px solid #ddd;'
                        f'white-space:pre-wrap">{e(message.excerpt)}</blockquote>'
                    )
                actions = " · ".join([
                    a(urls["read"], lab("read")),
                    a(urls["open"], lab("open")),
                    a(links.reply_mailto(list_address, topic.subject, topic.reply_to_message_id), lab("reply")),
                    a(urls["follow"], lab("follow")),
                    a(urls["mute"], lab("mute")),
                ])
                parts.append(f'<p style="margin:.4em 0 0 0;font-size:.9em">{actions}</p></div>')
    parts += [
        '<hr><p style="font-size:.85em;color:#666">',
        e(lab("how_to_reply", list_address=list_address)) + "<br>",
        e(lab(f"footer_{period.kind}", list=list_label)) + "<br>",
        _with_link(lab("footer_settings", account_url="\x00"), links.account_url(settings)) + "<br>",
        _with_link(
            lab("footer_unsubscribe", unsubscribe_url="\x00",
                request_address=settings.list_address(mailing_list.name, "-request")),
            unsubscribe_url,
        ),
        "</p></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _with_link(sentence: str, url: str) -> str:
    """Escape a translated sentence whose URL placeholder was filled with NUL, and put a link there."""
    before, _, after = sentence.partition("\x00")
    link = f'<a href="{html.escape(url, quote=True)}">{html.escape(url)}</a>'
    return html.escape(before) + link + html.escape(after)


def build_digest(
    settings: Settings,
    mailing_list: MailingList,
    content: DigestContent,
    period: Period,
    recipient: Recipient,
    *,
    now: datetime,
    unsubscribe_url: str,
    list_headers: Sequence[tuple[str, str]] = (),
) -> EmailMessage:
    """The finished digest mail for one subscriber (multipart/alternative: text/plain then text/html).

    ``list_headers``: the RFC 2369/8058 headers of the subscriber's copies (List-Unsubscribe with its
    one-click POST URL, List-Post, List-Archive...), given by the caller so digests carry the same ones.
    """
    if content.is_empty:
        raise ValueError("an empty digest is never sent")
    lab = Labels(recipient.language)
    list_label = mailing_list.title or mailing_list.name
    subject = lab(
        f"subject_{period.kind}",
        list=list_label,
        date=format_date(period.local_date, "long", locale=lab.language),
        topics=lab.count("topics", len(content.topics)),
        messages=lab.count("messages", content.message_count),
    )
    args = (settings, mailing_list, content, period, recipient)
    text = render_text(*args, now=now, unsubscribe_url=unsubscribe_url)
    html_body = render_html(*args, now=now, unsubscribe_url=unsubscribe_url)
    # build_notice writes List-Id and X-Loop itself.
    extra = [(n, v) for n, v in list_headers if n.lower() not in ("list-id", "x-loop", "precedence")]
    present = {name.lower() for name, _ in extra}
    if "list-post" not in present:
        extra.append(("List-Post", f"<mailto:{settings.list_address(mailing_list.name)}>"))
    if "list-archive" not in present:
        extra.append(("List-Archive", f"<{links.base(settings)}/>"))
    # RFC 2076 folklore: "Precedence: bulk" keeps old vacation programs that ignore Auto-Submitted quiet.
    extra.append(("Precedence", "bulk"))
    return build_notice(
        settings,
        mailing_list,
        to=recipient.member.email,
        subject=subject,
        body=text,
        html=html_body,
        now=now,
        message_id=digest_message_id(settings, recipient.subscription_id, period),
        extra_headers=extra,
    )
