"""Recognise bounces (non-delivery reports) and say who bounced, how hard, and why.

Pure functions over raw bytes: no database, no configuration, no clock. The gateway's bounce rule calls
`parse_bounce(raw, verp_recipient=...)`; a non-None result means "never post this; score these members".

Families of input, in the order they are tried:

* Feedback: RFC 5965 abuse reports (ARF), Hotmail-style complaints, Apple Mail's unsubscribe mails,
  Amazon SES JSON notifications. Reported with reason "feedback", action "complained", never hard.
* RFC 3464 delivery status notifications (multipart/report; report-type=delivery-status): a
  per-message field group then one group per recipient with Action (failed / delayed / delivered ...),
  Status (RFC 3463 code) and Diagnostic-Code (the remote server's own words).
* Everything older or home-grown (qmail, Exim, Sendmail, Exchange, Domino, Yahoo, GMX, ...): plain
  text, recognised and located with the layouts in `patterns`, classified with `reasons`.

Auto-replies (RFC 3834 vacation messages, out-of-office notices) are never bounces, even though some of
them also arrive with a null return path; neither is a person forwarding a bounce.
"""

from __future__ import annotations

import email
import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email import policy as email_policy
from email.message import Message

from gateway.bounces import mime as M
from gateway.bounces import patterns as P
from gateway.bounces.reasons import (
    POWERMTA_CATEGORIES,
    classify,
    find_reply_code,
    find_status,
    is_hard,
    reason_from_text,
)
from passerelle.mail.autoreply import autoreply_reason

logger = logging.getLogger(__name__)

# Bounds: the failure description always sits near the top; the returned original can be huge.
MAX_INPUT_BYTES = 1_048_576
MAX_RECIPIENTS = 500


@dataclass(frozen=True, slots=True)
class BouncedRecipient:
    """One address a report says could not be reached (or complained).

    address: lower-cased. hard: the address itself is dead (unknown user or domain, moved, null MX) and
    delivery was abandoned — one such report is enough to stop mailing it. status: RFC 3463 code
    ("5.1.1") when one was given. reason: short category (see `reasons.REASONS`). diagnostic: the
    remote server's words, whitespace-collapsed, at most 500 characters. action: "failed" (delivery
    abandoned), "delayed" (a warning: the MTA keeps trying; always soft) or "complained" (feedback).
    """

    address: str
    hard: bool
    status: str | None
    reason: str
    diagnostic: str
    action: str = "failed"


@dataclass(frozen=True, slots=True)
class BounceReport:
    """What a bounce says. `recipients` may be empty: a success-only DSN, or a bounce naming nobody.

    is_dsn: the message carried RFC 3464 delivery-status fields. feedback_type: for feedback reports,
    the RFC 5965 Feedback-Type ("abuse", "opt-out", ...), else None.
    """

    recipients: tuple[BouncedRecipient, ...]
    reporting_mta: str | None
    is_dsn: bool
    feedback_type: str | None = None

    @property
    def hard_addresses(self) -> tuple[str, ...]:
        return tuple(r.address for r in self.recipients if r.hard)

    def summary(self) -> str:
        """One line for logs: who bounced and how."""
        inner = ", ".join(
            f"{r.address} {r.action}/{'hard' if r.hard else 'soft'}/{r.reason}" for r in self.recipients
        )
        kind = "feedback" if self.feedback_type else "dsn" if self.is_dsn else "text"
        return f"bounce ({kind}): {inner or 'no recipient named'}"


def parse_bounce(raw: bytes, verp_recipient: str | None = None) -> BounceReport | None:
    """Read a message and return its bounce report, or None when it is not a bounce.

    raw: the message as received. verp_recipient: the member address the caller decoded from the VERP
    envelope recipient, if any; it names the bounced member when the body names nobody.
    Raises TypeError for anything but bytes-like input; malformed mail never raises.
    """
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise TypeError(f"parse_bounce expects the raw message as bytes, not {type(raw).__name__}")
    if verp_recipient is not None and not isinstance(verp_recipient, str):
        raise TypeError(f"verp_recipient must be a str or None, not {type(verp_recipient).__name__}")
    data = bytes(raw[:MAX_INPUT_BYTES])
    if not data.strip():
        return None
    verp = M.first_address(verp_recipient) if verp_recipient else None
    msg: Message | None = None
    try:
        msg = email.message_from_bytes(data, policy=email_policy.compat32)
        return _analyse(msg, verp)
    except RecursionError:
        message_id = M.header_str(msg, "Message-ID").strip() if msg is not None else "?"
        logger.warning("<%s>: bounce parser gave up on a pathologically nested message (%d bytes)",
                       message_id, len(data))
        return None


