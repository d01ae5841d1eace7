"""Build the copy of a post that one member receives, from the archived message and its original bytes.

The copy is the original message, byte for byte below the header block (same MIME structure, same body,
so DKIM body hashes still verify), with its Message-ID, In-Reply-To, References and Date untouched (so
every member's mail client threads it like the archive does), plus the list headers:

* RFC 2919 List-Id; RFC 2369 List-Post, List-Help, List-Subscribe, List-Unsubscribe, List-Archive;
  RFC 5064 Archived-At (the message's permalink); RFC 8058 List-Unsubscribe-Post (one-click unsubscribe,
  required by the large mailbox providers for bulk senders);
* X-Loop and Precedence: list, so that our own copies coming back are recognised and vacation programs
  keep quiet (RFC 3834 2.);
* and, when the author's domain publishes a DMARC p=reject/quarantine policy, From rewritten to the list
  ("Author via Forum" <forum@domain>) with Reply-To as configured.

Headers of the original that would mislead are removed: a previous list's List-* headers, Return-Path and
Delivered-To (Postfix refuses a message whose Delivered-To names the final recipient: "mail forwarding
loop"), Precedence, Bcc.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy as email_policy
from email.headerregistry import Address
from email.message import EmailMessage
from urllib.parse import quote

from passerelle.config import Settings
from passerelle.mail.headers import decode_header_value

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


@dataclass(frozen=True)
class CopyTemplate:
    """One post's copy for every member of a list, but for the one field that differs per member: its
    List-Unsubscribe (the member's own one-click link). Built once per post, rendered per recipient."""

    head: bytes
    tail: bytes
    request: str

    def render(self, unsubscribe_url: str) -> bytes:
        """The bytes of the copy whose List-Unsubscribe carries ``unsubscribe_url``."""
        field = header_line("List-Unsubscribe", _unsubscribe_value(unsubscribe_url, self.request))
        return self.head + field + self.tail


def build_post_copy(
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
) -> bytes:
    """The bytes of one member's copy.

    ``rewrite_from``: the author's domain has a strict DMARC policy. ``add_message_id``: the original had
    no usable Message-ID and the archive assigned ``info.message_id``. ``replacement_text``: a moderator's mail
    whose commands were removed: the copy carries that text as its single text/plain part, and
    ``replacement_subject`` as its Subject.
    """
    template = post_copy_template(
        settings, raw, info, author_name=author_name, author_addr=author_addr, rewrite_from=rewrite_from,
        add_message_id=add_message_id, replacement_text=replacement_text, replacement_subject=replacement_subject,
    )
    return template.render(info.unsubscribe_url)


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
    """What :func:`build_post_copy` builds, for every recipient at once (``info.unsubscribe_url`` unused)."""
    headers, body = split_message(raw)
    drop = set(_REMOVED)
    out: list[bytes] = []
    if rewrite_from:
        drop |= {"from", "reply-to"}
    prefix = settings.lists.subject_prefix.strip()
    subject_present = any(name == "subject" for name, _ in headers)
    if prefix or replacement_subject is not None:
        drop.add("subject")
    if replacement_subject is not None:
        with_prefix = prefix and prefix.lower() not in replacement_subject.lower()
        out.append(header_line("Subject", f"{prefix} {replacement_subject}" if with_prefix else replacement_subject))
    if replacement_text is not None:
        drop |= _MIME_HEADERS
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
    if rewrite_from:
        out.extend(_rewritten_from(settings, headers, info, author_name=author_name, author_addr=author_addr))
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
    return CopyTemplate(
        head=head, tail=b"".join(after) + b"\r\n" + body, request=f"{info.list_name}-request@{settings.lists.domain}"
    )


def _prefixed_subject(field: bytes, prefix: str) -> bytes:
    value = field.split(b":", 1)[1].decode("ascii", "surrogateescape")
    subject = decode_header_value(value)
    if prefix.lower() in subject.lower():
        return field
    return header_line("Subject", f"{prefix} {subject}")


def _rewritten_from(
    settings: Settings,
    headers: Sequence[tuple[str, bytes]],
    info: CopyHeaders,
    *,
    author_name: str,
    author_addr: str,
) -> list[bytes]:
    list_addr = f"{info.list_name}@{settings.lists.domain}"
    who = author_name or author_addr.split("@", 1)[0]
    display = f"{who} via {info.list_title or info.list_name}"
    lines = [header_line("From", _address(display, list_addr))]
    original_reply_to = [field.split(b":", 1)[1].strip().decode("ascii", "surrogateescape")
                         for name, field in headers if name == "reply-to"]
    author = original_reply_to[0] if original_reply_to else _address(author_name, author_addr)
    policy = settings.dmarc.reply_to
    if policy == "list":
        reply_to = list_addr
    elif policy == "both":
        reply_to = f"{author}, {list_addr}"
    else:
        reply_to = author
    if original_reply_to and policy != "list":
        # The author's own Reply-To is kept as written (already encoded); only folding whitespace changes.
        lines.append(b"Reply-To: " + " ".join(reply_to.split()).encode("ascii", "surrogateescape") + b"\r\n")
    else:
        lines.append(header_line("Reply-To", reply_to))
    return lines


__all__ = [
    "CopyHeaders",
    "CopyTemplate",
    "archive_urls",
    "build_post_copy",
    "header_line",
    "list_headers",
    "normalize_line_endings",
    "post_copy_template",
    "split_message",
]
