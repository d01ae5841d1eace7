"""The sheet lifecycle by mail: a moderator's ``#sheet obstacle`` / ``#fiche pratique`` in a reply to a topic
(gateway.commands), proven by DKIM or a trusted Authentication-Results header, makes a pre-filled draft and
is answered by mail with its address; a forged moderator makes nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.command_parse import phrase
from gateway.commands import intercept_post
from gateway.sheets import set_status
from passerelle.config import Settings
from passerelle.models import ModerationAction, PendingConfirmation, Sheet
from tests.gateway.command_util import body_of, make_ctx, outbox, raw_mail
from tests.gateway.dkim_util import sign
from tests.sheets.conftest import MOD, MOD_DOMAIN, T_OPEN, Network

NOW = T_OPEN + timedelta(days=4)


def reply(db: Session, settings: Settings, network: Network, body: str, *, n: int, signed: bool = True,
          sender: str = MOD, extra: str = "") -> object:
    raw = raw_mail(sender=sender, subject="Re: Apprentissage transfrontalier : contrat non reconnu", body=body,
                   message_id=f"cmd{n}@{sender.split('@')[1]}", in_reply_to=f"t{network.topic.id}.2@test.example",
                   extra=extra)
    if signed:
        raw = sign(raw, domain=sender.split("@")[1])
    ctx = make_ctx(db, settings, raw, mailing_list=network.ml, now=NOW, resolver=network.resolver)
    return intercept_post(ctx, network.topic)


def test_sheet_command_makes_a_prefilled_draft_and_answers(db: Session, settings: Settings, network: Network) -> None:
    result = reply(db, settings, network, "#sheet obstacle\n", n=1)
    assert result.post is False  # the mail held only the command: nothing is fanned out
    sheet = db.scalar(select(Sheet))
    assert sheet is not None and sheet.kind == "obstacle" and sheet.status == "draft"
    assert sheet.topic_id == network.topic.id and sheet.created_at == NOW
    assert sheet.title == "Apprentissage transfrontalier : contrat non reconnu"
    assert sheet.data["border"] == "DE-FR" and network.german_kept in sheet.data["solution"]
    answer = body_of(outbox(db, MOD)[-1])
    assert f"http://archive.test/sheets/{sheet.id}" in answer
    assert "Obstacle/Solution" in answer
    action = db.scalar(select(ModerationAction).where(ModerationAction.action == "sheet"))
    assert action is not None and action.via == "mail" and action.actor_id == network.mod.id

    assert "a été créée" in answer and f"brouillon n° {sheet.id}" in answer

    # The same command again (a resent mail, another moderator): still one sheet, the same address, and the
    # answer says the sheet was found, not made (nor that a published sheet is a draft).
    set_status(db, sheet, "published", network.mod, now=NOW)
    reply(db, settings, network, "#fiche obstacle\n", n=2)
    assert len(db.scalars(select(Sheet)).all()) == 1
    again = body_of(outbox(db, MOD)[-1])
    assert f"http://archive.test/sheets/{sheet.id}" in again
    assert "a déjà une fiche Obstacle/Solution" in again and "publiée" in again
    assert "créée" not in again and "brouillon" not in again
    actions = db.scalars(select(ModerationAction).where(ModerationAction.action == "sheet")).all()
    assert len(actions) == 1


@pytest.mark.parametrize("language", ["fr", "en", "de", "it", "es"])
def test_existing_sheet_phrases_in_every_language(language: str) -> None:
    created = phrase("sheet.done", language, kind="K", sheet=7, id=3, url="http://archive.test/sheets/7")
    draft, published = (phrase(f"sheet.status.{s}", language) for s in ("draft", "published"))
    assert draft != published
    for status in (draft, published):
        found = phrase("sheet.exists", language, kind="K", sheet=7, id=3, url="http://archive.test/sheets/7",
                       status=status)
        assert "http://archive.test/sheets/7" in found and status in found and found != created


def test_practice_sheet_in_other_languages(db: Session, settings: Settings, network: Network) -> None:
    reply(db, settings, network, "#scheda pratica\n", n=3)
    reply(db, settings, network, "#ficha obstáculo\n", n=4)
    kinds = sorted(s.kind for s in db.scalars(select(Sheet)))
    assert kinds == ["obstacle", "practice"]


def test_trusted_authentication_results_is_enough(db: Session, settings: Settings, network: Network) -> None:
    trusted = settings.with_overrides({"auth": {"trusted_authserv_ids": ["mx.forum.test"]}})
    header = f"Authentication-Results: mx.forum.test; dkim=pass header.d={MOD_DOMAIN}"
    reply(db, trusted, network, "#steckbrief praxis\n", n=5, signed=False, extra=header)
    sheet = db.scalar(select(Sheet))
    assert sheet is not None and sheet.kind == "practice"


def test_forged_moderator_makes_nothing(db: Session, settings: Settings, network: Network) -> None:
    result = reply(db, settings, network, "#sheet obstacle\n", n=6, signed=False)
    assert db.scalar(select(Sheet)) is None
    assert "awaiting confirmation" in result.handled
    assert db.scalar(select(PendingConfirmation).where(PendingConfirmation.email == MOD)) is not None
    # A member (not a moderator) writing the command: left in the post as text, no sheet.
    result = reply(db, settings, network, "#sheet obstacle\n\nJe propose une fiche.", n=7, sender="jean@strasbourg.eu",
                   signed=False)
    assert db.scalar(select(Sheet)) is None and result.post is True


def test_bad_sheet_kind_is_answered(db: Session, settings: Settings, network: Network) -> None:
    reply(db, settings, network, "#sheet poème\n", n=8)
    assert db.scalar(select(Sheet)) is None
    answer = body_of(outbox(db, MOD)[-1])
    assert "poème" in answer and "obstacle" in answer
