"""Loop rule: our own copies (or notices) coming back must never be posted again.

A member's vacation program, a forwarding rule or another list subscribed to ours can send a copy straight
back; reposting it would start a mail loop (each copy making more). Our copies carry our List-Id (RFC 2919)
and X-Loop; our notices and digests have Message-IDs in our domain.
"""

from __future__ import annotations

from gateway.context import MailContext

from .base import Decision

# Entry points that create messages with ids in our own domain on purpose (web posts, imports).
_OWN_ID_SOURCES = ("web", "import")


def loop_rule(ctx: MailContext) -> Decision | None:
    domain = ctx.settings.lists.domain.lower()
    parsed = ctx.parsed
    list_id = (parsed.list_id or "").lower()
    if list_id and (list_id == domain or list_id.endswith("." + domain)):
        return Decision("drop", f"loop: the message carries our own List-Id <{list_id}>")
    for value in parsed.x_loop:
        if value.strip().strip("<>").lower().endswith("@" + domain):
            return Decision("drop", f"loop: the message carries our own X-Loop: {value}")
    message_domain = parsed.message_id.rpartition("@")[2].lower()
    if message_domain == domain and not ctx.inbound.source.startswith(_OWN_ID_SOURCES):
        return Decision("drop", f"loop: the Message-ID <{parsed.message_id}> is one of ours")
    return None
