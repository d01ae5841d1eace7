"""Address headers (From, To, Cc, Reply-To, Sender), validation and VERP.

The address-list parser is our own small RFC 5322 tokenizer rather than ``email.utils.getaddresses``:
the stdlib one of Python 3.11 mis-parses crafted values (CVE-2023-27043, e.g. a quoted display name
holding another address), and the From address decides who is a member. Display names are RFC 2047
decoded *after* splitting, so an encoded comma never splits a name.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import email_validator

from .headers import decode_header_value, raw_to_str, unfold


class Address(NamedTuple):
    """A mailbox: display name (decoded, may be empty) and addr-spec with its domain lowercased."""

    name: str
    addr: str


class InvalidAddressError(ValueError):
    """An address email-validator refuses; ``reason`` says why in words a person can act on."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address!r}: {reason}")
        self.address = address
        self.reason = reason


def normalize_addr(addr: str) -> str:
    """Lowercase the domain of an addr-spec and strip blanks, quotes and a ``mailto:`` prefix.

    The local part keeps its case: RFC 5321 leaves it to the receiving host.
    """
    addr = addr.strip().strip("<>").strip()
    if addr[:7].lower() == "mailto:":
        addr = addr[7:]
    if "@" not in addr:
        return addr
    local, _, domain = addr.rpartition("@")
    return f"{local}@{domain.strip().rstrip('.').lower()}"


def _split_top_level(value: str) -> list[tuple[str, str]]:
    """Split an address-list value into (kind, text) items: ``("mailbox", text)`` separated at top-level
    commas and semicolons; a group's ``name:`` is dropped, its members kept (RFC 5322 3.4)."""
    items: list[tuple[str, str]] = []
    current: list[str] = []
    depth = 0  # comment nesting
    in_quote = False
    in_angle = False
    escape = False
    for ch in value:
        if escape:
            current.append(ch)
            escape = False
            continue
        if ch == "\\" and (in_quote or depth):
            current.append(ch)
            escape = True
            continue
        if depth:
            current.append(ch)
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            continue
        if in_quote:
            current.append(ch)
            if ch == '"':
                in_quote = False
            continue
        if ch == '"' and not in_angle:
            in_quote = True
        elif ch == "(":
            depth = 1
        elif ch == "<":
            in_angle = True
        elif ch == ">":
            in_angle = False
        elif not in_angle and ch in ",;":
            items.append(("mailbox", "".join(current)))
            current = []
            continue
        elif not in_angle and ch == ":" and "@" not in "".join(current) and "<" not in "".join(current):
            # "Group name:" starts a group; its members follow until ";".
            current = []
            continue
        current.append(ch)
    items.append(("mailbox", "".join(current)))
    return items


def _unquote(text: str) -> str:
    out: list[str] = []
    escape = False
    for ch in text:
        if escape:
            out.append(ch)
            escape = False
        elif ch == "\\":
            escape = True
        elif ch != '"':
            out.append(ch)
    return "".join(out)


_ARCHIVE_AT_RE = re.compile(r"([^\s@<>()\"]+)\s+at\s+([^\s@<>()\"]+\.[^\s@<>()\"]+)")
_COMMENT_RE = re.compile(r"\((?:[^()\\]|\\.)*\)")
_WS_RE = re.compile(r"\s+")


def _comments(text: str) -> tuple[str, list[str]]:
    """Remove (possibly nested) comments; return the rest and the comments' text."""
    found: list[str] = []
    previous = None
    while previous != text:
        previous = text
        found.extend(m.group(0)[1:-1] for m in _COMMENT_RE.finditer(text))
        text = _COMMENT_RE.sub(" ", text)
    return text, [c.strip() for c in found if c.strip()]


def _decode_name(text: str) -> str:
    # Quoted strings are unquoted, but encoded words inside them are decoded too: RFC 2047 forbids
    # it, most clients do it anyway (stalwart's corpus has both forms).
    return _WS_RE.sub(" ", decode_header_value(_unquote(text))).strip()


def _parse_mailbox(text: str) -> Address | None:
    text = text.strip()
    if not text:
        return None
    if "<" in text and ">" in text[text.rfind("<") :]:
        start = text.rfind("<")
        end = text.find(">", start)
        inside, _ = _comments(text[start + 1 : end])
        inside = _WS_RE.sub("", inside)
        # Obsolete source routes (<@relay1,@relay2:user@host>): keep the final mailbox only.
        if inside.startswith("@") and ":" in inside:
            inside = inside.split(":", 1)[1]
        name_part = text[:start] + " " + text[end + 1 :]
        rest, comments = _comments(name_part)
        name = _decode_name(rest)
        if not name and comments:
            name = _decode_name(" ".join(comments))
        if not inside:
            return None
        return Address(name, normalize_addr(raw_to_str(inside)))
    rest, comments = _comments(text)
    obfuscated = _ARCHIVE_AT_RE.fullmatch(rest.strip())
    # Pipermail archives print "user at example.org (Name)"; the importer reads them back.
    addr = f"{obfuscated.group(1)}@{obfuscated.group(2)}" if obfuscated else _WS_RE.sub("", rest)
    if not addr or "@" not in addr:
        return None
    name = _decode_name(" ".join(comments)) if comments else ""
    return Address(name, normalize_addr(raw_to_str(addr)))


