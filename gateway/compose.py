"""Build the copy of a post that one member receives, from the archived message and its original bytes.

The copy is the original message, byte for byte below the header block (same MIME structure, same body,
so DKIM body hashes still verify), with its Message-ID, In-Reply-To, References and Date untouched (so
every member's mail client threads it like the archive does), plus the list headers:

* RFC 2919 List-Id; RFC 2369 List-Post, List-Help, List-Subscribe, List-Unsubscribe, List-Archive;
  RFC 5064 Archived-At (the message's permalink); RFC 8058 List-Unsubscribe-Post (one-click unsubscribe,
  required by the large mailbox providers for bulk senders);
* X-Loop and Precedence: list, so that our own copies coming back are recognised and vacation programs
  keep quiet (RFC 3834 2.);
* when the author's domain publishes a DMARC p=reject/quarantine policy, From rewritten to the list
  ("Author via Forum" <forum@domain>);
* Reply-To (and Cc) as ``lists.reply_to`` says: by default the list, so that "Reply" answers in the forum.

Headers of the original that would mislead are removed: a previous list's List-* headers, Return-Path and
Delivered-To (Postfix refuses a message whose Delivered-To names the final recipient: "mail forwarding
loop"), Precedence, Bcc.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Required, TypedDict, Unpack
from urllib.parse import quote

from passerelle.config import Settings
from passerelle.mail.headers import decode_bytes, decode_header_value, lookup_charset

_HEADER_NAME = re.compile(rb"^([!-9;-~]+)[ \t]*:")
_LINE_END = re.compile(rb"\r\n|\n|\r(?!\n)")

# Removed from the original before our own headers are added.
_REMOVED = frozenset(
    {
        "return-path", "delivered-to", "x-original-to", "list-id", "list-post", "list-archive", "list-help",
        "list-subscribe", "list-unsubscribe", "list-unsubscribe-post", "list-owner", "archived-at",
        "precedence", "bcc", "x-loop",
    }
)
_MIME_HEADERS = frozenset({"mime-version", "content-type", "content-transfer-encoding", "content-disposition"})


def normalize_line_endings(raw: bytes) -> bytes:
    """CRLF everywhere (RFC 5321 2.3.8): spools fed from files or IMAP may hold bare LFs."""
    if b"\n" not in raw.replace(b"\r\n", b""):
        return raw
    return _LINE_END.sub(b"\r\n", raw)


def split_message(raw: bytes) -> tuple[list[tuple[str, bytes]], bytes]:
    """(header fields as (lower-cased name, full folded bytes with CRLF), body bytes).

    The header block ends at the first empty line, or at the first line that is neither a header nor a
    continuation (as the stdlib parser does, with a defect): that line then belongs to the body.
    An mbox "From " line at the very top is dropped.
    """
    data = normalize_line_endings(raw)
    if data.startswith(b"From ") and b"\r\n" in data:
        data = data.split(b"\r\n", 1)[1]
    headers: list[tuple[str, bytes]] = []
    pos = 0
    length = len(data)
    while pos < length:
        end = data.find(b"\r\n", pos)
        line_end = length if end < 0 else end + 2
        line = data[pos:line_end]
        if line in (b"\r\n", b""):
            pos = line_end
            break
        if line[:1] in (b" ", b"\t") and headers:
            name, value = headers[-1]
            headers[-1] = (name, value + line)
        else:
            match = _HEADER_NAME.match(line)
            if match is None:
                break
            headers.append((match.group(1).decode("ascii").lower(), line))
        pos = line_end
    for i, (name, value) in enumerate(headers):
        if not value.endswith(b"\r\n"):
            headers[i] = (name, value + b"\r\n")
    return headers, data[pos:]


def _fold_ascii(name: str, value: str) -> bytes:
    line = f"{name}: {value}"
    if len(line) <= 78 or ", " not in value:
        return line.encode("ascii") + b"\r\n"
    return (f"{name}: " + ",\r\n ".join(value.split(", "))).encode("ascii") + b"\r\n"


def header_line(name: str, value: str) -> bytes:
    """One header field as bytes: ASCII values as they are (folded at commas), others RFC 2047-encoded."""
    value = " ".join(value.replace("\r", " ").replace("\n", " ").split())
    if value.isascii():
        return _fold_ascii(name, value)
    smtp = email_policy.SMTP
    return smtp.header_factory(name, value).fold(policy=smtp).encode("ascii", "replace")


def _address(name: str, addr: str) -> str:
    try:
        return str(Address(display_name=name, addr_spec=addr))
    except (ValueError, IndexError):
        # An addr-spec the stdlib refuses (odd local part): keep it bracketed as received.
        return f"<{addr}>" if not name else f'"{name.replace(chr(34), "")}" <{addr}>'


@dataclass(frozen=True)
class CopyHeaders:
    """What the list headers of one copy need."""

    list_name: str
    list_title: str
    topic_id: int
    message_id: str
    unsubscribe_url: str


def archive_urls(settings: Settings, *, topic_id: int, message_id: str) -> tuple[str, str]:
    """(topic URL, message permalink): /t/<topic id> and /m/<Message-ID, URL-quoted>."""
    base = settings.site.base_url.rstrip("/")
    return f"{base}/t/{topic_id}", f"{base}/m/{quote(message_id, safe='@')}"


def _unsubscribe_value(unsubscribe_url: str, request: str) -> str:
    return f"<{unsubscribe_url}>, <mailto:{request}?subject=unsubscribe>"


def list_headers(settings: Settings, info: CopyHeaders) -> list[tuple[str, str]]:
    domain = settings.lists.domain
    base = settings.site.base_url.rstrip("/")
    post = f"{info.list_name}@{domain}"
    request = f"{info.list_name}-request@{domain}"
    _, permalink = archive_urls(settings, topic_id=info.topic_id, message_id=info.message_id)
    label = info.list_title.replace('"', "").strip()
    list_id = f"<{info.list_name}.{domain}>"
    return [
        ("List-Id", f"{label} {list_id}" if label else list_id),
        ("List-Post", f"<mailto:{post}>"),
        ("List-Help", f"<mailto:{request}?subject=help>"),
        ("List-Subscribe", f"<mailto:{request}?subject=subscribe>"),
        ("List-Unsubscribe", _unsubscribe_value(info.unsubscribe_url, request)),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("List-Archive", f"<{base}/>"),
        ("Archived-At", f"<{permalink}>"),
        ("X-Loop", post),
        ("Precedence", "list"),
    ]


def _text_body(text: str) -> tuple[list[tuple[str, bytes]], bytes]:
    """MIME headers and body of a single text/plain part (quoted-printable: safe through any relay)."""
    part = EmailMessage()
    part.set_content(text, cte="quoted-printable")
    return split_message(part.as_bytes(policy=email_policy.SMTP))


# The MIME fields of an original whose body is given a charset label (see _labelled_utf8_body).
_RELABELLED = frozenset({"mime-version", "content-type", "content-transfer-encoding"})
# RFC 5322 2.1.1 / RFC 2045 2.8: 8bit data has lines of at most 998 octets and no NUL.
_MAX_8BIT_LINE = 998


def _labelled_utf8_body(headers: Sequence[tuple[str, bytes]], body: bytes) -> tuple[bytes, bytes] | None:
    """The MIME fields and body (joined by the empty line) of a copy whose text the original did not label:
    a single text/plain body with 8-bit characters and no Content-Type, or one declaring us-ascii. RFC 2045
    5.2 makes such a body us-ascii, so mail programs show its accents as garbage; the copy carries the text
    the archive decoded (passerelle.mail.headers.decode_bytes: UTF-8, else windows-1252/latin-1), in UTF-8,
    labelled so. Returns (8bit version, quoted-printable version): the first for a relay that announced
    8BITMIME (RFC 6152; the bytes of a UTF-8 original are then unchanged, so its DKIM body hash still
    verifies), the second for one that did not. None when the original needs nothing (labelled, ASCII, or
    not a single text/plain part)."""
    fields = [field for name, field in headers if name in ("content-type", "content-transfer-encoding")]
    if not fields and body.isascii():
        return None
    # The header fields alone first: most mail is labelled or multipart, and is not parsed any further.
    mime = message_from_bytes(b"".join(fields) + b"\r\n", policy=email_policy.compat32)
    if mime.get_content_type() != "text/plain":
        return None
    label = mime.get_content_charset()
    if label is not None and lookup_charset(label) != "ascii":
        return None
    cte = str(mime.get("content-transfer-encoding", "")).strip().lower()
    if cte not in ("", "7bit", "8bit", "binary", "quoted-printable", "base64"):
        return None
    if cte in ("", "7bit", "8bit", "binary"):
        if body.isascii():
            return None
        data: object = body
    else:
        data = message_from_bytes(b"".join(fields) + b"\r\n" + body, policy=email_policy.compat32).get_payload(
            decode=True
        )
    if not isinstance(data, bytes) or data.isascii():
        return None
    text, _ = decode_bytes(data, label)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # RFC 3676 parameters, kept when they hold one of their defined values (nothing else is copied).
    allowed = {"format": ("flowed", "fixed"), "delsp": ("yes", "no")}
    params = {
        name: value for name, values in allowed.items()
        if (value := str(mime.get_param(name) or "").strip().lower()) in values
    }
    qp = EmailMessage()
    qp.set_content(text, cte="quoted-printable", params=params)
    qp_fields, qp_body = split_message(qp.as_bytes(policy=email_policy.SMTP))
    seven_bit = b"".join(field for _, field in qp_fields) + b"\r\n" + qp_body
    utf8 = text.replace("\n", "\r\n").encode("utf-8")
    if "\x00" in text or any(len(line) > _MAX_8BIT_LINE for line in utf8.split(b"\r\n")):
        return seven_bit, seven_bit
    ctype = "text/plain; charset=utf-8" + "".join(f"; {name}={value}" for name, value in params.items())
    fields = f"MIME-Version: 1.0\r\nContent-Type: {ctype}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    return fields.encode("ascii") + utf8, seven_bit


@dataclass(frozen=True)
class CopyTemplate:
    """One post's copy for every member of a list, but for the one field that differs per member: its
    List-Unsubscribe (the member's own one-click link). Built once per post, rendered per recipient."""

    head: bytes
    tail: bytes
    request: str
    # The tail for a relay that did not announce 8BITMIME (RFC 6152), when the copy's own 8-bit body has a
    # 7-bit form (see _labelled_utf8_body); None when ``tail`` is the only form.
    tail_7bit: bytes | None = None

    def render(self, unsubscribe_url: str, *, eight_bit: bool = True) -> bytes:
        """The bytes of the copy whose List-Unsubscribe carries ``unsubscribe_url``; with ``eight_bit``
        False, its 7-bit form when it has one."""
        field = header_line("List-Unsubscribe", _unsubscribe_value(unsubscribe_url, self.request))
        if not eight_bit and self.tail_7bit is not None:
            return self.head + field + self.tail_7bit
        return self.head + field + self.tail


class PostCopyOptions(TypedDict, total=False):
    """The keyword arguments of :func:`build_post_copy`: those of :func:`post_copy_template`."""

    author_name: Required[str]
    author_addr: Required[str]
    rewrite_from: Required[bool]
    add_message_id: bool
    replacement_text: str | None
    replacement_subject: str | None


def build_post_copy(settings: Settings, raw: bytes, info: CopyHeaders, **options: Unpack[PostCopyOptions]) -> bytes:
    """The bytes of one member's copy: :func:`post_copy_template` rendered with ``info.unsubscribe_url``."""
    return post_copy_template(settings, raw, info, **options).render(info.unsubscribe_url)


def post_copy_template(
    settings: Settings,
    raw: bytes,
    info: CopyHeaders,
    *,
    author_name: str,
    author_addr: str,
    rewrite_from: bool,
    add_message_id: bool = False,
    replacement_text: str | None = None,
    replacement_subject: str | None = None,
) -> CopyTemplate:
    """One post's copy for every recipient of a list at once (``info.unsubscribe_url`` unused: each
    recipient's link is given to :meth:`CopyTemplate.render`).

    ``rewrite_from``: the author's domain has a strict DMARC policy. ``add_message_id``: the original had
    no usable Message-ID and the archive assigned ``info.message_id``. ``replacement_text``: a moderator's mail
    whose commands were removed: the copy carries that text as its single text/plain part, and
    ``replacement_subject`` as its Subject.
    """
    headers, body = split_message(raw)
    drop = set(_REMOVED)
    out: list[bytes] = []
    fields_replaced, reply_fields = _reply_fields(
        settings, headers, info, author_name=author_name, author_addr=author_addr, rewrite_from=rewrite_from
    )
    drop |= fields_replaced
    prefix = settings.lists.subject_prefix.strip()
    subject_present = any(name == "subject" for name, _ in headers)
    if prefix or replacement_subject is not None:
        drop.add("subject")
    if replacement_subject is not None:
        with_prefix = prefix and prefix.lower() not in replacement_subject.lower()
        out.append(header_line("Subject", f"{prefix} {replacement_subject}" if with_prefix else replacement_subject))
    if replacement_text is not None:
        drop |= _MIME_HEADERS
    labelled = _labelled_utf8_body(headers, body) if replacement_text is None else None
    if labelled is not None:
        drop |= _RELABELLED
    if add_message_id:
        # The original had no usable Message-ID (none, or garbage): the archive's id replaces it.
        drop.add("message-id")
    for name, field in headers:
        if name in drop:
            if name == "subject" and prefix and replacement_subject is None:
                out.append(_prefixed_subject(field, prefix))
            continue
        if rewrite_from and name == "sender":
            # Keep a Sender of the author's domain out of the way of DMARC-checking receivers too.
            continue
        out.append(field)
    if prefix and not subject_present and replacement_subject is None:
        out.append(header_line("Subject", prefix))
    if add_message_id:
        out.append(header_line("Message-ID", f"<{info.message_id}>"))
    out.extend(reply_fields)
    head = b"".join(out)
    after: list[bytes] = []
    for name, value in list_headers(settings, info):
        if name == "List-Unsubscribe":
            head += b"".join(after)
            after = []
        else:
            after.append(header_line(name, value))
    if replacement_text is not None:
        mime_headers, body = _text_body(replacement_text)
        after.extend(field for _, field in mime_headers)
    if labelled is not None:
        listed = b"".join(after)
        return CopyTemplate(
            head=head, tail=listed + labelled[0], request=f"{info.list_name}-request@{settings.lists.domain}",
            tail_7bit=listed + labelled[1] if labelled[1] != labelled[0] else None,
        )
    return CopyTemplate(
        head=head, tail=b"".join(after) + b"\r\n" + body, request=f"{info.list_name}-request@{settings.lists.domain}"
    )


def _prefixed_subject(field: bytes, prefix: str) -> bytes:
    value = field.split(b":", 1)[1].decode("ascii", "surrogateescape")
    subject = decode_header_value(value)
    if prefix.lower() in subject.lower():
        return field
    return header_line("Subject", f"{prefix} {subject}")


def _field_value(field: bytes) -> str:
    """The value of one folded header field as received (8-bit bytes kept as surrogates), unfolded."""
    return " ".join(field.split(b":", 1)[1].decode("ascii", "surrogateescape").split())


def _addresses_in(values: Sequence[str]) -> set[str]:
    return {addr.lower() for _, addr in getaddresses([decode_header_value(v) for v in values]) if addr}


def _address_field(name: str, kept: Sequence[str], added: Sequence[str]) -> bytes:
    """One address field: the original's values as written (already RFC 2047-encoded, or raw UTF-8 as some
    clients send them: only folding whitespace changes), then the ``added`` addresses, encoded."""
    if not kept:
        return header_line(name, ", ".join(added))
    parts = [value.encode("ascii", "surrogateescape") for value in kept]
    parts += [header_line(name, address)[len(name) + 2 :].rstrip(b"\r\n") for address in added]
    return f"{name}: ".encode("ascii") + b", ".join(parts) + b"\r\n"


def _reply_fields(
    settings: Settings,
    headers: Sequence[tuple[str, bytes]],
    info: CopyHeaders,
    *,
    author_name: str,
    author_addr: str,
    rewrite_from: bool,
) -> tuple[set[str], list[bytes]]:
    """(fields of the original left out, fields added) that decide where a reply goes (``lists.reply_to``).

    "list": Reply-To the list, so that "Reply" and "Reply all" both post to the forum: mail clients without
    a "reply to list" command (Outlook) have no other way to answer in the discussion. An author's own
    Reply-To (RFC 5322 3.6.2: where they want answers) is kept in front of it, as Mailman does. The author
    stays reachable privately through From; when From is rewritten for DMARC, the author goes into Cc
    (Mailman's munge_from with reply-to-list does the same), so "Reply all" reaches them too.
    "author": replies go to the author: a plain copy keeps the original From/Reply-To untouched; a rewritten
    one gets Reply-To the author (their own Reply-To if they set one).
    "both": Reply-To the author (or their own Reply-To) and the list.
    """
    list_addr = f"{info.list_name}@{settings.lists.domain}"
    author = _address(author_name, author_addr) if author_addr else ""
    # RFC 5322 allows one Reply-To; a second one from a broken client is left out.
    own = [value for value in (_field_value(f) for name, f in headers if name == "reply-to") if value][:1]
    policy = settings.lists.reply_to
    drop: set[str] = set()
    lines: list[bytes] = []
    if rewrite_from:
        who = author_name or author_addr.split("@", 1)[0]
        display = f"{who} via {info.list_title or info.list_name}"
        drop.add("from")
        lines.append(header_line("From", _address(display, list_addr)))
    if policy == "author":
        if rewrite_from and (own or author):
            drop.add("reply-to")
            lines.append(_address_field("Reply-To", own, [] if own else [author]))
        return drop, lines
    known = _addresses_in(own)
    added = [author] if policy == "both" and not own and author else []
    if list_addr.lower() not in known:
        added.append(list_addr)
    drop.add("reply-to")
    lines.append(_address_field("Reply-To", own, added))
    if policy == "list" and rewrite_from and author_addr and author_addr.lower() not in known:
        cc = [value for value in (_field_value(f) for name, f in headers if name == "cc") if value]
        if author_addr.lower() not in _addresses_in(cc):
            drop.add("cc")
            lines.append(_address_field("Cc", cc, [author]))
    return drop, lines


__all__ = [
    "CopyHeaders",
    "CopyTemplate",
    "PostCopyOptions",
    "archive_urls",
    "build_post_copy",
    "header_line",
    "list_headers",
    "normalize_line_endings",
    "post_copy_template",
    "split_message",
]
