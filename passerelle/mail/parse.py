"""Parse one raw message, once, into a frozen :class:`ParsedMessage`.

The stdlib parser runs with ``compat32`` (``policy.default`` is about ten times slower and has
pathological cases); headers are decoded by :mod:`passerelle.mail.headers`, never by the stdlib's
header registry. Input is bounded: total size (``max_bytes``), number of MIME parts, nesting depth
and the size of text parts decoded into the body. Broken charsets, encodings and structures never
raise: they are repaired as well as possible and named in ``defects``. Only input that is not mail
at all raises :class:`MessageParseError`.
"""

from __future__ import annotations

import binascii
import email
import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message
from email.policy import compat32
from email.utils import collapse_rfc2231_value

from .addresses import Address, parse_address, parse_address_list
from .headers import (
    decode_bytes,
    decode_header_value,
    extract_message_ids,
    parse_auto_submitted,
    parse_date,
    parse_list_id,
    parse_message_id,
    parse_precedence,
    raw_to_str,
    strip_comments,
)
from .html_text import html_to_text
from .subject import is_reply_subject, normalize_subject

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 25 * 1024 * 1024
# A real message rarely has more than a few dozen parts; a list digest a few hundred.
MAX_PARTS = 500
MAX_DEPTH = 40
# Text parts larger than this are kept as attachments instead of being decoded into the body.
MAX_TEXT_PART_BYTES = 4 * 1024 * 1024
MAX_TEXT_CHARS = 2_000_000
# Messages deep in a thread carry hundreds of References; the first (thread root) and the most
# recent ones are what threading needs (RFC 5322 3.6.4 allows trimming the middle).
MAX_REFERENCES = 100
SYNTHETIC_ID_DOMAIN = "passerelle.invalid"

# Header fields at least one of which any real message has; their absence means "not mail".
_MAIL_FIELDS = frozenset(
    {
        "from", "to", "cc", "bcc", "subject", "date", "message-id", "received", "return-path",
        "mime-version", "content-type", "sender", "reply-to", "in-reply-to", "references",
        "delivered-to", "x-mailer", "user-agent", "content-transfer-encoding", "list-id", "resent-from",
    }
)  # fmt: skip
_BODY_TEXT_TYPES = frozenset({"text/plain", "text/html"})
# text/* subtypes that are files rather than prose: never folded into the body.
_TEXT_FILE_SUBTYPES = frozenset(
    {"calendar", "vcard", "x-vcard", "directory", "csv", "tab-separated-values", "rtf", "xml", "css",
     "javascript", "rfc822-headers", "x-vcalendar"}
)  # fmt: skip
_CTYPE_RE = re.compile(r"\s*([a-z0-9!#$&^_.+-]+)/([a-z0-9!#$&^_.+-]+)")
_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics", "text/csv": ".csv",
    "application/pdf": ".pdf", "image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
    "image/webp": ".webp", "image/svg+xml": ".svg", "application/zip": ".zip", "message/rfc822": ".eml",
    "application/msword": ".doc", "application/vnd.ms-excel": ".xls", "application/json": ".json",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": ".xlsx",
    "application/vnd.oasis.opendocument.text": ".odt", "audio/mpeg": ".mp3", "video/mp4": ".mp4",
    "message/delivery-status": ".txt", "text/rfc822-headers": ".txt",
}  # fmt: skip
_META_CHARSET_RE = re.compile(rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]{1,40})""", re.I)
_CTYPE_INSIDE_RE = re.compile(
    r"\b(text|image|audio|video|application|message|multipart|model|font)/([a-z0-9!#$&^_.+-]+)"
)
_PLAUSIBLE_ADDR_RE = re.compile(r"[^@\s<>()\[\],;:\"]+@[^@\s<>()\[\],;:\"]+\.[^@\s<>()\[\],;:\".]+")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_FILENAME_BAD_RE = re.compile(r'[\x00-\x1f\x7f<>:"/\\|?*]+')


class MessageParseError(ValueError):
    """The input is not a usable mail message; ``reason`` says why, in words an operator can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Attachment:
    """One attached (or inline, e.g. an image referenced by ``cid:``) file."""

    filename: str
    content_type: str
    data: bytes = field(repr=False)
    content_id: str | None = None
    inline: bool = False

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass(frozen=True)
class ParsedMessage:
    """Everything the gateway, archive, digests and importer need from one message.

    Message-IDs are bare (no angle brackets). ``date`` is aware UTC (None when the Date header is
    missing or unreadable: use the reception time), ``date_offset_minutes`` the sender's offset.
    ``text`` is the readable body (text/plain preferred, else converted HTML); ``html`` the original
    HTML part, unsanitised. ``headers`` holds every header as (name, raw value) in order.
    """

    message_id: str
    message_id_is_synthetic: bool
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    subject: str
    normalized_subject: str
    subject_is_reply: bool
    from_name: str
    from_addr: str
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    date: datetime | None
    date_offset_minutes: int
    list_id: str | None
    auto_submitted: str | None
    precedence: str | None
    x_loop: tuple[str, ...]
    text: str
    html: str | None
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]
    raw_size: int
    headers: tuple[tuple[str, str], ...] = field(repr=False)

    def header(self, name: str) -> str | None:
        """The first header of that name, decoded for display (RFC 2047, unfolded), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return decode_header_value(value)
        return None

    def header_all(self, name: str) -> list[str]:
        """Every header of that name, decoded, in order."""
        wanted = name.lower()
        return [decode_header_value(value) for key, value in self.headers if key.lower() == wanted]

    def raw_header(self, name: str) -> str | None:
        """The first header of that name exactly as received (folded, still encoded)."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    @property
    def has_text(self) -> bool:
        return bool(self.text.strip())