# The everyday forms, "Name <addr>" and "addr", separated by commas: no quotes, comments, groups or
# encoded words, so no need for the full tokenizer.
_ATOM_ADDR = r"[^<>\s\"(),;:\\]+@[^<>\s\"(),;:\\]+"
_SIMPLE_MAILBOX_RE = re.compile(r"\s*(?:([^\"()<>,;:\\=@]*?)\s*<(" + _ATOM_ADDR + r")>|(" + _ATOM_ADDR + r"))\s*")


def _parse_simple(text: str) -> list[Address] | None:
    out: list[Address] = []
    for item in text.split(","):
        match = _SIMPLE_MAILBOX_RE.fullmatch(item)
        if match is None:
            return None
        if match.group(3):
            out.append(Address("", normalize_addr(match.group(3))))
        else:
            out.append(Address(match.group(1).strip(), normalize_addr(match.group(2))))
    return out


def parse_address_list(value: str | None) -> list[Address]:
    """Every mailbox of an address header (groups flattened), in order. Never raises.

    Takes the raw header value (still RFC 2047-encoded); a mailbox without an ``@`` and without
    angle brackets is ignored (``Undisclosed recipients:;`` gives an empty list).
    """
    if not value:
        return []
    text = unfold(value.replace("\x00", ""))
    if text.isascii():
        simple = _parse_simple(text)
        if simple is not None:
            return simple
    text = raw_to_str(text) if not text.isascii() else text
    out: list[Address] = []
    for _, item in _split_top_level(text):
        try:
            mailbox = _parse_mailbox(item)
        except (ValueError, IndexError):
            mailbox = None
        if mailbox is not None:
            out.append(mailbox)
    return out


def parse_address(value: str | None) -> Address | None:
    """The first mailbox of an address header (From, Sender), or None."""
    found = parse_address_list(value)
    return found[0] if found else None


def validate_address(addr: str, *, allow_test_domains: bool = False) -> str:
    """Validate an addr-spec with email-validator (syntax only, no DNS) and return its normal form.

    Raises :class:`InvalidAddressError` with email-validator's explanation. ``allow_test_domains``
    accepts the reserved ``.test`` names (test suites and demo setups).
    """
    try:
        result = email_validator.validate_email(
            addr,
            check_deliverability=False,
            test_environment=allow_test_domains,
        )
    except email_validator.EmailNotValidError as exc:
        raise InvalidAddressError(addr, str(exc)) from exc
    return normalize_addr(result.normalized)


def is_valid_address(addr: str, *, allow_test_domains: bool = False) -> bool:
    """True when :func:`validate_address` accepts ``addr``."""
    try:
        validate_address(addr, allow_test_domains=allow_test_domains)
    except InvalidAddressError:
        return False
    return True


# --- VERP ----------------------------------------------------------------------------------------------
# Variable Envelope Return Path: the bounce address carries the recipient, so a bounce names who bounced
# even when the DSN is unreadable. Postfix/qmail convention: "list-bounces+alice=example.org@domain".


def verp_encode(list_local: str, domain: str, recipient: str) -> str:
    """``verp_encode("forum-bounces", "lists.example.org", "alice@example.org")`` gives
    ``forum-bounces+alice=example.org@lists.example.org``. Raises ValueError for a recipient without @."""
    recipient = normalize_addr(recipient)
    local, sep, rdomain = recipient.rpartition("@")
    if not sep or not local or not rdomain:
        raise ValueError(f"cannot VERP-encode {recipient!r}: not an addr-spec (local@domain)")
    if local.startswith('"') and local.endswith('"'):
        local = local[1:-1]
    return f"{list_local}+{local}={rdomain}@{domain.lower()}"


def verp_decode(address: str, *, list_local: str | None = None) -> str | None:
    """The recipient encoded in a VERP address, or None when ``address`` is not one.

    With ``list_local`` the part before ``+`` must match it (case-insensitively). The recipient's
    local part may itself contain ``+`` or ``=``: the domain is after the *last* ``=``.
    """
    if not address:
        return None
    address = address.strip().strip("<>").strip()
    local, sep, _domain = address.rpartition("@")
    if not sep:
        return None
    local = local.strip('"')
    prefix, plus, encoded = local.partition("+")
    if not plus or not prefix or not encoded:
        return None
    if list_local is not None and prefix.lower() != list_local.lower():
        return None
    rlocal, eq, rdomain = encoded.rpartition("=")
    if not eq or not rlocal or not rdomain or "." not in rdomain or "@" in rdomain:
        return None
    return normalize_addr(f"{rlocal}@{rdomain}")
