"""Auto-reply rule: vacation notices and other automatic answers are never posted (RFC 3834)."""

from __future__ import annotations

from gateway.context import MailContext
from gateway.recipients import classify_local
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


def is_unsubscribe_button(ctx: MailContext) -> bool:
    """Apple Mail's "Unsubscribe" button: a mail to the List-Unsubscribe mailto (RFC 2369) carrying
    ``X-Apple-Unsubscribe: true``. Apple also marks it ``Auto-Submitted: auto-replied`` although a person
    pressed the button: it is a request, not an answer."""
    value = HeaderView(ctx.parsed.headers).get("X-Apple-Unsubscribe")
    return isinstance(value, str) and value.strip().lower() == "true"


def _to_request_address(ctx: MailContext) -> bool:
    target = classify_local(ctx.recipient_local, [ctx.mailing_list.name])
    return target is not None and target.role == "request"


def autoreply_rule(ctx: MailContext) -> Decision | None:
    reason = autoreply_reason(HeaderView(ctx.parsed.headers), ctx.parsed.subject)
    if reason is None:
        return None
    if _to_request_address(ctx) and is_unsubscribe_button(ctx):
        # Left to the request rule: gateway.commands reads it as "unsubscribe", with the same proof of
        # sender as any unsubscribe by mail. Any other automatic mail to -request (a vacation notice
        # answering our confirmation request) is dropped: answering it could start an auto-reply loop.
        return None
    return Decision("drop", f"automatic reply: {reason}")
