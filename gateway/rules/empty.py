"""Empty-message rule: a post with no subject, no text and no attachment is not posted (Mailman's "empty
message" filter). It is a slip (a "Send" pressed too early, a mail program's blank draft); posting it would
make a topic with no title and no content and mail every member about nothing. The author is told, in their
language, that nothing was posted (the "refuse" handler), so that a real message is not silently lost.
"""

from __future__ import annotations

import re

from gateway.context import MailContext
from gateway.templates import Localised

from .base import Decision

_TAG = re.compile(r"<[^>]*>|&nbsp;|&#160;", re.IGNORECASE)
_HIDDEN = re.compile(r"<(style|script|head)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def _html_is_blank(html: str | None) -> bool:
    """An HTML part with nothing a reader would see (only tags, styles and spaces)."""
    if not html:
        return True
    return not _TAG.sub(" ", _HIDDEN.sub(" ", html)).strip()


def is_empty_post(ctx: MailContext) -> bool:
    """No subject (a bare "Re:" counts as none), no text in any part, no attachment."""
    parsed = ctx.parsed
    if (parsed.normalized_subject or "").strip():
        return False
    if (parsed.text or "").strip() or parsed.attachments:
        return False
    return _html_is_blank(parsed.html)


def empty_rule(ctx: MailContext) -> Decision | None:
    if ctx.recipient_local != ctx.mailing_list.name or not is_empty_post(ctx):
        return None
    return Decision("refuse", Localised(
        "refuse.empty", operator_text="empty message (no subject, no text, no attachment): nothing to post",
    ))