# ---------------------------------------------------------------------------------------------------------
# The decision for one message


def _analyse(msg: Message, verp: str | None, depth: int = 0) -> BounceReport | None:
    parts = M.collect_parts(msg)
    subject = M.decode_header_value(msg.get("Subject"))
    notice_full = "\n\n".join(parts.texts)

    feedback = _feedback(msg, parts, subject, notice_full, verp)
    if feedback is not None:
        return feedback

    notice, original_text = _split_original(notice_full)
    ctx = _Context(
        notice=notice,
        excluded=_excluded_addresses(msg, parts.originals, original_text),
        never=_never_recipients(msg, parts.originals),
        senders=_sender_addresses(msg, parts.originals),
    )

    dsn = _dsn_report(parts, notice_full, ctx)
    if dsn is not None:
        return dsn

    if not _looks_like_plain_bounce(msg, parts, subject, notice, is_dsn=bool(parts.status_parts)):
        return None
    return _plain_report(msg, parts, subject, original_text, ctx, verp, depth)


@dataclass
class _Context:
    notice: str  # the human-readable notice, without the returned original
    excluded: set[str]  # addresses that are not the failed recipient when a better one exists
    never: set[str]  # addresses that are never the failed recipient (the daemon, message ids)
    senders: set[str]  # the original message's sender addresses (ours, for list mail)


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
    if h and h.start() > 0 and text[: h.start()].strip():
        cut = min(cut, h.start())
    return text[:cut], text[cut:]


_ORIGINAL_SENDER_LINE_RE = re.compile(r"^(?:From|Sender|Reply-To|Return-Path|Message-I[dD]|Errors-To)\s*:", re.I)


def _excluded_addresses(msg: Message, originals: list[Message], original_text: str) -> set[str]:
    """The bounce's own addressees (the original sender) and the original's author: rarely the recipient."""
    excluded = M.header_addresses(msg, ("To", "Cc", "Return-Path", "From", "Sender", "Reply-To"))
    for original in originals:
        excluded |= M.header_addresses(
            original, ("From", "Sender", "Reply-To", "Return-Path", "Message-ID", "Errors-To")
        )
    if original_text:
        head = original_text[:8000].split("\n\n", 1)[0]
        for line in head.splitlines():
            if _ORIGINAL_SENDER_LINE_RE.match(line):
                excluded.update(M.addresses_in(line))
    return excluded


def _never_recipients(msg: Message, originals: list[Message]) -> set[str]:
    """Addresses that cannot be the bounced recipient: the reporting daemon, message identifiers."""
    never = M.header_addresses(msg, ("From", "Sender", "Message-ID"))
    for original in originals:
        never |= M.header_addresses(original, ("Message-ID",))
    return never


def _sender_addresses(msg: Message, originals: list[Message]) -> set[str]:
    senders = M.header_addresses(msg, ("To",))
    for original in originals:
        senders |= M.header_addresses(original, ("From", "Sender", "Return-Path"))
    return senders


# ---------------------------------------------------------------------------------------------------------
# Feedback: ARF, Hotmail JMRP, Apple Mail unsubscribe, Amazon SES notifications


def _feedback(
    msg: Message, parts: M.Parts, subject: str, notice: str, verp: str | None
) -> BounceReport | None:
    if M.header_str(msg, "X-Apple-Unsubscribe").strip().lower() == "true":
        # Apple Mail's "Unsubscribe" button mails the List-Unsubscribe address with this header (and
        # Auto-Submitted: auto-replied). The member asking out is the From address.
        sender = M.first_address(M.decode_header_value(msg.get("From")))
        recipients = (BouncedRecipient(sender, False, None, "feedback", "opt-out", "complained"),) if sender else ()
        return BounceReport(recipients, None, False, feedback_type="opt-out")
    if parts.feedback_parts or "feedback-report" in parts.report_types or P.FEEDBACK_SUBJECT_RE.search(
        subject.strip()
    ):
        return _arf_report(parts, verp)
    if "notificationType" in notice[:20000]:
        return _ses_notification(notice)
    return None


