"""What a first-time reader, member and owner found (user acceptance test): raw English names of the
moderation log, held reasons and spool states; numbers, sizes and colons written the English way in French;
a members-only link answering "not found"; CSV files Excel opened in one column with broken accents; a
home-page link to the wrong list; a page past the last one."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from archive_web.actionlog import action_detail, held_reason
from archive_web.overview import _duration
from gateway.command_parse import parse_hash_line
from passerelle.models import InboundMessage, MailingList, Member, ModerationAction, OutboxMessage
from tests.web.conftest import Forum, add_topic, csrf, sign_in
from tests.web.test_moderation import hold

NOW = datetime(2026, 12, 5, 13, 2, tzinfo=UTC)
NBSP = "\u00a0"


def language(client: FlaskClient, lang: str) -> None:
    with client.session_transaction() as sess:
        sess["lang"] = lang


def log(db: Session, forum: Forum, action: str, detail: str, via: str = "mail", topic: int | None = None) -> None:
    db.add(ModerationAction(list_id=forum.list_id, topic_id=topic, actor_id=forum.moderator_id, action=action,
                            detail=detail, via=via, created_at=NOW))


# ------------------------------------------------------------------------------------------ moderation


def test_moderation_log_in_the_readers_language(client: FlaskClient, forum: Forum, db: Session) -> None:
    t = forum.public_topic_id
    log(db, forum, "approve", "held #1 from jean@stranger.example: Demande d'information sur le réseau")
    log(db, forum, "close", "solved", via="mail-confirmed", topic=t)
    log(db, forum, "close", "study-needed — à voir avec la caisse", topic=t)
    log(db, forum, "escalate", "european: Reconnaissance mutuelle des véhicules d'urgence", topic=t)
    log(db, forum, "escalate", "national (already escalated) — relance", topic=t)
    log(db, forum, "sheet", "obstacle sheet #1", topic=t)
    log(db, forum, "tag", "+fiscalité +télétravail", topic=t)
    log(db, forum, "category", "Santé (created)", topic=t)
    log(db, forum, "reopen", "was answered", topic=t)
    log(db, forum, "topic-update", "status open -> answered; category -> none; tags a b", via="web", topic=t)
    log(db, forum, "mystery", "kept as written", via="web")
    db.commit()
    sign_in(client, forum.moderator_id)
    language(client, "fr")
    page = client.get("/moderation/").get_data(as_text=True)
    for english in ("approve (mail)", "(mail-confirmed)", ">escalate", "held #1 from", "study-needed",
                    "european:", "(already escalated)", "obstacle sheet", "(created)", "was answered"):
        assert english not in page, english
    for french in ("Message retenu accepté <small>(par courriel)</small>", "Clos <small>(par courriel, confirmé)",
                   f"message retenu n°1 de jean@stranger.example{NBSP}: Demande d&#39;information",
                   "Résolu", "Étude nécessaire — à voir avec la caisse",
                   "Niveau européen — Reconnaissance mutuelle", "Niveau national (déjà remonté) — relance",
                   "Fiche créée", "+fiscalité +télétravail", "Santé (nouvelle catégorie)", f"était{NBSP}: Répondu",
                   f"statut{NBSP}: Ouvert → Répondu; sans catégorie; mots-clés{NBSP}: a b",
                   "mystery <small>(sur le web)</small>", "kept as written"):
        assert french in page, french
    language(client, "en")
    page = client.get("/moderation/").get_data(as_text=True)
    assert "Held message approved <small>(by mail)</small>" in page
    assert "held message #1 from jean@stranger.example: Demande" in page and "European level" in page


def test_held_message_reason_and_decision(client: FlaskClient, forum: Forum, db: Session) -> None:
    held = hold(db, forum)
    held.reason = "stranger@x.example is not a member of forum"
    db.commit()
    held_id = held.id
    sign_in(client, forum.moderator_id)
    language(client, "fr")
    queue = client.get("/moderation/").get_data(as_text=True)
    assert "stranger@x.example n&#39;est pas membre de la liste forum" in queue
    assert "is not a member" not in queue
    r = client.post(f"/moderation/held/{held_id}", data={"action": "approve", "reason": "",
                                                         "csrf_token": csrf(client)})
    assert r.status_code == 303
    page = client.get(f"/moderation/held/{held_id}").get_data(as_text=True)
    assert "<dd>Accepté</dd>" in page and ">approved<" not in page
    assert "n&#39;est pas membre de la liste forum" in page


def test_every_held_reason_of_the_rules_is_translated(app: Flask) -> None:
    reasons = {
        "an unknown sender is not a member of forum": "an unknown sender n'est pas membre de la liste forum",
        "the first 3 posts of a new member are checked by a moderator (this is post 2)":
            "Les 3 premiers messages d'un nouveau membre sont vérifiés par un modérateur (celui-ci est le n°2).",
        "the message is 2097152 bytes, over the list's limit of 1048576 bytes":
            f"Le message fait 2,0{NBSP}Mo, au-delà de la limite de la liste (1,0{NBSP}Mo).",
        "something new": "something new",
    }
    with app.test_request_context("/", headers={"Accept-Language": "fr"}):
        for stored, shown in reasons.items():
            assert held_reason(stored) == shown
        # People's words are never translated, and an unknown phrasing is shown as stored.
        assert action_detail("close", "solved — solved") == "Résolu — solved"
        assert action_detail("category", "") == ""
        assert action_detail("escalate", "planetary") == "planetary"


def test_status_states_are_translated(client: FlaskClient, forum: Forum, db: Session) -> None:
    db.add(InboundMessage(received_at=NOW, source="smtp", envelope_from="a@b.example", envelope_to=["forum@x"],
                          list_name="forum", message_id_header="s@x", size=10, raw=b"x", status="done"))
    db.add(OutboxMessage(kind="post", dedupe_key="post:9", recipient="a@b.example", status="sent",
                         next_attempt_at=NOW, created_at=NOW))
    db.commit()
    sign_in(client, forum.operator_id)
    language(client, "fr")
    page = client.get("/status").get_data(as_text=True)
    assert "<td>Archivé</td>" in page and "<td>Envoyé</td>" in page
    assert "<td>done</td>" not in page and "<td>sent</td>" not in page


# -------------------------------------------------------------------------------------- French writing


@pytest.mark.parametrize(("lang", "hours", "expected"), [
    ("fr", 24.0, f"24,0{NBSP}h"), ("fr", 48.0, "2,0 jours"), ("en", 24.0, "24.0 h"),
    ("en", 1234.5, "51.4 days"), ("de", 36.25, f"36,2{NBSP}Std."), ("fr", 0.5, "30 min"),
])
def test_durations_are_written_as_the_language_does(app: Flask, lang: str, hours: float, expected: str) -> None:
    with app.test_request_context("/", headers={"Accept-Language": lang}):
        assert _duration(hours) == expected


def test_sizes_in_french_units(client: FlaskClient, forum: Forum) -> None:
    language(client, "fr")
    assert f"13{NBSP}o)" in client.get(f"/t/{forum.public_topic_id}").get_data(as_text=True)
    language(client, "en")
    assert "13 B)" in client.get(f"/t/{forum.public_topic_id}").get_data(as_text=True)


def escalate(client: FlaskClient, forum: Forum) -> None:
    sign_in(client, forum.moderator_id)
    r = client.post("/escalations/new", data={"topic": forum.public_topic_id, "level": "national",
                                               "note": "Saisine.", "csrf_token": csrf(client)})
    assert r.status_code == 303


def test_escalation_counts_and_commands_in_the_readers_language(client: FlaskClient, forum: Forum) -> None:
    escalate(client, forum)
    language(client, "fr")
    page = client.get("/escalations").get_data(as_text=True)
    # French puts a non-breaking space before a colon.
    assert re.search(rf">Remonté</a>{NBSP}: <strong>1</strong>", page)
    assert "« #escalader national »" in page and "« #escalader européen »" in page
    language(client, "en")
    assert re.search(r">Escalated</a>: <strong>1</strong>", client.get("/escalations").get_data(as_text=True))
    # The command shown in each language is one the gateway understands, for the right level.
    for lang in ("fr", "en", "de", "it", "es"):
        language(client, lang)
        page = client.get("/escalations").get_data(as_text=True)
        shown = re.findall(r"(#[^\s“”«»„\"]+ [^\s“”«»„\"]+)\s?[”»“\"]", page)
        assert len(shown) == 2, (lang, shown)
        for command, level in zip(shown, ("national", "european"), strict=True):
            parsed = parse_hash_line(f"{command} Une note.")
            assert parsed is not None and parsed.name == "escalate", (lang, command)
            assert parsed.params.get("level") == level, (lang, command, parsed)


def test_public_sheet_says_sign_in_to_read_it_in_the_feminine(client: FlaskClient, forum: Forum) -> None:
    sign_in(client, forum.moderator_id)
    r = client.post("/sheets/new", data={"topic": forum.private_topic_id, "kind": "obstacle",
                                         "csrf_token": csrf(client)})
    sheet_id = int(r.headers["Location"].split("/")[-2])
    r = client.post(f"/sheets/{sheet_id}/status", data={"status": "published", "csrf_token": csrf(client)})
    assert r.status_code == 303
    client.delete_cookie("passerelle_session")
    language(client, "fr")
    page = client.get(f"/sheets/{sheet_id}").get_data(as_text=True)
    assert "Se connecter pour la lire" in page and "pour le lire" not in page


# ------------------------------------------------------------------------------------- links and lists


def test_unclassified_topics_have_their_own_filter(client: FlaskClient, forum: Forum, db: Session) -> None:
    ml = db.get(MailingList, forum.list_id)
    member = db.get(Member, forum.member_id)
    add_topic(db, ml, None, "Sujet sans rubrique", [(member, "Bonjour")],
              start=datetime(2026, 11, 10, 9, 0, tzinfo=UTC))
    db.commit()
    language(client, "fr")
    home = client.get("/").get_data(as_text=True)
    assert 'href="/topics?category=none">1 sujet n' in home
    r = client.get("/topics?category=none")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    assert "Sujet sans rubrique" in page and "Fiscalité des frontaliers" not in page and "1 sujet<" in page
    assert '<option value="none" selected>Pas encore classés</option>' in page
    assert client.get("/topics?category=none&status=closed").get_data(as_text=True).count("Sujet sans rubrique") == 0
    assert client.get("/topics?category=nothing").status_code == 400


def test_a_page_past_the_last_goes_to_the_last(client: FlaskClient, forum: Forum) -> None:
    r = client.get("/topics?page=7")
    assert r.status_code == 302 and r.headers["Location"] == "/topics"
    r = client.get("/topics?status=answered&page=3")
    assert r.status_code == 302 and r.headers["Location"] == "/topics?status=answered"
    r = client.get(f"/c/{forum.public_category_id}?page=2")
    assert r.status_code == 302 and r.headers["Location"] == f"/c/{forum.public_category_id}"
    assert client.get("/topics").status_code == 200


def test_members_only_is_403_with_a_way_to_sign_in(client: FlaskClient, forum: Forum) -> None:
    language(client, "fr")
    for path in (f"/t/{forum.private_topic_id}/mbox", f"/c/{forum.private_category_id}/mbox",
                 f"/m/t{forum.private_topic_id}.0@test.example/raw", f"/a/{forum.private_attachment_id}/dossier.txt"):
        r = client.get(path)
        page = r.get_data(as_text=True)
        assert r.status_code == 403, path
        assert "Page introuvable" not in page and "Xavier" not in page and "secret" not in page
        assert f'href="/login?next={path}"' in page, path
    # Signed in but not a member (an unsubscribed address): still 403, and no sign-in link.
    sign_in(client, forum.outsider_id)
    r = client.get(f"/t/{forum.private_topic_id}/mbox")
    assert r.status_code == 403 and "réservé aux membres de sa liste" in r.get_data(as_text=True)
    assert "Xavier" not in r.get_data(as_text=True)
    # What does not exist is still "not found".
    for path in ("/t/999999/mbox", "/c/999999/mbox", "/m/nope@test.example/raw", "/a/999999/x.txt"):
        assert client.get(path).status_code == 404, path


# ---------------------------------------------------------------------------------------------- CSV


def test_csv_exports_open_in_excel(client: FlaskClient, forum: Forum) -> None:
    escalate(client, forum)
    for path in ("/sheets.csv", "/escalations.csv", "/overview.csv", "/overview/organisations.csv"):
        r = client.get(path)
        assert r.status_code == 200 and r.data.startswith(b"\xef\xbb\xbf"), path
        comma = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"), newline="")))
        r = client.get(path + "?sep=semicolon")
        assert r.data.startswith(b"\xef\xbb\xbf") and r.headers["Content-Type"] == "text/csv; charset=utf-8"
        semicolon = list(csv.reader(io.StringIO(r.data.decode("utf-8-sig"), newline=""), delimiter=";"))
        assert semicolon == comma and len(comma[0]) > 1, path
        assert client.get(path + "?sep=tab").status_code == 400
    rows = list(csv.DictReader(io.StringIO(client.get("/overview/organisations.csv").data.decode("utf-8-sig"))))
    assert "Eurométropole de Strasbourg" in {r["organisation"] for r in rows}


def test_escalations_register_csv_keeps_notes_with_newlines(client: FlaskClient, forum: Forum) -> None:
    sign_in(client, forum.moderator_id)
    client.post("/escalations/new", data={"topic": forum.public_topic_id, "level": "european",
                                          "note": "Première ligne;\nseconde « ligne »", "csrf_token": csrf(client)})
    text = client.get("/escalations.csv?sep=semicolon").data.decode("utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text, newline=""), delimiter=";"))
    assert len(rows) == 1 and rows[0]["note"] == "Première ligne;\nseconde « ligne »"


def test_sheet_old_versions_and_drafts_unaffected(client: FlaskClient, forum: Forum) -> None:
    # JSON exports carry no byte order mark (RFC 8259 forbids one).
    assert not client.get("/sheets.json").data.startswith(b"\xef\xbb\xbf")
    assert not client.get("/escalations.json").data.startswith(b"\xef\xbb\xbf")


