"""Outbox delivery through a real SMTP sink, and the composition of list copies."""

from __future__ import annotations

from datetime import timedelta
from email import message_from_bytes
from email.header import decode_header, make_header

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.compose import CopyHeaders, build_post_copy, split_message
from gateway.delivery import deliver_pending, retry_delay
from gateway.dmarc import DmarcChecker
from gateway.inbound import spool_message
from gateway.notices import queue_notice
from gateway.worker import process_pending
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import InboundMessage, MailingList, OutboxMessage
from tests.factories import T0
from tests.gateway.conftest import AUTHOR, LIST, READERS, Forum, StubResolver, make_mail
from tests.smtp_sink import SmtpSink, free_port

INFO = CopyHeaders(list_name="forum", list_title="Forum transfrontalier", topic_id=7, message_id="m1@x.example",
                   unsubscribe_url="http://archive.test/u/TOKEN")


def _post(settings: Settings, factory: sessionmaker[Session], raw: bytes | None = None) -> None:
    spool_message(factory, raw or make_mail(), source="smtp", envelope_from=AUTHOR, envelope_to=[LIST],
                  list_name="forum", now=T0)
    assert process_pending(settings, factory, now=T0) == 1


def _rows(factory: sessionmaker[Session]) -> dict[str, OutboxMessage]:
    with session_scope(factory) as session:
        return {r.recipient: r for r in session.scalars(select(OutboxMessage))}


def test_split_message_copes_with_lf_mbox_lines_and_missing_blank_line() -> None:
    headers, body = split_message(b"From someone Mon Jan  1 00:00:00 2024\nSubject: a\n  folded\nX: y\n\nbody\n")
    assert headers == [("subject", b"Subject: a\r\n  folded\r\n"), ("x", b"X: y\r\n")]
    assert body == b"body\r\n"
    headers, body = split_message(b"Subject: no blank line\r\nthis is body text\r\n")
    assert [h[0] for h in headers] == ["subject"] and body == b"this is body text\r\n"
    assert split_message(b"") == ([], b"")


def _one_line(value: object) -> str:
    return " ".join(str(value).split())


def test_plain_copy_replies_go_to_the_list_and_the_author_stays_in_from(settings: Settings) -> None:
    # The default (lists.reply_to = "list"): "Reply" in any client, Outlook included, posts to the forum.
    assert settings.lists.reply_to == "list"
    msg = message_from_bytes(build_post_copy(settings, make_mail(), INFO, author_name="Camille Martin",
                                             author_addr=AUTHOR, rewrite_from=False))
    assert msg.get_all("Reply-To") == ["forum@forum.test"]
    assert msg["From"] == f"Camille Martin <{AUTHOR}>"
    assert msg["Cc"] is None


def test_dmarc_rewritten_copy_replies_to_the_list_with_the_author_in_cc(settings: Settings) -> None:
    raw = make_mail(sender_name="Zoë Müller",
                    extra_headers=(("Sender", f"<{AUTHOR}>"), ("Cc", "hans@landkreis.example")))
    data = build_post_copy(settings, raw, INFO, author_name="Zoë Müller", author_addr=AUTHOR, rewrite_from=True)
    msg = message_from_bytes(data)
    assert str(make_header(decode_header(msg["From"]))) == "Zoë Müller via Forum transfrontalier <forum@forum.test>"
    assert msg.get_all("Reply-To") == ["forum@forum.test"]
    # Mailman's munge_from with reply-to-list: the author in Cc, after the original's own Cc.
    [cc] = msg.get_all("Cc")
    assert str(make_header(decode_header(cc))) == f"hans@landkreis.example, Zoë Müller <{AUTHOR}>"
    assert msg["Sender"] is None and len(msg.get_all("From")) == 1
    # Building a copy of the copy (a message coming round again) adds neither the list nor the author twice.
    again = message_from_bytes(build_post_copy(settings, data, INFO, author_name="Zoë Müller", author_addr=AUTHOR,
                                               rewrite_from=True))
    assert again.get_all("Reply-To") == ["forum@forum.test"]
    assert len(again.get_all("Cc")) == 1 and _one_line(again["Cc"]).count(AUTHOR) == 1