def _arf_report(parts: M.Parts, verp: str | None) -> BounceReport:
    feedback_type: str | None = None
    rcpts: list[str] = []
    for part in parts.feedback_parts:
        # Original-Rcpt-To may repeat (one per complaining recipient): read every field, not a dict.
        for pair in M.pairs_from_text(M.part_text(part)):
            if pair is None:
                continue
            name, value = pair[0].lower(), pair[1]
            if name in ("original-rcpt-to", "removal-recipient"):
                rcpts.extend(M.addresses_in(value))
            elif name == "feedback-type" and not feedback_type:
                feedback_type = value.strip().lower()
    if not rcpts:
        for original in parts.originals:
            rcpts.extend(M.header_addresses(original, ("X-HmXmrOriginalRecipient", "X-Original-To")))
            if not rcpts:
                rcpts.extend(M.header_addresses(original, ("To",)))
    if not rcpts and verp:
        rcpts.append(verp)
    ftype = (feedback_type or "abuse").lower()
    recipients = tuple(
        BouncedRecipient(address=a, hard=False, status=None, reason="feedback", diagnostic=ftype, action="complained")
        for a in dict.fromkeys(rcpts)
    )
    return BounceReport(recipients[:MAX_RECIPIENTS], None, False, feedback_type=ftype)


def _ses_notification(text: str) -> BounceReport | None:
    """Amazon SES bounce/complaint notifications delivered by e-mail (via SNS): a JSON document as body."""
    start = text.find("{")
    if start < 0 or "notificationType" not in text[start : start + 4000]:
        return None
    # SNS wraps long lines, so control characters can sit inside strings: decode leniently.
    decoder = json.JSONDecoder(strict=False)
    try:
        doc = decoder.raw_decode(text[start:])[0]
        if isinstance(doc, dict) and isinstance(doc.get("Message"), str):
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
            address = M.first_address(str(item.get("emailAddress", ""))) if isinstance(item, dict) else None
            if not address:
                continue
            diagnostic = str(item.get("diagnosticCode") or bounce.get("bounceSubType") or "")
            status = str(item.get("status") or "") or find_status(diagnostic)
            action = "delayed" if transient and (status or "4").startswith("4") else "failed"
            cand = _Candidate(address, M.strip_type(diagnostic)[1], status or None, action)
            recipients.append(_recipient(cand, context=str(bounce.get("bounceSubType", ""))))
        mta = bounce.get("reportingMTA")
        return BounceReport(_dedupe(recipients), str(mta).split(";")[-1].strip() if mta else None, False)
    if kind == "complaint" and isinstance(doc.get("complaint"), dict):
        complaint = doc["complaint"]
        ftype = str(complaint.get("complaintFeedbackType") or "abuse").lower()
        for item in complaint.get("complainedRecipients") or ():
            address = M.first_address(str(item.get("emailAddress", ""))) if isinstance(item, dict) else None
            if address:
                recipients.append(BouncedRecipient(address, False, None, "feedback", ftype, "complained"))
        return BounceReport(tuple(recipients), None, False, feedback_type=ftype)
    if kind == "delivery":
        return BounceReport((), None, False)
    return None


# ---------------------------------------------------------------------------------------------------------
# RFC 3464


_SUCCESS_ACTIONS = ("delivered", "relayed", "expanded", "deliverable")


