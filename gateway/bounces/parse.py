"""Recognise bounces (non-delivery reports) and say who bounced, how hard, and why.

Pure functions over raw bytes: no database, no configuration, no clock. The gateway's bounce rule calls
`parse_bounce(raw, verp_recipient=...)`; a non-None result means "never post this, score these members".

Three families of input:

* RFC 3464 delivery status notifications (multipart/report; report-type=delivery-status): one
  per-message field group and one group per recipient, with Action (failed / delayed / delivered ...),
  Status (RFC 3463 code) and Diagnostic-Code (the remote server's own words).
* RFC 5965 abuse feedback (ARF) and provider JSON notifications (Amazon SES): reported as reason
  "feedback" / the provider's own classification.
* Everything older or home-grown (qmail, Exim, Sendmail, Exchange, Domino, Yahoo, GMX, ...): plain
  text, located with the layouts in `patterns` and classified with `reasons`.

Auto-replies (RFC 3834 vacation messages, out-of-office notices) are never bounces, even though some of
them also arrive with a null return path.
"""

from __future__ import annotations

import email
import json
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import Message

from gateway.bounces import patterns as P
from gateway.bounces.reasons import (
    POWERMTA_CATEGORIES,
    classify,
    collapse,
    find_reply_code,
    find_status,
    is_hard,
    reason_from_text,
)
from passerelle.mail.autoreply import autoreply_reason

logger = logging.getLogger(__name__)

