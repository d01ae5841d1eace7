"""gateway.commands at the function level: members' -request commands in five languages, moderators'
#-commands with and without proof of sender, confirmations, and garbage."""

from __future__ import annotations

import sys
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import command_parse as cp
from gateway.commands import confirm_token, describe_token, handle_request_mail, intercept_post
from passerelle.config import Settings
from passerelle.models import (
    Category,
    Escalation,
    EscalationNote,
    Message,
    ModerationAction,
    PendingConfirmation,
    Sheet,
    Subscription,
    Tag,
    ThreadRef,
    Topic,
    TopicFollow,
)
from tests.factories import T0, make_list, make_member
from tests.gateway.command_util import body_of, make_ctx, make_topic, outbox, raw_mail, subject_of
from tests.gateway.dkim_util import StubResolver, sign

LANGS = ("fr", "en", "de", "it", "es")
ALICE = "alice.martin@eurometropole.example"
MOD = "moderation@eurometropole.example"
DOMAIN = "eurometropole.example"
STRANGER = "hans.weber@landkreis.example"
# One word of each language's help text and command reply, to check the language of a reply.
HELP_MARK = {"fr": "Les commandes s’envoient", "en": "Commands go to", "de": "Befehle gehen an",
             "it": "I comandi si inviano", "es": "Los comandos se envían"}
REPLY_MARK = {"fr": "Voici ce qui a été fait", "en": "Here is what was done", "de": "Folgendes wurde",
              "it": "Ecco cosa è stato fatto", "es": "Esto es lo que se hizo"}


@pytest.fixture
def f(db: Session, settings: Settings) -> SimpleNamespace:
    ml = make_list(db, title="Forum transfrontalier")
    alice, alice_sub = make_member(db, ALICE, name="Alice Martin", mailing_list=ml, language="fr")
    mod, _ = make_member(db, MOD, name="Modération", mailing_list=ml, role="moderator", language="fr")
    topic = make_topic(db, ml, "Travailleurs frontaliers : double imposition", [
        ("t1@x", None, alice), ("t2@x", "t1@x", mod), ("t3@x", "t2@x", alice), ("t4@x", "t3@x", None),
        ("t5@x", "t1@x", None),
    ])
    other = make_topic(db, ml, "Télétravail et sécurité sociale", [("o1@x", None, alice), ("o2@x", "o1@x", mod)])
    resolver = StubResolver()
    resolver.add_dkim_key(DOMAIN)
    db.commit()
    return SimpleNamespace(ml=ml, alice=alice, alice_sub=alice_sub, mod=mod, topic=topic, other=other,
                           resolver=resolver, n=0)


def request(db: Session, settings: Settings, f: SimpleNamespace, body: str = "", *, subject: str = "",
            sender: str = ALICE, local: str = "forum-request", signed: bool = False, in_reply_to: str | None = None,
            now=T0) -> str:
    f.n += 1
    raw = raw_mail(sender=sender, to=f"{local}@forum.test", subject=subject, body=body,
                   message_id=f"r{f.n}@{sender.split('@')[1]}", in_reply_to=in_reply_to)
    if signed:
        raw = sign(raw, domain=DOMAIN)
    ctx = make_ctx(db, settings, raw, mailing_list=f.ml, local=local, now=now, resolver=f.resolver)
    return handle_request_mail(ctx)


def post(db: Session, settings: Settings, f: SimpleNamespace, body: str, *, topic: Topic | None = None,
         sender: str = MOD, subject: str = "Re: Travailleurs frontaliers : double imposition", signed: bool = True,
         in_reply_to: str | None = "t2@x", extra: str = "", now=T0):
    f.n += 1
    raw = raw_mail(sender=sender, subject=subject, body=body, message_id=f"p{f.n}@{sender.split('@')[1]}",
                   in_reply_to=in_reply_to, extra=extra)
    if signed:
        raw = sign(raw, domain=sender.split("@")[1])
    ctx = make_ctx(db, settings, raw, mailing_list=f.ml, now=now, resolver=f.resolver)
    return intercept_post(ctx, f.topic if topic is None else topic)


def last_reply(db: Session, to: str = ALICE) -> str:
    mails = outbox(db, to)
    assert mails, f"no mail was queued for {to}"
    return body_of(mails[-1])


# ============================================================================================ members