def _dsn_report(parts: M.Parts, notice_full: str, ctx: _Context) -> BounceReport | None:
    groups: list[dict[str, str]] = []
    for part in parts.status_parts:
        groups.extend(M.status_groups(part))
    if not groups and re.search(r"^(?:Final|Original)-Recipient:", notice_full, re.M | re.I) and re.search(
        r"^(?:Action|Status):", notice_full, re.M | re.I
    ):
        # A delivery-status block pasted into a text part (mislabelled, or a multipart without boundaries).
        groups = [g for g in M.groups_from_text(notice_full) if any(k in g for k in M.RECIPIENT_FIELDS)]
    if not groups:
        return None

    reporting_mta: str | None = None
    candidates: list[_Candidate] = []
    saw_success = False
    for group in groups:
        if "reporting-mta" in group and reporting_mta is None:
            reporting_mta = M.strip_type(group["reporting-mta"])[1].strip("[] ").lower() or None
        if not any(k in group for k in M.RECIPIENT_FIELDS):
            continue
        # Original-Recipient (RFC 3461 ORCPT) is the address given at RCPT TO, i.e. the member's;
        # Final-Recipient may be where an alias or a forward led.
        address = None
        for key in ("original-recipient", "final-recipient", "x-actual-recipient"):
            address = M.field_address(group.get(key))
            if address:
                break
        diag_type, diagnostic = M.strip_type(group.get("diagnostic-code", ""))
        status = find_status(group["status"]) if group.get("status") else None
        words = (group.get("action") or "").split()
        action = words[0].lower() if words else {"2": "delivered", "4": "delayed"}.get((status or "5")[0], "failed")
        if action in _SUCCESS_ACTIONS:
            saw_success = True
            continue
        action = "delayed" if action.startswith(("delay", "defer")) else "failed"
        address = address or M.first_address(diagnostic)
        if address is None:
            continue
        vendor = POWERMTA_CATEGORIES.get((group.get("x-powermta-bouncecategory") or "").strip().lower())
        candidates.append(_Candidate(address, diagnostic, status, action, diag_type, vendor))

    if not candidates:
        # Success-only DSNs are delivery reports, never posts; a DSN naming nobody usable falls through
        # to the plain-text reading.
        return BounceReport((), reporting_mta, True) if saw_success else None

    notice = ctx.notice
    in_text = {c.address: c for c in _text_candidates(notice, ctx.excluded, ctx.never)}
    stage_hint = _transcript_stage_hint(notice)
    single = len(candidates) == 1
    recipients = []
    for cand in candidates:
        text_cand = in_text.get(cand.address)
        if not cand.diagnostic and text_cand is not None:
            cand.diagnostic = text_cand.diagnostic
        context = notice if single else (text_cand.diagnostic if text_cand else "")
        recipients.append(_recipient(cand, context=context[:4000], stage_hint=stage_hint, senders=ctx.senders))
    return BounceReport(_dedupe(recipients), reporting_mta, True)


# ---------------------------------------------------------------------------------------------------------
# Plain-text notices


def _looks_like_plain_bounce(msg: Message, parts: M.Parts, subject: str, notice: str, *, is_dsn: bool) -> bool:
    """Is a message without usable RFC 3464 fields a bounce at all?"""
    failed_header = bool(M.header_str(msg, "X-Failed-Recipients").strip())
    if failed_header or is_dsn:
        return True
    from_header = M.decode_header_value(msg.get("From"))
    from_address = M.first_address(from_header) or ""
    daemon_sender = bool(P.DAEMON_FROM_RE.search(from_header))
    daemon_role = from_address.split("@", 1)[0] in P.DAEMON_LOCALPARTS
    null_sender = msg.get("Return-Path") is not None and M.header_str(msg, "Return-Path").strip() in ("<>", "")
    strong_subject = bool(P.BOUNCE_SUBJECT_RE.search(subject))
    weak_subject = strong_subject or bool(P.WEAK_BOUNCE_SUBJECT_RE.search(subject))
    failure_text = bool(P.FAILURE_BODY_RE.search(notice[:8000]))

    # Auto-replies are never bounces. Precedence: bulk/junk alone does not count (many MTAs put it on
    # their bounces), and a daemon describing a failure is a bounce whatever else it says.
    auto = autoreply_reason(msg, subject)
    if auto is not None and not auto.startswith("Precedence") and not (
        daemon_sender and (failure_text or weak_subject)
    ):
        return False
    # "Fwd: Returned mail: ..." written by a person is a message about a bounce, not a bounce.
    forwarded = P.FORWARD_PREFIX_RE.match(subject)
    if forwarded and not daemon_sender and not null_sender and P.BOUNCE_SUBJECT_RE.search(
        subject[forwarded.end() :].lstrip()[:40]
    ):
        return False
    return (
        "delivery-status" in parts.report_types
        or (failure_text and (daemon_sender or null_sender or strong_subject))
        or (weak_subject and daemon_sender)
        or (daemon_role and (null_sender or bool(P.ADDRESS_LINE_RE.search(notice))))
    )


