"""parse_message on purpose-built messages: every field, every repair, every refusal."""

from __future__ import annotations

import base64
import os
import time
from datetime import UTC, datetime

import pytest

from passerelle.mail.addresses import Address
from passerelle.mail.parse import (
    MAX_PARTS,
    MessageParseError,
    ParsedMessage,
    parse_message,
    synthetic_message_id,
)
from tests.mail.conftest import corpus_folder

SIMPLE = (
    b"Return-Path: <alice@example.org>\r\n"
    b"From: =?utf-8?q?Am=C3=A9lie_Martin?= <Amelie@Example.ORG>\r\n"
    b"To: Forum <forum@lists.example.org>, bob@example.org\r\n"
    b'Cc: "Dupont, Ren\xc3\xa9" <rene@example.fr>\r\n'
    b"Reply-To: amelie+forum@example.org\r\n"
    b"Subject: RE : [forum] AW: =?utf-8?q?R=C3=A9union?= du jeudi\r\n"
    b"Date: Mon, 2 Feb 2026 10:15:00 +0100\r\n"
    b"Message-ID: <msg-2@example.org>\r\n"
    b"In-Reply-To: <msg-1@example.org> (Bob's message)\r\n"
    b"References: <msg-0@example.org>\r\n <msg-1@example.org> <msg-2@example.org>\r\n"
    b"List-Id: Forum <forum.lists.example.org>\r\n"
    b"Auto-Submitted: no\r\n"
    b"Precedence: list\r\n"
    b"X-Loop: forum@lists.example.org\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Content-Transfer-Encoding: 8bit\r\n"
    b"\r\n"
    b"Bonjour \xc3\xa0 tous,\r\n\r\nJeudi 10h.\r\n"
)


def test_every_field_of_a_plain_message() -> None:
    m = parse_message(SIMPLE)
    assert isinstance(m, ParsedMessage)
    assert m.message_id == "msg-2@example.org" and not m.message_id_is_synthetic
    assert m.in_reply_to == ("msg-1@example.org",)
    assert m.references == ("msg-0@example.org", "msg-1@example.org")  # own id dropped
    assert m.subject == "RE : [forum] AW: Réunion du jeudi"
    assert m.normalized_subject == "Réunion du jeudi"
    assert m.subject_is_reply
    assert (m.from_name, m.from_addr) == ("Amélie Martin", "Amelie@example.org")
    assert m.to == (Address("Forum", "forum@lists.example.org"), Address("", "bob@example.org"))
    assert m.cc == (Address("Dupont, René", "rene@example.fr"),)
    assert m.reply_to == (Address("", "amelie+forum@example.org"),)
    assert m.date == datetime(2026, 2, 2, 9, 15, tzinfo=UTC)
    assert m.date_offset_minutes == 60
    assert m.list_id == "forum.lists.example.org"
    assert m.auto_submitted == "no"
    assert m.precedence == "list"
    assert m.x_loop == ("forum@lists.example.org",)
    assert m.text == "Bonjour à tous,\n\nJeudi 10h."  # leading/trailing blank lines trimmed
    assert m.html is None
    assert m.attachments == ()
    assert m.defects == ()
    assert m.raw_size == len(SIMPLE)
    assert m.header("subject") == "RE : [forum] AW: Réunion du jeudi"
    assert m.header_all("X-Loop") == ["forum@lists.example.org"]
    assert m.raw_header("Subject") == "RE : [forum] AW: =?utf-8?q?R=C3=A9union?= du jeudi"
    assert m.header("X-Nope") is None


def test_missing_message_id_gets_a_stable_synthetic_one() -> None:
    raw = b"From: a@example.org\nSubject: x\n\nbody\n"
    first, second = parse_message(raw), parse_message(raw)
    assert first.message_id == second.message_id == synthetic_message_id(raw)
    assert first.message_id.endswith("@passerelle.invalid")
    assert first.message_id_is_synthetic
    assert "message-id-missing" in first.defects
    assert "date-missing" in first.defects and first.date is None
    garbage_id = parse_message(b"From: a@example.org\nMessage-ID: two words\n\nbody\n")
    assert garbage_id.message_id_is_synthetic and "message-id-invalid" in garbage_id.defects


