"""Mail to LIST-request@ / LIST+<command>@: handed to the mail commands module (gateway.commands)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from gateway.context import MailContext
from gateway.notices import queue_notice
from gateway.templates import render

from . import Outcome
from .notify import language_for, reply_address

log = logging.getLogger(__name__)


def _request_handler() -> Callable[[MailContext], Any] | None:
    try:
        commands = importlib.import_module("gateway.commands")
    except ModuleNotFoundError as exc:
        if exc.name != "gateway.commands":
            raise
        return None
    return getattr(commands, "handle_request_mail", None)


def handle_command(ctx: MailContext) -> Outcome:
    handler = _request_handler()
    if handler is not None:
        result = handler(ctx)
        reason = result if isinstance(result, str) else getattr(result, "summary", None) or "mail command handled"
        return Outcome("command", str(reason)[:2000])
    # No commands module in this installation: the sender is told (never silence) and the row is shunted,
    # so that operators can replay it once commands are available.
    ml, settings = ctx.mailing_list, ctx.settings
    to = reply_address(ctx)
    if to is not None:
        subject, body = render(
            "request_unavailable",
            language_for(ctx),
            subject=ctx.parsed.subject or "-",
            request_address=settings.list_address(ml.name, "-request"),
            list_address=settings.list_address(ml.name),
            archive_url=settings.site.base_url.rstrip("/") + "/",
        )
        queue_notice(
            ctx.session, settings, ml, to=to, subject=subject, body=body, now=ctx.now,
            dedupe_key=f"request-unavailable:{ctx.inbound.id}", in_reply_to=ctx.parsed.message_id,
        )
    reason = "mail command not executed: gateway.commands.handle_request_mail is not installed"
    log.warning("inbound #%s <%s>: %s", ctx.inbound.id, ctx.parsed.message_id, reason)
    return Outcome("shunted", reason)
