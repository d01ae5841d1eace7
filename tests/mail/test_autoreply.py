"""Auto-reply recognition: real RFC 3834 / Exchange / Apple auto-replies from the sisimai corpus, crafted
out-of-office subjects in the seven languages, the headers vacation programs set, ordinary forum subjects
that must not be mistaken for them, real list traffic, and garbage."""

from __future__ import annotations

import email
import re
from email import policy
from email.header import Header
from email.message import Message
from pathlib import Path

import pytest

from passerelle.mail.autoreply import autoreply_reason, is_null_sender


def _message(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=policy.compat32)


def _subject(msg: Message) -> str:
    return str(email.header.make_header(email.header.decode_header(str(msg.get("Subject", "")))))


def _headers(*pairs: tuple[str, str]) -> Message:
    msg = Message()
    for name, value in pairs:
        msg[name] = value
    return msg


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("rfc3834-01.eml", "Auto-Submitted: auto-replied (RFC 3834)"),  # "Away until May 5"
        ("rfc3834-02.eml", "X-Auto-Response-Suppress: All (Exchange automatic message)"),  # Automatic reply:
        ("rfc3834-03.eml", "X-Apple-Action: VACATION"),  # iCloud "Auto reply:"
        ("rfc3834-04.eml", "X-Auto-Response-Suppress: All (Exchange automatic message)"),
        ("rfc3834-05.eml", "Auto-Submitted: auto-replied (RFC 3834)"),  # null sender, gibberish subject
    ],
)
def test_sisimai_autoreplies(corpus: Path, name: str, expected: str) -> None:
    msg = _message((corpus / "sisimai-bounces" / "maildir" / "bsd" / name).read_bytes())
    assert autoreply_reason(msg, _subject(msg)) == expected


def test_sisimai_autoreplies_subjects_alone_are_recognised(corpus: Path) -> None:
    """Even stripped of their headers (a gateway that drops X-* headers), the subjects give them away."""
    for name in ("rfc3834-01.eml", "rfc3834-02.eml", "rfc3834-03.eml", "rfc3834-04.eml"):
        msg = _message((corpus / "sisimai-bounces" / "maildir" / "bsd" / name).read_bytes())
        assert autoreply_reason(_headers(), _subject(msg)) == "out-of-office subject (en)", name


def test_sisimai_non_bounces_are_not_autoreplies(corpus: Path) -> None:
    for path in sorted((corpus / "sisimai-bounces" / "maildir" / "not").glob("*.eml")):
        msg = _message(path.read_bytes())
        assert autoreply_reason(msg, _subject(msg)) is None, path.name


@pytest.mark.parametrize(
    ("subject", "language"),
    [
        ("Absence du bureau : Re: Réunion transfrontalière", "fr"),
        ("Réponse automatique : [forum] Obstacle fiscal", "fr"),
        ("Reponse automatique: Re: Obstacle", "fr"),
        ("Message d'absence", "fr"),
        ("Je suis absente jusqu'au 4 janvier", "fr"),
        ("Abwesenheitsnotiz: Grenzpendler und Krankenversicherung", "de"),
        ("Automatische Antwort: [forum] Anerkennung von Diplomen", "de"),
        ("Außer Haus bis 12.08.", "de"),
        ("Ausser Haus", "de"),
        ("Fuori sede: Re: Trasporti transfrontalieri", "it"),
        ("Risposta automatica: Obstacle", "it"),
        ("Fuera de la oficina: Re: Reconocimiento de títulos", "es"),
        ("Respuesta automática: [foro] Obstáculo", "es"),
        ("Respuesta automatica: Obstaculo", "es"),
        ("Automatisch antwoord: Re: Grensarbeiders", "nl"),
        ("Afwezigheidsmelding", "nl"),
        ("Resposta automática: Re: Obstáculo", "pt"),
        ("Fora do escritório", "pt"),
        ("Out of Office: Re: Cross-border health insurance", "en"),
        ("Out of the office until Monday", "en"),
        ("Automatic reply: [forum] Obstacle", "en"),
        ("AutoReply: Obstacle", "en"),
        ("Auto-Reply: Obstacle", "en"),
        ("[Auto-Reply] Obstacle", "en"),
        ("On vacation", "en"),
        ("I am away from the office", "en"),
        ("Auto: Re: Obstacle", "en"),
        ("=?utf-8?q?R=C3=A9ponse_automatique_=3A_Obstacle?=", "fr"),  # still RFC 2047-encoded
    ],
)
def test_out_of_office_subjects(subject: str, language: str) -> None:
    assert autoreply_reason(_headers(), subject) == f"out-of-office subject ({language})"