def _mime(parts: list[bytes], subtype: str = "mixed", boundary: bytes = b"BOUND") -> bytes:
    head = b"From: a@example.org\r\nMessage-ID: <m@x.example>\r\nMIME-Version: 1.0\r\n"
    head += b"Content-Type: multipart/" + subtype.encode() + b'; boundary="' + boundary + b'"\r\n\r\n'
    body = b"".join(b"--" + boundary + b"\r\n" + p + b"\r\n" for p in parts)
    return head + body + b"--" + boundary + b"--\r\n"


def test_alternative_prefers_plain_and_keeps_html() -> None:
    raw = _mime(
        [
            b"Content-Type: text/plain; charset=utf-8\r\n\r\nTexte brut",
            b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Texte <b>riche</b></p>",
        ],
        "alternative",
    )
    m = parse_message(raw)
    assert m.text == "Texte brut"
    assert m.html == "<p>Texte <b>riche</b></p>"


def test_html_only_is_converted() -> None:
    raw = _mime(
        [
            b"Content-Type: text/html\r\n\r\n<html><head><meta charset='iso-8859-1'></head>"
            b"<body><p>Fronti\xe8re</p><ul><li>un</li></ul></body></html>"
        ],
        "alternative",
    )
    m = parse_message(raw)
    assert m.text == "Frontière\n\n• un"
    assert m.html is not None and "Fronti" in m.html


def test_empty_plain_alternative_falls_back_to_html() -> None:
    raw = _mime(
        [b"Content-Type: text/plain\r\n\r\n  ", b"Content-Type: text/html\r\n\r\n<p>Seul le HTML</p>"], "alternative"
    )
    assert parse_message(raw).text == "Seul le HTML"


def test_mixed_body_parts_and_list_footer_are_joined() -> None:
    raw = _mime(
        [
            b"Content-Type: text/plain\r\n\r\nLe message.",
            b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="a.pdf"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.b64encode(b"%PDF-1.4 fake"),
            b"Content-Type: text/plain\r\n\r\n_______________\r\nForum mailing list",
        ]
    )
    m = parse_message(raw)
    assert m.text == "Le message.\n\n_______________\nForum mailing list"
    assert [(a.filename, a.content_type, a.data, a.inline) for a in m.attachments] == [
        ("a.pdf", "application/pdf", b"%PDF-1.4 fake", False)
    ]


def test_attachment_filenames_rfc2231_rfc2047_and_paths() -> None:
    raw = _mime(
        [
            b"Content-Type: text/plain\r\n\r\nVoir pi\xc3\xa8ces.",
            b"Content-Type: application/octet-stream\r\n"
            b"Content-Disposition: attachment; filename*=utf-8''Fronti%C3%A8re%20plan.pdf\r\n\r\nx",
            b'Content-Type: application/octet-stream; name="=?utf-8?B?w6l0w6kuZG9jeA==?="\r\n'
            b"Content-Disposition: attachment\r\n\r\ny",
            b"Content-Type: image/png\r\n"
            b'Content-Disposition: attachment; filename="C:\\\\fakepath\\\\..\\\\carte.png"\r\n\r\nz',
            b"Content-Type: application/zip\r\nContent-Disposition: attachment\r\n\r\nw",
            b'Content-Type: text/plain\r\nContent-Disposition: attachment; filename="caf\xc3\xa9.txt"\r\n\r\nv',
        ]
    )
    names = [a.filename for a in parse_message(raw).attachments]
    assert names == ["Frontière plan.pdf", "été.docx", "carte.png", "attachment-4.zip", "café.txt"]