def synthetic_message_id(raw: bytes) -> str:
    """The stable id given to a message without a usable Message-ID: sha256 of its bytes."""
    return f"{hashlib.sha256(raw).hexdigest()}@{SYNTHETIC_ID_DOMAIN}"


_BASE64_JUNK_RE = re.compile(rb"[^A-Za-z0-9+/=]")


def _decode_base64(raw: bytes) -> tuple[bytes, bool]:
    """Lenient base64: characters outside the alphabet are skipped, missing padding is supplied, and
    decoding stops at the first padding (what follows is junk a broken encoder appended).
    Returns (data, clean) where clean is False when anything had to be repaired."""
    compact = b"".join(raw.split())
    cleaned = _BASE64_JUNK_RE.sub(b"", compact)
    clean = len(cleaned) == len(compact)
    pad = cleaned.find(b"=")
    if pad >= 0:
        rest = cleaned[pad:].lstrip(b"=")
        if rest:
            clean = False
        cleaned = cleaned[:pad]
    if len(cleaned) % 4 == 1:
        cleaned = cleaned[:-1]
        clean = False
    cleaned += b"=" * (-len(cleaned) % 4)
    try:
        return binascii.a2b_base64(cleaned), clean
    except (binascii.Error, ValueError):
        return b"", False


def _keyword(value: object) -> str | None:
    if value is None:
        return None
    text = strip_comments(raw_to_str(str(value))).strip().strip("\"'").strip().lower()
    return text.split()[0] if text else None


def _safe_filename(name: str) -> str:
    # A filename is only a label: drop any path (Windows "C:\fakepath\x.pdf", "../../etc/passwd")
    # and characters that no file system or Content-Disposition header takes.
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = _FILENAME_BAD_RE.sub("_", name).strip(" ._")
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[:190] + dot + ext[:9]) if dot and len(ext) < 10 else name[:200]
    return name