@pytest.mark.parametrize(
    "subject",
    [
        "Absence of social security coordination for frontier workers",
        "Re: Absence de reconnaissance des diplômes",
        "Urlaubsanspruch von Grenzgängern",
        "Automatic exchange of tax information between FR and DE",
        "Réponse à l'obstacle n°12 : la solution automatique",
        "Fuori dal comune: trasporti",
        "Respuesta a la consulta sobre oficinas de empleo",
        "Vacation days for cross-border workers",
        "Re: AW: TR: Obstacle transport",
        "Replying to the office of the prefect",
        "",
    ],
)
def test_forum_subjects_are_not_autoreplies(subject: str) -> None:
    assert autoreply_reason(_headers(("From", "someone@example.org")), subject) is None


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ((("Auto-Submitted", "auto-replied"),), "Auto-Submitted: auto-replied (RFC 3834)"),
        ((("Auto-Submitted", "Auto-Generated (failure)"),), "Auto-Submitted: auto-generated (RFC 3834)"),
        ((("Auto-Submitted", "auto-notified; owner-email=x@y.example"),), "Auto-Submitted: auto-notified (RFC 3834)"),
        ((("Precedence", "bulk"),), "Precedence: bulk"),
        ((("Precedence", " Junk "),), "Precedence: junk"),
        ((("Precedence", "list"),), "Precedence: list"),
        ((("Precedence", "auto_reply"),), "Precedence: auto_reply"),
        ((("X-Autoreply", "yes"),), "X-Autoreply: yes"),
        ((("X-Autorespond", "Thank you"),), "X-Autorespond: Thank you"),
        ((("X-Auto-Response-Suppress", "OOF"),), "X-Auto-Response-Suppress: OOF (Exchange automatic message)"),
        ((("X-Auto-Response-Suppress", "DR, RN, NRN, OOF, AutoReply"),),
         "X-Auto-Response-Suppress: DR, RN, NRN, OOF, AutoReply (Exchange automatic message)"),
        ((("X-MS-Exchange-Inbox-Rules-Loop", "marie@example.fr"),),
         "X-MS-Exchange-Inbox-Rules-Loop (sent by an Exchange mailbox rule)"),
        ((("X-Mailer", "vacation 1.2.7"),), "X-Mailer: vacation 1.2.7"),
        ((("X-Autogenerated", "Reply"),), "X-Autogenerated: Reply (GroupWise)"),
    ],
)
def test_autoreply_headers(headers: tuple[tuple[str, str], ...], expected: str) -> None:
    assert autoreply_reason(_headers(*headers), "Re: Obstacle") == expected


@pytest.mark.parametrize(
    "headers",
    [
        (("Auto-Submitted", "no"),),
        (("Auto-Submitted", "No (person)"),),
        (("Precedence", "first-class"),),
        (("X-Auto-Response-Suppress", "DR, RN"),),  # delivery/read receipts only: ordinary Outlook mail
        (("X-Autoreply", "no"),),
        (("X-Mailer", "Microsoft Outlook 16.0"),),
    ],
)
def test_ordinary_header_values_are_not_autoreplies(headers: tuple[tuple[str, str], ...]) -> None:
    assert autoreply_reason(_headers(*headers), "Obstacle: recognition of diplomas") is None


def test_plain_mapping_and_header_objects_are_accepted() -> None:
    assert autoreply_reason({"Auto-Submitted": "auto-replied"}, None) == "Auto-Submitted: auto-replied (RFC 3834)"
    assert autoreply_reason({"precedence": "bulk"}, "") == "Precedence: bulk"
    assert autoreply_reason({}, "Out of office") == "out-of-office subject (en)"
    msg = Message()
    msg["X-Autoreply"] = Header("yes", "utf-8")
    assert autoreply_reason(msg, "x") is not None


def test_real_list_traffic_has_no_autoreplies(corpus: Path, report) -> None:
    raw = (corpus / "r-help-pipermail" / "r-help-2019.mbox").read_bytes()
    messages = re.split(rb"\n(?=From \S+ )", raw)
    assert len(messages) > 4000
    flagged = []
    for chunk in messages:
        msg = _message(chunk.split(b"\n", 1)[1])
        if autoreply_reason(msg, _subject(msg)):
            flagged.append(_subject(msg))
    report("r-help messages flagged as auto-replies", f"{len(flagged)}/{len(messages)}")
    assert not flagged


def test_null_sender() -> None:
    assert is_null_sender(_headers(("Return-Path", "<>")))
    assert is_null_sender(_headers(("Return-Path", " <> ")))
    assert not is_null_sender(_headers(("Return-Path", "<marie@example.fr>")))
    assert not is_null_sender(_headers())
    assert is_null_sender({"Return-Path": "<>"})


@pytest.mark.parametrize("bad", [None, "Auto-Submitted: auto-replied", 42, b"headers"])
def test_garbage_headers_are_a_clear_type_error(bad: object) -> None:
    with pytest.raises(TypeError, match="headers"):
        autoreply_reason(bad, "Out of office")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="headers"):
        is_null_sender(bad)  # type: ignore[arg-type]


def test_garbage_subject_is_a_clear_type_error() -> None:
    with pytest.raises(TypeError, match="subject"):
        autoreply_reason(_headers(), b"Out of office")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "subject",
    ["\x00\xff", "=?bogus-charset?q?Out_of_office?=", "=?utf-8?b?!!!?=", "x" * 100_000, "\ud800 lone surrogate"],
)
def test_odd_subjects_never_raise(subject: str) -> None:
    result = autoreply_reason(_headers(("Subject", "x")), subject)
    assert result is None or result.startswith("out-of-office")