def test_related_inline_image_keeps_content_id() -> None:
    related = (
        b'Content-Type: multipart/related; boundary="REL"\r\n\r\n'
        b'--REL\r\nContent-Type: text/html\r\n\r\n<p>Carte <img src="cid:img1@x" alt="carte"></p>\r\n'
        b"--REL\r\nContent-Type: image/png\r\nContent-ID: <img1@x>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(b"\x89PNG fake")
        + b"\r\n--REL--"
    )
    m = parse_message(_mime([related], "alternative"))
    assert m.text == "Carte [carte]"
    (image,) = m.attachments
    assert (image.content_id, image.inline, image.data) == ("img1@x", True, b"\x89PNG fake")


def test_charset_repairs_are_named_in_defects() -> None:
    unknown = parse_message(b"From: a@x.example\nContent-Type: text/plain; charset=x-klingon\n\ncaf\xc3\xa9\n")
    assert unknown.text == "café"
    assert "unknown-charset:x-klingon" in unknown.defects
    lying = parse_message(b"From: a@x.example\nContent-Type: text/plain; charset=utf-8\n\ncaf\xe9 cr\xe8me\n")
    assert lying.text == "café crème"
    assert "charset-mismatch:utf-8" in lying.defects
    unlabelled = parse_message(b"From: a@x.example\n\nna\xefve\n")
    assert unlabelled.text == "naïve"
    bad_cte = parse_message(
        b"From: a@x.example\nContent-Type: text/plain; charset=utf-8\n"
        b"Content-Transfer-Encoding: Quoted-Printable   \n\nR=C3=A9union\n"
    )
    assert bad_cte.text == "Réunion"


def test_format_flowed_is_unwrapped() -> None:
    raw = (
        b"From: a@x.example\nContent-Type: text/plain; charset=utf-8; format=flowed; delsp=no\n\n"
        b"Une longue ligne coup\xc3\xa9e \nen deux.\n> cit\xc3\xa9e \n> aussi\n-- \nsig\n"
    )
    assert parse_message(raw).text == "Une longue ligne coupée en deux.\n> citée aussi\n-- \nsig"


def test_forwarded_message_inline_and_as_attachment() -> None:
    inner = (
        b"From: Bob <bob@x.example>\r\nSubject: Original\r\nDate: Mon, 2 Feb 2026 10:00:00 +0000\r\n\r\nTexte original"
    )
    inline = parse_message(
        _mime([b"Content-Type: text/plain\r\n\r\nFYI", b"Content-Type: message/rfc822\r\n\r\n" + inner])
    )
    assert "FYI" in inline.text and "Texte original" in inline.text and "Subject: Original" in inline.text
    attached = parse_message(
        _mime(
            [
                b"Content-Type: text/plain\r\n\r\nFYI",
                b"Content-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n" + inner,
            ]
        )
    )
    assert attached.text == "FYI"
    (eml,) = attached.attachments
    assert eml.filename == "Original.eml" and eml.content_type == "message/rfc822" and b"Texte original" in eml.data


def test_detached_signatures_are_kept_as_attachments() -> None:
    raw = _mime(
        [
            b"Content-Type: text/plain\r\n\r\nSigned.",
            b'Content-Type: application/pgp-signature\r\nContent-Disposition: attachment; filename="signature.asc"'
            b"\r\n\r\n-----BEGIN PGP SIGNATURE-----",
        ],
        "signed",
    )
    m = parse_message(raw)
    assert m.text == "Signed."
    assert [(a.filename, a.content_type) for a in m.attachments] == [("signature.asc", "application/pgp-signature")]


# --- garbage -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", [b"", b"\r\n\r\n  \n"])
def test_empty_input_is_refused(raw: bytes) -> None:
    with pytest.raises(MessageParseError, match="empty message"):
        parse_message(raw)