def test_copy_reply_to_policies(settings: Settings) -> None:
    raw = make_mail(sender_name="Zoë Müller", extra_headers=(("Sender", f"<{AUTHOR}>"),))
    author = "=?utf-8?q?Zo=C3=AB_M=C3=BCller?= <camille.martin@eurometropole.example>"
    for policy, rewrite, reply_to, cc in (
        ("author", True, author, None),
        ("author", False, None, None),
        ("list", True, "forum@forum.test", author),
        ("list", False, "forum@forum.test", None),
        ("both", True, f"{author}, forum@forum.test", None),
        ("both", False, f"{author}, forum@forum.test", None),
    ):
        s = settings.with_overrides({"lists": {"reply_to": policy}})
        msg = message_from_bytes(build_post_copy(s, raw, INFO, author_name="Zoë Müller", author_addr=AUTHOR,
                                                 rewrite_from=rewrite))
        assert (None if msg["Reply-To"] is None else _one_line(msg["Reply-To"])) == reply_to, (policy, rewrite)
        assert (None if msg["Cc"] is None else _one_line(msg["Cc"])) == cc, (policy, rewrite)
        assert len(msg.get_all("From")) == 1
        if rewrite:
            assert str(make_header(decode_header(msg["From"]))).endswith("via Forum transfrontalier <forum@forum.test>")
            assert msg["Sender"] is None
        else:
            assert f"<{AUTHOR}>" in str(msg["From"]) and "via" not in str(msg["From"])


def test_copy_keeps_the_authors_own_reply_to_and_adds_prefix_and_assigned_id(settings: Settings) -> None:
    raw = make_mail(message_id=None, extra_headers=(("Reply-To", "Secrétariat <secretariat@eurometropole.example>"),))
    s = settings.with_overrides({"lists": {"subject_prefix": "[Forum]", "reply_to": "author"}})
    data = build_post_copy(s, raw, INFO, author_name="Camille", author_addr=AUTHOR, rewrite_from=True,
                           add_message_id=True)
    msg = message_from_bytes(data)
    # The author's own Reply-To is kept byte for byte (here raw UTF-8, as some clients send it).
    assert "\r\nReply-To: Secrétariat <secretariat@eurometropole.example>\r\n".encode() in data
    assert len(msg.get_all("Reply-To")) == 1
    assert msg["Subject"] == "[Forum] Travailleurs frontaliers : double imposition"
    assert msg["Message-ID"] == "<m1@x.example>"
    again = build_post_copy(s, data, INFO, author_name="Camille", author_addr=AUTHOR, rewrite_from=False)
    assert message_from_bytes(again)["Subject"] == "[Forum] Travailleurs frontaliers : double imposition"
    # With replies to the list (the default), the author's own Reply-To stays in front of the list's, as
    # written, and the author's From address goes into Cc of the rewritten copy.
    data = build_post_copy(settings, raw, INFO, author_name="Camille", author_addr=AUTHOR, rewrite_from=True)
    assert "\r\nReply-To: Secrétariat <secretariat@eurometropole.example>, forum@forum.test\r\n".encode() in data
    assert message_from_bytes(data)["Cc"] == f"Camille <{AUTHOR}>"
    plain = build_post_copy(settings, raw, INFO, author_name="Camille", author_addr=AUTHOR, rewrite_from=False)
    assert "\r\nReply-To: Secrétariat <secretariat@eurometropole.example>, forum@forum.test\r\n".encode() in plain
    assert message_from_bytes(plain)["Cc"] is None


def test_copy_of_an_edited_post_carries_the_archived_text(settings: Settings) -> None:
    raw = make_mail(body="#close solved\n\nMerci à tous, c'est réglé.\n")
    data = build_post_copy(settings, raw, INFO, author_name="", author_addr=AUTHOR, rewrite_from=False,
                           replacement_text="Merci à tous, c'est réglé.\n", replacement_subject="Réglé")
    msg = message_from_bytes(data)
    assert msg.get_content_type() == "text/plain" and msg["Content-Transfer-Encoding"] == "quoted-printable"
    assert len(msg.get_all("Content-Type")) == 1
    assert msg.get_payload(decode=True).decode() == "Merci à tous, c'est réglé.\r\n"
    assert str(make_header(decode_header(msg["Subject"]))) == "Réglé"


def test_dmarc_rewrite_through_deliver_pending(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, smtp_sink: SmtpSink
) -> None:
    settings = settings.with_overrides({"dmarc": {"enabled": True}})
    _post(settings, session_factory)
    resolver = StubResolver({"_dmarc.eurometropole.example": ["v=DMARC1; p=quarantine"]})
    stats = deliver_pending(settings, session_factory, now=T0, resolver=resolver)
    assert (stats.sent, stats.failed, stats.retried) == (3, 0, 0)
    assert all(r.message["From"].endswith("<forum@forum.test>") for r in smtp_sink.received)
    # One lookup for the batch, not one per copy.
    assert resolver.queries == ["_dmarc.eurometropole.example"]