MODE_WORDS = {
    "instant": {"fr": "immédiat", "en": "instant", "de": "sofort", "it": "immediato", "es": "inmediato"},
    "daily": {"fr": "quotidien", "en": "daily", "de": "täglich", "it": "giornaliero", "es": "diario"},
    "weekly": {"fr": "hebdomadaire", "en": "weekly", "de": "wöchentlich", "it": "settimanale", "es": "semanal"},
    "nomail": {"fr": "aucun mail", "en": "nomail", "de": "keine Mails", "it": "nessuna mail", "es": "sin correo"},
}


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("mode", ["daily", "weekly", "nomail", "instant"])
def test_delivery_modes_in_each_language(db: Session, settings: Settings, f: SimpleNamespace, lang: str,
                                         mode: str) -> None:
    f.alice.language = lang
    f.alice_sub.delivery_mode = "instant" if mode != "instant" else "weekly"
    db.flush()
    summary = request(db, settings, f, MODE_WORDS[mode][lang] + "\n")
    db.refresh(f.alice_sub)
    assert f.alice_sub.delivery_mode == mode
    assert summary == f"commands: {mode}"
    reply = last_reply(db)
    assert REPLY_MARK[lang] in reply
    assert cp.phrase(f"mode.{mode}", lang) in reply


@pytest.mark.parametrize("lang", LANGS)
def test_subscribe_word_of_each_language_then_confirm_by_reply(db: Session, settings: Settings, f: SimpleNamespace,
                                                          lang: str) -> None:
    word = cp.MEMBER_ALIASES["subscribe"][lang][0]
    request(db, settings, f, subject=word, sender=STRANGER)
    pending = db.scalar(select(PendingConfirmation).where(PendingConfirmation.email == STRANGER))
    assert pending is not None and pending.kind == "subscribe"
    mails = outbox(db, STRANGER)
    confirm = next(m for m in mails if pending.token in subject_of(m))
    assert confirm["Reply-To"] == f"forum+confirm-{pending.token}@forum.test"
    assert f"http://archive.test/confirm/{pending.token}" in body_of(confirm)
    assert "Confirmez votre abonnement" in subject_of(confirm), "a stranger is answered in the list's language"
    assert len(mails) == 1, "the confirmation request is the only answer: a second mail would say the same"
    # The stranger answers the confirmation mail (its Reply-To address).
    request(db, settings, f, "OK\n\n> Someone asked to subscribe", sender=STRANGER,
            local=f"forum+confirm-{pending.token}")
    sub = db.scalar(select(Subscription).join(Subscription.member).where(Subscription.list_id == f.ml.id)
                    .where(Subscription.member.has(email=STRANGER)))
    assert sub is not None and sub.status == "active" and sub.delivery_mode == "instant"
    assert sub.member.language == "fr"
    welcome = body_of(outbox(db, STRANGER)[-1])
    assert "forum@forum.test" in welcome


@pytest.mark.parametrize("lang", LANGS)
def test_unsubscribe_follow_mute_and_enable_in_each_language(db: Session, settings: Settings, f: SimpleNamespace,
                                                            lang: str) -> None:
    f.alice.language = lang
    f.alice_sub.status = "disabled"
    db.flush()
    words = {name: cp.MEMBER_ALIASES[name][lang][0] for name in ("follow", "mute", "enable", "unsubscribe")}
    request(db, settings, f, f"{words['enable']}\n{words['follow']} {f.other.id}\n{words['mute']} {f.topic.id}\n")
    db.refresh(f.alice_sub)
    assert f.alice_sub.status == "active"
    assert db.get(TopicFollow, (f.alice.id, f.other.id)).mode == "follow"  # type: ignore[union-attr]
    assert db.get(TopicFollow, (f.alice.id, f.topic.id)).mode == "mute"  # type: ignore[union-attr]
    reply = last_reply(db)
    assert cp.phrase("enable.done", lang, list="Forum transfrontalier") in reply
    assert REPLY_MARK[lang] in reply
    request(db, settings, f, words["unsubscribe"], signed=True)
    db.refresh(f.alice_sub)
    assert f.alice_sub.status == "unsubscribed"
    assert cp.phrase("unsub.done", lang, list="Forum transfrontalier", request="forum-request@forum.test") \
        in last_reply(db)