def test_random_bytes_are_refused_with_a_reason() -> None:
    with pytest.raises(MessageParseError, match="no mail header section"):
        parse_message(bytes([0x8F, 0x00, 0xFF]) + os.urandom(4096))


def test_random_bytes_never_crash() -> None:
    import random

    rng = random.Random(2026)
    for _ in range(200):
        blob = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 400)))
        prefix = rng.choice([b"", b"From: a@b.example\n", b"Content-Type: multipart/mixed; boundary=x\n\n--x\n"])
        try:
            parse_message(prefix + blob)
        except MessageParseError as error:
            assert error.reason


def test_str_input_is_a_programming_error() -> None:
    with pytest.raises(TypeError):
        parse_message("From: a@b.example\n\nx")  # type: ignore[arg-type]


def test_over_the_size_limit_is_refused() -> None:
    raw = b"From: a@x.example\nSubject: big\n\n" + b"x" * (30 * 1024 * 1024)
    with pytest.raises(MessageParseError, match="over the 26214400-byte limit"):
        parse_message(raw)
    with pytest.raises(MessageParseError, match="over the 100-byte limit"):
        parse_message(SIMPLE, max_bytes=100)


def test_a_large_attachment_within_the_limit_is_fine() -> None:
    payload = os.urandom(6 * 1024 * 1024)
    raw = _mime(
        [
            b"Content-Type: text/plain\r\n\r\nGros fichier.",
            b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            b'Content-Disposition: attachment; filename="big.bin"\r\n\r\n' + base64.encodebytes(payload),
        ]
    )
    m = parse_message(raw)
    assert m.text == "Gros fichier." and m.attachments[0].data == payload


def test_ten_thousand_parts_are_capped(report) -> None:
    parts = [b"Content-Type: application/octet-stream\r\n\r\n%d" % i for i in range(10_000)]
    raw = _mime([b"Content-Type: text/plain\r\n\r\nfirst", *parts])
    started = time.perf_counter()
    m = parse_message(raw)
    elapsed = time.perf_counter() - started
    assert m.text == "first"
    assert len(m.attachments) < MAX_PARTS
    assert f"too-many-parts:over-{MAX_PARTS}" in m.defects
    report("parse_message of a mail with 10,000 parts", f"{elapsed:.2f}s")


def test_nul_bytes_in_headers_and_body_are_removed() -> None:
    raw = b"From: Ali\x00ce <alice@x.example>\nSubject: he\x00llo\nMessage-ID: <a\x00b@x.example>\n\nbo\x00dy\n"
    m = parse_message(raw)
    assert "\x00" not in m.subject + m.from_name + m.message_id + m.text
    assert (m.subject, m.from_name, m.message_id, m.text) == ("hello", "Alice", "ab@x.example", "body")
    assert all("\x00" not in name + value for name, value in m.headers)


def test_truncated_boundaries_keep_the_text() -> None:
    no_close = (
        b"From: a@x.example\nContent-Type: multipart/mixed; boundary=b\n\n--b\nContent-Type: text/plain\n\n"
        b"premier\n--b\nContent-Type: text/plain\n\nsecond"
    )
    m = parse_message(no_close)
    assert "premier" in m.text and "second" in m.text
    never_opened = b"From: a@x.example\nContent-Type: multipart/mixed; boundary=zz\n\nle texte sans partie\n"
    m = parse_message(never_opened)
    assert "le texte sans partie" in m.text and "multipart-without-parts" in m.defects
    cut_mid_base64 = (
        b"From: a@x.example\nContent-Type: multipart/mixed; boundary=b\n\n--b\n"
        b"Content-Type: text/plain\nContent-Transfer-Encoding: base64\n\nQm9uam91ciDDoCB0b3Vz!!\n"
    )
    assert parse_message(cut_mid_base64).text.startswith("Bonjour à tous")