def _plain_report(
    msg: Message, parts: M.Parts, subject: str, original_text: str, ctx: _Context, verp: str | None, depth: int
) -> BounceReport | None:
    notice = ctx.notice
    from_address = M.first_address(M.decode_header_value(msg.get("From"))) or ""
    delayed_notice = bool(P.DELAY_RE.search(subject) or P.DELAY_RE.search(notice[:6000]))

    cands: list[_Candidate] = []
    if from_address.endswith("@aol.com"):
        m = P.AOL_SCREEN_NAMES_RE.search(notice)
        if m:
            cands = [_Candidate(f"{name.lower()}@aol.com", notice[:1500]) for name in m.group(1).split()]
    if not cands:
        cands = _text_candidates(notice, ctx.excluded, ctx.never)
    if not cands and depth < 2:
        # A gateway (antivirus, archiver) that wraps the real bounce and names nobody itself.
        for original in parts.originals:
            if original.get_content_type() == "multipart/report" or P.DAEMON_FROM_RE.search(
                M.decode_header_value(original.get("From"))
            ):
                inner = _analyse(original, verp, depth + 1)
                if inner is not None and inner.recipients:
                    return inner
    # Exim names the failed addresses in a header of its own.
    failed_header = M.header_addresses(msg, ("X-Failed-Recipients",))
    if failed_header:
        by_address = {c.address: c for c in cands}
        cands = [by_address.get(a) or _Candidate(a, notice[:1500]) for a in sorted(failed_header)]
    if not cands and verp:
        cands = [_Candidate(verp, notice[:1500])]
    if not cands:
        cands = _single_original_recipient(parts.originals, original_text, ctx.excluded, notice)

    single = len(cands) == 1
    stage_hint = _transcript_stage_hint(notice)
    recipients = [
        _recipient(
            c,
            context=notice[:4000] if single else "",
            delayed_notice=delayed_notice,
            stage_hint=stage_hint,
            senders=ctx.senders,
        )
        for c in cands
    ]
    return BounceReport(
        _dedupe(recipients), _reporting_mta_from_text(notice, from_address), is_dsn=bool(parts.status_parts)
    )


def _single_original_recipient(
    originals: list[Message], original_text: str, excluded: set[str], notice: str
) -> list[_Candidate]:
    """Last resort for a notice that names nobody: the returned message went to a single address."""
    candidates = list(originals)
    if original_text.strip() and "\n" in original_text:
        head = original_text.split("\n", 1)[1].lstrip("\n")[:20000]
        candidates.append(email.message_from_string(head, policy=email_policy.compat32))
    for original in candidates:
        if original.get("List-Id") or original.get("List-Post"):
            continue  # list mail is addressed To: the list, not to the member who bounced
        to_addrs = [a for a in M.addresses_in(M.decode_header_value(original.get("To", ""))) if a not in excluded]
        if len(to_addrs) == 1:
            return [_Candidate(to_addrs[0], notice[:1500])]
    return []


def _paragraph_after(text: str, start: int, stop: int) -> str:
    """The diagnostic after an address: its line and the next ones, up to a blank line after content."""
    lines = text[start : min(stop, start + 1200)].split("\n")
    kept: list[str] = []
    blank_after_content = False
    for i, line in enumerate(lines):
        if not line.strip():
            blank_after_content = blank_after_content or len(kept) > 1
            continue
        if blank_after_content and not line[:1].isspace() and i > 1:
            break
        kept.append(line.strip())
        if len(kept) >= 12:
            break
    return " ".join(kept)


_TRANSCRIPT_STAGES = {
    "RCPT": " in reply to rcpt to ",
    "DATA": " after end of data ",
    ".": " after end of data ",
    "MAIL": " in reply to mail from ",
}


def _transcript_command(line: str) -> str:
    return line.strip()[4:].split(":", 1)[0].split(" ", 1)[0].upper()


