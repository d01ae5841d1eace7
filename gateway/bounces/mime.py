"""Reading a bounce: MIME walking, text decoding, addresses, RFC 3464 field groups.

Everything here tolerates broken mail: undeclared charsets (ISO-2022-JP from Japanese MTAs), multiparts
whose boundary never appears, transfer-encoded delivery-status parts, 8-bit headers that the compat32
parser hands back as Header objects. Nothing here decides what the bounce means; see parse.py.
"""

from __future__ import annotations

import base64
import binascii
import email
import html as html_lib
import quopri
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from email import policy as email_policy
from email.header import decode_header, make_header
from email.message import Message

from gateway.bounces import patterns as P

# Bounds: the failure description always sits near the top; the returned original can be huge.
MAX_PARTS = 64
MAX_TEXT_CHARS = 65_536


def header_str(msg: Message, name: str) -> str:
    """A raw header as str (compat32 hands back Header objects for undecodable 8-bit values)."""
    value = msg.get(name)
    return "" if value is None else str(value)


def decode_header_value(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    if "=?" not in text:
        return text
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, UnicodeError, AssertionError):
        return text


def fix_jis(text: str) -> str:
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


def part_text(part: Message) -> str:
    try:
        data = part.get_payload(decode=True)
    except (ValueError, AssertionError, LookupError):
        data = None
    if not isinstance(data, bytes):
        payload = part.get_payload()
        if isinstance(payload, str):
            return fix_jis(payload[:MAX_TEXT_CHARS])
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


URL_RE = re.compile(r"(?:https?|ftp)://\S+|\bwww\.\S+", re.IGNORECASE)


_ADDRESS_JUNK_PREFIX = re.compile(r"^(?:smtp=|rfc822[=;:]|mailto:|['`])+", re.IGNORECASE)


def normalise_address(address: str) -> str:
    """Lower-case; drop what a layout glued to the local part (X.400 "SMTP=", a stray opening quote)."""
    return _ADDRESS_JUNK_PREFIX.sub("", address.strip()).lower()


def addresses_in(text: str) -> list[str]:
    return [normalise_address(m.group(0)) for m in P.ADDRESS_RE.finditer(URL_RE.sub(" ", text))]


def first_address(text: str) -> str | None:
    found = addresses_in(text)
    return found[0] if found else None


def is_role_address(address: str) -> bool:
    return address.split("@", 1)[0] in P.ROLE_LOCALPARTS


def header_addresses(msg: Message | None, names: Iterable[str]) -> set[str]:
    if msg is None:
        return set()
    found: set[str] = set()
    for name in names:
        for value in msg.get_all(name) or ():
            found.update(addresses_in(decode_header_value(value)))
    return found


# ---------------------------------------------------------------------------------------------------------
# Walking the MIME tree without descending into the returned original message


@dataclass
class Parts:
    texts: list[str]
    status_parts: list[Message]
    feedback_parts: list[Message]
    originals: list[Message]
    report_types: set[str]


def collect_parts(msg: Message) -> Parts:
    parts = Parts([], [], [], [], set())
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
                parts.texts.append(fix_jis(payload[:MAX_TEXT_CHARS]))
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
            parts.originals.append(email.message_from_string(part_text(part), policy=email_policy.compat32))
        elif ctype == "text/html":
            html.append(part_text(part))
        elif part.get_content_maintype() == "text" or (ctype == "application/octet-stream" and depth == 0):
            disposition = header_str(part, "Content-Disposition").lower()
            filename = (part.get_filename() or "").lower()
            if disposition.startswith("attachment") and filename.endswith((".eml", ".msg")):
                return
            parts.texts.append(part_text(part))

    visit(msg, 0)
    if not parts.texts and html:
        parts.texts.extend(html)
    return parts


# ---------------------------------------------------------------------------------------------------------
# RFC 3464 field groups

_FIELD_RE = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
RECIPIENT_FIELDS = ("final-recipient", "original-recipient", "x-actual-recipient")


def _groups_from_pairs(pairs: Iterable[tuple[str, str]]) -> list[dict[str, str]]:
    """Field groups; a repeated recipient field starts a new group (some MTAs omit the blank line)."""
    groups: list[dict[str, str]] = []
    current: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()
        if key == "final-recipient" and "final-recipient" in current:
            groups.append(current)
            current = {}
        current.setdefault(key, " ".join(fix_jis(value).split()))
    if current:
        groups.append(current)
    return groups


def pairs_from_text(text: str) -> Iterator[tuple[str, str] | None]:
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


def groups_from_text(text: str) -> list[dict[str, str]]:
    groups: list[dict[str, str]] = []
    block: list[tuple[str, str]] = []
    for pair in pairs_from_text(text):
        if pair is None:
            if block:
                groups.extend(_groups_from_pairs(block))
                block = []
        else:
            block.append(pair)
    if block:
        groups.extend(_groups_from_pairs(block))
    return groups


def status_groups(part: Message) -> list[dict[str, str]]:
    payload = part.get_payload()
    cte = header_str(part, "Content-Transfer-Encoding").strip().lower()
    if isinstance(payload, list) and cte not in ("base64", "quoted-printable"):
        groups: list[dict[str, str]] = []
        for sub in payload:
            if not isinstance(sub, Message):
                continue
            groups.extend(_groups_from_pairs((k, str(v)) for k, v in sub.items()))
            body = sub.get_payload()
            if isinstance(body, str) and body.strip():
                groups.extend(groups_from_text(body))
        return groups
    if isinstance(payload, list):
        # A transfer-encoded delivery-status part (RFC 3464 forbids it, Exchange does it): the parser
        # split undecoded text into fake headers; decode the original serialised text ourselves.
        raw = "\n\n".join(_message_fields_text(p) for p in payload if isinstance(p, Message))
        if cte == "base64":
            try:
                raw = base64.b64decode("".join(raw.split()), validate=False).decode("utf-8", "replace")
            except (binascii.Error, ValueError):
                return []
        else:
            raw = quopri.decodestring(raw.encode("latin-1", "replace")).decode("utf-8", "replace")
        return groups_from_text(raw)
    return groups_from_text(part_text(part))


def field_address(value: str | None) -> str | None:
    if not value:
        return None
    if ";" in value:
        value = value.split(";", 1)[1]
    return first_address(value.strip().strip("<>\"' "))


def strip_type(value: str) -> tuple[str, str]:
    """"smtp; 550 ..." -> ("smtp", "550 ...")."""
    m = re.match(r"^\s*([A-Za-z][A-Za-z0-9-]*)\s*;\s*(.*)$", value, re.DOTALL)
    if m:
        return m.group(1).lower(), m.group(2).strip()
    return "", value.strip()