def test_confirm_by_in_reply_to_subject_token_body_line_and_web(db: Session, settings: Settings,
                                                                f: SimpleNamespace) -> None:
    addresses = [f"p{i}@example.org" for i in range(4)]
    tokens = []
    for address in addresses:
        request(db, settings, f, "subscribe", sender=address)
        tokens.append(db.scalar(select(PendingConfirmation.token).where(PendingConfirmation.email == address)))
    # 1. A reply sent to -request: In-Reply-To names our confirmation mail.
    confirmation = next(m for m in outbox(db, addresses[0]) if m["Reply-To"])
    request(db, settings, f, "yes", sender=addresses[0], in_reply_to=confirmation["Message-ID"].strip("<>"))
    # 2. The token in the subject.
    request(db, settings, f, "", subject=f"Re: [forum] Confirm your subscription [confirm {tokens[1]}]",
            sender=addresses[1])
    # 3. A "confirm <token>" line.
    request(db, settings, f, f"confirm {tokens[2]}\n", sender=addresses[2])
    # 4. The web link (GET shows, POST confirms).
    described = describe_token(db, settings, tokens[3], now=T0)
    assert described.ok and described.status == "valid" and described.kind == "subscribe"
    result = confirm_token(db, settings, tokens[3], now=T0)
    assert result.ok and result.status == "done" and result.email == addresses[3]
    for address in addresses:
        sub = db.scalar(select(Subscription).where(Subscription.member.has(email=address)))
        assert sub is not None and sub.status == "active", address
    again = confirm_token(db, settings, tokens[3], now=T0)
    assert not again.ok and again.status == "used"