# Bounds: the failure description always sits near the top; the returned original can be huge.
MAX_INPUT_BYTES = 1_048_576
MAX_PARTS = 64
MAX_TEXT_CHARS = 65_536
MAX_RECIPIENTS = 500


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One address the report says could not be reached.

    address: lower-cased. hard: the address itself is dead (unknown user/domain, moved, null MX);
    status: RFC 3463 code ("5.1.1") when one was given; reason: short category (see reasons.REASONS);
    diagnostic: the remote server's words, whitespace-collapsed, at most 500 characters;
    action: "failed" (delivery abandoned), "delayed" (a warning; the MTA keeps trying) or
    "complained" (abuse feedback: the recipient reported the message as spam).
    """

    address: str
    hard: bool
    status: str | None
    reason: str
    diagnostic: str
    action: str = "failed"


@dataclass(frozen=True, slots=True)
class BounceReport:
    """What a bounce says. recipients may be empty: a success-only DSN, or a bounce naming nobody."""

    recipients: tuple[BouncedRecipient, ...]
    reporting_mta: str | None
    is_dsn: bool
    feedback_type: str | None = None

    @property
    def hard_addresses(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients if r.hard)


# ---------------------------------------------------------------------------------------------------------
# Small helpers


def _h(msg: Message, name: str) -> str:
    """A raw header as str (compat32 hands back Header objects for undecodable 8-bit values)."""
    value = msg.get(name)
    return "" if value is None else str(value)


def _decode_header_value(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError, AssertionError):
        return text


def _fix_jis(text: str) -> str:
    """Undecoded ISO-2022-JP escapes in a str (Japanese MTAs write them raw into DSN fields)."""
    if "\x1b$" not in text:
        return text
    try:
        return text.encode("latin-1").decode("iso-2022-jp")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def _decode_bytes(data: bytes, charset: str | None) -> str:
    # ISO-2022-JP notices (Japanese MTAs) often arrive without a charset parameter.
    if b"\x1b$B" in data or b"\x1b$@" in data:
        charset = "iso-2022-jp"
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def _part_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, AssertionError, LookupError):
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        if isinstance(payload, str):
            return _fix_jis(payload[:MAX_TEXT_CHARS])
        if isinstance(payload, list):
            return "\n\n".join(_message_fields_text(p) for p in payload if isinstance(p, Message))[:MAX_TEXT_CHARS]
        return ""
    text = _decode_bytes(data[: MAX_TEXT_CHARS * 2], part.get_content_charset())
    if part.get_content_subtype() == "html":
        text = _html_to_text(text)
    return text[:MAX_TEXT_CHARS]


_TAG_RE = re.compile(r"<(?:br|/p|/div|/tr|/li|/h\d)\b[^>]*>", re.IGNORECASE)
_ANY_TAG_RE = re.compile(r"<[^>]{0,2000}>")
_SCRIPT_RE = re.compile(r"<(script|style)\b.*?</\1>", re.IGNORECASE | re.DOTALL)


def _html_to_text(html: str) -> str:
    import html as html_lib

    text = _SCRIPT_RE.sub(" ", html)
    text = _TAG_RE.sub("\n", text)
    text = _ANY_TAG_RE.sub(" ", text)
    return html_lib.unescape(text)


def _message_fields_text(msg: Message) -> str:
    lines = [f"{k}: {v}" for k, v in msg.items()]
    body = msg.get_payload()
    if isinstance(body, str) and body.strip():
        lines.append(body)
    return "\n".join(lines)


_URL_RE = re.compile(r"(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)


_ADDRESS_JUNK_PREFIX = re.compile(r"^(?:smtp=|rfc822[=;:]|mailto:|['`])+", re.IGNORECASE)


def normalise_address(address: str) -> str:
    """Lower-case; drop what a layout glued to the local part (X.400 "SMTP=", a stray opening quote)."""
    return _ADDRESS_JUNK_PREFIX.sub("", address.strip()).lower()


def _addresses(text: str) -> list[str]:
    return [normalise_address(m.group(0)) for m in P.ADDRESS_RE.finditer(_URL_RE.sub(" ", text))]


def _first_address(text: str) -> str | None:
    found = _addresses(text)
    return found[0] if found else None


def _is_role(address: str) -> bool:
    return address.split("@", 1)[0] in P.ROLE_LOCALPARTS


def _header_addresses(msg: Message | None, names: Iterable[str]) -> set[str]:
    if msg is None:
        return set()
    found: set[str] = set()
    for name in names:
        for value in msg.get_all(name) or ():
            found.update(_addresses(_decode_header_value(value)))
    return found


# ---------------------------------------------------------------------------------------------------------
# Walking the MIME tree without descending into the returned original message


@dataclass
class _Parts:
    texts: list[str]
    status_parts: list[Message]
    feedback_parts: list[Message]
    originals: list[Message]
    report_types: set[str]


def _collect(msg: Message) -> _Parts:
    parts = _Parts([], [], [], [], set())
    html: list[str] = []
    count = 0

    def visit(part: Message, depth: int) -> None:
        nonlocal count
        count += 1
        if count > MAX_PARTS or depth > 8:
            return
        ctype = part.get_content_type()
        if ctype == "multipart/report":
            parts.report_types.add((part.get_param("report-type") or "").lower())
        if ctype.startswith("multipart/"):
            payload = part.get_payload()
            if isinstance(payload, str):
                # Boundary declared but never used: the parser leaves the whole body as one string.
                parts.texts.append(_fix_jis(payload[:MAX_TEXT_CHARS]))
                return
            for sub in payload if isinstance(payload, list) else ():
                if isinstance(sub, Message):
                    visit(sub, depth + 1)
            return
        if ctype in ("message/delivery-status", "message/global-delivery-status", "text/delivery-status"):
            parts.status_parts.append(part)
        elif ctype == "message/feedback-report":
            parts.feedback_parts.append(part)
        elif ctype in ("message/rfc822", "message/global", "message/partial"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                parts.originals.append(payload[0])
        elif ctype in ("text/rfc822-headers", "text/rfc822-header", "message/rfc822-headers", "text/global-headers",
                       "message/global-headers"):
            parts.originals.append(email.message_from_string(_part_text(part), policy=email_policy.compat32))
        elif ctype == "text/html":
            html.append(_part_text(part))
        elif part.get_content_maintype() == "text" or ctype == "application/octet-stream" and depth == 0:
            disposition = _h(part, "Content-Disposition").lower()
            filename = (part.get_filename() or "").lower()
            if disposition.startswith("attachment") and filename.endswith((".eml", ".msg")):
                return
            parts.texts.append(_part_text(part))

    visit(msg, 0)
    if not parts.texts and html:
        parts.texts.extend(html)
    return parts


# ---------------------------------------------------------------------------------------------------------
# RFC 3464 field groups

_FIELD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")


def _groups_from_pairs(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """Field groups; a repeated recipient field starts a new group (some MTAs omit the blank line)."""
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key == "final-recipient" and "final-recipient" in current:
            groups.append(current)
            current = {}
        current.setdefault(key, " ".join(_fix_jis(value).split()))
    if current:
        groups.append(current)
    return groups


def _pairs_from_text(text: str) -> Iterator[tuple[str, str] | None]:
    """(name, value) pairs with continuation lines folded; None marks a blank line (group separator)."""
    name: str | None = None
    value: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            if name is not None:
                yield name, " ".join(value)
                name = None
            yield None
            continue
        if line[:1] in (" ", "\t") and name is not None:
            value.append(line.strip())
            continue
        m = _FIELD_RE.match(line)
        if name is not None:
            yield name, " ".join(value)
            name = None
        if m:
            name, value = m.group(1), [m.group(2).strip()]
    if name is not None:
        yield name, " ".join(value)


def _groups_from_text(text: str) -> list[dict[str, str]]:
    groups: list[dict[str, str]] = []
    block: list[tuple[str, str]] = []
    for pair in _pairs_from_text(text):
        if pair is None:
            if block:
                groups.extend(_groups_from_pairs(block))
                block = []
        else:
            block.append(pair)
    if block:
        groups.extend(_groups_from_pairs(block))
    return groups


def _status_groups(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    cte = _h(part, "Content-Transfer-Encoding").strip().lower()
    if isinstance(payload, list) and cte not in ("base64", "quoted-printable"):
        groups: list[dict[str, str]] = []
        for sub in payload:
            if not isinstance(sub, Message):
                continue
            groups.extend(_groups_from_pairs((k, str(v)) for k, v in sub.items()))
            body = sub.get_payload()
            if isinstance(body, str) and body.strip():
                groups.extend(_groups_from_text(body))
        return groups
    if isinstance(payload, list):
        # A transfer-encoded delivery-status part (RFC 3464 forbids it, Exchange does it): the parser
        # split undecoded text into fake headers; decode the original serialised text ourselves.
        raw = "\n\n".join(_message_fields_text(p) for p in payload if isinstance(p, Message))
        if cte == "base64":
            import base64
            import binascii

            try:
                raw = base64.b64decode("".join(raw.split()), validate=False).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                return []
        else:
            import quopri

            raw = quopri.decodestring(raw.encode("latin-1", "replace")).decode("utf-8", "replace")
        return _groups_from_text(raw)
    return _groups_from_text(_part_text(part))


def _field_address(value: str | None) -> str | None:
    if not value:
        return None
    if ";" in value:
        value = value.split(";", 1)[1]
    return _first_address(value.strip().strip("<>\"' "))


def _strip_type(value: str) -> tuple[str, str]:
    """"smtp; 550 ..." -> ("smtp", "550 ...")."""
    m = re.match(r"^\s*([A-Za-z][A-Za-z0-9-]*)\s*;\s*(.*)$", value, re.DOTALL)
    if m:
        return m.group(1).lower(), m.group(2).strip()
    return "", value.strip()


# ---------------------------------------------------------------------------------------------------------
# The analysis of one message


@dataclass
class _Candidate:
    address: str
    diagnostic: str
    status: str | None = None
    action: str = "failed"
    diag_type: str = ""
    vendor_reason: str | None = None
    stage_hint: str = ""


def _split_original(text: str) -> tuple[str, str]:
    """(notice, returned original) for a plain-text bounce."""
    cut = len(text)
    m = P.ORIGINAL_BOUNDARY_RE.search(text)
    if m and m.start() > 0:
        cut = m.start()
    h = P.HEADER_BLOCK_RE.search(text, 0, cut)
    if h and h.start() > 0 and text[:h.start()].strip():
        cut = min(cut, h.start())
    return text[:cut], text[cut:]


def _paragraph_after(text: str, start: int, stop: int) -> str:
    """The diagnostic that follows an address: its line and the next lines, up to a blank line after content."""
    end = min(stop, start + 1200)
    chunk = text[start:end]
    lines = chunk.split("\n")
    kept: list[str] = []
    seen_blank_after_content = False
    for i, line in enumerate(lines):
        if not line.strip():
            if len(kept) > 1:
                seen_blank_after_content = True
            continue
        if seen_blank_after_content and not line[:1].isspace() and i > 1:
            break
        kept.append(line.strip())
        if len(kept) >= 12:
            break
    return " ".join(kept)


def _never_recipients(msg: Message, originals: list[Message]) -> set[str]:
    """Addresses that cannot be the bounced recipient: the reporting daemon, message identifiers."""
    never = _header_addresses(msg, ("From", "Sender", "Message-ID"))
    for original in originals:
        never |= _header_addresses(original, ("Message-ID",))
    return never


def _excluded_addresses(msg: Message, originals: list[Message], original_text: str) -> set[str]:
    excluded = _header_addresses(
        msg, ("To", "Cc", "Return-Path", "From", "Sender", "Reply-To")
    )
    for original in originals:
        excluded |= _header_addresses(original, ("From", "Sender", "Reply-To", "Return-Path", "Message-ID", "Errors-To"))
    if original_text:
        head = original_text[:8000].split("\n\n", 1)[0]
        for line in head.splitlines():
            if re.match(r"^(?:From|Sender|Reply-To|Return-Path|Message-I[dD]|Errors-To)\s*:", line, re.IGNORECASE):
                excluded.update(_addresses(line))
    return excluded


def _text_candidates(notice: str, excluded: set[str], never: frozenset[str] | set[str] = frozenset()) -> list[_Candidate]:
    """Addresses a plain-text notice names as failed, each with the text that explains it."""
    text = _URL_RE.sub(" ", notice)
    tiers: list[list[tuple[int, str]]] = []
    for regex in (P.ADDRESS_LINE_RE, P.TRANSCRIPT_RE, P.LABELLED_RE):
        tiers.append([(m.start(), normalise_address(m.group("addr"))) for m in regex.finditer(text)])
    # Last tier: an address merely mentioned in prose. Only the first one counts; later ones are
    # usually advice ("try NAME@other.host instead", "contact help@...").
    mentioned = [(m.start(), normalise_address(m.group(0))) for m in P.ADDRESS_RE.finditer(text)]
    mentioned = [(pos, a) for pos, a in mentioned if a not in excluded and not _is_role(a)]
    tiers.append(mentioned[:1])

    chosen: list[tuple[int, str]] = []
    chosen_tier = -1
    for index, tier in enumerate(tiers):
        usable = [(pos, a) for pos, a in tier if a not in excluded and not _is_role(a)]
        if usable:
            chosen, chosen_tier = usable, index
            break
    if not chosen:
        # People do mail themselves, and postmaster@ does bounce: when nothing else is named, an address
        # in a failed-address layout (not a stray mention) is the recipient after all.
        for tier in tiers[:3]:
            usable = [(pos, a) for pos, a in tier if a not in never]
            if usable:
                chosen, chosen_tier = usable, tiers.index(tier)
                break
    if not chosen:
        return []

    # Keep the first mention of each address; its diagnostic runs to the next chosen address.
    firsts: dict[str, int] = {}
    for pos, addr in sorted(chosen):
        firsts.setdefault(addr, pos)
    ordered = sorted(firsts.items(), key=lambda item: item[1])
    line_starts = [text.rfind("\n", 0, pos) + 1 for _, pos in ordered]
    candidates: list[_Candidate] = []
    for index, (addr, _pos) in enumerate(ordered):
        start = line_starts[index]
        stop = line_starts[index + 1] if index + 1 < len(ordered) else len(text)
        hint = ""
        if chosen_tier == 1:
            # Sendmail transcript lines ("554 <user@host>... reason"): one line, one recipient; the
            # next line already belongs to the next recipient. The SMTP command it answers is the
            # nearest ">>> COMMAND" line above it.
            end = text.find("\n", start)
            diagnostic = text[start:end if end >= 0 else len(text)].strip()
            above = text[max(0, start - 600):start].splitlines()
            for line in reversed(above[-6:]):
                if line.lstrip().startswith(">>> "):
                    command = line.strip()[4:].split(":", 1)[0].split(" ", 1)[0].upper()
                    hint = {"RCPT": " in reply to rcpt to ", "DATA": " after end of data ", ".": " after end of data ",
                            "MAIL": " in reply to mail from "}.get(command, " ")
                    break
        else:
            diagnostic = _paragraph_after(text, start, stop)
        candidates.append(_Candidate(addr, diagnostic, stage_hint=hint))
        # Sendmail/Postfix "(expanded from: alias)": the alias is the address the list mailed.
        m = P.EXPANDED_FROM_RE.search(diagnostic)
        if m and normalise_address(m.group("addr")) not in firsts:
            candidates.append(_Candidate(normalise_address(m.group("addr")), diagnostic))
    return candidates[:MAX_RECIPIENTS]


def _transcript_stage_hint(notice: str) -> str:
    """For Sendmail transcripts, the command answered with the error ('>>> DATA' then '<<< 554 ...')."""
    last_command = ""
    for line in notice.splitlines()[:400]:
        stripped = line.strip()
        if stripped.startswith(">>> "):
            last_command = stripped[4:].split(":", 1)[0].split(" ", 1)[0].upper()
        elif re.match(r"^<<< [45]\d\d", stripped) and last_command:
            if last_command in ("DATA", "."):
                return " after end of data "
            if last_command == "RCPT":
                return " in reply to rcpt to "
            return ""
    return ""


def _reporting_mta_from_text(notice: str, msg: Message) -> str | None:
    for regex in P.REPORTING_MTA_RES:
        m = regex.search(notice)
        if m:
            return m.group(1).lower().rstrip(".")
    sender = _first_address(_decode_header_value(msg.get("From")))
    if sender and _is_role(sender):
        return sender.split("@", 1)[1]
    return None


def _recipient(
    cand: _Candidate, *, context: str, delayed_notice: bool, stage_hint: str = "",
    senders: frozenset[str] | set[str] = frozenset(),
) -> BouncedRecipient:
    diagnostic = cand.diagnostic
    status = cand.status
    specific = find_status(diagnostic)
    if status is None or (status.endswith(".0.0") and specific and specific[0] == status[0]):
        status = specific or status
    if status is None and context:
        status = find_status(context)
    reply_code = find_reply_code(diagnostic)
    action = cand.action
    if action == "failed" and delayed_notice and (status is None or status.startswith("4")):
        action = "delayed"
    if status is None and reply_code:
        # A bare SMTP reply code still says permanent (5xx) or transient (4xx).
        pass
    delayed = action == "delayed"
    if cand.vendor_reason:
        reason = cand.vendor_reason
    elif cand.diag_type == "x-unix" and reason_from_text(diagnostic) != "mailboxfull":
        # A local delivery program (procmail, a pipe) failed: its words are not the mailbox's status.
        reason = "mailererror"
    else:
        reason = classify(diagnostic + (cand.stage_hint or stage_hint), status, delayed=delayed, context=context)
    if reason in ("userunknown", "hostunknown", "notaccept") and senders:
        # The remote server quoted *our sender* address, not the recipient's: "550 <list-bounces@...>
        # Domain is invalid" refuses the sender, and says nothing about the member's mailbox.
        low = diagnostic.lower()
        answer = low.split(cand.address, 1)[1] if low.startswith(("<" + cand.address, cand.address)) else low
        if cand.address not in answer and any(
            re.search(r"\b[45]\d\d[ -][^\n]{0,40}?" + re.escape(s), answer) for s in senders
        ):
            reason = "rejected"
    hard = is_hard(reason, status, reply_code, delayed=delayed)
    if hard and status is None and reply_code and reply_code.startswith("4"):
        hard = False
    return BouncedRecipient(
        address=cand.address,
        hard=hard,
        status=status,
        reason=reason,
        diagnostic=" ".join(diagnostic.split())[:500],
        action=action,
    )


def _dedupe(recipients: Iterable[BouncedRecipient]) -> tuple[BouncedRecipient, ...]:
    seen: dict[str, BouncedRecipient] = {}
    for r in recipients:
        previous = seen.get(r.address)
        if previous is None or (r.hard and not previous.hard) or (previous.reason == "undefined" and r.reason != "undefined"):
            seen[r.address] = r
    return tuple(seen.values())[:MAX_RECIPIENTS]


# ---------------------------------------------------------------------------------------------------------
# Feedback (ARF, RFC 5965) and provider JSON


def _feedback_report(msg: Message, parts: _Parts) -> BounceReport | None:
    feedback_type: str | None = None
    rcpts: list[str] = []
    for part in parts.feedback_parts:
        for group in [_status_groups(part)]:
            for fields in group:
                feedback_type = feedback_type or fields.get("feedback-type")
        # Original-Rcpt-To may repeat; field groups keep only the first, so read the raw text too.
        raw = _part_text(part)
        for name_value in _pairs_from_text(raw):
            if name_value and name_value[0].lower() in ("original-rcpt-to", "removal-recipient"):
                rcpts.extend(_addresses(name_value[1]))
            if name_value and name_value[0].lower() == "feedback-type" and not feedback_type:
                feedback_type = name_value[1].strip().lower()
    hotmail_style = bool(P.FEEDBACK_SUBJECT_RE.search(_decode_header_value(msg.get("Subject")).strip()))
    if not parts.feedback_parts and not hotmail_style:
        return None
    if not rcpts:
        for original in parts.originals:
            rcpts.extend(_header_addresses(original, ("X-HmXmrOriginalRecipient", "X-Original-To")))
            if not rcpts:
                rcpts.extend(_header_addresses(original, ("To",)))
    recipients = [
        BouncedRecipient(address=a, hard=False, status=None, reason="feedback", diagnostic=feedback_type or "abuse",
                         action="complained")
        for a in dict.fromkeys(rcpts)
    ]
    return BounceReport(
        recipients=tuple(recipients)[:MAX_RECIPIENTS],
        reporting_mta=None,
        is_dsn=False,
        feedback_type=(feedback_type or "abuse").lower(),
    )


def _ses_notification(text: str) -> BounceReport | None:
    """Amazon SES bounce/complaint notifications delivered by e-mail (SNS): a JSON document as body."""
    start = text.find("{")
    if start < 0 or "notificationType" not in text[start: start + 4000]:
        return None
    # SNS wraps long lines, so control characters can sit inside strings: decode leniently.
    decoder = json.JSONDecoder(strict=False)
    try:
        doc = decoder.raw_decode(text[start:])[0]
    except ValueError:
        return None
    if isinstance(doc, dict) and isinstance(doc.get("Message"), str):
        try:
            doc = decoder.raw_decode(doc["Message"].strip())[0]
        except ValueError:
            return None
    if not isinstance(doc, dict):
        return None
    kind = str(doc.get("notificationType", "")).lower()
    recipients: list[BouncedRecipient] = []
    if kind == "bounce" and isinstance(doc.get("bounce"), dict):
        bounce = doc["bounce"]
        transient = str(bounce.get("bounceType", "")).lower() != "permanent"
        for item in bounce.get("bouncedRecipients") or ():
            if not isinstance(item, dict) or not _first_address(str(item.get("emailAddress", ""))):
                continue
            diag = str(item.get("diagnosticCode") or bounce.get("bounceSubType") or "")
            status = str(item.get("status") or "") or find_status(diag)
            cand = _Candidate(_first_address(str(item["emailAddress"])) or "", diag, status or None,
                              "delayed" if transient and (status or "4").startswith("4") else "failed")
            recipients.append(_recipient(cand, context=str(bounce.get("bounceSubType", "")), delayed_notice=False))
        mta = bounce.get("reportingMTA")
        return BounceReport(_dedupe(recipients), str(mta).split(";")[-1].strip() if mta else None, False)
    if kind == "complaint" and isinstance(doc.get("complaint"), dict):
        complaint = doc["complaint"]
        ftype = str(complaint.get("complaintFeedbackType") or "abuse")
        for item in complaint.get("complainedRecipients") or ():
            addr = _first_address(str(item.get("emailAddress", ""))) if isinstance(item, dict) else None
            if addr:
                recipients.append(BouncedRecipient(addr, False, None, "feedback", ftype, "complained"))
        return BounceReport(tuple(recipients), None, False, feedback_type=ftype.lower())
    if kind == "delivery":
        return BounceReport((), None, False)
    return None


# ---------------------------------------------------------------------------------------------------------
# Entry point


def parse_bounce(raw: bytes, verp_recipient: str | None = None) -> BounceReport | None:
    """Read a message and return its bounce report, or None when it is not a bounce.

    raw: the message as received (bytes). verp_recipient: the member address decoded from the VERP
    envelope recipient, if the caller has one; it names the bounced member when the body names nobody.
    Raises TypeError for anything but bytes-like input; never raises on malformed mail.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_bounce expects the raw message as bytes, not {type(raw).__name__}")
    data = bytes(raw[:MAX_INPUT_BYTES])
    if not data.strip():
        return None
    verp = _first_address(verp_recipient) if verp_recipient else None
    try:
        msg = email.message_from_bytes(data, policy=email_policy.compat32)
        return _analyse(msg, verp)
    except (RecursionError, MemoryError):
        logger.warning("bounce parser gave up on a pathological message (%d bytes)", len(data))
        return None


