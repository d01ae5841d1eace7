"""Digest content and mail: grouping by category and status, muted topics, quotes trimmed, links, escaping,
languages."""

from __future__ import annotations

import re
import tomllib
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from sqlalchemy.orm import Session

from digests import links
from digests.compose import TEMPLATE_DIR, Labels, Recipient, build_digest
from digests.content import collect_activity, excerpt, for_member, muted_for
from digests.periods import period_for, zone_for
from passerelle.config import Settings
from passerelle.models import CategoryFollow, TopicFollow
from passerelle.tokens import TokenError
from tests.digests.builders import add_message, close_topic, escalate_topic, make_topic
from tests.factories import make_category, make_list, make_member

PARIS = zone_for("Europe/Paris", "UTC")
DAY = period_for("daily", datetime(2026, 11, 4).date(), PARIS, 7)  # [11-03 06:00Z, 11-04 06:00Z)
IN = DAY.since + timedelta(hours=3)
BEFORE = DAY.since - timedelta(days=3)


@pytest.fixture
def forum(db: Session) -> dict:
    ml = make_list(db)
    transport = make_category(db, ml, "Transport")
    sante = make_category(db, ml, "Santé")
    reader, _ = make_member(db, "reader@example.org", name="Rita Reader", mailing_list=ml, mode="daily")
    camille, _ = make_member(db, "camille@example.org", name="Camille Martin", mailing_list=ml)
    hans, _ = make_member(db, "hans@example.de", name="Hans Weber", mailing_list=ml, language="de")
    t_new, _ = make_topic(db, ml, "Covoiturage transfrontalier", at=IN, author=camille, category=transport,
                          text="Nos agents ne peuvent pas covoiturer.")
    t_ans, _ = make_topic(db, ml, "Carte vitale et soins en Allemagne", at=BEFORE, author=camille, category=sante)
    add_message(db, t_ans, "Oui, via le formulaire S1.", at=IN, author=hans,
                body_text="Oui, via le formulaire S1.\n\n> Question about Carte vitale\n> old quoted text",
                new_text="Oui, via le formulaire S1.")
    t_closed, _ = make_topic(db, ml, "Permis frontalier", at=BEFORE, author=camille, category=transport)
    close_topic(db, t_closed, at=IN, outcome="legal-impossibility")
    t_esc, _ = make_topic(db, ml, "Double imposition des télétravailleurs", at=BEFORE, author=camille)
    escalate_topic(db, t_esc, at=IN, level="european")
    make_topic(db, ml, "Vieux sujet", at=BEFORE, author=camille, category=transport)
    t_busy, _ = make_topic(db, ml, "<script>alert('x')</script> & tarifs", at=BEFORE, author=camille,
                           category=sante)
    for i in range(5):
        add_message(db, t_busy, f"Réponse numéro {i} <b>gras</b>", at=IN + timedelta(minutes=i), author=hans)
    t_muted, _ = make_topic(db, ml, "Sujet ignoré", at=IN, author=camille, category=transport)
    db.add(TopicFollow(member_id=reader.id, topic_id=t_muted.id, mode="mute", created_at=BEFORE))
    db.flush()
    return {"list": ml, "reader": reader, "hans": hans, "transport": transport, "sante": sante,
            "new": t_new, "answered": t_ans, "closed": t_closed, "escalated": t_esc, "busy": t_busy,
            "muted": t_muted}


def _content(db: Session, f: dict, settings: Settings, member=None):
    activity = collect_activity(db, f["list"], DAY.since, DAY.until, messages_per_topic=3)
    mt, ft, mc = muted_for(db, (member or f["reader"]).id)
    return for_member(activity, muted_topics=mt, followed_topics=ft, muted_categories=mc)