def test_confirmation_expires_and_unknown_tokens(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    request(db, settings, f, "subscribe", sender=STRANGER)
    token = db.scalar(select(PendingConfirmation.token).where(PendingConfirmation.email == STRANGER))
    late = T0 + timedelta(hours=settings.auth.confirmation_hours + 1)
    result = confirm_token(db, settings, token, now=late)
    assert not result.ok and result.status == "expired"
    assert not confirm_token(db, settings, "0" * 24, now=T0).ok
    assert confirm_token(db, settings, "", now=T0).status == "unknown"
    assert confirm_token(db, settings, "x" * 5000, now=T0).status == "unknown"
    request(db, settings, f, sender=STRANGER, local="forum+confirm-" + "ab" * 12)
    assert cp.phrase("confirm.unknown", "fr") in body_of(outbox(db, STRANGER)[-1])


def test_repeated_subscribe_requests_reuse_the_token_and_are_throttled(db: Session, settings: Settings,
                                                                        f: SimpleNamespace) -> None:
    for minutes in (0, 1, 2, 11):
        request(db, settings, f, "subscribe", sender=STRANGER, now=T0 + timedelta(minutes=minutes))
    assert len(list(db.scalars(select(PendingConfirmation)))) == 1
    assert len(outbox(db, STRANGER)) == 2, "one confirmation mail per ten minutes"


def test_subscribe_when_already_member(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    request(db, settings, f, "subscribe")
    assert "déjà abonné" in last_reply(db)
    assert db.scalar(select(PendingConfirmation)) is None


def test_unsubscribe_with_dkim_is_done_at_once(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    request(db, settings, f, "désabonner", signed=True)
    db.refresh(f.alice_sub)
    assert f.alice_sub.status == "unsubscribed"
    assert "désabonné" in last_reply(db)


def test_forged_unsubscribe_needs_confirmation(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    request(db, settings, f, "unsubscribe\ndaily\n")
    db.refresh(f.alice_sub)
    assert f.alice_sub.status == "active", "a forged From must not unsubscribe anyone"
    assert f.alice_sub.delivery_mode == "daily", "harmless commands run at once"
    pending = db.scalar(select(PendingConfirmation).where(PendingConfirmation.kind == "commands"))
    assert pending is not None and pending.email == ALICE
    assert "attendent votre confirmation" in body_of(outbox(db, ALICE)[-1])
    request(db, settings, f, "oui", local=f"forum+confirm-{pending.token}")
    db.refresh(f.alice_sub)
    assert f.alice_sub.status == "unsubscribed"
    assert "désabonné" in body_of(outbox(db, ALICE)[-1])


def test_follow_and_mute_by_number_and_by_reply(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    request(db, settings, f, f"suivre {f.other.id}\nignorer https://archive.test/t/{f.topic.id}\n")
    assert db.get(TopicFollow, (f.alice.id, f.other.id)).mode == "follow"  # type: ignore[union-attr]
    assert db.get(TopicFollow, (f.alice.id, f.topic.id)).mode == "mute"  # type: ignore[union-attr]
    request(db, settings, f, "follow", in_reply_to="t3@x")
    assert db.get(TopicFollow, (f.alice.id, f.topic.id)).mode == "follow"  # type: ignore[union-attr]
    request(db, settings, f, "follow 99999\nmute\n")
    reply = last_reply(db)
    assert "pas de sujet n° 99999" in reply
    assert "Quel sujet" in reply


@pytest.mark.parametrize("lang", LANGS)
def test_help_in_the_members_language(db: Session, settings: Settings, f: SimpleNamespace, lang: str) -> None:
    f.alice.language = lang
    db.flush()
    request(db, settings, f, subject=cp.MEMBER_ALIASES["help"][lang][0])
    reply = last_reply(db)
    assert HELP_MARK[lang] in reply
    assert "#close" not in reply and "#clos " not in reply, "members do not get the moderators' help"


def test_help_for_a_stranger_is_in_the_lists_language(db: Session, settings: Settings,
                                                     f: SimpleNamespace) -> None:
    # Member's language, else the list's: not the language of the command word ("help" is the word every
    # list documents, whatever its language).
    request(db, settings, f, "hilfe", sender=STRANGER)
    assert HELP_MARK["fr"] in last_reply(db, STRANGER)


def test_moderators_get_their_commands_in_help(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    request(db, settings, f, "aide", sender=MOD)
    reply = last_reply(db, MOD)
    assert HELP_MARK["fr"] in reply and "#clos ISSUE" in reply


def test_unknown_lines_are_reported_once(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    request(db, settings, f, "daily\nblah\n\nfoo\n\nbar\n\nbaz\n")
    reply = last_reply(db)
    assert reply.count("n’ont pas été comprises") == 1
    assert "4 ligne(s)" in reply and "« blah »" in reply


def test_a_letter_instead_of_commands(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    summary = request(db, settings, f, "Bonjour,\nPourriez-vous me passer en résumé hebdomadaire ?\n"
                                       "Je reçois trop de messages.\nMerci d'avance\nweekly\n")
    assert summary == "no command found"
    reply = last_reply(db)
    assert cp.phrase("no_command", "fr") in reply
    assert HELP_MARK["fr"] in reply, "a mail without any command gets the help"
    assert cp.phrase("truncated", "fr") in reply


@pytest.mark.parametrize(
    ("local", "check"),
    [
        ("forum+digest", lambda sub, member: sub.delivery_mode == "daily"),
        ("forum+weekly", lambda sub, member: sub.delivery_mode == "weekly"),
        ("forum+nomail", lambda sub, member: sub.delivery_mode == "nomail"),
        ("forum+instant", lambda sub, member: sub.delivery_mode == "instant"),
        ("forum+quotidien", lambda sub, member: sub.delivery_mode == "daily"),
    ],
)
def test_sub_addresses(db: Session, settings: Settings, f: SimpleNamespace, local: str, check) -> None:
    f.alice_sub.delivery_mode = "weekly" if local != "forum+weekly" else "instant"
    db.flush()
    request(db, settings, f, "whatever the body says\nunsubscribe\n", subject="ignored", local=local)
    db.refresh(f.alice_sub)
    assert f.alice_sub.status == "active"
    assert check(f.alice_sub, f.alice)


def test_sub_address_subscribe_help_join_and_unknown(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    request(db, settings, f, sender=STRANGER, local="forum+subscribe")
    request(db, settings, f, sender="other@example.org", local="forum-join")
    assert db.scalar(select(PendingConfirmation).where(PendingConfirmation.email == STRANGER)) is not None
    assert db.scalar(select(PendingConfirmation).where(PendingConfirmation.email == "other@example.org")) is not None
    request(db, settings, f, local="forum+help")
    assert HELP_MARK["fr"] in last_reply(db)
    summary = request(db, settings, f, local="forum+xyzzy")
    assert summary.startswith("unknown command address")
    reply = last_reply(db)
    assert "« xyzzy »" in reply and HELP_MARK["fr"] in reply


def test_commands_need_a_subscription(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    request(db, settings, f, "daily\nunsubscribe\nfollow 1\n", sender=STRANGER)
    reply = last_reply(db, STRANGER)
    assert "n’est pas abonnée" in reply or "not subscribed" in reply


def test_enable_after_bounces(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    f.alice_sub.status = "disabled"
    f.alice_sub.bounce_score = 6.0
    db.flush()
    request(db, settings, f, "daily")
    assert "suspendue" in last_reply(db)
    request(db, settings, f, "réactiver")
    db.refresh(f.alice_sub)
    assert f.alice_sub.status == "active" and f.alice_sub.bounce_score == 0
    assert "a repris" in last_reply(db)


def test_signature_and_quotes_are_not_read(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    body = ("weekly\n\n-- \nAlice Martin\nunsubscribe\n\n"
            "Le 2 nov. 2026 à 10:00, Forum <forum-request@forum.test> a écrit :\n> unsubscribe\n")
    request(db, settings, f, body, signed=True)
    db.refresh(f.alice_sub)
    assert f.alice_sub.status == "active" and f.alice_sub.delivery_mode == "weekly"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\x01\x02 garbage without headers",
        b"From: \r\nSubject: subscribe\r\n\r\nsubscribe\r\n",
        b"From: not an address\r\nSubject: help\r\n\r\nhelp\r\n",
        b"From: <alice.martin@eurometropole.example>\r\nSubject: =?utf-8?q?help=0ABcc:_victim@example.org?=\r\n\r\n",
        b"From: <alice.martin@eurometropole.example>\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\n"
        b"\xff\xfe\x00d\x00a\x00",
        b"From: <alice.martin@eurometropole.example>\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n",
        b"From: <alice.martin@eurometropole.example>\r\nSubject: " + b"subscribe " * 3000 + b"\r\n\r\n" + b"#" * 100000,
    ],
)
def test_garbage_request_mails(db: Session, settings: Settings, f: SimpleNamespace, raw: bytes) -> None:
    from passerelle.mail.parse import MessageParseError

    try:
        ctx = make_ctx(db, settings, raw, mailing_list=f.ml, local="forum-request", resolver=f.resolver)
    except MessageParseError:
        return  # the worker shunts what is not mail at all, before commands (its own tests)
    summary = handle_request_mail(ctx)
    assert isinstance(summary, str) and summary
    if ctx.parsed.from_addr and "@" in ctx.parsed.from_addr:
        assert outbox(db, ctx.parsed.from_addr), "an answer, never silence"
    else:
        assert outbox(db) == [], "nobody to answer"
    db.refresh(f.alice_sub)
    assert f.alice_sub.status == "active"


# ============================================================================================ moderators


def _alias(table: dict[str, dict[str, tuple[str, ...]]], name: str, lang: str) -> str:
    return table[name][lang][0]


@pytest.mark.parametrize("lang", LANGS)
def test_moderator_commands_in_each_language(db: Session, settings: Settings, f: SimpleNamespace, lang: str) -> None:
    f.mod.language = lang
    db.flush()
    hc = cp.HASH_ALIASES
    topic = f.topic

    def run(line: str) -> str:
        result = post(db, settings, f, line + "\n")
        assert result.post is False, line
        assert result.handled.startswith("commands:"), result
        db.refresh(topic)
        return last_reply(db, MOD)

    reply = run(f"#{_alias(hc, 'tag', lang)} transport santé")
    assert sorted(t.name for t in topic.tags) == ["santé", "transport"]
    assert REPLY_MARK[lang] in reply
    run(f"#{_alias(hc, 'category', lang)} Fiscalité des frontaliers")
    assert topic.category is not None and topic.category.name == "Fiscalité des frontaliers"
    reply = run(f"#{_alias(hc, 'close', lang)} {_alias(cp.OUTCOME_ALIASES, 'study-needed', lang)}")
    assert (topic.status, topic.outcome) == ("closed", "study-needed")
    assert cp.phrase("outcome.study-needed", lang) in reply
    run(f"#{_alias(hc, 'reopen', lang)}")
    assert topic.status == "answered" and topic.outcome is None
    run(f"#{_alias(hc, 'escalate', lang)} {_alias(cp.LEVEL_ALIASES, 'european', lang)} règlement 883/2004")
    assert topic.escalation_level == "european"
    escalation = db.scalar(select(Escalation).where(Escalation.topic_id == topic.id))
    assert escalation is not None and escalation.note == "règlement 883/2004" and escalation.escalated_by_id == f.mod.id
    reply = run(f"#{_alias(hc, 'sheet', lang)} {_alias(cp.SHEET_KIND_ALIASES, 'practice', lang)}")
    sheet = db.scalar(select(Sheet).where(Sheet.topic_id == topic.id))
    assert sheet is not None and sheet.kind == "practice" and sheet.status == "draft"
    assert f"http://archive.test/sheets/{sheet.id}" in reply
    run(f"#{_alias(hc, 'merge', lang)} {f.other.id}")
    assert topic.merged_into_id == f.other.id
    actions = [a.action for a in db.scalars(select(ModerationAction).where(ModerationAction.topic_id == topic.id)
                                            .order_by(ModerationAction.id))]
    assert actions == ["tag", "category", "close", "reopen", "escalate", "sheet", "merge"]


def test_sheet_command_without_the_sheets_module(db: Session, settings: Settings, f: SimpleNamespace,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # An installation without gateway.sheets answers that sheets are not available (None in sys.modules makes
    # the import fail the way a missing module does).
    monkeypatch.setitem(sys.modules, "gateway.sheets", None)
    result = post(db, settings, f, "#sheet obstacle\n")
    assert result.post is False
    assert cp.phrase("sheet.unavailable", "fr") in last_reply(db, MOD)


def test_forged_moderator_command_does_nothing_until_confirmed(db: Session, settings: Settings,
                                                               f: SimpleNamespace) -> None:
    result = post(db, settings, f, "#close solved\n#tag emploi\n", signed=False)
    assert result.post is False
    db.refresh(f.topic)
    assert f.topic.status != "closed" and f.topic.tags == []
    assert db.scalar(select(ModerationAction)) is None
    mails = outbox(db, MOD)
    assert len(mails) == 1, "one mail: the confirmation request"
    pending = db.scalar(select(PendingConfirmation).where(PendingConfirmation.kind == "commands"))
    assert pending is not None and pending.token in subject_of(mails[0])
    assert "#close solved" in body_of(mails[0])
    # The moderator replies to the confirmation request: now the commands run.
    request(db, settings, f, "Oui c'est bien moi\n\n> Nous avons reçu ces commandes", sender=MOD,
            local=f"forum+confirm-{pending.token}")
    db.refresh(f.topic)
    assert (f.topic.status, f.topic.outcome) == ("closed", "solved")
    assert [t.name for t in f.topic.tags] == ["emploi"]
    vias = set(db.scalars(select(ModerationAction.via)))
    assert vias == {"mail-confirmed"}
    assert "est clos" in last_reply(db, MOD)
    # Replaying the confirmation changes nothing more.
    request(db, settings, f, "encore", sender=MOD, local=f"forum+confirm-{pending.token}")
    assert "déjà été confirmée" in last_reply(db, MOD)


def test_forged_from_by_someone_else(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    # The attacker signs with their own domain's key but writes the moderator's address in From.
    attacker = StubResolver()
    attacker.add_dkim_key("attacker.example")
    f.resolver.records.update(attacker.records)
    raw = raw_mail(sender=MOD, subject="Re: x", body="#close duplicate\n", message_id="evil@attacker.example",
                   in_reply_to="t2@x")
    ctx = make_ctx(db, settings, sign(raw, domain="attacker.example"), mailing_list=f.ml, resolver=f.resolver)
    result = intercept_post(ctx, f.topic)
    db.refresh(f.topic)
    assert f.topic.status != "closed"
    assert result.post is False and "awaiting confirmation" in result.handled


def test_trusted_authentication_results_is_proof(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    trusted = settings.with_overrides({"auth": {"trusted_authserv_ids": ["mx.forum.test"]}})
    header = "Authentication-Results: mx.forum.test; dkim=pass header.d=eurometropole.example"
    post(db, trusted, f, "#close solved\n", signed=False, extra=header)
    db.refresh(f.topic)
    assert f.topic.status == "closed"


def test_reopen_in_a_reply_to_a_closed_topic(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    f.topic.status, f.topic.outcome, f.topic.closed_at = "closed", "solved", T0
    db.flush()
    result = post(db, settings, f, "#rouvrir\n\nLa caisse est revenue sur sa décision.\n", in_reply_to="t5@x")
    db.refresh(f.topic)
    assert f.topic.status == "answered" and f.topic.outcome is None and f.topic.closed_at is None
    assert result.post is True
    assert result.text is not None and result.text.startswith("La caisse est revenue")
    assert "#rouvrir" not in result.text


def test_command_lines_are_removed_from_the_post(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    body = ("#tag emploi\n\nBonjour,\nC'est réglé avec la caisse.\n#close solved\n\n-- \nLa modération\n\n"
            "Le 2 nov. 2026, Alice a écrit :\n> Merci\n> #tag quoted-command\n")
    result = post(db, settings, f, body)
    assert result.post is True
    assert result.text is not None
    assert "#tag emploi" not in result.text and "#close solved" not in result.text
    assert result.text.startswith("Bonjour,\nC'est réglé")
    assert "> #tag quoted-command" in result.text, "quoted text is kept as it was"
    assert "-- \nLa modération" in result.text
    db.refresh(f.topic)
    assert f.topic.status == "closed" and [t.name for t in f.topic.tags] == ["emploi"]


def test_commands_in_the_subject(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    result = post(db, settings, f, "", subject="Re: Travailleurs frontaliers #clos doublon #tag fisc")
    assert result.post is False
    db.refresh(f.topic)
    assert f.topic.outcome == "duplicate" and [t.name for t in f.topic.tags] == ["fisc"]
    result = post(db, settings, f, "Je clos ce sujet.\n", subject="Re: Travailleurs #reopen")
    assert result.post is True and result.subject == "Re: Travailleurs" and result.text is None


def test_a_member_cannot_use_moderator_commands(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    result = post(db, settings, f, "#close solved\nJe pense que c'est réglé.\n", sender=ALICE)
    assert result.post is True and result.text is None, "the lines stay in the post"
    db.refresh(f.topic)
    assert f.topic.status != "closed"
    assert "Seuls les modérateurs" in last_reply(db)


def test_members_follow_and_mute_by_replying(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    result = post(db, settings, f, "#mute\n", sender=ALICE, signed=False)
    assert result.post is False
    assert db.get(TopicFollow, (f.alice.id, f.topic.id)).mode == "mute"  # type: ignore[union-attr]
    result = post(db, settings, f, "#suivre\nMerci pour ces précisions.\n", sender=ALICE, signed=False)
    assert result.post is True and result.text is not None
    assert result.text.strip() == "Merci pour ces précisions."
    assert db.get(TopicFollow, (f.alice.id, f.topic.id)).mode == "follow"  # type: ignore[union-attr]
    assert "Vous suivez le sujet" in last_reply(db)


def test_no_commands_pass_through(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    result = post(db, settings, f, "Bonjour,\nvoir #Luxembourg et #Interreg.\n")
    assert result.post is True and result.text is None and result.handled == ""
    assert outbox(db) == []


def test_moderator_command_in_a_new_topic(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    ctx = make_ctx(db, settings, sign(raw_mail(sender=MOD, subject="Chômage partiel", message_id="new@x",
                                               body="#tag emploi\nNouvelle question.\n"), domain=DOMAIN),
                   mailing_list=f.ml, resolver=f.resolver)
    result = intercept_post(ctx, None)
    assert result.post is True and result.text is not None and result.text.strip() == "Nouvelle question."
    # No topic yet: nothing runs and nothing is answered until the worker created it (after_topic_created).
    assert result.after_topic_created is not None and outbox(db, MOD) == []
    new_topic = make_topic(db, f.ml, "Chômage partiel", [])
    result.after_topic_created(new_topic)
    db.refresh(new_topic)
    assert [t.name for t in new_topic.tags] == ["emploi"]
    assert "emploi" in last_reply(db, MOD)


def test_commands_alone_cannot_open_a_topic(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    ctx = make_ctx(db, settings, sign(raw_mail(sender=MOD, subject="Chômage partiel", message_id="new@x",
                                               body="#tag emploi\n"), domain=DOMAIN),
                   mailing_list=f.ml, resolver=f.resolver)
    result = intercept_post(ctx, None)
    assert result.post is False and result.after_topic_created is None
    assert "en réponse à un sujet" in last_reply(db, MOD)


def test_garbage_commands(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    result = post(db, settings, f, "#close maybe-later\n#tagg x\n#merge 99999\n#escalate mars\n#category\n#split\n",
                  in_reply_to="t1@x")
    assert result.post is False
    db.refresh(f.topic)
    assert f.topic.status != "closed" and f.topic.merged_into_id is None and f.topic.escalation_level is None
    assert f.topic.category_id is None
    reply = last_reply(db, MOD)
    for expected in ("« maybe-later » n’est pas une issue", "« #tagg x » n’est pas une commande",
                     "pas de sujet n° 99999", "« mars » n’est pas un niveau", "doit être suivi du nom",
                     "Le premier message"):
        assert expected in reply, expected


def test_merge_moves_messages_references_follows_and_tags(db: Session, settings: Settings,
                                                          f: SimpleNamespace) -> None:
    db.add(TopicFollow(member_id=f.alice.id, topic_id=f.topic.id, mode="follow", created_at=T0))
    post(db, settings, f, "#tag fisc\n")
    post(db, settings, f, f"#merge http://archive.test/t/{f.other.id}\n")
    db.expire_all()
    source, target = db.get(Topic, f.topic.id), db.get(Topic, f.other.id)
    assert source.merged_into_id == target.id and source.status == "closed" and source.outcome == "duplicate"
    assert source.message_count == 0 and target.message_count == 7
    assert db.scalar(select(ThreadRef.topic_id).where(ThreadRef.message_id == "t4@x")) == target.id
    assert [t.name for t in target.tags] == ["fisc"]
    assert db.get(TopicFollow, (f.alice.id, target.id)) is not None
    post(db, settings, f, f"#merge {f.other.id}\n", topic=target)
    assert "ne peut pas être fusionné avec lui-même" in last_reply(db, MOD)


def test_split_moves_the_replied_message_and_its_descendants(db: Session, settings: Settings,
                                                              f: SimpleNamespace) -> None:
    # Tree: t1 -> t2 -> t3 -> t4, and t1 -> t5. "#split" in reply to t2 takes t2, t3, t4.
    f.topic.tags.append(Tag(list_id=f.ml.id, name="emploi"))
    db.flush()
    result = post(db, settings, f, "#scinder\n", in_reply_to="t2@x")
    assert result.post is False
    db.expire_all()
    old = db.get(Topic, f.topic.id)
    new = db.scalar(select(Topic).where(Topic.id.notin_([f.topic.id, f.other.id])))
    assert new is not None
    moved = sorted(db.scalars(select(Message.message_id).where(Message.topic_id == new.id)))
    assert moved == ["t2@x", "t3@x", "t4@x"]
    assert old.message_count == 2 and new.message_count == 3
    assert db.scalar(select(Message.parent_id).where(Message.message_id == "t2@x")) is None
    assert db.scalar(select(ThreadRef.topic_id).where(ThreadRef.message_id == "t3@x")) == new.id
    assert new.subject == "Travailleurs frontaliers : double imposition"
    assert new.author_id == f.mod.id and [t.name for t in new.tags] == ["emploi"]
    assert f"nouveau sujet n° {new.id}" in last_reply(db, MOD)
    post(db, settings, f, "#split\n", in_reply_to="t1@x", topic=old)
    assert "ne peut pas en être séparé" in last_reply(db, MOD)


def test_escalate_twice_adds_a_note(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    post(db, settings, f, "#escalate national\n")
    post(db, settings, f, "#eskalieren national Ministerium angeschrieben\n")
    assert len(list(db.scalars(select(Escalation)))) == 1
    note = db.scalar(select(EscalationNote))
    assert note is not None and note.text == "Ministerium angeschrieben"
    assert "était déjà transmis" in last_reply(db, MOD)


def test_category_is_reused_by_slug_or_created(db: Session, settings: Settings, f: SimpleNamespace) -> None:
    post(db, settings, f, "#category Santé\n")
    post(db, settings, f, "#catégorie SANTE\n", topic=f.other)
    categories = list(db.scalars(select(Category)))
    assert [c.name for c in categories] == ["Santé"]
    assert f.other.category_id == categories[0].id
    assert "a été créée" not in last_reply(db, MOD)
