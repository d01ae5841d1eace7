"""Header folklore: RFC 2047, Message-IDs, dates, List-Id, Auto-Submitted, Precedence."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from passerelle.mail.headers import (
    decode_bytes,
    decode_header_value,
    extract_message_ids,
    format_message_id,
    is_auto_submitted,
    is_bulk_precedence,
    lookup_charset,
    parse_auto_submitted,
    parse_date,
    parse_list_id,
    parse_message_id,
    parse_precedence,
    parse_references,
)
from tests.mail.conftest import corpus_folder


def _vectors(corpus, name: str) -> list[dict]:
    return json.loads((corpus_folder(corpus, "stalwart-mail-parser") / "resources" / f"{name}.json").read_text())


def _header_value(raw: str) -> str:
    # The vectors are "value CRLF [next header]"; a header value ends at a line break not followed by
    # folding white space, as the parser would cut it.
    lines = raw.replace("\r\n", "\n").split("\n")
    kept = [lines[0]]
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            kept.append(line)
        else:
            break
    return "\n".join(kept)


def test_stalwart_rfc2047_vectors(corpus, report) -> None:
    vectors = _vectors(corpus, "unstructured")
    matched = [v for v in vectors if decode_header_value(_header_value(v["header"])) == v["expected"]]
    report("stalwart RFC 2047 vectors", f"{len(matched)}/{len(vectors)}")
    assert len(matched) == len(vectors)


def test_stalwart_message_id_vectors(corpus, report) -> None:
    vectors = [v for v in _vectors(corpus, "id") if v["expected"] is not None]
    matched = []
    for v in vectors:
        got = extract_message_ids(_header_value(v["header"]), allow_bare_token=True)
        want = [i.replace(" ", "") for i in v["expected"]]  # we remove blanks inside ids on purpose
        if got == want:
            matched.append(v)
    report("stalwart Message-ID vectors", f"{len(matched)}/{len(vectors)}")
    assert len(matched) == len(vectors)


def test_stalwart_date_vectors(corpus, report) -> None:
    vectors = _vectors(corpus, "date")
    matched = 0
    for v in vectors:
        got = parse_date(v["header"])
        want = v["expected"]
        if want is None:
            matched += got is None
            continue
        if got is None:
            continue
        offset = (want["tz_hour"] * 60 + want["tz_minute"]) * (-1 if want["tz_before_gmt"] else 1)
        local = datetime(want["year"], want["month"], want["day"], want["hour"], want["minute"], want["second"])
        expected_utc = (local.replace(tzinfo=UTC)).timestamp() - offset * 60
        matched += got[0].timestamp() == expected_utc and got[1] == offset
    report("stalwart date vectors", f"{matched}/{len(vectors)}")
    # Misses: numeric months ("20 11 79"), a nonsense all-numbers line, zone names we map to UTC.
    assert matched >= len(vectors) - 6


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("=?utf-8?q?R=C3=A9union?=", "Réunion"),
        ("=?UTF-8?B?UsOpdW5pb24=?=", "Réunion"),
        ("=?utf-8?B?UsOpdW5pb24?=", "Réunion"),  # missing padding
        ("=?iso-8859-1?q?Fr=F6sche?=", "Frösche"),
        ("=?x-unknown-charset?q?caf=C3=A9?=", "café"),
        ("=?x-unknown-charset?q?caf=E9?=", "caf\ufffd"),
        ("=?utf-8?B?w6k=?= =?utf-8?B?w6k=?=", "éé"),
        ("=?UTF-8?B?4pyI?= =?UTF-8?B?77iP?=", "✈️"),
        ("Caf\udcc3\udca9 raw 8-bit", "Café raw 8-bit"),
        ("Caf\udce9 latin-1 8-bit", "Café latin-1 8-bit"),
        ("a\x00b\x07c", "ab c"),
        ("=?utf-8?q?", "=?utf-8?q?"),
        ("", ""),
    ],
)
def test_decode_header_value(raw: str, expected: str) -> None:
    assert decode_header_value(raw) == expected


def test_broken_encoded_words_do_not_crash() -> None:
    assert "\ufffd" in decode_header_value("=?utf-8?B?w6?= =?utf-8?B?k=?=")


def test_split_multibyte_character_across_words_survives() -> None:
    # "é" is C3 A9; Python's old email.header and some clients split it between two words.
    assert decode_header_value("=?utf-8?q?caf=C3?= =?utf-8?q?=A9?=") == "café"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("<a@b.example>", ["a@b.example"]),
        ("  <a@b.example>  ", ["a@b.example"]),
        ("<a@b.example> <c@d.example>", ["a@b.example", "c@d.example"]),
        ("<a@b.example>\n <c@d.example>", ["a@b.example", "c@d.example"]),
        ("<a@b.example> (Bob's message of Mon, 1 Jan <bob@x.example>)", ["a@b.example"]),
        ('Message from "Bob" <bob@x.example> of "Mon" <id@x.example>', ["bob@x.example", "id@x.example"]),
        ("a@b.example", ["a@b.example"]),
        ("a@b.example c@d.example", ["a@b.example", "c@d.example"]),
        ("<a@b.example> <a@b.example>", ["a@b.example"]),
        ("<a@b\n .example>", ["a@b.example"]),
        ("Your message of Mon, 1 Jan", []),
        ("<>", []),
        ("<" + "x" * 2000 + "@y>", []),
        ("", []),
    ],
)
def test_extract_message_ids(raw: str, expected: list[str]) -> None:
    assert extract_message_ids(raw) == expected


def test_message_id_helpers() -> None:
    assert parse_message_id("  <Abc.123@Host.Example> ") == "Abc.123@Host.Example"
    assert parse_message_id("bare-token-without-at") == "bare-token-without-at"
    assert parse_message_id("two tokens") is None
    assert parse_message_id(None) is None
    assert parse_references("<1@x> <2@x> <1@x> <3@x>") == ["1@x", "2@x", "3@x"]
    assert format_message_id("a@b") == "<a@b>"
    assert format_message_id("<a@b>") == "<a@b>"


@pytest.mark.parametrize(
    ("raw", "utc", "offset"),
    [
        ("Tue, 1 Jul 2003 10:52:37 +0200", datetime(2003, 7, 1, 8, 52, 37, tzinfo=UTC), 120),
        ("Fri, 21 Nov 1997 09:55:06 -0600", datetime(1997, 11, 21, 15, 55, 6, tzinfo=UTC), -360),
        ("Thu, 13 Feb 1969 23:32 -0330 (Newfoundland Time)", datetime(1969, 2, 14, 3, 2, tzinfo=UTC), -210),
        ("21 Nov 97 09:55:06 GMT", datetime(1997, 11, 21, 9, 55, 6, tzinfo=UTC), 0),
        ("Mon, 5 Jan 2026 10:00:00 +9900", datetime(2026, 1, 5, 10, 0, tzinfo=UTC), 0),  # absurd zone
        ("2026-01-05T10:00:00+01:00", datetime(2026, 1, 5, 9, 0, tzinfo=UTC), 60),
        ("2026-01-05 10:00:00", datetime(2026, 1, 5, 10, 0, tzinfo=UTC), 0),
        ("lun., 5 janv. 2026 10:00:00 +0100", datetime(2026, 1, 5, 9, 0, tzinfo=UTC), 60),
        ("Mo, 5 Mär 2026 10:00 +0100", datetime(2026, 3, 5, 9, 0, tzinfo=UTC), 60),
        ("mer 5 agosto 2026 10:00 +0200", datetime(2026, 8, 5, 8, 0, tzinfo=UTC), 120),
        ("by mx; Mon, 10 Oct 2022 10:31:15 -0700 (PDT)", datetime(2022, 10, 10, 17, 31, 15, tzinfo=UTC), -420),
    ],
)
def test_parse_date_keeps_offset(raw: str, utc: datetime, offset: int) -> None:
    parsed = parse_date(raw)
    assert parsed is not None
    assert parsed[0] == utc
    assert parsed[0].tzinfo is UTC
    assert parsed[1] == offset


@pytest.mark.parametrize(
    "raw", ["", "   ", "soon", "Tue, 7 Bog 2026 19:14:51 +0000", "31 Feb 2026 10:00 +0000", "\x00\x00", "9" * 500]
)
def test_parse_date_unparseable_gives_none(raw: str) -> None:
    assert parse_date(raw) is None


def test_list_id() -> None:
    assert parse_list_id("Forum des frontaliers <Forum.Example.ORG>") == "forum.example.org"
    assert parse_list_id("<forum.example.org>") == "forum.example.org"
    assert parse_list_id("forum.example.org") == "forum.example.org"
    assert parse_list_id('"Forum" (comment) forum.example.org') == "forum.example.org"
    assert parse_list_id("") is None
    assert parse_list_id(None) is None


def test_auto_submitted_and_precedence() -> None:
    assert parse_auto_submitted("Auto-Replied; owner-email=x@y (vacation)") == "auto-replied"
    assert is_auto_submitted("auto-generated")
    assert is_auto_submitted("auto-notified")
    assert not is_auto_submitted("no")
    assert not is_auto_submitted("No (comment)")
    assert not is_auto_submitted(None)
    assert parse_precedence(" BULK ") == "bulk"
    for value in ("bulk", "list", "junk", "auto_reply"):
        assert is_bulk_precedence(value)
    assert not is_bulk_precedence("first-class")
    assert not is_bulk_precedence(None)


def test_charsets() -> None:
    assert lookup_charset("ISO-8859-1") == "cp1252"  # what senders really emit
    assert lookup_charset("US-ASCII*EN") == "ascii"
    assert lookup_charset("ks_c_5601-1987") == "cp949"
    assert lookup_charset("x-no-such-charset") is None
    assert lookup_charset("base64") is None  # a codec, but not a text encoding
    assert decode_bytes("é".encode(), "us-ascii") == ("é", "charset-mismatch:us-ascii")
    assert decode_bytes("é".encode("latin-1"), "utf-8") == ("é", "charset-mismatch:utf-8")
    assert decode_bytes("é".encode(), "x-bogus") == ("é", "unknown-charset:x-bogus")
    assert decode_bytes(b"plain", None) == ("plain", None)
    text, defect = decode_bytes(bytes(range(256)), "utf-8")
    assert len(text) == 256
    assert defect == "charset-mismatch:utf-8"


def test_header_functions_survive_garbage() -> None:
    import random

    rng = random.Random(1234)
    for _ in range(300):
        junk = "".join(chr(rng.choice([rng.randrange(0, 128), rng.randrange(0xDC80, 0xDD00)])) for _ in range(80))
        junk += rng.choice(["=?utf-8?b?", "=?", "?=", "<", ">", "(", ")", '"', "\n "])
        assert isinstance(decode_header_value(junk), str)
        assert isinstance(extract_message_ids(junk), list)
        parse_date(junk)
        parse_list_id(junk)
        parse_auto_submitted(junk)
