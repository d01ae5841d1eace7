"""Mail commands: members' requests to ``LIST-request@``, ``#``-commands in posts, confirmations.

Addresses (all handled by :func:`handle_request_mail`):

* ``LIST-request@`` — commands in the subject and the body, one per line (gateway.command_parse);
* ``LIST+<command>@`` — the address names the command: ``+subscribe``, ``+unsubscribe``, ``+digest``
  (daily digest), ``+weekly``, ``+instant``, ``+nomail``, ``+help``, ``+enable``, and every alias of them
  (``+abonner``, ``+hilfe``...); Mailman's ``LIST-join@`` / ``LIST-leave@`` too;
* ``LIST+confirm-<token>@`` (also ``LIST-confirm+<token>@``) — the Reply-To of every confirmation request.
  A reply to ``LIST-request@`` is recognised as well by the token in its subject ("... [confirm <token>]"),
  in In-Reply-To/References (our Message-ID is ``confirm-<token>@domain``), or a ``confirm <token>`` line;
* ``LIST+mod-<token>@`` — the Reply-To of held-message notices (gateway.moderation).

The web routes ``/confirm/<token>`` to :func:`confirm_token` (and may show :func:`describe_token` first:
link scanners fetch every URL of a mail, so the web should confirm on POST).

Posts go through :func:`intercept_post`, called by the worker after thread placement and before the closed
topic check, so that a moderator's ``#reopen`` works on a closed topic. The commands of the first mail of a
topic run once the post handler created that topic (``InterceptResult.after_topic_created``).

Mail from Apple Mail's Unsubscribe button (``X-Apple-Unsubscribe: true``, also marked Auto-Submitted) to
``LIST-request@`` is an ``unsubscribe``, proven or confirmed like any other.

Proof of sender (gateway.proof): moderator commands, and a member's ``unsubscribe``, are obeyed at once
only when DKIM or a trusted Authentication-Results header proves the From address; otherwise they are kept
in a PendingConfirmation and the real owner of the address is asked to confirm. A forged From therefore
never changes anything: its only effect is a confirmation request in the real owner's mailbox.

Every command mail is answered: what was done, or why not.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from gateway.command_parse import (
    MEMBER_HASH_COMMANDS,
    Command,
    PostScan,
    address_command,
    find_token,
    phrase,
    scan_post,
    scan_request,
    strip_lines,
)
from gateway.context import MailContext
from gateway.moderation import handle_decision_mail, held_by_token, new_token
from gateway.notices import queue_notice
from gateway.proof import Proof, prove_context
from gateway.rules.autoreply import is_unsubscribe_button
from gateway.templates import render
from passerelle.config import Settings
from passerelle.models import (
    Category,
    Escalation,
    EscalationNote,
    MailingList,
    Member,
    Message,
    ModerationAction,
    PendingConfirmation,
    Subscription,
    Tag,
    ThreadRef,
    Topic,
    TopicFollow,
)
from passerelle.text import slugify

log = logging.getLogger(__name__)

# Member commands that stop mail silently enough that a forged From must not be able to do them.
SENSITIVE_MEMBER_COMMANDS = frozenset({"unsubscribe"})
# A moderator whose delivery was disabled by bounces still moderates (gateway.rules.membership lets them post).
MODERATING_STATUSES = ("active", "disabled")
# Message-IDs of our confirmation requests and held notices; a reply names them in In-Reply-To.
_OUR_ID = re.compile(r"^(confirm|mod)-([0-9a-f]{24})(?:\.\d+)?@", re.IGNORECASE)


# ============================================================================================== results


@dataclass(frozen=True)
class InterceptResult:
    """What the worker does with a post after its commands were read.

    ``post``: archive and fan it out (False when the mail held only commands). ``text``: the body to
    archive and send, without the command lines (None = unchanged). ``handled``: a short summary for the
    spool row's reason ("" when the mail had no command). ``subject``: the subject without its commands
    (None = unchanged). ``after_topic_created``: set for the first mail of a topic, whose commands wait for
    the topic it creates (call it with that topic, in the same transaction, before the copies are addressed).
    """

    post: bool
    text: str | None = None
    handled: str = ""
    subject: str | None = None
    # For the first mail of a topic: runs the commands on the topic once the post handler created it.
    after_topic_created: Callable[[Topic], None] | None = field(default=None, compare=False)

    @property
    def summary(self) -> str:
        """``handled`` under the name gateway.worker reads."""
        return self.handled


PASS_THROUGH = InterceptResult(post=True)


@dataclass(frozen=True)
class ConfirmResult:
    """Outcome of a confirmation (link or reply).

    ``status``: "done", "valid" (describe_token: it would work), "unknown" (no such token), "expired",
    "used" (already confirmed). ``kind``: "subscribe" or "commands" (PendingConfirmation.kind).
    ``message``: localised sentences for the page or the mail; ``results``: one line per confirmed command.
    """

    ok: bool
    status: str
    kind: str
    message: str
    language: str
    list_name: str = ""
    email: str = ""
    results: tuple[str, ...] = ()


# ============================================================================================== helpers


def confirm_address(settings: Settings, mailing_list: MailingList, token: str) -> str:
    return f"{mailing_list.name}+confirm-{token}@{settings.lists.domain}"


def confirm_message_id(settings: Settings, token: str) -> str:
    return f"confirm-{token}@{settings.lists.domain}"


def confirm_url(settings: Settings, token: str) -> str:
    return f"{settings.site.base_url.rstrip('/')}/confirm/{token}"


def request_address(settings: Settings, mailing_list: MailingList) -> str:
    return f"{mailing_list.name}-request@{settings.lists.domain}"


def topic_url(settings: Settings, topic_id: int) -> str:
    return f"{settings.site.base_url.rstrip('/')}/t/{topic_id}"


def new_text_of(text: str) -> str:
    """The author's own words: quotes, attribution lines and signature removed (passerelle.mail.quotes)."""
    from passerelle.mail.quotes import split_reply

    return split_reply(text).new_text


def _subscription(session: Session, mailing_list: MailingList, member: Member | None) -> Subscription | None:
    if member is None:
        return None
    return session.scalar(
        select(Subscription).where(Subscription.list_id == mailing_list.id, Subscription.member_id == member.id)
    )


def _member_by_email(session: Session, email: str) -> Member | None:
    return session.scalar(select(Member).where(Member.email == email.strip().lower())) if email else None


def _title(mailing_list: MailingList) -> str:
    """How a sentence names the list: its title ("Forum du réseau transfrontalier"), not its address word."""
    return mailing_list.title or mailing_list.name


def _mode_name(mode: str, language: str) -> str:
    return phrase(f"mode.{mode}", language)


