"""Auto-reply rule: vacation notices and other automatic answers are never posted (RFC 3834)."""

from __future__ import annotations

from gateway.context import MailContext
from passerelle.mail.autoreply import autoreply_reason

from .base import Decision


class HeaderView:
    """The parsed message's raw headers with the ``get``/``get_all`` of an email.message.Message."""

    def __init__(self, headers: tuple[tuple[str, str], ...]) -> None:
        self._headers = headers

    def get(self, name: str, default: object = None) -> object:
        wanted = name.lower()
        for key, value in self._headers:
            if key.lower() == wanted:
                return value
        return default

    def get_all(self, name: str, failobj: object = None) -> object:
        wanted = name.lower()
        found = [value for key, value in self._headers if key.lower() == wanted]
        return found or failobj


def autoreply_rule(ctx: MailContext) -> Decision | None:
    reason = autoreply_reason(HeaderView(ctx.parsed.headers), ctx.parsed.subject)
    if reason is None:
        return None
    return Decision("drop", f"automatic reply: {reason}")
