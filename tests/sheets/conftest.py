"""A small cross-border network for the sheet, escalation and overview tests: organisations on the
French-German border, members, a moderator whose mail is DKIM-signed, and a closed topic whose replies are
real mails from the corpus (a French and a German reply quoting what they answer)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.orm import Session

from passerelle.config import Settings
from passerelle.models import MailingList, Member, Topic
from tests import corpus_dir
from tests.factories import make_category, make_list, make_member, make_org
from tests.gateway.dkim_util import StubResolver
from tests.web.conftest import add_topic

T_OPEN = datetime(2026, 9, 7, 8, 30, tzinfo=UTC)
MOD_DOMAIN = "mot.example"
MOD = f"moderation@{MOD_DOMAIN}"
TRIMMER = corpus_dir() / "discourse-email_reply_trimmer" / "test"

OBSTACLE_TEXT = (
    "Bonjour,\n\nNos apprentis allemands ne peuvent pas suivre la partie pratique en France : le contrat "
    "d'apprentissage n'est pas reconnu. L'article L. 6222-1 du code du travail et la directive 2005/36/CE "
    "sont invoqués, ainsi que le règlement (CE) n° 883/2004 pour la sécurité sociale.\n\n-- \nJean Dupont\n"
    "Eurométropole de Strasbourg\n"
)


def corpus_reply(name: str) -> tuple[str, str]:
    """(raw reply, what the trimmer must keep) from the Discourse reply-trimmer corpus."""
    body = (TRIMMER / "emails" / f"{name}.txt").read_text(encoding="utf-8")
    kept = (TRIMMER / "trimmed" / f"{name}.txt").read_text(encoding="utf-8").strip()
    return body, kept


@dataclass
class Network:
    ml: MailingList
    jean: Member
    anna: Member
    mod: Member
    topic: Topic
    open_topic: Topic
    french_kept: str
    german_kept: str
    resolver: StubResolver


@pytest.fixture
def network(db: Session, settings: Settings) -> Network:
    ml = make_list(db, title="Forum transfrontalier")
    strasbourg = make_org(db, "Eurométropole de Strasbourg", "FR", border="DE-FR")
    kehl = make_org(db, "Stadt Kehl", "DE", border="DE-FR")
    lux = make_org(db, "Ville d'Esch", "LU", border="FR-LU")
    jean, _ = make_member(db, "jean@strasbourg.eu", name="Jean Dupont", mailing_list=ml, org=strasbourg)
    anna, _ = make_member(db, "anna@kehl.de", name="Anna Müller", mailing_list=ml, org=kehl, language="de")
    lea, _ = make_member(db, "lea@esch.lu", name="Léa Weber", mailing_list=ml, org=lux)
    mod, _ = make_member(db, MOD, name="Modération MOT", mailing_list=ml, role="moderator")
    category = make_category(db, ml, "Emploi et formation", public_access="titles")
    french, french_kept = corpus_reply("embedded_email_french_1")
    german, german_kept = corpus_reply("embedded_email_german_1")
    topic, _msgs = add_topic(
        db, ml, category, "Re: TR: Apprentissage transfrontalier : contrat non reconnu",
        [(jean, OBSTACLE_TEXT), (anna, german), (jean, french)],
        start=T_OPEN, status="answered", with_raw=False,
    )
    topic.first_answer_at = T_OPEN + timedelta(hours=1)
    topic.status, topic.outcome, topic.closed_at = "closed", "solved", T_OPEN + timedelta(days=3)
    open_topic, _ = add_topic(db, ml, None, "Stationnement des frontaliers à Esch",
                              [(lea, "Où se garer ?"), (jean, "Parking relais.")],
                              start=T_OPEN + timedelta(days=40), with_raw=False)
    open_topic.first_answer_at = T_OPEN + timedelta(days=40, hours=30)
    resolver = StubResolver()
    resolver.add_dkim_key(MOD_DOMAIN)
    db.commit()
    return Network(ml=ml, jean=jean, anna=anna, mod=mod, topic=topic, open_topic=open_topic,
                   french_kept=french_kept, german_kept=german_kept, resolver=resolver)