def _quote(line: str, limit: int = 80) -> str:
    line = " ".join(line.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


@dataclass
class Exec:
    """Who runs commands, where, and how the sender was recognised (mail, confirmed mail, web link)."""

    session: Session
    settings: Settings
    now: datetime
    mailing_list: MailingList
    email: str
    member: Member | None
    language: str
    via: str = "mail"
    name: str = ""
    topic: Topic | None = None
    # In-Reply-To then References, newest first: the message a #split or a follow-by-reply points at.
    replied_to: tuple[str, ...] = ()
    results: list[str] = field(default_factory=list)
    # Phrase keys of ``results`` (None for lines added as text), to tell what the reply would say.
    said: list[str | None] = field(default_factory=list)

    def say(self, key: str, **fields: Any) -> None:
        self.results.append(phrase(key, self.language, **fields))
        self.said.append(key)

    @property
    def only_asked_confirmation(self) -> bool:
        """Everything the reply would say is "a confirmation request was sent": that mail says it already."""
        return bool(self.said) and len(self.said) == len(self.results) and \
            set(self.said) <= {"sub.confirm_sent", "confirm.requested"}

    def log_action(self, action: str, detail: str, topic: Topic | None = None) -> None:
        self.session.add(ModerationAction(
            list_id=self.mailing_list.id, topic_id=(topic or self.topic).id if (topic or self.topic) else None,
            actor_id=self.member.id if self.member else None, action=action[:30], detail=detail,
            via=self.via[:16], created_at=self.now,
        ))


def _send_results(
    ex: Exec,
    *,
    subject_hint: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    with_help: bool = False,
    dedupe_key: str | None = None,
) -> None:
    if not ex.email:
        log.warning("command results for an unknown sender not sent: %s", ex.results)
        return
    from passerelle.mail.subject import normalize_subject

    ml = ex.mailing_list
    help_text = _help_text(ex) if with_help else ""
    subject, body = render(
        "command_reply", ex.language, list=ml.name, list_title=ml.title or ml.name,
        # A request without a subject (a bare "help" in the body) is answered "Re: Your request", never "Re: -".
        subject=normalize_subject(subject_hint)[:150] or phrase("subject.request", ex.language),
        who=(ex.member.name if ex.member and ex.member.name else ex.name) or ex.email,
        results=_results_text(ex),
        help=help_text, request=request_address(ex.settings, ml),
    )
    body = re.sub(r"\n{3,}", "\n\n", body)
    queue_notice(
        ex.session, ex.settings, ml, to=ex.email, subject=subject, body=body, now=ex.now, kind="notice",
        in_reply_to=in_reply_to or None, references=tuple(references), dedupe_key=dedupe_key,
    )


def _results_text(ex: Exec) -> str:
    """"Here is what was done:" and one bullet per result; a reply that only brings the help says so instead
    of announcing results and showing an empty bullet."""
    if not ex.results:
        return phrase("reply.help_only", ex.language)
    return phrase("reply.done_intro", ex.language) + "\n\n" + "\n\n".join(f"- {r}" for r in ex.results)


def _help_text(ex: Exec) -> str:
    ml, settings = ex.mailing_list, ex.settings
    fields = {
        "list": ml.name, "list_title": ml.title or ml.name, "request": request_address(settings, ml),
        "post": settings.list_address(ml.name), "archive": settings.site.base_url.rstrip("/"),
        "domain": settings.lists.domain,
    }
    _, body = render("help", ex.language, **fields)
    sub = _subscription(ex.session, ml, ex.member)
    if sub is not None and sub.is_moderator:
        _, mod_body = render("help_moderator", ex.language, **fields)
        body = body.rstrip() + "\n\n" + mod_body
    return body.rstrip()


def _topic_of_references(session: Session, mailing_list: MailingList, ids: Sequence[str]) -> Topic | None:
    for mid in ids:
        ref = session.get(ThreadRef, mid)
        if ref is not None:
            topic = session.get(Topic, ref.topic_id)
            if topic is not None and topic.list_id == mailing_list.id:
                return _final_topic(session, topic)
    return None


def _final_topic(session: Session, topic: Topic) -> Topic:
    """Follow #merge redirections (bounded: a cycle cannot be made, but never loop on bad data)."""
    for _ in range(20):
        if topic.merged_into_id is None:
            return topic
        target = session.get(Topic, topic.merged_into_id)
        if target is None:
            return topic
        topic = target
    return topic


def _topic_by_number(ex: Exec, number: int | None) -> Topic | None:
    if number is None:
        return None
    topic = ex.session.get(Topic, number)
    if topic is None or topic.list_id != ex.mailing_list.id:
        ex.say("topic.unknown", id=number, list=_title(ex.mailing_list))
        return None
    return _final_topic(ex.session, topic)


def _replied_ids(parsed: Any) -> tuple[str, ...]:
    ids = list(getattr(parsed, "in_reply_to", ()) or ())
    ids.extend(reversed(list(getattr(parsed, "references", ()) or ())))
    seen: list[str] = []
    for mid in ids:
        if mid and mid not in seen:
            seen.append(mid)
    return tuple(seen)


# ============================================================================================== request mail


def _address_parts(local: str, list_name: str) -> tuple[str, str]:
    """("request", ""), ("command", word), ("confirm", token) or ("mod", token) from the local part."""
    lowered = local.strip().lower()
    name = list_name.lower()
    rest = lowered[len(name):] if lowered.startswith(name) else lowered
    word = ""
    if rest.startswith("+"):
        word = rest[1:]
    elif rest.startswith("-"):
        base, _, ext = rest[1:].partition("+")
        if base == "request":
            word = ext
        elif base in ("join", "subscribe"):
            word = "subscribe"
        elif base in ("leave", "unsubscribe"):
            word = "unsubscribe"
        elif base == "confirm":
            word = f"confirm-{ext}"
        else:
            word = base
    if not word:
        return "request", ""
    match = re.fullmatch(r"(confirm|mod)[-+._]?([0-9a-f]{24})", word)
    if match:
        return match.group(1), match.group(2)
    return "command", word


def _sender_language(ctx: MailContext) -> str:
    """The member's language, else the list's. Not the language of the command word: "subscribe" is also
    the French list's documented word (its List-Subscribe header says so), and a stranger of a French list
    answered in English because they typed it would get a confirmation they may not read."""
    if ctx.sender is not None and ctx.sender.language:
        return ctx.sender.language
    return ctx.mailing_list.language or ctx.settings.site.default_language


def handle_request_mail(ctx: MailContext) -> str:
    """A mail to ``LIST-request@`` or ``LIST+<word>@``: run its commands and answer the sender.

    Returns a one-line summary for the spool row's reason (gateway.handlers.command stores it).
    """
    parsed = ctx.parsed
    email = (parsed.from_addr or "").strip()
    if not email or "@" not in email:
        # Nobody to answer (and nobody whose subscription could change): kept in the spool for operators.
        log.warning("command mail <%s> has no usable From address: ignored", ctx.inbound.message_id_header)
        return "command mail without a From address: nothing done"
    kind, value = _address_parts(ctx.recipient_local, ctx.mailing_list.name)
    try:
        new_text = new_text_of(parsed.text or "")
    except Exception:
        log.exception("quote trimming failed for <%s>; reading the whole text", ctx.inbound.message_id_header)
        new_text = parsed.text or ""
    refs = _replied_ids(parsed)

    scan = None
    if kind == "request" and is_unsubscribe_button(ctx):
        # Apple Mail's Unsubscribe button (gateway.rules.autoreply lets it through): the header says what is
        # asked whatever the subject; the body ("Apple Mail sent this email to unsubscribe...") is no command.
        scan = scan_request("unsubscribe", "")

    # 1. Answers to our own mails: the token is in the address, In-Reply-To/References or the subject.
    if kind == "request" and scan is None:
        for mid in refs:
            match = _OUR_ID.match(mid)
            if match:
                kind, value = match.group(1).lower(), match.group(2).lower()
                break
    if kind == "request" and scan is None:
        token = find_token(parsed.subject or "")
        if token is not None:
            if held_by_token(ctx.session, token) is not None:
                kind, value = "mod", token
            elif _pending(ctx.session, token) is not None:
                kind, value = "confirm", token

    if kind == "request" and scan is None:
        scan = scan_request(parsed.normalized_subject or "", new_text)
    ex = Exec(
        session=ctx.session, settings=ctx.settings, now=ctx.now, mailing_list=ctx.mailing_list, email=email,
        member=ctx.sender, language=_sender_language(ctx), via="mail",
        name=parsed.from_name or "", replied_to=refs,
    )
    reply_kwargs: dict[str, Any] = {
        "subject_hint": parsed.subject or "", "in_reply_to": parsed.message_id or None,
        "references": tuple(parsed.references or ()),
    }
    if kind == "mod":
        held = held_by_token(ctx.session, value)
        if held is None:
            ex.say("held.unknown")
        else:
            ex.results.extend(handle_decision_mail(ctx, held, new_text, ex.language))
        _send_results(ex, **reply_kwargs)
        return f"moderation reply: {' '.join(ex.results)}"[:500]
    if kind == "confirm":
        result = confirm_token(ctx.session, ctx.settings, value, now=ctx.now, via="mail-confirmed",
                               language=ex.language, reply_to_message=parsed.message_id or None)
        if not result.ok:
            ex.results.append(result.message)
            _send_results(ex, **reply_kwargs)
        return f"confirmation {value[:6]}…: {result.status} ({result.kind or '-'})"

    if kind == "command":
        cmd = address_command(value)
        if cmd is None:
            address = f"{ctx.recipient_local}@{ctx.settings.lists.domain}"
            ex.say("address.unknown", word=value, address=address)
            _send_results(ex, with_help=True, **reply_kwargs)
            return f"unknown command address {address}"
        commands: Sequence[Command] = [cmd]
        unknown: Sequence[str] = ()
        truncated = False
    else:
        assert scan is not None
        commands, unknown, truncated = scan.commands, scan.unknown, scan.truncated

    # "#close 11 solved" sent here: topic commands work in a reply to the topic, not at -request. Say where they
    # go (with the help, which lists them for moderators) instead of "no command found, 1 line not understood".
    topic_lines = [line for line in unknown if line.lstrip().startswith("#")]
    unknown = [line for line in unknown if line not in topic_lines]
    with_help = False
    if topic_lines:
        ex.say("request.topic_commands", line=_quote(topic_lines[0], 40),
               post=ctx.settings.list_address(ctx.mailing_list.name), request=request_address(ctx.settings,
                                                                                             ctx.mailing_list))
    if not commands:
        if not topic_lines:
            ex.say("no_command")
        with_help = True
    else:
        with_help = run_member_commands(ex, commands, ctx=ctx) or bool(topic_lines)
    # Everything done is "a confirmation request was sent": that mail is the answer, one mail and not two. The
    # lines around the command ("Bonjour, je souhaite m'abonner.") are the usual politeness, not errors.
    confirmation_only = ex.only_asked_confirmation and not with_help
    if unknown:
        ex.say("unknown_lines", count=len(unknown), line=_quote(unknown[0]))
    if truncated:
        ex.say("truncated")
    if not confirmation_only:
        _send_results(ex, with_help=with_help, **reply_kwargs)
    return ("commands: " + ", ".join(c.name for c in commands))[:500] if commands else "no command found"


def run_member_commands(ex: Exec, commands: Sequence[Command], *, proven: Proof | None = None,
                        ctx: MailContext | None = None) -> bool:
    """Run members' commands; returns True when the help text should be added to the reply.

    ``proven``: proof of sender already established (confirmation by reply or link counts as proof);
    when None and a sensitive command is present, the proof is computed from ``ctx`` (if given).
    """
    want_help = False
    deferred: list[Command] = []
    for cmd in commands:
        if cmd.error:
            ex.say(cmd.error, arg=cmd.error_arg)
            continue
        if cmd.name == "help":
            want_help = True
            continue
        if cmd.name in SENSITIVE_MEMBER_COMMANDS and ex.via == "mail":
            if proven is None:
                proven = prove_context(ctx) if ctx is not None else Proof(False, "", "no message to check")
            if not proven.ok:
                deferred.append(cmd)
                continue
        handler = _MEMBER_HANDLERS.get(cmd.name)
        if handler is None:
            ex.say("unknown_command", line=_quote(cmd.line))
            continue
        handler(ex, cmd)
    if deferred:
        _ask_confirmation(ex, deferred, scope="member", detail=proven.detail if proven is not None else "")
    return want_help


def _need_subscription(ex: Exec) -> Subscription | None:
    sub = _subscription(ex.session, ex.mailing_list, ex.member)
    if sub is None or sub.status in ("unsubscribed", "pending"):
        ex.say("not_subscribed", email=ex.email, list=_title(ex.mailing_list),
               request=request_address(ex.settings, ex.mailing_list))
        return None
    return sub


def _cmd_subscribe(ex: Exec, cmd: Command) -> None:
    sub = _subscription(ex.session, ex.mailing_list, ex.member)
    if sub is not None and sub.status == "active":
        ex.say("sub.already", list=_title(ex.mailing_list), mode=_mode_name(sub.delivery_mode, ex.language))
        return
    pending = ex.session.scalar(
        select(PendingConfirmation).where(
            PendingConfirmation.kind == "subscribe", PendingConfirmation.email == ex.email.lower(),
            PendingConfirmation.list_id == ex.mailing_list.id, PendingConfirmation.used_at.is_(None),
            PendingConfirmation.expires_at > ex.now,
        )
    )
    if pending is None:
        pending = PendingConfirmation(
            token=new_token(), kind="subscribe", email=ex.email.lower(), list_id=ex.mailing_list.id,
            payload={"name": ex.name[:200], "language": ex.language}, created_at=ex.now,
            expires_at=ex.now + timedelta(hours=ex.settings.auth.confirmation_hours), used_at=None,
        )
        ex.session.add(pending)
        ex.session.flush()
    ml = ex.mailing_list
    # Anyone can ask to subscribe anyone: at most one confirmation mail per address every ten minutes (the
    # outbox dedupes on the key), so that the request cannot be turned into a mail bomb.
    window = int(ex.now.timestamp()) // 600
    subject, body = render(
        "subscribe_confirm", ex.language, list=ml.name, list_title=ml.title or ml.name, email=ex.email,
        link=confirm_url(ex.settings, pending.token), reply_address=confirm_address(ex.settings, ml, pending.token),
        token=pending.token, expires=pending.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
    )
    queue_notice(
        ex.session, ex.settings, ml, to=ex.email, subject=subject, body=body, now=ex.now, kind="confirm",
        reply_to=confirm_address(ex.settings, ml, pending.token),
        message_id=f"confirm-{pending.token}.{window}@{ex.settings.lists.domain}",
        dedupe_key=f"confirm:{pending.token}:{window}",
    )
    ex.say("sub.confirm_sent", email=ex.email, list=_title(ml))


def _cmd_unsubscribe(ex: Exec, cmd: Command) -> None:
    sub = _subscription(ex.session, ex.mailing_list, ex.member)
    if sub is None or sub.status in ("unsubscribed", "pending"):
        ex.say("unsub.not_member", email=ex.email, list=_title(ex.mailing_list))
        return
    sub.status = "unsubscribed"
    sub.updated_at = ex.now
    ex.session.flush()
    log.info("%s unsubscribed from %s by mail (%s)", ex.email, ex.mailing_list.name, ex.via)
    ex.say("unsub.done", list=_title(ex.mailing_list), request=request_address(ex.settings, ex.mailing_list))


def _cmd_mode(ex: Exec, cmd: Command) -> None:
    sub = _need_subscription(ex)
    if sub is None:
        return
    mode = cmd.name
    if sub.delivery_mode == mode:
        ex.say("mode.same", list=_title(ex.mailing_list), mode=_mode_name(mode, ex.language))
    else:
        sub.delivery_mode = mode
        sub.updated_at = ex.now
        ex.session.flush()
        ex.say("mode.done", list=_title(ex.mailing_list), mode=_mode_name(mode, ex.language))
    if sub.status == "disabled":
        ex.say("mode.disabled_note")


def _cmd_enable(ex: Exec, cmd: Command) -> None:
    sub = _need_subscription(ex)
    if sub is None:
        return
    from gateway.bounce_score import ReenableError, reenable_delivery

    try:
        was_disabled = reenable_delivery(ex.session, sub, ex.now)
    except ReenableError:
        ex.say("not_subscribed", email=ex.email, list=_title(ex.mailing_list),
               request=request_address(ex.settings, ex.mailing_list))
        return
    ex.say("enable.done" if was_disabled else "enable.already", list=_title(ex.mailing_list))


def _follow_topic(ex: Exec, cmd: Command) -> Topic | None:
    number = cmd.params.get("topic")
    if number is not None:
        return _topic_by_number(ex, int(number))
    if ex.topic is not None:
        return _final_topic(ex.session, ex.topic)
    topic = _topic_of_references(ex.session, ex.mailing_list, ex.replied_to)
    if topic is None:
        ex.say("topic.which", request=request_address(ex.settings, ex.mailing_list))
    return topic


def _cmd_follow(ex: Exec, cmd: Command) -> None:
    if ex.member is None or _need_subscription(ex) is None:
        if ex.member is None:
            ex.say("not_subscribed", email=ex.email, list=_title(ex.mailing_list),
                   request=request_address(ex.settings, ex.mailing_list))
        return
    topic = _follow_topic(ex, cmd)
    if topic is None:
        return
    row = ex.session.get(TopicFollow, (ex.member.id, topic.id))
    if row is None:
        ex.session.add(TopicFollow(member_id=ex.member.id, topic_id=topic.id, mode=cmd.name, created_at=ex.now))
    else:
        row.mode = cmd.name
    ex.session.flush()
    ex.say(f"{cmd.name}.done", id=topic.id, subject=_quote(topic.subject, 70))


def _cmd_confirm(ex: Exec, cmd: Command) -> None:
    token = cmd.params.get("token")
    if not token:
        ex.say("confirm.missing_token")
        return
    result = confirm_token(ex.session, ex.settings, token, now=ex.now, via="mail-confirmed", language=ex.language,
                           send_mail=False)
    ex.results.append(result.message)
    ex.results.extend(result.results)


_MEMBER_HANDLERS = {
    "subscribe": _cmd_subscribe,
    "unsubscribe": _cmd_unsubscribe,
    "instant": _cmd_mode,
    "daily": _cmd_mode,
    "weekly": _cmd_mode,
    "nomail": _cmd_mode,
    "enable": _cmd_enable,
    "follow": _cmd_follow,
    "mute": _cmd_follow,
    "confirm": _cmd_confirm,
}


# ============================================================================================== confirmations


def _pending(session: Session, token: str) -> PendingConfirmation | None:
    return session.scalar(select(PendingConfirmation).where(PendingConfirmation.token == token.lower()))


def _ask_confirmation(ex: Exec, commands: Sequence[Command], *, scope: str, detail: str,
                      announce: bool = True) -> PendingConfirmation:
    """Keep ``commands`` until the owner of ``ex.email`` confirms them; mail them the request."""
    ml = ex.mailing_list
    pending = PendingConfirmation(
        token=new_token(), kind="commands", email=ex.email.lower(), list_id=ml.id,
        payload={
            "scope": scope,
            "commands": [c.as_payload() for c in commands],
            "member_id": ex.member.id if ex.member else None,
            "topic_id": ex.topic.id if ex.topic else None,
            "replied_to": list(ex.replied_to[:20]),
            "language": ex.language,
        },
        created_at=ex.now, expires_at=ex.now + timedelta(hours=ex.settings.auth.confirmation_hours), used_at=None,
    )
    ex.session.add(pending)
    ex.session.flush()
    topic_line = ""
    if ex.topic is not None:
        topic_line = phrase("confirm.topic_line", ex.language, id=ex.topic.id, subject=_quote(ex.topic.subject, 70))
    subject, body = render(
        "confirm_commands", ex.language, list=ml.name, list_title=ml.title or ml.name, email=ex.email,
        commands="\n".join(f"    {c.line}" for c in commands), topic=topic_line,
        # Why the message does not prove its sender, in the reader's language; the checker's own words after.
        detail=phrase("confirm.unproven", ex.language, detail=detail or "-"),
        link=confirm_url(ex.settings, pending.token), reply_address=confirm_address(ex.settings, ml, pending.token),
        token=pending.token, expires=pending.expires_at.strftime("%Y-%m-%d %H:%M UTC"),
    )
    queue_notice(
        ex.session, ex.settings, ml, to=ex.email, subject=subject, body=body, now=ex.now, kind="confirm",
        reply_to=confirm_address(ex.settings, ml, pending.token),
        message_id=confirm_message_id(ex.settings, pending.token), dedupe_key=f"confirm:{pending.token}",
    )
    if announce:
        ex.say("confirm.requested", email=ex.email, commands=", ".join(_quote(c.line, 40) for c in commands))
    log.info("%d command(s) from %s kept until confirmed (token %s…): %s", len(commands), ex.email,
             pending.token[:6], detail)
    return pending


def describe_token(session: Session, settings: Settings, token: str, *, now: datetime,
                   language: str | None = None) -> ConfirmResult:
    """What confirming ``token`` would do, without doing it (for the web page shown before the POST)."""
    pending = _pending(session, token) if token else None
    lang = language or settings.site.default_language
    if pending is None:
        return ConfirmResult(False, "unknown", "", phrase("confirm.unknown", lang), lang)
    lang = language or str(pending.payload.get("language") or lang)
    ml = session.get(MailingList, pending.list_id) if pending.list_id else None
    name = ml.name if ml else ""
    if pending.used_at is not None:
        return ConfirmResult(False, "used", pending.kind, phrase("confirm.used", lang), lang, name, pending.email)
    if pending.expires_at <= now:
        return ConfirmResult(False, "expired", pending.kind, phrase("confirm.expired", lang), lang, name,
                             pending.email)
    if pending.kind == "subscribe":
        message = phrase("confirm.describe_subscribe", lang, email=pending.email, list=_title(ml) if ml else name)
        return ConfirmResult(True, "valid", pending.kind, message, lang, name, pending.email)
    lines = tuple(str(c.get("line", "")) for c in pending.payload.get("commands", ()))
    message = phrase("confirm.describe_commands", lang, email=pending.email, list=_title(ml) if ml else name)
    return ConfirmResult(True, "valid", pending.kind, message, lang, name, pending.email, lines)


def confirm_token(
    session: Session,
    settings: Settings,
    token: str,
    *,
    now: datetime,
    via: str = "web-confirmed",
    language: str | None = None,
    send_mail: bool = True,
    reply_to_message: str | None = None,
) -> ConfirmResult:
    """Carry out what ``token`` was mailed for: a subscription, or commands kept until confirmed.

    Called for ``/confirm/<token>`` on the web (via="web-confirmed") and for replies to a confirmation mail
    (via="mail-confirmed"). A token works once. When ``send_mail`` is true the outcome is also mailed (the
    welcome mail for a subscription, the results of the commands otherwise).
    """
    token = (token or "").strip().lower()
    described = describe_token(session, settings, token, now=now, language=language)
    if not described.ok:
        return described
    pending = _pending(session, token)
    assert pending is not None
    # Mark the token used first with a guarded UPDATE: of two concurrent confirmations only one runs.
    claimed = session.execute(
        update(PendingConfirmation)
        .where(PendingConfirmation.id == pending.id, PendingConfirmation.used_at.is_(None))
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:  # type: ignore[attr-defined]
        lang = described.language
        return ConfirmResult(False, "used", pending.kind, phrase("confirm.used", lang), lang,
                             described.list_name, pending.email)
    session.refresh(pending)
    ml = session.get(MailingList, pending.list_id) if pending.list_id else None
    if ml is None:
        lang = described.language
        return ConfirmResult(False, "unknown", pending.kind, phrase("confirm.unknown", lang), lang)
    if pending.kind == "subscribe":
        return _confirm_subscription(session, settings, pending, ml, now=now, language=described.language,
                                     send_mail=send_mail)
    return _confirm_commands(session, settings, pending, ml, now=now, via=via, language=language,
                             send_mail=send_mail, reply_to_message=reply_to_message)


def _confirm_subscription(session: Session, settings: Settings, pending: PendingConfirmation, ml: MailingList, *,
                          now: datetime, language: str, send_mail: bool) -> ConfirmResult:
    payload = pending.payload or {}
    member = _member_by_email(session, pending.email)
    if member is None:
        member = Member(email=pending.email.lower(), name=str(payload.get("name") or "")[:200],
                        language=str(payload.get("language") or ml.language or settings.site.default_language),
                        timezone=settings.site.default_timezone, created_at=now)
        session.add(member)
        session.flush()
    lang = member.language or language
    sub = _subscription(session, ml, member)
    if sub is None:
        sub = Subscription(member_id=member.id, list_id=ml.id, role="member", delivery_mode="instant",
                           status="active", accepted_posts=0, created_at=now, updated_at=now)
        session.add(sub)
    else:
        sub.status = "active"
        sub.bounce_score = 0.0
        sub.disabled_reason = ""
        sub.updated_at = now
    session.flush()
    log.info("%s subscribed to %s (confirmed)", member.email, ml.name)
    message = phrase("confirm.subscribed", lang, email=member.email, list=_title(ml))
    if send_mail:
        subject, body = render(
            "welcome", lang, list=ml.name, list_title=ml.title or ml.name, who=member.name or member.email,
            email=member.email, post=settings.list_address(ml.name), request=request_address(settings, ml),
            archive=settings.site.base_url.rstrip("/"), mode=_mode_name(sub.delivery_mode, lang),
        )
        queue_notice(session, settings, ml, to=member.email, subject=subject, body=body, now=now, kind="notice",
                     dedupe_key=f"welcome:{pending.token}")
    return ConfirmResult(True, "done", "subscribe", message, lang, ml.name, member.email)


def _confirm_commands(session: Session, settings: Settings, pending: PendingConfirmation, ml: MailingList, *,
                      now: datetime, via: str, language: str | None, send_mail: bool,
                      reply_to_message: str | None) -> ConfirmResult:
    payload = pending.payload or {}
    member = session.get(Member, payload["member_id"]) if payload.get("member_id") else None
    if member is None:
        member = _member_by_email(session, pending.email)
    lang = (member.language if member else None) or language or str(payload.get("language") or "en")
    commands = [Command.from_payload(c) for c in payload.get("commands", ())]
    topic = session.get(Topic, payload["topic_id"]) if payload.get("topic_id") else None
    ex = Exec(session=session, settings=settings, now=now, mailing_list=ml, email=pending.email, member=member,
              language=lang, via=via, topic=topic, replied_to=tuple(payload.get("replied_to") or ()))
    if payload.get("scope") == "moderator":
        sub = _subscription(session, ml, member)
        if sub is None or not sub.is_moderator or sub.status not in MODERATING_STATUSES:
            ex.say("mod.not_moderator", list=_title(ml), commands=", ".join(c.line for c in commands))
        elif topic is None:
            ex.say("mod.no_topic", command=", ".join(c.line for c in commands))
        else:
            run_topic_commands(ex, commands)
    else:
        run_member_commands(ex, commands, proven=Proof(True, "confirmation", "confirmed by the address owner"))
    if send_mail:
        _send_results(ex, subject_hint=phrase("confirm.subject_hint", lang), in_reply_to=reply_to_message,
                      dedupe_key=f"confirmed:{pending.token}")
    message = phrase("confirm.commands_done", lang, count=len(commands))
    return ConfirmResult(True, "done", "commands", message, lang, ml.name, pending.email, tuple(ex.results))


# ============================================================================================== posts


def intercept_post(ctx: MailContext, topic: Topic | None) -> InterceptResult:
    """Read the ``#``-commands of a post (``topic`` None: it starts a new topic).

    Members' ``#follow`` / ``#mute`` and moderators' commands run (moderators' only with proof of sender,
    else after a confirmation); their lines are removed from the text; a mail holding nothing else is not
    posted. A member's moderator-only lines are left in the post, and the member is told.

    In the first mail of a topic the commands apply to the topic that mail creates: they do not run here
    (there is no topic yet) but in ``after_topic_created``, which gateway.worker has the post handler call
    once the topic exists, in the same transaction and before the copies are addressed.
    """
    parsed = ctx.parsed
    text = parsed.text or ""
    if "#" not in text and "#" not in (parsed.subject or ""):
        return PASS_THROUGH
    try:
        new_text = new_text_of(text)
    except Exception:
        log.exception("quote trimming failed for <%s>; reading the whole text", ctx.inbound.message_id_header)
        new_text = text
    scan: PostScan = scan_post(parsed.subject or "", new_text)
    if not scan.has_commands or ctx.sender is None:
        # No command; or a stranger's post (approved from the queue), whose "#" lines are plain text.
        return PASS_THROUGH
    member_cmds = [c for c in scan.commands if c.name in MEMBER_HASH_COMMANDS]
    mod_cmds = [c for c in scan.commands if c.is_moderator_command]
    is_mod = ctx.sender is not None and ctx.subscription is not None and ctx.subscription.is_moderator \
        and ctx.subscription.status in MODERATING_STATUSES

    # Which lines are commands (removed from the post) is known before anything runs: members' #follow and
    # #mute; a moderator's commands and the unknown "#word" lines next to them. A member's moderator-only
    # lines stay in the post as text.
    handled: list[Command] = list(member_cmds)
    unknown_handled: list[str] = []
    if is_mod and (mod_cmds or scan.unknown_lines):
        handled.extend(mod_cmds)
        unknown_handled.extend(scan.unknown_lines)
    if not handled and not unknown_handled and not mod_cmds:
        return PASS_THROUGH
    handled_ids = {id(c) for c in handled}
    subject_ids = {id(c) for c in scan.subject_commands}
    body_lines = [c.line for c in handled if id(c) not in subject_ids] + unknown_handled
    cleaned_subject = scan.cleaned_subject if handled_ids & subject_ids else None
    remaining_new = strip_lines(new_text, body_lines).strip()
    post = bool(remaining_new) or bool(parsed.attachments)
    new_body = strip_lines(text, body_lines) if body_lines else None

    proof = prove_context(ctx) if is_mod and mod_cmds else None
    summary = [c.name for c in member_cmds]
    if proof is not None:
        if proof.ok:
            summary.extend(c.name for c in mod_cmds)
        else:
            summary.append("awaiting confirmation")
    handled_text = ("commands: " + ", ".join(summary)) if summary else "commands refused"

    def run(on_topic: Topic | None) -> None:
        _run_post_commands(ctx, on_topic, member_cmds=member_cmds, mod_cmds=mod_cmds, is_mod=is_mod,
                           unknown_lines=unknown_handled, proof=proof)

    email = (parsed.from_addr or "").strip()
    if topic is None and post:
        log.info("post <%s> from %s starts a topic: %s once it is created", parsed.message_id, email, handled_text)
        return InterceptResult(post=True, text=new_body, handled=f"{handled_text} (on the new topic)"[:500],
                               subject=cleaned_subject, after_topic_created=run)
    run(topic)
    log.info("post <%s> from %s: %s (posted: %s)", parsed.message_id, email, handled_text, post)
    return InterceptResult(post=post, text=new_body, handled=handled_text[:500], subject=cleaned_subject)


def _run_post_commands(ctx: MailContext, topic: Topic | None, *, member_cmds: Sequence[Command],
                       mod_cmds: Sequence[Command], is_mod: bool, unknown_lines: Sequence[str],
                       proof: Proof | None) -> None:
    """Carry out the commands :func:`intercept_post` read, on ``topic``, and mail the sender the results."""
    parsed = ctx.parsed
    ex = Exec(session=ctx.session, settings=ctx.settings, now=ctx.now, mailing_list=ctx.mailing_list,
              email=(parsed.from_addr or "").strip(), member=ctx.sender, language=_sender_language(ctx), via="mail",
              name=parsed.from_name or "", topic=_final_topic(ctx.session, topic) if topic is not None else None,
              replied_to=_replied_ids(parsed))
    for cmd in member_cmds:
        if cmd.error:
            ex.say(cmd.error, arg=cmd.error_arg)
        else:
            _cmd_follow(ex, cmd)
    if mod_cmds and not is_mod:
        # Left in the post: for a member these lines are text (and a member cannot close topics).
        ex.say("mod.not_moderator_post", list=_title(ctx.mailing_list),
               commands=", ".join(_quote(c.line, 40) for c in mod_cmds))
    elif is_mod:
        for line in unknown_lines:
            ex.say("unknown_command", line=_quote(line))
        if mod_cmds and ex.topic is None:
            ex.say("mod.no_topic", command=", ".join(_quote(c.line, 40) for c in mod_cmds))
        elif mod_cmds and proof is not None and proof.ok:
            run_topic_commands(ex, mod_cmds)
        elif mod_cmds:
            # The confirmation request says it all: no second mail unless something else happened. Confirmed,
            # the commands apply to ex.topic (for the first mail of a topic: the topic it created).
            _ask_confirmation(ex, mod_cmds, scope="moderator", detail=proof.detail if proof is not None else "",
                              announce=bool(ex.results))
    if ex.results:
        _send_results(ex, subject_hint=parsed.subject or "", in_reply_to=parsed.message_id or None,
                      references=tuple(parsed.references or ()), dedupe_key=f"commands:{parsed.message_id}")


# ============================================================================================== topic commands


# The order in which the commands of one mail run, whatever their order in the mail (stable within a phase):
# a #reopen first (the other commands are meant for the reopened topic), then tags, category, escalation,
# split; then #close and #merge (an escalation written in the same mail is therefore in the register when
# "#close solved" resolves it); #sheet last, so that the sheet it pre-fills sees the tags, level and outcome
# the same mail sets.
_PHASES = {"reopen": 0, "close": 2, "merge": 2, "sheet": 3}


def run_topic_commands(ex: Exec, commands: Sequence[Command]) -> None:
    """Moderators' commands on ``ex.topic`` (in the order of :data:`_PHASES`); one ModerationAction and one
    result line each."""
    for cmd in sorted(commands, key=lambda c: _PHASES.get(c.name, 1)):
        if cmd.name == "sheet" and ex.topic is not None:
            # A #merge of the same mail moved the messages: the sheet is made from the topic they are in.
            ex.topic = _final_topic(ex.session, ex.topic)
        if cmd.error:
            ex.say(cmd.error, arg=cmd.error_arg)
            continue
        if ex.topic is None:
            ex.say("mod.no_topic", command=_quote(cmd.line, 40))
            continue
        handler = _TOPIC_HANDLERS.get(cmd.name)
        if handler is None:
            ex.say("unknown_command", line=_quote(cmd.line))
            continue
        handler(ex, cmd)
        ex.session.flush()


def _t(ex: Exec) -> Topic:
    assert ex.topic is not None
    return ex.topic


def _tag(session: Session, ml: MailingList, name: str) -> Tag:
    tag = session.scalar(select(Tag).where(Tag.list_id == ml.id, Tag.name == name))
    if tag is None:
        tag = Tag(list_id=ml.id, name=name)
        session.add(tag)
        session.flush()
    return tag


def _topic_tags(topic: Topic) -> str:
    return ", ".join(t.name for t in sorted(topic.tags, key=lambda t: t.name)) or "-"


def _cmd_tag(ex: Exec, cmd: Command) -> None:
    topic = _t(ex)
    added, removed = [], []
    for word in cmd.params.get("tags", ()):
        if word.startswith("-") and len(word) > 1:
            name = word[1:]
            for tag in list(topic.tags):
                if tag.name == name:
                    topic.tags.remove(tag)
                    removed.append(name)
            continue
        tag = _tag(ex.session, ex.mailing_list, word)
        if tag not in topic.tags:
            topic.tags.append(tag)
            added.append(word)
    ex.session.flush()
    ex.log_action("tag", " ".join([*(f"+{a}" for a in added), *(f"-{r}" for r in removed)]) or "(no change)")
    ex.say("tag.done", id=topic.id, tags=_topic_tags(topic))


def _cmd_category(ex: Exec, cmd: Command) -> None:
    topic = _t(ex)
    name = str(cmd.params["name"])
    slug = slugify(name, max_length=120)
    category = ex.session.scalar(select(Category).where(Category.list_id == ex.mailing_list.id, Category.slug == slug))
    if category is None:
        category = ex.session.scalar(
            select(Category).where(Category.list_id == ex.mailing_list.id, func.lower(Category.name) == name.lower())
        )
    created = category is None
    if category is None:
        category = Category(list_id=ex.mailing_list.id, name=name, slug=slug, description="",
                            public_access=ex.mailing_list.default_public_access or "titles", created_at=ex.now)
        ex.session.add(category)
        ex.session.flush()
    topic.category_id = category.id
    topic.category = category
    ex.log_action("category", f"{category.name}" + (" (created)" if created else ""))
    ex.say("category.created" if created else "category.done", id=topic.id, name=category.name)


def _cmd_close(ex: Exec, cmd: Command) -> None:
    topic = _t(ex)
    outcome = cmd.params.get("outcome")
    topic.status = "closed"
    topic.outcome = outcome
    topic.closed_at = ex.now
    note = str(cmd.params.get("note") or "")
    ex.log_action("close", (outcome or "(no outcome)") + (f" — {note}" if note else ""))
    if outcome:
        ex.say("close.done", id=topic.id, outcome=phrase(f"outcome.{outcome}", ex.language))
    else:
        ex.say("close.no_outcome", id=topic.id)
    # A solved obstacle is no longer waiting at the national or European level: its open escalations are
    # marked resolved, with a note in the register (passerelle.escalations.resolve_on_close).
    from passerelle.escalations import resolve_on_close

    for esc in resolve_on_close(ex.session, topic, actor=ex.member, now=ex.now, via=ex.via[:16],
                                language=ex.mailing_list.language or ex.language):
        ex.say("close.escalation_resolved", id=topic.id, level=phrase(f"level.{esc.level}", ex.language))


def _refresh(session: Session, topic: Topic) -> None:
    """Recompute a topic's counters and open/answered state from its messages (after #merge or #split)."""
    messages = list(session.scalars(select(Message).where(Message.topic_id == topic.id).order_by(Message.date,
                                                                                                Message.id)))
    topic.message_count = len(messages)
    if not messages:
        return
    first = messages[0]
    topic.created_at = min(topic.created_at, first.received_at) if topic.created_at else first.received_at
    topic.last_post_at = max(m.received_at for m in messages)
    author = topic.author_id
    author_addr = first.from_addr.lower()
    answers = [m for m in messages[1:]
               if (m.author_id is not None and m.author_id != author) or
               (m.author_id is None and m.from_addr.lower() != author_addr)]
    topic.first_answer_at = min((m.received_at for m in answers), default=None)
    if topic.status != "closed":
        topic.status = "answered" if answers else "open"


def _cmd_reopen(ex: Exec, cmd: Command) -> None:
    topic = _t(ex)
    if topic.status != "closed":
        ex.say("reopen.not_closed", id=topic.id)
        return
    previous = topic.outcome
    topic.status = "open"
    topic.outcome = None
    topic.closed_at = None
    _refresh(ex.session, topic)
    ex.log_action("reopen", f"was {previous or 'closed'}")
    ex.say("reopen.done", id=topic.id)


def _cmd_escalate(ex: Exec, cmd: Command) -> None:
    topic = _t(ex)
    level = str(cmd.params["level"])
    note = str(cmd.params.get("note") or "")
    from passerelle.escalations import is_solved

    if is_solved(topic):
        # Refused rather than reopening silently: the register would list a solved topic as an open
        # obstacle (passerelle.escalations.SolvedTopicError is the web's equivalent).
        ex.say("escalate.solved", id=topic.id)
        return
    current = ex.session.scalar(
        select(Escalation).where(Escalation.topic_id == topic.id, Escalation.level == level,
                                 Escalation.state.in_(("escalated", "acknowledged", "in-progress")))
    )
    level_name = phrase(f"level.{level}", ex.language)
    if current is not None:
        if note:
            ex.session.add(EscalationNote(escalation_id=current.id, author_id=ex.member.id if ex.member else None,
                                          text=note, created_at=ex.now))
            current.updated_at = ex.now
        topic.escalation_level = level
        ex.log_action("escalate", f"{level} (already escalated)" + (f" — {note}" if note else ""))
        ex.say("escalate.already", id=topic.id, level=level_name)
        return
    ex.session.add(Escalation(topic_id=topic.id, level=level, state="escalated", note=note,
                              escalated_by_id=ex.member.id if ex.member else None, escalated_at=ex.now,
                              updated_at=ex.now))
    topic.escalation_level = level
    ex.log_action("escalate", level + (f" — {note}" if note else ""))
    ex.say("escalate.done", id=topic.id, level=level_name)


def _cmd_merge(ex: Exec, cmd: Command) -> None:
    source = _t(ex)
    target = _topic_by_number(ex, cmd.params.get("topic"))
    if target is None:
        return
    if target.id == source.id:
        ex.say("merge.same", id=source.id)
        return
    session = ex.session
    moved = session.execute(
        update(Message).where(Message.topic_id == source.id).values(topic_id=target.id)
        .execution_options(synchronize_session="fetch")
    ).rowcount  # type: ignore[attr-defined]
    session.execute(update(ThreadRef).where(ThreadRef.topic_id == source.id).values(topic_id=target.id)
                    .execution_options(synchronize_session="fetch"))
    # Topics merged into the source earlier now point at the target.
    session.execute(update(Topic).where(Topic.merged_into_id == source.id).values(merged_into_id=target.id)
                    .execution_options(synchronize_session="fetch"))
    for tag in list(source.tags):
        if tag not in target.tags:
            target.tags.append(tag)
    if target.category_id is None and source.category_id is not None:
        target.category_id = source.category_id
    follows = list(session.scalars(select(TopicFollow).where(TopicFollow.topic_id == source.id)))
    for follow in follows:
        if session.get(TopicFollow, (follow.member_id, target.id)) is None:
            session.add(TopicFollow(member_id=follow.member_id, topic_id=target.id, mode=follow.mode,
                                    created_at=ex.now))
    source.merged_into_id = target.id
    source.status = "closed"
    source.outcome = "duplicate"
    source.closed_at = ex.now
    source.message_count = 0
    session.flush()
    _refresh(session, target)
    ex.log_action("merge", f"topic #{source.id} merged into #{target.id} ({moved} messages)")
    ex.say("merge.done", id=source.id, target=target.id, subject=_quote(target.subject, 70), count=moved,
           url=topic_url(ex.settings, target.id))


def _cmd_split(ex: Exec, cmd: Command) -> None:
    topic = _t(ex)
    session = ex.session
    start: Message | None = None
    for mid in ex.replied_to:
        msg = session.scalar(select(Message).where(Message.message_id == mid))
        if msg is not None and msg.topic_id == topic.id:
            start = msg
            break
    if start is None:
        ex.say("split.no_parent", id=topic.id)
        return
    messages = list(session.scalars(select(Message).where(Message.topic_id == topic.id)
                                    .order_by(Message.date, Message.id)))
    if messages and messages[0].id == start.id:
        ex.say("split.root", id=topic.id)
        return
    children: dict[int | None, list[Message]] = {}
    for msg in messages:
        children.setdefault(msg.parent_id, []).append(msg)
    branch: list[Message] = []
    todo = [start]
    while todo:
        msg = todo.pop()
        branch.append(msg)
        todo.extend(children.get(msg.id, ()))
    from passerelle.mail.subject import normalize_subject, subject_key

    title = normalize_subject(start.subject) or topic.subject
    new = Topic(
        list_id=topic.list_id, category_id=topic.category_id, subject=title[:500],
        normalized_subject=subject_key(start.subject)[:500] or topic.normalized_subject, status="open",
        outcome=None, escalation_level=None, author_id=start.author_id, created_at=start.received_at,
        last_post_at=start.received_at, message_count=0,
    )
    session.add(new)
    session.flush()
    for tag in topic.tags:
        new.tags.append(tag)
    for msg in branch:
        msg.topic_id = new.id
    start.parent_id = None
    session.execute(update(ThreadRef).where(ThreadRef.message_id.in_([m.message_id for m in branch]))
                    .values(topic_id=new.id).execution_options(synchronize_session="fetch"))
    session.flush()
    new_topic = new
    _refresh(session, new_topic)
    _refresh(session, topic)
    ex.log_action("split", f"{len(branch)} message(s) from <{start.message_id}> moved to topic #{new_topic.id}")
    ex.log_action("split-from", f"{len(branch)} message(s) split from topic #{topic.id}", topic=new_topic)
    ex.say("split.done", id=topic.id, new=new_topic.id, count=len(branch), subject=_quote(new_topic.subject, 70),
           url=topic_url(ex.settings, new_topic.id))


def _cmd_sheet(ex: Exec, cmd: Command) -> None:
    topic = _t(ex)
    kind = str(cmd.params["kind"])
    try:
        sheets = importlib.import_module("gateway.sheets")
    except ModuleNotFoundError as exc:
        if exc.name != "gateway.sheets":
            raise
        ex.say("sheet.unavailable")
        return
    kind_name = phrase(f"sheet.{kind}", ex.language)
    existing = sheets.find_sheet(ex.session, topic, kind)
    if existing is not None:
        # A command sent twice, or by a second moderator: the topic keeps its one sheet of that kind, and
        # the answer points at it with its real status (it may be published by now), nothing is logged.
        ex.say("sheet.exists", id=topic.id, kind=kind_name, sheet=existing.id,
               status=phrase(f"sheet.status.{existing.status}", ex.language), url=_sheet_url(ex.settings, existing.id))
        return
    sheet = sheets.create_sheet_from_topic(ex.session, ex.settings, topic, kind, ex.member, now=ex.now)
    ex.log_action("sheet", f"{kind} sheet #{sheet.id}")
    ex.say("sheet.done", id=topic.id, kind=kind_name, sheet=sheet.id, url=_sheet_url(ex.settings, sheet.id))


def _sheet_url(settings: Settings, sheet_id: int) -> str:
    return f"{settings.site.base_url.rstrip('/')}/sheets/{sheet_id}"


def _cmd_topic_follow(ex: Exec, cmd: Command) -> None:
    _cmd_follow(ex, cmd)


_TOPIC_HANDLERS = {
    "tag": _cmd_tag,
    "category": _cmd_category,
    "close": _cmd_close,
    "reopen": _cmd_reopen,
    "escalate": _cmd_escalate,
    "merge": _cmd_merge,
    "split": _cmd_split,
    "sheet": _cmd_sheet,
    "follow": _cmd_topic_follow,
    "mute": _cmd_topic_follow,
}


__all__ = [
    "ConfirmResult",
    "Exec",
    "InterceptResult",
    "confirm_address",
    "confirm_token",
    "confirm_url",
    "describe_token",
    "handle_request_mail",
    "intercept_post",
    "run_member_commands",
    "run_topic_commands",
]