def test_notice_payloads_are_sent_with_a_verp_return_path(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, smtp_sink: SmtpSink
) -> None:
    with session_scope(session_factory) as session:
        ml = session.get(MailingList, forum.list_id)
        queue_notice(session, settings, ml, to="someone@example.org", subject="Hello", body="Text\n", now=T0)
    stats = deliver_pending(settings, session_factory, now=T0)
    assert stats.sent == 1
    [received] = smtp_sink.received
    assert received.mail_from == "forum-bounces+someone=example.org@forum.test"
    assert received.message["Auto-Submitted"] == "auto-generated"


def test_relay_down_is_retried_with_backoff_then_given_up(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, smtp_sink: SmtpSink
) -> None:
    _post(settings, session_factory)
    down = settings.with_overrides({"relay": {"port": free_port(), "timeout": 2.0, "retry_initial_seconds": 60,
                                              "retry_max_seconds": 300, "retry_for_hours": 1}})
    stats = deliver_pending(down, session_factory, now=T0)
    assert (stats.sent, stats.retried, stats.failed) == (0, 3, 0)
    rows = _rows(session_factory)
    assert {r.status for r in rows.values()} == {"pending"}
    assert {r.next_attempt_at for r in rows.values()} == {T0 + timedelta(seconds=60)}
    assert all("cannot connect to relay" in r.last_error for r in rows.values())
    # Not due yet: nothing is tried.
    assert deliver_pending(down, session_factory, now=T0 + timedelta(seconds=30)).claimed == 0
    stats = deliver_pending(down, session_factory, now=T0 + timedelta(seconds=60))
    assert stats.retried == 3
    assert {r.next_attempt_at for r in _rows(session_factory).values()} == {T0 + timedelta(seconds=180)}
    # After retry_for_hours: failed, with the last error kept for operators.
    stats = deliver_pending(down, session_factory, now=T0 + timedelta(hours=2))
    assert stats.failed == 3
    assert all(r.status == "failed" and r.last_error.startswith("gave up after 3 attempts")
               for r in _rows(session_factory).values())


def test_retry_delay_doubles_up_to_the_cap(settings: Settings) -> None:
    s = settings.with_overrides({"relay": {"retry_initial_seconds": 60, "retry_max_seconds": 3600}})
    assert [retry_delay(s, n).total_seconds() for n in (1, 2, 3, 4, 7, 50)] == [60, 120, 240, 480, 3600, 3600]


def test_data_refusal_and_missing_original_are_failures_not_retries(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, smtp_sink: SmtpSink
) -> None:
    _post(settings, session_factory)
    smtp_sink.handler.refuse_data = "554 5.7.1 message refused by policy"
    stats = deliver_pending(settings, session_factory, now=T0)
    assert stats.failed == 3
    assert all("554 5.7.1 message refused by policy" in r.last_error for r in _rows(session_factory).values())

    smtp_sink.handler.refuse_data = None
    _post(settings, session_factory, make_mail(message_id="m2@eurometropole.example", subject="Autre"))
    with session_scope(session_factory) as session:
        session.get(InboundMessage, 2).raw = b""
    stats = deliver_pending(settings, session_factory, now=T0)
    assert stats.failed == 3 and stats.sent == 0
    assert any("original bytes are missing" in e for e in stats.errors)


def test_abandoned_sending_rows_are_taken_over(
    settings: Settings, session_factory: sessionmaker[Session], forum: Forum, smtp_sink: SmtpSink
) -> None:
    _post(settings, session_factory)
    with session_scope(session_factory) as session:
        for row in session.scalars(select(OutboxMessage)):
            row.status, row.claimed_by, row.claimed_at = "sending", "delivery@dead:1:1", T0
    assert deliver_pending(settings, session_factory, now=T0 + timedelta(seconds=10)).claimed == 0
    later = T0 + timedelta(seconds=settings.worker.claim_timeout + 1)
    assert deliver_pending(settings, session_factory, now=later).sent == 3
    assert sorted(r.rcpt_tos[0] for r in smtp_sink.received) == sorted(READERS)


def test_dmarc_checker_from_settings_uses_the_configured_timeout(settings: Settings) -> None:
    checker = DmarcChecker.from_settings(settings.with_overrides({"dmarc": {"dns_timeout": 0.5}}))
    assert checker.timeout == 0.5
