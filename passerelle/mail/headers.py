"""Header folklore, in one tested place.

Everything here takes the *raw* header value as the stdlib ``compat32`` parser hands it over (folded,
RFC 2047 words still encoded, stray 8-bit bytes carried as surrogate escapes) and never raises on bad
input: a value that cannot be understood gives ``None``/``[]``/replacement characters, never an
exception. Message-IDs are returned bare (without angle brackets), as the database stores them.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import email.utils
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

# Charset labels seen in the wild that Python does not know, or knows under a narrower meaning.
# Mail clients label with the ISO name but emit the Windows superset (the WHATWG encoding standard does
# the same mapping for the web), GB2312 mail is routinely GBK/GB18030, and Korean Outlook uses its own
# label for CP949.
_CHARSET_ALIASES: dict[str, str] = {
    "latin1": "cp1252",
    "latin-1": "cp1252",
    "iso-8859-1": "cp1252",
    "iso8859-1": "cp1252",
    "iso_8859-1": "cp1252",
    "l1": "cp1252",
    "us-ascii": "ascii",
    "ascii": "ascii",
    "ansi_x3.4-1968": "ascii",
    "iso-8859-9": "cp1254",
    "iso-8859-11": "cp874",
    "tis-620": "cp874",
    "windows-874": "cp874",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "euc-cn": "gb18030",
    "ks_c_5601-1987": "cp949",
    "ks_c_5601": "cp949",
    "euc-kr": "cp949",
    "x-euc-kr": "cp949",
    "iso-8859-8-i": "iso-8859-8",
    "iso-8859-6-i": "iso-8859-6",
    "x-mac-roman": "mac-roman",
    "macintosh": "mac-roman",
    "x-sjis": "cp932",
    "shift-jis": "cp932",
    "shift_jis": "cp932",
    "x-unicode-2-0-utf-7": "utf-7",
    "unicode-1-1-utf-7": "utf-7",
    "unicode-1-1-utf-8": "utf-8",
    "utf8": "utf-8",
    "x-utf-8": "utf-8",
    "cp-850": "cp850",
    "windows-31j": "cp932",
    "big5-hkscs": "big5hkscs",
    "x-big5": "big5",
}

# Labels that say "I do not know": decode by content instead.
_UNKNOWN_LABELS = frozenset({"unknown", "unknown-8bit", "x-unknown", "8bit", "default", "x-user-defined", ""})


def lookup_charset(label: str | None) -> str | None:
    """The Python codec name for a MIME charset label, or None when it is unknown or meaningless.

    RFC 2231 allows a language suffix (``US-ASCII*EN``); quotes and spaces are tolerated.
    """
    if not label:
        return None
    name = label.strip().strip("\"'").split("*", 1)[0].strip().lower()
    if name in _UNKNOWN_LABELS:
        return None
    name = _CHARSET_ALIASES.get(name, name)
    try:
        info = codecs.lookup(name)
    except (LookupError, ValueError):
        return None
    # Only text encodings: "base64" or "rot13" are codecs too, and a hostile label must not pick them.
    if not getattr(info, "_is_text_encoding", True):
        return None
    return info.name


def _decode_cp1252(data: bytes) -> str:
    try:
        return data.decode("cp1252")
    except UnicodeDecodeError:
        # Five bytes are undefined in CP1252; Latin-1 maps every byte.
        return data.decode("latin-1")


def _try_decode(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        return None
    except Exception:  # some CJK codecs raise odd errors on hostile input
        return None


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str | None]:
    """Decode body or header bytes; never raises. Returns ``(text, defect)``, defect None when clean.

    The declared charset is tried first; when it is unknown or the bytes do not fit it, UTF-8 (what
    unlabelled 8-bit mail almost always is today) and then CP1252/Latin-1 (what it used to be).
    """
    if not data:
        return "", None
    codec = lookup_charset(charset)
    if codec is not None:
        decoded = _try_decode(data, codec)
        if decoded is not None:
            return decoded, None
    if data.isascii():
        defect = None if codec is not None or not charset else f"unknown-charset:{charset.strip()[:40]}"
        return data.decode("ascii"), defect
    if codec is None and charset and charset.strip().lower() not in _UNKNOWN_LABELS:
        defect = f"unknown-charset:{charset.strip()[:40]}"
    elif codec is None:
        defect = None if not charset else "unlabelled-8bit"
    else:
        defect = f"charset-mismatch:{charset.strip()[:40]}"
    try:
        return data.decode("utf-8"), defect
    except UnicodeDecodeError:
        pass
    # Mostly-valid UTF-8 with a few broken sequences is still UTF-8 (a truncated or spliced text):
    # keep it with replacement characters rather than turning every accent into mojibake.
    lenient = data.decode("utf-8", errors="replace")
    bad = lenient.count("\ufffd")
    good = sum(1 for ch in lenient if ord(ch) > 127 and ch != "\ufffd")
    if good >= 4 * bad:
        return lenient, defect or "invalid-utf-8"
    if defect is None:
        defect = "unlabelled-8bit"
    return _decode_cp1252(data), defect


def raw_to_str(value: str) -> str:
    """Turn a compat32 header string (8-bit bytes carried as surrogate escapes) into real text.

    Raw UTF-8 in headers (RFC 6532, and many clients before it) is tried first, then CP1252.
    """
    if value.isascii():
        return value
    try:
        data = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace").decode("utf-8")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return _decode_cp1252(data)


_FOLD_RE = re.compile(r"[ \t]*\r?\n[ \t]*")
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def unfold(value: str) -> str:
    """Undo header folding: each line break with its surrounding blanks becomes one space."""
    if "\n" not in value:
        return value
    return _FOLD_RE.sub(" ", value)


def _clean(value: str) -> str:
    value = value.replace("\x00", "")
    if "\t" in value:
        value = value.replace("\t", " ")
    return _CONTROL_RE.sub(" ", value)


# An RFC 2047 encoded word. The encoded text may contain folding (some encoders fold inside a word)
# and, for Q, literal spaces (some encoders forget to encode them); it never contains "?".
_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")
_WS_ONLY_RE = re.compile(r"[ \t\r\n]*")
_WS_RE = re.compile(r"\s+")


def _word_bytes(encoding: str, text: str) -> bytes | None:
    if encoding in "bB":
        data = _WS_RE.sub("", text)
        data = data.rstrip("=")
        # Missing or excess padding is common; a stray last character (length = 1 mod 4) cannot be
        # decoded and is dropped.
        if len(data) % 4 == 1:
            data = data[:-1]
        data += "=" * (-len(data) % 4)
        try:
            return base64.b64decode(data.encode("ascii", "ignore"), validate=False)
        except (binascii.Error, ValueError):
            return None
    text = re.sub(r"\r?\n[ \t]*", "", text)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "replace")
    return binascii.a2b_qp(raw, header=True)


def _decode_word_bytes(data: bytes, charset: str) -> str:
    codec = lookup_charset(charset)
    if codec is None:
        # Unknown charset in a header: keep what is readable, mark the rest with replacement characters.
        return data.decode("utf-8", errors="replace")
    try:
        return data.decode(codec)
    except UnicodeDecodeError:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode(codec, errors="replace")
    except Exception:  # exotic codecs can fail in exotic ways on hostile bytes
        return data.decode("utf-8", errors="replace")


def decode_header_value(value: str | None) -> str:
    """Decode one header value for display: RFC 2047 words, folding, raw 8-bit, control characters.

    Whitespace between adjacent encoded words is dropped (RFC 2047 section 6.2); consecutive words in
    the same charset are joined before decoding, so a multi-byte character split across two words
    survives. Unknown charsets give replacement characters; nothing raises.
    """
    if not value:
        return ""
    if "=?" not in value:
        return _clean(unfold(raw_to_str(value))).strip()
    out: list[str] = []
    pending: bytes = b""
    pending_charset: str | None = None
    pos = 0
    last_was_word = False

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending_charset is not None:
            out.append(_decode_word_bytes(pending, pending_charset))
        pending = b""
        pending_charset = None

    for match in _ENCODED_WORD_RE.finditer(value):
        between = value[pos : match.start()]
        is_gap = last_was_word and _WS_ONLY_RE.fullmatch(between) is not None
        charset = match.group(1).split("*", 1)[0].lower()
        data = _word_bytes(match.group(2), match.group(3))
        if data is None:
            # Not decodable: keep the word as it was written.
            flush()
            out.append(unfold(raw_to_str(between)))
            out.append(match.group(0))
            last_was_word = False
            pos = match.end()
            continue
        if not is_gap:
            flush()
            if between:
                out.append(unfold(raw_to_str(between)))
                # An encoded word glued to text ("[SPAM]=?utf-8?...") is malformed (RFC 2047 5.1
                # wants white space around it); show it as the separate word it was meant to be.
                if not between[-1].isspace():
                    out.append(" ")
        elif pending_charset is not None and charset != pending_charset:
            flush()
        if pending_charset is None:
            pending_charset = charset
        pending += data
        last_was_word = True
        pos = match.end()
    flush()
    tail = value[pos:]
    if tail and last_was_word and not tail[0].isspace():
        out.append(" ")
    out.append(unfold(raw_to_str(tail)))
    return _clean("".join(out)).strip()


def _strip_comments(value: str) -> str:
    """Remove RFC 5322 comments ``( ... )`` (nested, with backslash escapes) outside quotes and <>."""
    if "(" not in value:
        return value
    out: list[str] = []
    depth = 0
    in_quote = False
    in_angle = False
    escape = False
    for ch in value:
        if escape:
            escape = False
            if depth == 0:
                out.append(ch)
            continue
        if ch == "\\" and (depth > 0 or in_quote):
            escape = True
            if depth == 0:
                out.append(ch)
            continue
        if depth > 0:
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    out.append(" ")
            continue
        if in_quote:
            if ch == '"':
                in_quote = False
            out.append(ch)
            continue
        if ch == '"' and not in_angle:
            in_quote = True
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif ch == "(" and not in_angle:
            depth = 1
            continue
        out.append(ch)
    return "".join(out)


def strip_comments(value: str) -> str:
    """Public form of the comment stripper (used for dates, List-Id, Auto-Submitted, ...)."""
    return _strip_comments(value)


# Longest Message-ID kept (the database column size); longer ones are junk or attacks.
MAX_MESSAGE_ID_LENGTH = 995
_ANGLE_RE = re.compile(r"<([^<>]*)>")
_ID_SPLIT_RE = re.compile(r"[\s,;]+")


def _clean_id(token: str) -> str | None:
    token = _WS_RE.sub("", token.replace("\x00", "")).strip("\"'<>")
    if not token or len(token) > MAX_MESSAGE_ID_LENGTH or "<" in token or ">" in token:
        return None
    return raw_to_str(token)


def _dedupe(ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for i in ids:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def extract_message_ids(value: str | None, *, allow_bare_token: bool = False) -> list[str]:
    """All Message-IDs named in a Message-ID / In-Reply-To / References value, bare, in order, deduped.

    ``<...>`` tokens win (comments removed first, so ``<id> (Bob's message <bob@x>)`` gives only the
    id). Without brackets, whitespace-separated tokens containing ``@`` are taken; with
    ``allow_bare_token`` (the Message-ID header itself) a lone token without ``@`` is accepted too.
    Whitespace inside an id (broken folding) is removed so both sides of a reference compare equal.
    """
    if not value:
        return []
    text = _strip_comments(value.replace("\x00", ""))
    bracketed = _ANGLE_RE.findall(text)
    ids = [i for i in (_clean_id(t) for t in bracketed) if i]
    if ids:
        return _dedupe(ids)
    tokens = [t for t in _ID_SPLIT_RE.split(text) if t]
    with_at = [i for i in (_clean_id(t) for t in tokens if "@" in t) if i]
    if with_at:
        return _dedupe(with_at)
    if allow_bare_token and len(tokens) == 1:
        single = _clean_id(tokens[0])
        return [single] if single else []
    return []


def parse_message_id(value: str | None) -> str | None:
    """The Message-ID of a message (first id in the header), bare, or None when absent or garbage."""
    ids = extract_message_ids(value, allow_bare_token=True)
    return ids[0] if ids else None


def parse_references(value: str | None) -> list[str]:
    """The References (or In-Reply-To) ids, oldest first, deduplicated."""
    return extract_message_ids(value)


def format_message_id(message_id: str) -> str:
    """A bare id back in header form: ``<id>``."""
    return f"<{message_id.strip('<>')}>"


# --- dates ---------------------------------------------------------------------------------------------

_MONTHS: dict[str, int] = {}
for _number, _names in enumerate(
    (
        "jan january janv janvier jänner januar gen gennaio ene enero jan januari sty",
        "feb february fév fev févr fevr février fevrier februar febbraio febrero feb februari lut",
        "mar march mars märz mär mrz maerz marzo mrt maart",
        "apr april avr avril aprile abr abril",
        "may mai maggio mag mayo mei maj",
        "jun june juin juni giugno giu junio",
        "jul july juil juillet juli luglio lug julio",
        "aug august aoû aou août aout ago agosto augustus sie",
        "sep sept september septembre settembre set septiembre",
        "oct october octobre okt oktober ottobre ott octubre",
        "nov november novembre noviembre",
        "dec december déc decembre décembre dez dezember dic dicembre diciembre",
    ),
    start=1,
):
    for _name in _names.split():
        _MONTHS.setdefault(_name, _number)

_LOOSE_DATE_RE = re.compile(
    r"(?P<day>\d{1,2})[\s.-]+(?P<month>[^\W\d_]{3,10})\.?[\s.-]+(?P<year>\d{2,4})"
    r"(?:[\sT,]+(?P<hour>\d{1,2})[:.](?P<minute>\d{2})(?:[:.](?P<second>\d{2}))?)?"
    r"\s*(?P<tz>[+-]\d{4}|[+-]\d{2}:\d{2}|UTC|GMT|UT|Z)?",
    re.IGNORECASE,
)

# "27 6 2001 15:23:36" (a numeric month, seen from Korean and Japanese clients and in old RFC 822 tests).
_NUMERIC_DATE_RE = re.compile(
    r"(?<!\d)(?P<a>\d{1,2})[\s./-]+(?P<b>\d{1,2})[\s./-]+(?P<year>\d{2}|\d{4})\s+"
    r"(?P<hour>\d{1,2}):(?P<minute>\d{2})(?::(?P<second>\d{2}))?\s*(?P<tz>[+-]\d{4})?(?!\d)"
)


def _offset_seconds(tz: str) -> int:
    digits = tz[1:].replace(":", "")
    return (int(digits[:2]) * 3600 + int(digits[2:4] or 0) * 60) * (-1 if tz[0] == "-" else 1)


# A zone more than 14 hours from UTC does not exist (the extreme is +14:00, Kiribati).
_MAX_OFFSET_SECONDS = 14 * 3600 + 45 * 60


def _build(year: int, month: int, day: int, hour: int, minute: int, second: int, offset: int | None):
    if year < 100:
        # RFC 5322 section 4.3: two-digit years 00-49 are 20xx, 50-99 are 19xx.
        year += 2000 if year < 50 else 1900
    if second == 60:
        second = 59  # a leap second
    try:
        local = datetime(year, month, day, hour, minute, second)
    except (ValueError, OverflowError):
        return None
    if offset is None or abs(offset) > _MAX_OFFSET_SECONDS:
        offset = 0
    try:
        utc = (local - timedelta(seconds=offset)).replace(tzinfo=UTC)
    except OverflowError:
        return None
    return utc, offset // 60


def parse_date(value: str | None) -> tuple[datetime, int] | None:
    """Parse a Date header. Returns ``(aware UTC datetime, sender's UTC offset in minutes)`` or None.

    RFC 5322 dates with comments, obsolete zone names and two-digit years; then ISO 8601; then a loose
    ``day month year hh:mm`` with month names in English, French, German, Italian, Spanish, Dutch.
    An unknown or absurd zone counts as UTC (offset 0).
    """
    if not value:
        return None
    text = _WS_RE.sub(" ", _strip_comments(unfold(raw_to_str(value.replace("\x00", ""))))).strip()
    if not text:
        return None
    candidates = [text]
    if ";" in text:
        # Received-style "... ; date": the date follows the last semicolon.
        candidates.append(text.rsplit(";", 1)[1].strip())
    for candidate in candidates:
        try:
            parsed = email.utils.parsedate_tz(candidate)
        except (ValueError, IndexError, OverflowError, TypeError):
            parsed = None
        if parsed is not None:
            year, month, day, hour, minute, second = parsed[:6]
            result = _build(year, month, day, hour, minute, second, parsed[9])
            if result is not None:
                return result
    try:
        iso = datetime.fromisoformat(text.replace(" ", "T", 1) if " " in text else text)
    except ValueError:
        iso = None
    if iso is not None:
        if iso.tzinfo is None:
            return iso.replace(tzinfo=UTC), 0
        utcoffset = iso.utcoffset() or timedelta(0)
        return iso.astimezone(UTC), int(utcoffset.total_seconds()) // 60
    numeric = _NUMERIC_DATE_RE.search(text)
    if numeric:
        first, second = int(numeric.group("a")), int(numeric.group("b"))
        # Day first (European and RFC order) unless that cannot be a month.
        day, month = (second, first) if second > 12 >= first else (first, second)
        tz = numeric.group("tz")
        offset = _offset_seconds(tz) if tz else 0
        result = _build(
            int(numeric.group("year")),
            month,
            day,
            int(numeric.group("hour")),
            int(numeric.group("minute")),
            int(numeric.group("second") or 0),
            offset,
        )
        if result is not None:
            return result
    match = _LOOSE_DATE_RE.search(text)
    if match:
        month = _MONTHS.get(match.group("month").lower().rstrip("."))
        if month is None:
            return None
        tz = match.group("tz")
        offset = _offset_seconds(tz) if tz and tz[0] in "+-" else 0
        return _build(
            int(match.group("year")),
            month,
            int(match.group("day")),
            int(match.group("hour") or 0),
            int(match.group("minute") or 0),
            int(match.group("second") or 0),
            offset,
        )
    return None


# --- list and automation headers ----------------------------------------------------------------------


def parse_list_id(value: str | None) -> str | None:
    """The list identifier of a List-Id header (RFC 2919), lowercased: ``Forum <forum.example.org>``
    gives ``forum.example.org``. Without brackets the last dotted token is taken."""
    if not value:
        return None
    text = unfold(raw_to_str(value.replace("\x00", "")))
    bracketed = _ANGLE_RE.findall(text)
    for token in reversed(bracketed):
        token = _WS_RE.sub("", token)
        if token:
            return token.lower()
    tokens = [t.strip("\"'<>") for t in _WS_RE.split(_strip_comments(text)) if t.strip("\"'<>")]
    dotted = [t for t in tokens if "." in t]
    if dotted:
        return dotted[-1].lower()
    return tokens[-1].lower() if tokens else None


def _keyword(value: str | None) -> str | None:
    if not value:
        return None
    text = _strip_comments(unfold(raw_to_str(value.replace("\x00", "")))).split(";", 1)[0]
    text = text.strip().strip("\"'").strip().lower()
    return text or None


def parse_auto_submitted(value: str | None) -> str | None:
    """The Auto-Submitted keyword (RFC 3834): ``no``, ``auto-replied``, ``auto-generated``,
    ``auto-notified``, ... lowercased, parameters and comments removed; None when absent."""
    return _keyword(value)


def is_auto_submitted(value: str | None) -> bool:
    """True when an Auto-Submitted header is present with any value other than ``no`` (RFC 3834 5.)."""
    keyword = parse_auto_submitted(value)
    return keyword is not None and keyword != "no"


def parse_precedence(value: str | None) -> str | None:
    """The Precedence keyword (``bulk``, ``list``, ``junk``, ``auto_reply``, ...), lowercased."""
    return _keyword(value)


# RFC 3834 section 2 and 5: auto-responders must not answer these; "auto_reply" is what vacation
# programs themselves set (Exchange, some Sendmail vacation versions).
_BULK_PRECEDENCE = frozenset({"bulk", "list", "junk", "auto_reply", "auto-reply"})


def is_bulk_precedence(value: str | None) -> bool:
    """True for ``Precedence: bulk / list / junk / auto_reply`` (mail that must not get auto-answers)."""
    return parse_precedence(value) in _BULK_PRECEDENCE