def _text_candidates(notice: str, excluded: set[str], never: set[str]) -> list[_Candidate]:
    """Addresses a plain-text notice names as failed, each with the text that explains it.

    Layout tiers, most reliable first: an address opening a line (qmail, Postfix, Exchange, Exim,
    Domino, ...); a Sendmail transcript line; a labelled address ("Unknown user: x", "to <x>"); the
    first address mentioned at all. The first tier that names someone other than the original sender
    wins.
    """
    text = M.URL_RE.sub(" ", notice)
    tiers: list[list[tuple[int, str]]] = [
        [(m.start(), M.normalise_address(m.group("addr"))) for m in regex.finditer(text)]
        for regex in (P.ADDRESS_LINE_RE, P.TRANSCRIPT_RE, P.LABELLED_RE)
    ]
    # An address merely mentioned in prose: only the first counts; later ones are usually advice
    # ("try NAME@other.host instead", "contact help@...").
    mentioned = [(m.start(), M.normalise_address(m.group(0))) for m in P.ADDRESS_RE.finditer(text)]
    tiers.append([(pos, a) for pos, a in mentioned if a not in excluded and not M.is_role_address(a)][:1])

    chosen: list[tuple[int, str]] = []
    chosen_tier = -1
    for index, tier in enumerate(tiers):
        usable = [(pos, a) for pos, a in tier if a not in excluded and not M.is_role_address(a)]
        if usable:
            chosen, chosen_tier = usable, index
            break
    if not chosen:
        # People do mail themselves, and postmaster@ does bounce: when nothing else is named, an address
        # in a failed-address layout (not a stray mention) is the recipient after all.
        for index, tier in enumerate(tiers[:3]):
            usable = [(pos, a) for pos, a in tier if a not in never]
            if usable:
                chosen, chosen_tier = usable, index
                break
    if not chosen:
        return []

    # The first mention of each address; its diagnostic runs to the next chosen address.
    firsts: dict[str, int] = {}
    for pos, address in sorted(chosen):
        firsts.setdefault(address, pos)
    ordered = sorted(firsts.items(), key=lambda item: item[1])
    line_starts = [text.rfind("\n", 0, pos) + 1 for _, pos in ordered]
    candidates: list[_Candidate] = []
    for index, (address, _pos) in enumerate(ordered):
        start = line_starts[index]
        stop = line_starts[index + 1] if index + 1 < len(ordered) else len(text)
        hint = ""
        if chosen_tier == 1:
            # Sendmail transcript ("554 <user@host>... reason"): one line per recipient; the next line
            # already belongs to the next one. The SMTP command answered is the nearest ">>> X" above.
            end = text.find("\n", start)
            diagnostic = text[start : end if end >= 0 else len(text)].strip()
            above = text[max(0, start - 600) : start].splitlines()
            for line in reversed(above[-6:]):
                if line.lstrip().startswith(">>> "):
                    hint = _TRANSCRIPT_STAGES.get(_transcript_command(line), " ")
                    break
        else:
            diagnostic = _paragraph_after(text, start, stop)
        candidates.append(_Candidate(address, diagnostic, stage_hint=hint))
        # Sendmail/Postfix "(expanded from: alias)": the alias is the address the list mailed.
        m = P.EXPANDED_FROM_RE.search(diagnostic)
        if m and M.normalise_address(m.group("addr")) not in firsts:
            candidates.append(_Candidate(M.normalise_address(m.group("addr")), diagnostic))
    return candidates[:MAX_RECIPIENTS]


_TRANSCRIPT_ERROR_RE = re.compile(r"^<<< [45]\d\d")


def _transcript_stage_hint(notice: str) -> str:
    """In a Sendmail transcript, the command the first error answered (">>> DATA" then "<<< 554 ...")."""
    last_command = ""
    for line in notice.splitlines()[:400]:
        stripped = line.strip()
        if stripped.startswith(">>> "):
            last_command = _transcript_command(stripped)
        elif last_command and _TRANSCRIPT_ERROR_RE.match(stripped):
            return _TRANSCRIPT_STAGES.get(last_command, "") if last_command in ("RCPT", "DATA", ".") else ""
    return ""


def _reporting_mta_from_text(notice: str, from_address: str) -> str | None:
    for regex in P.REPORTING_MTA_RES:
        m = regex.search(notice)
        if m:
            return m.group(1).lower().rstrip(".")
    if from_address and M.is_role_address(from_address):
        return from_address.split("@", 1)[1]
    return None


# ---------------------------------------------------------------------------------------------------------
# One recipient: status, action, reason, hard


