"""Links written into digests: the thread, a reply mailto, and signed one-click links.

Signed links carry who and what (passerelle.tokens, one purpose per action so a "follow" token cannot be
replayed as "mute"); archive_web.digest_links serves them. They work without signing in, and GET never
changes anything (mail scanners and link previewers fetch every URL of a mail): GET shows a page with one
button, the POST of that button does the change.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from gateway.bounce_score import REENABLE_PURPOSE, account_url
from passerelle.config import Settings
from passerelle.tokens import sign, unsign

ACTIONS = ("follow", "mute", "open", "reenable")
__all__ = ["ACTIONS", "MAX_AGE_SECONDS", "account_url", "action_url", "read_action_token", "reply_mailto", "topic_url"]
# Follow/mute/open links stay valid this long: a digest read late must still work.
MAX_AGE_SECONDS = 180 * 86400


def purpose(action: str) -> str:
    if action not in ACTIONS:
        raise ValueError(f"unknown digest link action {action!r} (one of {', '.join(ACTIONS)})")
    return REENABLE_PURPOSE if action == "reenable" else f"digest-{action}"


def base(settings: Settings) -> str:
    return settings.site.base_url.rstrip("/")


def topic_url(settings: Settings, topic_id: int) -> str:
    """The thread page of the archive (the same URL the gateway writes into copies)."""
    from gateway.compose import archive_urls

    return archive_urls(settings, topic_id=int(topic_id), message_id="")[0]


def action_url(settings: Settings, action: str, *, member_id: int, topic_id: int, now: datetime | None = None) -> str:
    """A signed /d/<action>/<token> link for one member and one topic."""
    token = sign(settings, purpose(action), {"m": int(member_id), "t": int(topic_id)}, now=now)
    return f"{base(settings)}/d/{action}/{token}"


def read_action_token(
    settings: Settings, action: str, token: str, *, now: datetime | None = None, max_age: int | None = None
) -> dict[str, Any]:
    """The {"m": member id, "t": topic id} (or {"s": subscription id} for reenable) inside a link token.

    Raises passerelle.tokens.TokenError (or TokenExpired) for anything forged, damaged or older than
    ``max_age`` seconds (default: MAX_AGE_SECONDS; reenable links never expire).
    """
    if max_age is None and action != "reenable":
        max_age = MAX_AGE_SECONDS
    return unsign(settings, purpose(action), token, max_age=max_age, now=now)


def reply_mailto(list_address: str, subject: str, in_reply_to: str) -> str:
    """mailto: link answering a topic (RFC 6068: any header may be given, In-Reply-To included).

    Clients that honour In-Reply-To thread the answer by reference; the others still send
    "Re: <topic subject>", which the gateway threads by subject within its window.
    """
    reply_subject = subject if subject.lower().startswith("re:") else f"Re: {subject}"
    query = f"subject={quote(reply_subject, safe='')}"
    if in_reply_to:
        query += f"&In-Reply-To={quote(f'<{in_reply_to}>', safe='')}"
    return f"mailto:{quote(list_address, safe='@')}?{query}"