def _unflow(text: str, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed: join soft-broken lines (trailing space) of equal quote depth."""
    out: list[str] = []
    buffer = ""
    buffer_depth = -1
    for line in text.split("\n"):
        stripped = line.lstrip(">")
        depth = len(line) - len(stripped)
        if stripped.startswith(" "):
            stripped = stripped[1:]  # space-stuffing (RFC 3676 4.4)
        is_sig = stripped == "-- "
        if buffer_depth >= 0 and depth != buffer_depth:
            out.append(">" * buffer_depth + (" " if buffer_depth else "") + buffer)
            buffer, buffer_depth = "", -1
        soft = stripped.endswith(" ") and not is_sig
        if soft:
            piece = stripped[:-1] if delsp else stripped
            buffer = buffer + piece if buffer_depth >= 0 else piece
            buffer_depth = depth
            continue
        full = buffer + stripped if buffer_depth >= 0 else stripped
        buffer, buffer_depth = "", -1
        out.append(">" * depth + (" " if depth and full else "") + full)
    if buffer_depth >= 0:
        out.append(">" * buffer_depth + (" " if buffer_depth else "") + buffer)
    return "\n".join(out)


@dataclass
class _Slot:
    """What a part contributes to the body, in reading order: ("text", str) or ("html", str) pieces
    (HTML is converted only when the text is asked for), and the original HTML parts."""

    pieces: list[tuple[str, str]] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)

    def add_text(self, text: str) -> None:
        self.pieces.append(("text", text))

    def add_html(self, html: str) -> None:
        self.pieces.append(("html", html))
        self.htmls.append(html)

    def extend(self, other: _Slot) -> None:
        self.pieces.extend(other.pieces)
        self.htmls.extend(other.htmls)

    def has_content(self) -> bool:
        return any(value.strip() for _, value in self.pieces)

    def text(self) -> str:
        texts = (html_to_text(value) if kind == "html" else value for kind, value in self.pieces)
        return "\n\n".join(t.strip("\n") for t in texts if t.strip())


def _is_prose(ctype: str) -> bool:
    main, _, sub = ctype.partition("/")
    return main == "text" and sub not in _TEXT_FILE_SUBTYPES


class _Walker:
    def __init__(self, max_parts: int) -> None:
        self.max_parts = max_parts
        self.parts_seen = 0
        self.attachments: list[Attachment] = []
        self.defects: list[str] = []
        self._defect_set: set[str] = set()
        self._params_cache: dict[int, tuple[str, dict[str, str]]] = {}

    def _type_and_params(self, part: Message) -> tuple[str, dict[str, str]]:
        """Content type and lowercased parameters, parsed once per part (the stdlib re-parses the
        whole header for every get_param call)."""
        key = id(part)
        cached = self._params_cache.get(key)
        if cached is not None:
            return cached
        try:
            params = part.get_params(failobj=None)
        except Exception:  # a header the stdlib cannot read
            params = None
            self.defect("bad-content-type")
        values: dict[str, str] = {}
        if not params:
            ctype = part.get_default_type()
        else:
            ctype = str(params[0][0]).strip().lower()
            for name, value in params[1:]:
                if isinstance(value, tuple):
                    value = collapse_rfc2231_value(value)
                values.setdefault(str(name).strip().lower(), str(value))
        # Garbage ("multipart/mixed\tboundary=..." without its semicolon, quoted junk) is reduced to its
        # leading type/subtype or, failing that, text/plain (RFC 2045 5.2's default).
        match = _CTYPE_RE.match(ctype)
        if match is None and params:
            # Mangled by some gateway ('%22%22"application%22%22/pdf'): look for a known type inside.
            match = _CTYPE_INSIDE_RE.search(ctype.replace("%22", "").replace('"', "").replace("\\", ""))
        if match is not None:
            ctype = f"{match.group(1)}/{match.group(2)}"
        elif params:
            try:
                named = bool(part.get_filename())
            except Exception:  # the filename is as broken as the type
                named = False
            ctype = "application/octet-stream" if named else "text/plain"
        result = (ctype, values)
        self._params_cache[key] = result
        return result

    def _ctype(self, part: Message) -> str:
        return self._type_and_params(part)[0]

    def defect(self, name: str) -> None:
        if name not in self._defect_set:
            self._defect_set.add(name)
            self.defects.append(name)

    # -- part helpers ------------------------------------------------------------------------------
    @staticmethod
    def _disposition(part: Message) -> str | None:
        try:
            return part.get_content_disposition()
        except Exception:  # a malformed header must cost this detail only
            return None

    def _filename(self, part: Message) -> str:
        try:
            name = part.get_filename()
        except Exception:
            name = None
            self.defect("bad-filename")
        if not name:
            return ""
        if not isinstance(name, str):
            name = str(name)
        if "\ufffd" in name:
            # compat32 decodes 8-bit parameters as "unknown-8bit" with replacement characters; read
            # the raw header ourselves (raw UTF-8 filenames are what Apple Mail and Outlook send).
            name = self._raw_filename(part) or name
        # Non-standard but everywhere: RFC 2047 words inside the quoted filename (Outlook, Gmail);
        # raw 8-bit filenames arrive as surrogate escapes.
        return _safe_filename(decode_header_value(raw_to_str(name)))

    @staticmethod
    def _raw_filename(part: Message) -> str | None:
        for header, param in (("content-disposition", "filename"), ("content-type", "name")):
            for key, value in part.raw_items():
                if key.lower() != header:
                    continue
                match = re.search(
                    param + r'\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;\s]+))', raw_to_str(str(value)), re.IGNORECASE
                )
                if match:
                    return match.group(1) if match.group(1) is not None else match.group(2)
        return None

    def _payload(self, part: Message) -> bytes:
        """The part's content bytes with its transfer encoding undone, leniently."""
        # compat32's get_payload() without decode re-decodes 8-bit content with the declared charset
        # (replacing errors), so raw bytes come from get_payload(decode=True), which returns them as
        # they are for 7bit/8bit/binary and for any encoding name it does not recognise verbatim.
        # The stdlib matches that name exactly: "quoted-printable   " or "Base64 (comment)" would
        # stay encoded, hence our own reading of the keyword.
        exact = str(part.get("Content-Transfer-Encoding", "")).lower()
        cte = _keyword(part.get("Content-Transfer-Encoding"))
        if exact in ("quoted-printable", "x-uuencode", "uuencode", "uue", "x-uue"):
            try:
                data = part.get_payload(decode=True)
            except Exception:  # a broken uuencoded block: keep it as it is
                data = None
                self.defect("bad-transfer-encoding")
            if isinstance(data, bytes):
                return data
        if exact == "base64":
            text = part.get_payload()
            raw = text.encode("ascii", "replace") if isinstance(text, str) else b""
        else:
            try:
                data = part.get_payload(decode=True)
            except Exception:
                data = None
                self.defect("bad-transfer-encoding")
            raw = data if isinstance(data, bytes) else b""
        if cte == "base64":
            decoded, clean = _decode_base64(raw)
            if not clean:
                self.defect("bad-base64")
            return decoded
        if cte == "quoted-printable":
            return binascii.a2b_qp(raw)
        if cte not in (None, "7bit", "8bit", "binary", "x-uuencode", "uuencode", "uue", "x-uue"):
            self.defect(f"unknown-transfer-encoding:{cte[:30]}")
        return raw

    def _decode_text(self, part: Message, data: bytes, *, html: bool) -> str:
        charset = self._type_and_params(part)[1].get("charset") or None
        if charset is None and html:
            meta = _META_CHARSET_RE.search(data[:4096])
            if meta:
                charset = meta.group(1).decode("ascii", "replace")
        text, problem = decode_bytes(data, charset)
        if problem:
            self.defect(problem)
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        if "\x00" in text:
            text = text.replace("\x00", "")
            self.defect("nul-bytes")
        if _CONTROL_RE.search(text):
            # Control characters are not text (and PostgreSQL refuses NUL); a form feed is a page break.
            text = _CONTROL_RE.sub("", text.replace("\x0c", "\n"))
        if not html and self._param(part, "format") == "flowed":
            text = _unflow(text, self._param(part, "delsp") == "yes")
        return text

    def _param(self, part: Message, name: str) -> str:
        return self._type_and_params(part)[1].get(name, "").strip().lower()

    def _attach(self, part: Message, *, inline: bool, data: bytes | None = None, default_name: str = "") -> None:
        ctype = self._ctype(part)
        if data is None:
            data = self._payload(part)
        filename = self._filename(part) or default_name
        if not filename:
            filename = f"attachment-{len(self.attachments) + 1}{_EXTENSIONS.get(ctype, '.bin')}"
        content_id = None
        raw_cid = part.get("Content-ID")
        if raw_cid:
            ids = extract_message_ids(str(raw_cid), allow_bare_token=True)
            content_id = ids[0] if ids else None
        self.attachments.append(Attachment(filename, ctype, data, content_id, inline))

    def _message_bytes(self, message: Message) -> bytes:
        try:
            return message.as_bytes(policy=compat32)
        except Exception:  # re-serialising a broken inner message can fail
            try:
                return message.as_string(policy=compat32).encode("utf-8", "surrogateescape")
            except Exception:
                self.defect("unserialisable-inner-message")
                return b""

    # -- the walk ----------------------------------------------------------------------------------
    def collect(self, part: Message, depth: int, *, first: bool) -> _Slot:
        """The body text/html this part contributes; attachments are recorded on the side."""
        slot = _Slot()
        self.parts_seen += 1
        if self.parts_seen > self.max_parts:
            self.defect(f"too-many-parts:over-{self.max_parts}")
            return slot
        if depth > MAX_DEPTH:
            self.defect(f"too-deep:over-{MAX_DEPTH}")
            return slot
        for d in getattr(part, "defects", ()):
            self.defect(f"mime:{type(d).__name__}")
        ctype = self._ctype(part)
        disposition = self._disposition(part)
        if ctype.startswith("multipart/") and not part.is_multipart():
            # The boundary was never found: the stdlib leaves the whole body as one string. Show it
            # as text rather than lose it.
            self.defect("multipart-without-parts")
            if disposition != "attachment":
                slot.add_text(self._decode_text(part, self._payload(part), html=False))
            return slot
        if part.is_multipart():
            payload = part.get_payload()
            subparts = [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []
            if ctype == "message/rfc822" or ctype == "message/global":
                return self._inner_message(part, subparts, depth, disposition)
            if ctype == "multipart/alternative":
                return self._alternative(subparts, depth)
            if ctype == "multipart/related":
                return self._related(part, subparts, depth)
            for index, sub in enumerate(subparts):
                if self._is_body_candidate(sub, first=first and index == 0):
                    slot.extend(self.collect(sub, depth + 1, first=first and index == 0))
                else:
                    self._attachment_of(sub, depth + 1)
            return slot
        if ctype in _BODY_TEXT_TYPES and disposition != "attachment":
            data = self._payload(part)
            if len(data) > MAX_TEXT_PART_BYTES:
                self.defect("text-part-too-large")
                self._attach(part, inline=False, data=data)
                return slot
            if ctype == "text/html":
                slot.add_html(self._decode_text(part, data, html=True))
            else:
                slot.add_text(self._decode_text(part, data, html=False))
            return slot
        if _is_prose(ctype) and disposition != "attachment" and (first or not self._filename(part)):
            # Other prose types (text/enriched, text/x-diff pasted inline, text/x-unknown): show them.
            data = self._payload(part)
            if len(data) <= MAX_TEXT_PART_BYTES:
                slot.add_text(self._decode_text(part, data, html=False))
                return slot
        self._attach(part, inline=disposition == "inline")
        return slot

    def _is_body_candidate(self, part: Message, *, first: bool) -> bool:
        ctype = self._ctype(part)
        disposition = self._disposition(part)
        if disposition == "attachment":
            return False
        if ctype.startswith("multipart/") or ctype in ("message/rfc822", "message/global"):
            # A forwarded message without "attachment" disposition is shown inline by mail clients.
            return True
        if _is_prose(ctype):
            # A named text part after the first is an attached file shown inline (Apple Mail).
            return first or not self._filename(part)
        return False

    def _attachment_of(self, part: Message, depth: int) -> None:
        self.parts_seen += 1
        if self.parts_seen > self.max_parts:
            self.defect(f"too-many-parts:over-{self.max_parts}")
            return
        ctype = self._ctype(part)
        disposition = self._disposition(part)
        if ctype in ("message/rfc822", "message/global"):
            inner = part.get_payload()
            inner_msg = inner[0] if isinstance(inner, list) and inner else None
            if isinstance(inner_msg, Message):
                data = self._message_bytes(inner_msg)
                subject = decode_header_value(str(inner_msg.get("Subject", "") or ""))
                default_name = (_safe_filename(subject[:100]) or "message") + ".eml"
            else:
                data, default_name = self._payload(part), ""
            self._attach(part, inline=False, data=data, default_name=default_name)
            return
        if part.is_multipart():
            # A multipart marked as attachment: keep its leaves as attachments.
            payload = part.get_payload()
            if depth > MAX_DEPTH:
                self.defect(f"too-deep:over-{MAX_DEPTH}")
                return
            for sub in payload if isinstance(payload, list) else []:
                if isinstance(sub, Message):
                    self._attachment_of(sub, depth + 1)
            return
        self._attach(part, inline=disposition == "inline")

    def _alternative(self, subparts: list[Message], depth: int) -> _Slot:
        """Renderings of the same content: text/plain is preferred (what the author's client wrote
        as text), HTML is kept as ``html`` and used for the text when the plain part is empty."""
        plain: _Slot | None = None
        rich: _Slot | None = None
        for sub in subparts:
            ctype = self._ctype(sub)
            if ctype == "text/plain" and self._disposition(sub) != "attachment":
                candidate = self.collect(sub, depth + 1, first=True)
                if plain is None or (candidate.has_content() and not plain.has_content()):
                    plain = candidate
            elif ctype == "text/html" or sub.is_multipart():
                candidate = self.collect(sub, depth + 1, first=True)
                if candidate.pieces:
                    rich = candidate
            elif ctype in ("text/calendar", "application/ics"):
                self._attachment_of(sub, depth + 1)
            else:
                # text/enriched, text/watch-html, ...: another rendering of the same content.
                self.parts_seen += 1
        if plain is not None and plain.has_content():
            slot = _Slot(pieces=list(plain.pieces))
            if rich is not None:
                slot.htmls.extend(rich.htmls)
            return slot
        if rich is not None:
            return rich
        return plain if plain is not None else _Slot()

    def _related(self, part: Message, subparts: list[Message], depth: int) -> _Slot:
        if not subparts:
            return _Slot()
        root_index = 0
        start = self._type_and_params(part)[1].get("start", "")
        if start.strip():
            wanted = start.strip().strip("<>")
            for index, sub in enumerate(subparts):
                cid = str(sub.get("Content-ID", "") or "").strip().strip("<>")
                if cid == wanted:
                    root_index = index
                    break
        slot = self.collect(subparts[root_index], depth + 1, first=True)
        for index, sub in enumerate(subparts):
            if index != root_index:
                if sub.is_multipart():
                    self._attachment_of(sub, depth + 1)
                else:
                    self.parts_seen += 1
                    self._attach(sub, inline=self._disposition(sub) != "attachment")
        return slot

    def _inner_message(self, part: Message, subparts: list[Message], depth: int, disposition: str | None) -> _Slot:
        slot = _Slot()
        if not subparts:
            return slot
        inner = subparts[0]
        if disposition == "attachment":
            self._attachment_of(part, depth)
            return slot
        header_lines = ["---------- Forwarded message ----------"]
        for name in ("From", "Date", "Subject", "To"):
            value = inner.get(name)
            if value:
                header_lines.append(f"{name}: {decode_header_value(str(value))}")
        body = self.collect(inner, depth + 1, first=True)
        # The forwarded text joins the body; its HTML does not become the message's HTML.
        slot.add_text("\n".join(header_lines) + "\n\n" + body.text())
        return slot


def _raw_headers(msg: Message) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name, value in msg.raw_items():
        if not isinstance(value, str):
            value = str(value)
        out.append((raw_to_str(str(name)).replace("\x00", "").strip(), value.replace("\x00", "")))
    return out


def _trim_references(refs: list[str]) -> list[str]:
    if len(refs) <= MAX_REFERENCES:
        return refs
    return [refs[0], *refs[-(MAX_REFERENCES - 1) :]]


def parse_message(raw: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ParsedMessage:
    """Parse raw RFC 5322 bytes. Raises :class:`MessageParseError` only for input that is not usable
    mail (empty, no header section, over ``max_bytes``, MIME nested beyond the parser's reach)."""
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise TypeError(f"parse_message needs bytes, not {type(raw).__name__}")
    raw = bytes(raw)
    size = len(raw)
    if size == 0 or not raw.strip():
        raise MessageParseError("empty message: no bytes (or only blank lines) were received")
    if size > max_bytes:
        raise MessageParseError(
            f"message is {size} bytes, over the {max_bytes}-byte limit; ask the sender to share large "
            "files by link instead of attaching them"
        )
    # Leading blank lines or a byte-order mark make the stdlib see an empty header section.
    body = raw.lstrip(b"\r\n")
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        msg = email.message_from_bytes(body, policy=compat32)
    except RecursionError as exc:
        raise MessageParseError(
            "MIME structure nested too deeply for the parser; the raw message is kept but cannot be shown"
        ) from exc
    headers = _raw_headers(msg)
    by_name: dict[str, list[str]] = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    # An mbox entry ("From sender date" envelope line) is a message even with no header at all.
    if not any(name in _MAIL_FIELDS for name in by_name) and not msg.get_unixfrom():
        raise MessageParseError(
            "no mail header section: the data does not start with 'Name: value' header lines such as "
            "From, Date or Subject, so it is not an RFC 5322 message"
        )

    def first(name: str) -> str | None:
        values = by_name.get(name)
        return values[0] if values else None

    walker = _Walker(MAX_PARTS)
    try:
        slot = walker.collect(msg, 0, first=True)
    except RecursionError as exc:
        raise MessageParseError(
            "MIME structure nested too deeply for the parser; the raw message is kept but cannot be shown"
        ) from exc
    defects = walker.defects

    message_id = parse_message_id(first("message-id"))
    synthetic = message_id is None
    if synthetic:
        defects.append("message-id-missing" if first("message-id") is None else "message-id-invalid")
        message_id = synthetic_message_id(raw)
    assert message_id is not None
    in_reply_to = [i for i in extract_message_ids(first("in-reply-to")) if i != message_id]
    references = [i for i in extract_message_ids(first("references")) if i != message_id]
    if len(references) > MAX_REFERENCES:
        defects.append("references-truncated")
        references = _trim_references(references)
    in_reply_to = in_reply_to[:MAX_REFERENCES]

    subject = decode_header_value(first("subject"))
    from_raw = first("from")
    sender = parse_address(from_raw)
    if from_raw is None:
        defects.append("from-missing")
    elif sender is None:
        defects.append("from-unparseable")
    elif not _PLAUSIBLE_ADDR_RE.fullmatch(sender.addr):
        # A cheap shape check; callers that act on the address validate it with
        # addresses.validate_address (email-validator), which costs as much as the whole parse.
        defects.append("from-invalid")

    date_raw = first("date")
    parsed_date = parse_date(date_raw)
    if parsed_date is None:
        defects.append("date-missing" if date_raw is None else "date-unparseable")
        # Archives and forwarded copies often keep the time elsewhere: Resent-Date, the mbox envelope
        # line ("From sender Mon Nov  8 20:53:05 1999"), or the newest Received header's date.
        envelope = msg.get_unixfrom() or ""
        for source, value in (
            ("resent-date", first("resent-date")),
            ("envelope", envelope.split(None, 2)[2] if envelope.count(" ") >= 2 else None),
            ("received", first("received")),
        ):
            parsed_date = parse_date(value)
            if parsed_date is not None:
                defects.append(f"date-from-{source}")
                break

    text = slot.text()
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS]
        defects.append("text-truncated")
    html = slot.htmls[0] if slot.htmls else None

    def addresses(name: str) -> tuple[Address, ...]:
        found: list[Address] = []
        for value in by_name.get(name, ()):
            found.extend(parse_address_list(value))
        return tuple(found)

    parsed = ParsedMessage(
        message_id=message_id,
        message_id_is_synthetic=synthetic,
        in_reply_to=tuple(in_reply_to),
        references=tuple(references),
        subject=subject,
        normalized_subject=normalize_subject(subject),
        subject_is_reply=is_reply_subject(subject),
        from_name=sender.name if sender else "",
        from_addr=sender.addr if sender else "",
        to=addresses("to"),
        cc=addresses("cc"),
        reply_to=addresses("reply-to"),
        date=parsed_date[0] if parsed_date else None,
        date_offset_minutes=parsed_date[1] if parsed_date else 0,
        list_id=parse_list_id(first("list-id")),
        auto_submitted=parse_auto_submitted(first("auto-submitted")),
        precedence=parse_precedence(first("precedence")),
        x_loop=tuple(v for v in (decode_header_value(x).lower() for x in by_name.get("x-loop", ())) if v),
        text=text,
        html=html,
        attachments=tuple(walker.attachments),
        defects=tuple(defects),
        raw_size=size,
        headers=tuple(headers),
    )
    if defects:
        logger.debug("parsed %s with defects: %s", message_id, ", ".join(defects))
    return parsed