_REPLY_CODE_NEAR_RE = re.compile(r"\b[45]\d\d[ -]")


def _quoted_in_reply(address: str, text: str) -> bool:
    """Does an SMTP reply ("550 ...") quote this address within its first 40 characters?"""
    start = text.find(address)
    while start >= 0:
        if _REPLY_CODE_NEAR_RE.search(text, max(0, start - 44), start):
            return True
        start = text.find(address, start + 1)
    return False


def _recipient(
    cand: _Candidate,
    *,
    context: str,
    delayed_notice: bool = False,
    stage_hint: str = "",
    senders: set[str] | frozenset[str] = frozenset(),
) -> BouncedRecipient:
    diagnostic = cand.diagnostic
    status = cand.status
    in_text = find_status(diagnostic)
    if status is None or (status.endswith(".0.0") and in_text and in_text[0] == status[0]):
        # "Status: 5.0.0" with "550 5.1.1 ..." in the diagnostic: the specific code is the real one.
        status = in_text or status
    if status is None and context:
        status = find_status(context)
    reply_code = find_reply_code(diagnostic)
    action = cand.action
    if action == "failed" and delayed_notice and (status is None or status.startswith("4")):
        action = "delayed"
    delayed = action == "delayed"

    if cand.vendor_reason:
        reason = cand.vendor_reason
    elif cand.diag_type == "x-unix" and reason_from_text(diagnostic) != "mailboxfull":
        # A local delivery program (procmail, a pipe) failed: its words are not the mailbox's status.
        reason = "mailererror"
    else:
        reason = classify(diagnostic + (cand.stage_hint or stage_hint), status, delayed=delayed, context=context)
    if reason in ("userunknown", "hostunknown", "notaccept") and senders:
        # The remote server quoted *our sender* address, not the recipient's ("550 <list-bounces@...>
        # Domain is invalid"): it refuses the sender and says nothing about the member's mailbox.
        low = diagnostic.lower()
        answer = low.split(cand.address, 1)[1] if low.startswith(("<" + cand.address, cand.address)) else low
        if cand.address not in answer and any(_quoted_in_reply(s, answer) for s in senders):
            reason = "rejected"
    hard = is_hard(reason, status, reply_code, delayed=delayed)
    return BouncedRecipient(
        address=cand.address,
        hard=hard,
        status=status,
        reason=reason,
        diagnostic=" ".join(diagnostic.split())[:500],
        action=action,
    )


def relay_refusal(address: str, code: int, text: str, *, stage: str, sender: str = "") -> BouncedRecipient:
    """The relay's permanent refusal of one copy (``code`` 5xx answered at ``stage`` "RCPT" or "DATA"), read
    as a DSN with the same words would be: the same reason and the same hard/soft verdict, so a member's
    bounce score does not depend on whether the refusal came back at once or later as a report.

    ``sender``: our return path for that copy, so that a refusal quoting it ("550 <forum-bounces+...>
    Domain is invalid") is read as a refusal of the sender, not of the member's mailbox.
    """
    if not 500 <= code < 600:
        raise ValueError(f"a relay refusal is a 5xx reply, not {code}")
    if stage not in _TRANSCRIPT_STAGES:
        raise ValueError(f"unknown SMTP stage {stage!r}: one of {', '.join(_TRANSCRIPT_STAGES)}")
    words = " ".join(text.split())
    cand = _Candidate(
        address=address.strip().strip("<>").lower(), diagnostic=f"{code} {words}"[:2000],
        stage_hint=_TRANSCRIPT_STAGES[stage],
    )
    return _recipient(cand, context="", senders=frozenset({sender.lower()}) if sender else frozenset())


def _dedupe(recipients: Iterable[BouncedRecipient]) -> tuple[BouncedRecipient, ...]:
    """One entry per address, keeping the most informative one."""
    seen: dict[str, BouncedRecipient] = {}
    for r in recipients:
        previous = seen.get(r.address)
        if (
            previous is None
            or (r.hard and not previous.hard)
            or (previous.reason == "undefined" and r.reason != "undefined")
        ):
            seen[r.address] = r
    return tuple(seen.values())[:MAX_RECIPIENTS]


__all__ = ["MAX_INPUT_BYTES", "BounceReport", "BouncedRecipient", "parse_bounce", "relay_refusal"]
