"""A moderator's mail with several commands, and the rule between "closed as solved" and escalation:

* the commands of one mail run so that ``#sheet`` sees the others (tags, level, outcome), whatever their
  order in the mail;
* closing a topic as solved marks its open escalations resolved, with a note in the register;
* ``#escalate`` (or the web form, passerelle.escalations.escalate) on a topic closed as solved is refused
  with an explanation; after ``#reopen`` (in the same mail or not) it works;
* the pre-filled sheet quotes the substantive answers, not the closing thanks, without salutations and
  signatures, on the border of the topic's author.

The thread is the one of the demo's new-user test (a Franco-Swiss question answered from Strasbourg and
Lörrach, closed by a moderator's "Merci à tous, je classe ce sujet.").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import sheets
from gateway.command_parse import phrase
from gateway.commands import intercept_post
from passerelle import escalations as esc
from passerelle.config import Settings
from passerelle.models import Escalation, EscalationNote, MailingList, Member, ModerationAction, Sheet, Topic
from tests.factories import make_category, make_list, make_member, make_org
from tests.gateway.command_util import body_of, make_ctx, outbox, raw_mail
from tests.gateway.dkim_util import StubResolver, sign
from tests.sheets.conftest import MOD, MOD_DOMAIN, T_OPEN
from tests.web.conftest import add_topic

NOW = T_OPEN + timedelta(days=2)

SOPHIE = (
    "Bonjour à toutes et à tous,\n\nNous rencontrons un obstacle : l'accord franco-suisse de 1983 sur la fiscalité "
    "des frontaliers\nne prévoit pas le télétravail au-delà de 40 %. Quelqu'un a-t-il déjà traité ce cas ?\n\n"
    "Bien cordialement,\nSophie Girard\nGrand Besançon Métropole\n"
)
ANNE = (
    "Bonjour Sophie,\n\nChez nous, l'avenant de 2023 permet jusqu'à 40 % ; au-delà l'imposition bascule.\n"
    "Voir la circulaire DGFiP.\n\nCordialement,\nAnne\n\n-----Message d'origine-----\nDe : Sophie Girard "
    "<sophie.girard@besancon.example>\nEnvoyé : lundi 7 septembre 2026 10:30\nÀ : forum@forum.test\nObjet : "
    "Fiscalité des frontaliers suisses\n\nBonjour à toutes et à tous,\n\nNous rencontrons un obstacle ...\n"
)
MARKUS = (
    "Hallo Sophie,\n\nin Baden-Württemberg gilt seit 2023 eine Verständigungsvereinbarung.\n\nViele Grüße\n"
    "Markus Weber\nLandkreis Lörrach\n"
)
CLOSING = "Merci à tous, je classe ce sujet.\n"


@dataclass
class Thread:
    ml: MailingList
    topic: Topic
    mod: Member
    resolver: StubResolver


@pytest.fixture
def thread(db: Session, settings: Settings) -> Thread:
    ml = make_list(db, title="Forum transfrontalier")
    besancon = make_org(db, "Grand Besançon Métropole", "FR", border="CH-FR")
    eurodistrict = make_org(db, "Eurodistrict Strasbourg-Ortenau", "FR", border="DE-FR")
    loerrach = make_org(db, "Landkreis Lörrach", "DE", border="DE-FR")
    mot = make_org(db, "Mission Opérationnelle Transfrontalière", "FR")
    sophie, _ = make_member(db, "sophie@besancon.example", name="Sophie Girard", mailing_list=ml, org=besancon)
    anne, _ = make_member(db, "anne@eurodistrict.example", name="Anne Keller", mailing_list=ml, org=eurodistrict)
    markus, _ = make_member(db, "markus@loerrach.example", name="Markus Weber", mailing_list=ml, org=loerrach,
                            language="de")
    mod, _ = make_member(db, MOD, name="Julien Roux", mailing_list=ml, role="moderator", org=mot)
    category = make_category(db, ml, "Emploi, fiscalité et protection sociale", public_access="titles")
    topic, _ = add_topic(db, ml, category, "Fiscalité des frontaliers suisses : accord de 1983 et télétravail",
                         [(sophie, SOPHIE), (anne, ANNE), (markus, MARKUS), (mod, CLOSING)],
                         start=T_OPEN, status="answered", with_raw=False)
    resolver = StubResolver()
    resolver.add_dkim_key(MOD_DOMAIN)
    db.commit()
    return Thread(ml=ml, topic=topic, mod=mod, resolver=resolver)


def command_mail(db: Session, settings: Settings, thread: Thread, body: str, *, n: int) -> str:
    """A DKIM-signed moderator reply holding ``body``; returns the answer mailed back."""
    raw = raw_mail(sender=MOD, subject="Re: Fiscalité des frontaliers suisses", body=body,
                   message_id=f"cmd{n}@{MOD_DOMAIN}", in_reply_to=f"t{thread.topic.id}.3@test.example")
    ctx = make_ctx(db, settings, sign(raw, domain=MOD_DOMAIN), mailing_list=thread.ml, now=NOW + timedelta(hours=n),
                   resolver=thread.resolver)
    intercept_post(ctx, thread.topic)
    db.flush()
    return body_of(outbox(db, MOD)[-1])


UAT_ORDER = "#tag fiscalité suisse télétravail\n#sheet obstacle\n#escalate national\n#close solved\n"
REVERSED = "#close solved\n#sheet obstacle\n#escalate national\n#tag fiscalité suisse télétravail\n"


@pytest.mark.parametrize("body", [UAT_ORDER, REVERSED], ids=["sheet-first", "close-first"])
def test_one_mail_tag_sheet_escalate_close(db: Session, settings: Settings, thread: Thread, body: str) -> None:
    answer = command_mail(db, settings, thread, body, n=1)
    topic = thread.topic
    db.refresh(topic)
    assert (topic.status, topic.outcome) == ("closed", "solved")
    # The escalation of the same mail is in the register, resolved by the close, with a note saying why.
    escalation = db.scalar(select(Escalation).where(Escalation.topic_id == topic.id))
    assert escalation is not None and escalation.level == "national" and escalation.state == "resolved"
    assert topic.escalation_level is None
    notes = [n.text for n in db.scalars(select(EscalationNote).where(EscalationNote.escalation_id == escalation.id))]
    assert notes == [esc.SOLVED_NOTE["fr"]]
    # The sheet was made last: it sees the tags, the level and the outcome set by the same mail.
    sheet = db.scalar(select(Sheet).where(Sheet.topic_id == topic.id))
    assert sheet is not None
    assert sheet.data["level"] == "national" and sheet.data["solution_status"] == "found"
    actions = [a.action for a in db.scalars(select(ModerationAction).where(ModerationAction.topic_id == topic.id)
                                            .order_by(ModerationAction.id))]
    assert sorted(actions[:2]) == ["escalate", "tag"] and actions[2:] == ["close", "escalation-state", "sheet"]
    # The answer says all of it, the resolved escalation included.
    assert phrase("close.escalation_resolved", "fr", id=topic.id, level=phrase("level.national", "fr")) in answer
    assert f"http://archive.test/sheets/{sheet.id}" in answer and "transmis au niveau" in answer


def test_escalate_on_a_solved_topic_is_refused_then_works_after_reopen(db: Session, settings: Settings,
                                                                      thread: Thread) -> None:
    command_mail(db, settings, thread, "#close solved\n", n=1)
    answer = command_mail(db, settings, thread, "#escalate national Saisine de la DGFiP\n", n=2)
    assert phrase("escalate.solved", "fr", id=thread.topic.id) in answer
    assert "#rouvrir" in answer
    assert db.scalar(select(Escalation)) is None
    # Reopen and escalate in one mail, whatever the order: the reopen comes first.
    answer = command_mail(db, settings, thread, "#escalate national Saisine de la DGFiP\n#reopen\n", n=3)
    db.refresh(thread.topic)
    escalation = db.scalar(select(Escalation))
    assert escalation is not None and escalation.state == "escalated" and escalation.note == "Saisine de la DGFiP"
    assert thread.topic.status == "answered" and thread.topic.escalation_level == "national"
    # Closed with another outcome, the escalation stays open: the obstacle still waits.
    command_mail(db, settings, thread, "#close legal-impossibility\n", n=4)
    db.refresh(escalation)
    assert escalation.state == "escalated" and thread.topic.escalation_level == "national"


def test_core_rule_for_the_web(db: Session, thread: Thread) -> None:
    topic = thread.topic
    escalation, created = esc.escalate(db, topic, "european", actor=thread.mod, now=NOW)
    assert created and escalation.state == "escalated"
    assert esc.resolve_on_close(db, topic, actor=thread.mod, now=NOW) == []  # not closed: nothing to do
    topic.status, topic.outcome, topic.closed_at = "closed", "solved", NOW
    assert esc.resolve_on_close(db, topic, actor=thread.mod, now=NOW, via="web") == [escalation]
    assert escalation.state == "resolved" and topic.escalation_level is None
    entry = esc.register(db, topic_id=topic.id)[0]
    assert [n.text for n, _who in entry.notes] == [esc.SOLVED_NOTE["fr"]]
    with pytest.raises(esc.SolvedTopicError, match="closed as solved"):
        esc.escalate(db, topic, "national", actor=thread.mod, now=NOW)
    assert len(esc.register(db, topic_id=topic.id)) == 1


def test_prefill_quotes_the_answers_not_the_thanks(db: Session, thread: Thread) -> None:
    topic = thread.topic
    topic.status, topic.outcome, topic.closed_at = "closed", "solved", T_OPEN + timedelta(hours=4)
    db.flush()
    _title, data = sheets.prefill(db, topic)
    # The obstacle: what Sophie says, without "Bonjour à toutes et à tous," nor her signature.
    assert data["obstacle"].startswith("Nous rencontrons un obstacle : l'accord franco-suisse de 1983")
    assert data["obstacle"].endswith("Quelqu'un a-t-il déjà traité ce cas ?")
    # The solution: Anne's and Markus's answers, trimmed; not the moderator's thanks.
    solution = data["solution"]
    assert "Chez nous, l'avenant de 2023 permet jusqu'à 40 %" in solution and "Voir la circulaire DGFiP." in solution
    assert "Verständigungsvereinbarung" in solution
    assert "Merci à tous" not in solution and "je classe" not in solution
    for noise in ("Bonjour Sophie", "Hallo Sophie", "Cordialement", "Viele Grüße", "Landkreis Lörrach\n",
                  "Message d'origine", "Nous rencontrons"):
        assert noise not in solution, noise
    assert solution.startswith("— Anne Keller, Eurodistrict Strasbourg-Ortenau (2026-09-07)\n")
    # A Franco-Swiss obstacle stays Franco-Swiss, whoever answered from the French-German border.
    assert data["border"] == "CH-FR" and data["countries"] == ["CH", "FR"]


def test_the_answer_the_closing_message_replies_to_is_kept(db: Session, thread: Thread) -> None:
    # Three answers; the moderator's closing thanks replies to the first one: that one is the solution.
    anne = db.scalar(select(Member).where(Member.email == "anne@eurodistrict.example"))
    markus = db.scalar(select(Member).where(Member.email == "markus@loerrach.example"))
    assert anne is not None and markus is not None
    topic, msgs = add_topic(db, thread.ml, None, "Télétravail : seuil de 40 %",
                            [(thread.mod, SOPHIE), (anne, "La clé : l'avenant de 2023 fixe le seuil à 40 %."),
                             (markus, "Bei uns ist die Frage noch offen, wir warten auf Berlin."),
                             (anne, "Autre piste : demander un rescrit fiscal à la DGFiP, délai de trois mois."),
                             (thread.mod, "Vielen Dank! Ich schließe das Thema.")],
                            start=T_OPEN, with_raw=False)
    msgs[4].parent_id = msgs[1].id
    topic.status, topic.outcome, topic.closed_at = "closed", "solved", T_OPEN + timedelta(hours=5)
    db.flush()
    _title, data = sheets.prefill(db, topic)
    assert "La clé : l'avenant de 2023" in data["solution"] and "rescrit fiscal" in data["solution"]
    assert "warten auf Berlin" not in data["solution"] and "Vielen Dank" not in data["solution"]


@pytest.mark.parametrize("text", [
    "Merci à tous, je classe ce sujet.", "Vielen Dank! Ich schließe das Thema.", "Grazie mille, chiudo.",
    "Muchas gracias a todos.", "Thanks everyone, closing this topic.", "Merci !\n\nBonne journée.",
])
def test_courtesy_messages(text: str) -> None:
    assert sheets.is_courtesy(text)


@pytest.mark.parametrize("text", [
    "Merci Claire, c'est exactement ce qu'il nous fallait. La convention est en cours de signature, l'ARS a "
    "répondu favorablement.",
    "Die Rahmenvereinbarung von 2005 erlaubt es.",
    "Nur eine Frage.",
])
def test_answers_are_not_courtesy(text: str) -> None:
    assert not sheets.is_courtesy(text)


@pytest.mark.parametrize(("text", "kept"), [
    ("Bonjour à toutes et à tous,\n\nLe seuil est de 40 %.\n\nBien cordialement,\nSophie Girard\nBesançon",
     "Le seuil est de 40 %."),
    ("Hallo zusammen,\n\nDie Frist beträgt drei Monate.\n\nMit freundlichen Grüßen\nSophie Girard",
     "Die Frist beträgt drei Monate."),
    ("Buongiorno,\n\nLa Regione finanzia il progetto.\n\nCordiali saluti\nSophie", "La Regione finanzia il progetto."),
    ("Hola a todos,\n\nEl convenio está firmado.\n\nUn saludo,\nSophie Girard", "El convenio está firmado."),
    ("Dear colleagues,\n\nThe agreement applies.\n\nBest regards,\nSophie", "The agreement applies."),
    # A signature without a sign-off: a last paragraph of short lines naming the author.
    ("Bonjour,\n\nLa convention est signée.\n\nSophie Girard\nGrand Besançon Métropole", "La convention est signée."),
    # Content that only looks like a salutation or a sign-off stays.
    ("Bonjour, nos frontaliers ont un problème.\n\nMerci de vérifier.",
     "Bonjour, nos frontaliers ont un problème.\n\nMerci de vérifier."),
    ("Le texte dit :\n\nRegards croisés :\nune étude.", "Le texte dit :\n\nRegards croisés :\nune étude."),
])
def test_salutations_and_signatures_are_stripped(text: str, kept: str) -> None:
    author = SimpleNamespace(name="Sophie Girard", organisation=None)
    message = SimpleNamespace(author=author, from_name="Sophie Girard")
    assert sheets._own_words(message, text) == kept  # type: ignore[arg-type]


def test_command_lines_are_not_quoted() -> None:
    message = SimpleNamespace(author=None, from_name="Julien Roux")
    text = "#tag fiscalité\nLa réponse est dans l'avenant de 2023.\n#close solved"
    assert sheets._own_words(message, text) == "La réponse est dans l'avenant de 2023."  # type: ignore[arg-type]