def _build(settings: Settings, f: dict, content, language: str = "fr") -> EmailMessage:
    member = f["reader"]
    recipient = Recipient(member=member, subscription_id=1, language=language, zone=PARIS)
    now = DAY.until + timedelta(minutes=1)
    msg = build_digest(settings, f["list"], content, DAY, recipient, now=now,
                       unsubscribe_url="http://archive.test/u/TOKEN",
                       list_headers=[("List-Unsubscribe", "<http://archive.test/u/TOKEN>"),
                                     ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")])
    return message_from_bytes(bytes(msg), policy=policy.default)  # type: ignore[return-value]


def test_grouping_by_category_and_status(db: Session, forum: dict, settings: Settings) -> None:
    content = _content(db, forum, settings)
    grouped = content.grouped()
    assert [name for name, _ in grouped] == ["Santé", "Transport", ""]
    as_dict = {name: {g: [t.subject for t in ts] for g, ts in groups} for name, groups in grouped}
    assert as_dict["Transport"] == {"new": ["Covoiturage transfrontalier"], "closed": ["Permis frontalier"]}
    assert as_dict["Santé"] == {
        "answered": ["<script>alert('x')</script> & tarifs", "Carte vitale et soins en Allemagne"]
    }
    assert as_dict[""] == {"escalated": ["Double imposition des télétravailleurs"]}
    # The old topic without activity and the muted one are not there.
    subjects = {t.subject for t in content.topics}
    assert "Vieux sujet" not in subjects and "Sujet ignoré" not in subjects
    # 1 (new) + 1 (answer) + 5 (busy) messages in the window.
    assert content.message_count == 7


def test_newest_messages_only_and_quotes_trimmed(db: Session, forum: dict, settings: Settings) -> None:
    content = _content(db, forum, settings)
    busy = next(t for t in content.topics if t.topic_id == forum["busy"].id)
    assert busy.new_count == 5
    assert [m.excerpt for m in busy.messages] == [f"Réponse numéro {i} <b>gras</b>" for i in (2, 3, 4)]
    answered = next(t for t in content.topics if t.topic_id == forum["answered"].id)
    assert answered.messages[0].excerpt == "Oui, via le formulaire S1."
    assert answered.reply_to_message_id == answered.messages[-1].message_id


def test_muted_category_unless_the_topic_is_followed(db: Session, forum: dict, settings: Settings) -> None:
    reader = forum["reader"]
    db.add(CategoryFollow(member_id=reader.id, category_id=forum["transport"].id, mode="mute", created_at=BEFORE))
    db.add(TopicFollow(member_id=reader.id, topic_id=forum["new"].id, mode="follow", created_at=BEFORE))
    db.flush()
    subjects = {t.subject for t in _content(db, forum, settings).topics}
    assert "Covoiturage transfrontalier" in subjects  # followed
    assert "Permis frontalier" not in subjects  # muted category


def test_mail_structure_headers_and_links(db: Session, forum: dict, settings: Settings) -> None:
    msg = _build(settings, forum, _content(db, forum, settings))
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert msg["From"].addresses[0].addr_spec == "forum-request@forum.test"
    assert msg["To"] == "reader@example.org"
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["List-Id"] == "<forum.forum.test>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["List-Post"] == "<mailto:forum@forum.test>"
    # A digest is not part of any thread.
    assert msg["In-Reply-To"] is None and msg["References"] is None
    assert msg["Subject"].strip().startswith("[Forum] Résumé du 4 novembre 2026 : 5 sujets, 7 messages")
    text = msg.get_body(("plain",)).get_content()
    assert "## Transport" in text and "### Nouveaux sujets" in text and "### Sujets clos" in text
    assert "Issue : impossibilité juridique" in text and "Remonté au niveau européen" in text
    assert "… et 2 messages plus anciens dans la période" in text
    assert "http://archive.test/u/TOKEN" in text
    assert "old quoted text" not in text

    # Follow/mute links are signed for this member and this topic; a token made for "follow" is no "mute".
    follow = re.findall(r"Suivre ce sujet: (\S+)", text)
    assert len(follow) == 5
    token = follow[0].rsplit("/", 1)[1]
    data = links.read_action_token(settings, "follow", token)
    assert data["m"] == forum["reader"].id and data["t"] in {t.id for t in (forum["busy"], forum["answered"])}
    with pytest.raises(TokenError):
        links.read_action_token(settings, "mute", token)
    opens = re.findall(r"Ouvrir en étant connecté·e: (\S+)", text)
    assert len(opens) == 5 and links.read_action_token(settings, "open", opens[0].rsplit("/", 1)[1])["m"] == data["m"]
    with pytest.raises(TokenError):
        links.read_action_token(settings, "follow", token[:-3] + "xyz")

    # Reply links: to the list, "Re: <subject>", In-Reply-To = the topic's newest message.
    reply = next(line for line in text.splitlines() if "Répondre: mailto:" in line and "Covoiturage" in unquote(line))
    url = urlsplit(reply.split("Répondre: ", 1)[1])
    assert url.scheme == "mailto" and url.path == "forum@forum.test"
    query = parse_qs(url.query)
    assert query["subject"] == ["Re: Covoiturage transfrontalier"]
    assert query["In-Reply-To"][0].startswith("<") and query["In-Reply-To"][0].endswith("@example.org>")
    assert f"{settings.site.base_url}/t/{forum['new'].id}" in text


def test_html_is_escaped(db: Session, forum: dict, settings: Settings) -> None:
    msg = _build(settings, forum, _content(db, forum, settings))
    html_part = msg.get_body(("html",)).get_content()
    assert "<script>" not in html_part
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; tarifs" in html_part
    assert "&lt;b&gt;gras&lt;/b&gt;" in html_part
    # Query strings inside href attributes have their & escaped.
    assert re.search(r'href="mailto:forum@forum\.test\?subject=[^"]*&amp;In-Reply-To=', html_part)
    assert '<a href="http://archive.test/u/TOKEN">' in html_part


@pytest.mark.parametrize(
    ("language", "heading", "subject_start"),
    [
        ("fr", "Nouveaux sujets", "[Forum] Résumé du"),
        ("en", "New topics", "[Forum] Digest for"),
        ("de", "Neue Themen", "[Forum] Zusammenfassung vom"),
        ("it", "Nuovi argomenti", "[Forum] Riepilogo del"),
        ("es", "Nuevos temas", "[Forum] Resumen del"),
    ],
)
def test_languages(db: Session, forum: dict, settings: Settings, language: str, heading: str,
                   subject_start: str) -> None:
    msg = _build(settings, forum, _content(db, forum, settings), language=language)
    assert msg["Subject"].strip().startswith(subject_start)
    assert heading in msg.get_body(("plain",)).get_content()
    html_part = msg.get_body(("html",)).get_content()
    assert heading in html_part
    summary = {"fr": "5 sujets, 7 messages.", "en": "5 topics, 7 messages.", "de": "5 Themen, 7 Nachrichten.",
               "it": "5 argomenti, 7 messaggi.", "es": "5 temas, 7 mensajes."}[language]
    assert f"<p>{summary}</p>" in html_part and summary in msg.get_body(("plain",)).get_content()


def test_every_language_file_has_every_label() -> None:
    with (TEMPLATE_DIR / "digest.en.toml").open("rb") as fh:
        keys = set(tomllib.load(fh))
    for language in ("fr", "de", "it", "es"):
        with (TEMPLATE_DIR / f"digest.{language}.toml").open("rb") as fh:
            assert set(tomllib.load(fh)) == keys, language
    # An unknown language reads English instead of failing.
    assert Labels("xx")("group_new") == "New topics"


def test_empty_digest_is_refused(db: Session, forum: dict, settings: Settings) -> None:
    activity = collect_activity(db, forum["list"], BEFORE - timedelta(days=10), BEFORE - timedelta(days=9),
                                messages_per_topic=3)
    content = for_member(activity, muted_topics=())
    assert content.is_empty
    with pytest.raises(ValueError, match="empty digest"):
        _build(settings, forum, content)
    with pytest.raises(ValueError, match="empty digest window"):
        collect_activity(db, forum["list"], DAY.until, DAY.since, messages_per_topic=3)


def test_excerpt_cuts_at_a_word() -> None:
    text, cut = excerpt("mot " * 400, limit=100)
    assert cut and len(text) <= 104 and text.endswith(" […]") and "mo […]" not in text
    assert excerpt("  court  ") == ("court", False)


def test_now_is_used_for_dates_not_the_wall_clock(db: Session, forum: dict, settings: Settings) -> None:
    msg = _build(settings, forum, _content(db, forum, settings))
    assert msg["Date"].datetime == (DAY.until + timedelta(minutes=1)).replace(tzinfo=UTC)




@pytest.mark.parametrize(
    ("language", "obstacles", "practices", "topics"),
    [
        ("fr", "Nouveaux obstacles", "Nouvelles bonnes pratiques", "Nouveaux sujets"),
        ("en", "New obstacles", "New good practices", "New topics"),
        ("de", "Neue Hindernisse", "Neue Beispiele guter Praxis", "Neue Themen"),
        ("it", "Nuovi ostacoli", "Nuove buone pratiche", "Nuovi argomenti"),
        ("es", "Nuevos obstáculos", "Nuevas buenas prácticas", "Nuevos temas"),
    ],
)
def test_new_topics_grouped_by_the_kind_of_their_sheet(
    db: Session, forum: dict, settings: Settings, language: str, obstacles: str, practices: str, topics: str
) -> None:
    """A new topic is announced as an obstacle or a good practice only once a moderator made a sheet of that
    kind from it (#sheet); the UAT's weekly digest listed a good practice under "Neue Hindernisse"."""
    from gateway.sheets import create_sheet_from_topic

    moderator = forum["hans"]
    guichet, _ = make_topic(db, forum["list"], "Bonne pratique : un guichet commun", at=IN,
                            author=moderator, category=forum["transport"], text="Notre guichet commun.")
    s2, _ = make_topic(db, forum["list"], "Autorisation préalable S2", at=IN, author=moderator,
                       category=forum["transport"], text="Le formulaire S2 est exigé.")
    create_sheet_from_topic(db, settings, guichet, "practice", moderator, now=IN + timedelta(hours=1))
    create_sheet_from_topic(db, settings, s2, "obstacle", moderator, now=IN + timedelta(hours=1))
    db.flush()

    grouped = {name: {g: [t.subject for t in ts] for g, ts in groups} for name, groups in
               _content(db, forum, settings).grouped()}
    assert grouped["Transport"] == {
        "new_obstacle": ["Autorisation préalable S2"],
        "new_practice": ["Bonne pratique : un guichet commun"],
        "new": ["Covoiturage transfrontalier"],
        "closed": ["Permis frontalier"],
    }

    msg = _build(settings, forum, _content(db, forum, settings), language=language)
    text = msg.get_body(("plain",)).get_content()
    html_part = msg.get_body(("html",)).get_content()
    for heading, subject in ((obstacles, "Autorisation préalable S2"), (practices, "Bonne pratique"),
                             (topics, "Covoiturage transfrontalier")):
        # Each topic right under its own heading, in both alternatives.
        section = text.split(f"### {heading}\n", 1)[1].split("###", 1)[0]
        assert subject in section, (heading, section)
        assert f">{heading}</h3>" in html_part
    assert text.index(obstacles) < text.index(practices) < text.index(f"### {topics}")