def _apple_unsubscribe(msg: Message) -> BounceReport | None:
    """Apple Mail's "Unsubscribe" button mails the List-Unsubscribe address with X-Apple-Unsubscribe."""
    if _h(msg, "X-Apple-Unsubscribe").strip().lower() != "true":
        return None
    sender = _first_address(_decode_header_value(msg.get("From")))
    recipients = (BouncedRecipient(sender, False, None, "feedback", "opt-out", "complained"),) if sender else ()
    return BounceReport(recipients, None, False, feedback_type="opt-out")


def _analyse(msg: Message, verp: str | None, depth: int = 0) -> BounceReport | None:
    parts = _collect(msg)
    subject = _decode_header_value(msg.get("Subject"))
    from_header = _decode_header_value(msg.get("From"))
    notice_full = "\n\n".join(parts.texts)

    apple = _apple_unsubscribe(msg)
    if apple is not None:
        return apple
    feedback = _feedback_report(msg, parts) if (parts.feedback_parts or "feedback-report" in parts.report_types
                                                or P.FEEDBACK_SUBJECT_RE.search(subject.strip())) else None
    if feedback is not None:
        return feedback

    if "notificationType" in notice_full[:20000]:
        ses = _ses_notification(notice_full)
        if ses is not None:
            return ses

    notice, original_text = _split_original(notice_full)
    excluded = _excluded_addresses(msg, parts.originals, original_text)
    never = _never_recipients(msg, parts.originals)
    senders = _header_addresses(msg, ("To",))
    for original in parts.originals:
        senders |= _header_addresses(original, ("From", "Sender", "Return-Path"))
    delayed_notice = bool(P.DELAY_RE.search(subject) or P.DELAY_RE.search(notice[:6000]))

    # RFC 3464 first: its per-recipient groups are authoritative.
    dsn_groups: list[dict[str, str]] = []
    for part in parts.status_parts:
        dsn_groups.extend(_status_groups(part))
    if not dsn_groups and re.search(r"^(?:Final-Recipient|Original-Recipient):", notice_full, re.M | re.I) and \
            re.search(r"^(?:Action|Status):", notice_full, re.M | re.I):
        # A delivery-status block pasted into a text part (mislabelled or forwarded by a gateway).
        dsn_groups = [g for g in _groups_from_text(notice_full) if any(k in g for k in _RECIPIENT_FIELDS)]
    is_dsn = bool(parts.status_parts) or bool(dsn_groups)

    reporting_mta: str | None = None
    candidates: list[_Candidate] = []
    saw_success = False
    for group in dsn_groups:
        if "reporting-mta" in group and reporting_mta is None:
            reporting_mta = _strip_type(group["reporting-mta"])[1].strip("[] ").lower() or None
        if not any(k in group for k in _RECIPIENT_FIELDS):
            continue
        # Original-Recipient (RFC 3461 ORCPT) is the address we gave at RCPT TO, i.e. the member's;
        # Final-Recipient may be where an alias or forward led.
        address = None
        for key in ("original-recipient", "final-recipient", "x-actual-recipient"):
            address = _field_address(group.get(key))
            if address:
                break
        diag_type, diagnostic = _strip_type(group.get("diagnostic-code", ""))
        action_field = (group.get("action") or "").split()
        action = action_field[0].lower() if action_field else ""
        status = find_status(group.get("status", "")) if group.get("status") else None
        if not action:
            action = {"2": "delivered", "4": "delayed"}.get((status or "5")[0], "failed")
        if action in ("delivered", "relayed", "expanded", "deliverable"):
            saw_success = True
            continue
        action = "delayed" if action.startswith(("delay", "deferred")) else "failed"
        if address is None:
            address = _first_address(diagnostic)
        if address is None:
            continue
        vendor = POWERMTA_CATEGORIES.get((group.get("x-powermta-bouncecategory") or "").strip().lower())
        candidates.append(_Candidate(address, diagnostic, status, action, diag_type, vendor))

    if candidates:
        text_by_addr = {c.address: c for c in _text_candidates(notice, excluded, never)}
        recipients = []
        single = len(candidates) == 1
        for cand in candidates:
            extra = text_by_addr.get(cand.address)
            if not cand.diagnostic and extra is not None:
                cand.diagnostic = extra.diagnostic
            context = notice if single else (extra.diagnostic if extra else "")
            recipients.append(_recipient(cand, context=context[:4000], delayed_notice=False,
                                         stage_hint=_transcript_stage_hint(notice), senders=senders))
        return BounceReport(_dedupe(recipients), reporting_mta, True)
    if is_dsn and saw_success:
        return BounceReport((), reporting_mta, True)

    # Not (usable) RFC 3464: decide whether this plain message is a bounce at all.
    failed_header = _header_addresses(msg, ("X-Failed-Recipients",))
    sender_is_daemon = bool(P.DAEMON_FROM_RE.search(from_header))
    from_address = _first_address(from_header) or ""
    daemon_role = from_address.split("@", 1)[0] in P.DAEMON_LOCALPARTS
    return_path = _h(msg, "Return-Path").strip()
    null_sender = return_path in ("<>", "") and msg.get("Return-Path") is not None
    bounce_subject = bool(P.BOUNCE_SUBJECT_RE.search(subject))
    weak_subject = bounce_subject or bool(P.WEAK_BOUNCE_SUBJECT_RE.search(subject))
    failure_text = bool(P.FAILURE_BODY_RE.search(notice[:8000]))

    auto = autoreply_reason(msg, subject)
    # Precedence: bulk/junk is set on many bounces too; only the stronger auto-reply signals veto, and
    # never against a daemon sender that describes a failure.
    if auto is not None and not auto.startswith("Precedence") and not failed_header and not is_dsn and not (
        sender_is_daemon and (failure_text or weak_subject)
    ):
        return None
    if not failed_header and not is_dsn and not sender_is_daemon and not null_sender and \
            P.FORWARD_PREFIX_RE.match(subject):
        return None
    evidence = (
        bool(failed_header)
        or is_dsn
        or "delivery-status" in parts.report_types
        or (failure_text and (sender_is_daemon or null_sender or bounce_subject))
        or (weak_subject and sender_is_daemon)
        or (daemon_role and (failure_text or null_sender or bounce_subject or bool(P.ADDRESS_LINE_RE.search(notice))))
    )
    if not evidence:
        return None

    reporting_mta = reporting_mta or _reporting_mta_from_text(notice, msg)
    text_cands: list[_Candidate] = []
    if from_address.endswith("@aol.com"):
        m = P.AOL_SCREEN_NAMES_RE.search(notice)
        if m:
            text_cands = [_Candidate(f"{name.strip().lower()}@aol.com", notice[:1500])
                          for name in m.group(1).split() if name.strip()]
    if not text_cands:
        text_cands = _text_candidates(notice, excluded, never)
    if not text_cands and depth < 2:
        # A gateway (antivirus, archiver) that wraps the real bounce and names nobody itself.
        for original in parts.originals:
            if original.get_content_type() == "multipart/report" or P.DAEMON_FROM_RE.search(
                _decode_header_value(original.get("From"))
            ):
                inner = _analyse(original, verp, depth + 1)
                if inner is not None and inner.recipients:
                    return inner
    if failed_header:
        by_addr = {c.address: c for c in text_cands}
        text_cands = [by_addr.get(a) or _Candidate(a, notice[:1500]) for a in sorted(failed_header)]
    if not text_cands and verp:
        text_cands = [_Candidate(verp, notice[:1500])]
    if not text_cands:
        # Last resort: a notice that names nobody, about a message sent to a single address.
        originals = list(parts.originals)
        if original_text.strip():
            head = original_text.split("\n", 1)[1] if "\n" in original_text else ""
            originals.append(email.message_from_string(head.lstrip("\n")[:20000], policy=email_policy.compat32))
        for original in originals:
            if original.get("List-Id") or original.get("List-Post"):
                continue  # list mail is addressed To: the list, not to the member who bounced
            to_addrs = [a for a in _addresses(_decode_header_value(original.get("To", ""))) if a not in excluded]
            if len(to_addrs) == 1:
                text_cands = [_Candidate(to_addrs[0], notice[:1500])]
                break
    single = len(text_cands) == 1
    stage_hint = _transcript_stage_hint(notice)
    recipients = [
        _recipient(c, context=notice[:4000] if single else "", delayed_notice=delayed_notice, stage_hint=stage_hint,
                   senders=senders)
        for c in text_cands
    ]
    return BounceReport(_dedupe(recipients), reporting_mta, is_dsn)


def _debug_summary(report: BounceReport | None) -> str:
    """One line for logs: who bounced and how."""
    if report is None:
        return "not a bounce"
    inner = ", ".join(f"{r.address} {r.action}/{'hard' if r.hard else 'soft'}/{r.reason}" for r in report.recipients)
    return f"bounce ({'dsn' if report.is_dsn else 'text'}): {inner or 'no recipient named'}"


__all__ = ["BounceReport", "BouncedRecipient", "collapse", "parse_bounce"]