def test_absurdly_deep_nesting_is_refused_or_bounded() -> None:
    depth = 1200
    raw = (
        b"From: a@x.example\n"
        + b"".join(b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(depth))
        + b"Content-Type: text/plain\n\ndeep\n"
    )
    try:
        m = parse_message(raw)
    except MessageParseError as error:
        assert "nested too deeply" in error.reason
    else:
        assert any(d.startswith("too-deep") for d in m.defects)


def test_throughput_on_real_list_mail(corpus, report) -> None:
    import gzip
    import re

    mbox = corpus_folder(corpus, "jwzthreading-fedora-devel") / "jwzthreading/tests/data/fedora-devel-mailman"
    data = gzip.decompress((mbox / "2010-January.txt.gz").read_bytes())
    messages = re.split(rb"\n(?=From \S+ {1,2}\w{3} \w{3} +\d+ [\d:]+ \d{4}\n)", data)
    assert len(messages) == 292
    for raw in messages:  # warm-up: regex compilation, lazy imports
        parse_message(raw)
    best = 0.0
    for _ in range(3):  # best of three: the machine is shared, the minimum time is the honest figure
        started = time.perf_counter()
        for raw in messages:
            parse_message(raw)
        best = max(best, len(messages) / (time.perf_counter() - started))
    report("parse_message throughput (fedora-devel, avg 5.5 kB, best of 3)", f"{best:,.0f} messages/s")


def test_archive_folklore_dates_and_addresses() -> None:
    resent = parse_message(b"From: a@x.example\nResent-Date: Mon, 8 Nov 1999 20:53:05 -0600\n\nx")
    assert resent.date == datetime(1999, 11, 9, 2, 53, 5, tzinfo=UTC)
    assert "date-from-resent-date" in resent.defects
    envelope = parse_message(b"From zzz@example.com  Tue Nov  9 21:54:11 1999\nFrom: zzz@example.com\n\nx")
    assert envelope.date == datetime(1999, 11, 9, 21, 54, 11, tzinfo=UTC)
    numeric = parse_message(b"From: a@x.example\nDate: \xec\x9b\x94, 27 6 2001 15:23:36\n\nx")
    assert numeric.date == datetime(2001, 6, 27, 15, 23, 36, tzinfo=UTC)
    pipermail = parse_message(b"From: vondruch at redhat.com (=?UTF-8?B?VsOtdCBPbmRydWNo?=)\n\nx")
    assert (pipermail.from_name, pipermail.from_addr) == ("Vít Ondruch", "vondruch@redhat.com")


def test_mangled_content_type_keeps_the_file_a_file() -> None:
    raw = (
        b'From: a@x.example\nContent-Type: %22%22"application%22%22/pdf; name\\"x.pdf""\n'
        b"Content-Transfer-Encoding: base64\n\nJVBERi0xLjQ=\n"
    )
    m = parse_message(raw)
    assert m.text == ""
    assert [(a.content_type, a.data) for a in m.attachments] == [("application/pdf", b"%PDF-1.4")]


def test_a_year_of_a_real_list_parses(corpus, report) -> None:
    """r-help 2019 as exported by pipermail: reduced headers, obfuscated addresses, no MIME."""
    import re

    data = (corpus_folder(corpus, "r-help-pipermail") / "r-help-2019.mbox").read_bytes()
    messages = re.split(rb"\n(?=From \S.* \w{3} \w{3} +\d+ [\d:]+ \d{4}\n)", data)
    # The README's 4,258 counts every line starting "From "; 11 are body text, not envelopes.
    assert len(messages) == 4247
    dated = with_text = real_ids = 0
    for raw in messages:
        m = parse_message(raw)
        dated += m.date is not None
        with_text += bool(m.text.strip())
        real_ids += not m.message_id_is_synthetic
    report("r-help 2019 (4,247 msgs): dated / with text / with Message-ID", f"{dated} / {with_text} / {real_ids}")
    assert dated == with_text == real_ids == len(messages)
