"""Reading pages: home, topic lists and their filters, thread page, permalinks, raw, attachments, follows."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from passerelle.models import CategoryFollow, Member, Message, Topic, TopicFollow
from tests.web.conftest import NOW, Forum, add_topic, csrf, english_client


def text(response) -> str:
    return response.get_data(as_text=True)


def test_home_lists_categories_with_topic_counts(client: FlaskClient, forum: Forum) -> None:
    r = client.get("/")
    assert r.status_code == 200
    page = text(r)
    assert "Forum transfrontalier" in page
    assert f'href="/c/{forum.public_category_id}/fiscalite"' in page
    assert f'href="/c/{forum.private_category_id}/sante"' in page
    # One topic in each category, both not closed.
    assert page.count('<td class="num">1</td>') == 4
    assert "Remboursement des soins transfrontaliers" in page  # titles are public


def test_topic_list_filters(client: FlaskClient, forum: Forum, db: Session) -> None:
    page = text(client.get("/topics"))
    assert "Fiscalité des frontaliers" in page and "Remboursement des soins" in page
    page = text(client.get("/topics?status=answered"))
    assert "Fiscalité des frontaliers" in page and "Remboursement des soins" not in page
    page = text(client.get("/topics?status=open"))
    assert "Fiscalité des frontaliers" not in page and "Remboursement des soins" in page
    page = text(client.get(f"/topics?category={forum.private_category_id}"))
    assert "Fiscalité des frontaliers" not in page and "Remboursement des soins" in page
    topic = db.get(Topic, forum.private_topic_id)
    topic.status, topic.outcome, topic.escalation_level = "closed", "legal-impossibility", "national"
    db.commit()
    page = text(client.get("/topics?status=closed&outcome=legal-impossibility"))
    assert "Remboursement des soins" in page and "Legal impossibility" in page
    page = text(client.get("/topics?status=escalated"))
    assert "Remboursement des soins" in page and "Fiscalité des frontaliers" not in page


def test_people_and_tag_filters_only_reach_readable_topics(client: FlaskClient, forum: Forum) -> None:
    # Both topics have a participant from Germany, but who took part in a titles-only topic is private.
    page = text(client.get("/topics?country=DE"))
    assert "Fiscalité des frontaliers" in page and "Remboursement des soins" not in page
    page = text(client.get("/topics?border=DE-FR"))
    assert "Fiscalité des frontaliers" in page and "Remboursement des soins" not in page
    page = text(client.get(f"/topics?org={forum.org_id}"))
    assert "Fiscalité des frontaliers" in page and "Remboursement des soins" not in page
    page = text(client.get("/topics?tag=teletravail"))
    assert "Fiscalité des frontaliers" in page


def test_member_filters_see_every_topic(member_client: FlaskClient, forum: Forum) -> None:
    page = text(member_client.get("/topics?country=DE"))
    assert "Fiscalité des frontaliers" in page and "Remboursement des soins" in page


def test_category_page_and_slug_redirect(client: FlaskClient, forum: Forum) -> None:
    r = client.get(f"/c/{forum.public_category_id}")
    assert r.status_code == 200 and "Fiscalité des frontaliers" in text(r)
    r = client.get(f"/c/{forum.public_category_id}/wrong-slug")
    assert r.status_code == 301 and r.headers["Location"].endswith(f"/c/{forum.public_category_id}/fiscalite")
    assert client.get("/c/999999").status_code == 404


def test_topic_list_paginates(client: FlaskClient, forum: Forum, db: Session, settings) -> None:
    from passerelle.models import Category, MailingList

    ml = db.get(MailingList, forum.list_id)
    cat = db.get(Category, forum.public_category_id)
    member = db.get(Member, forum.member_id)
    for i in range(settings.web.page_size + 3):
        add_topic(db, ml, cat, f"Sujet numéro {i:03d}", [(member, "texte")], start=NOW - timedelta(days=40 - i),
                  with_raw=False)
    db.commit()
    first = text(client.get("/topics"))
    assert 'rel="next"' in first and 'rel="prev"' not in first
    second = text(client.get("/topics?page=2"))
    assert 'rel="prev"' in second and "Sujet numéro 000" in second and "Sujet numéro 000" not in first


def test_thread_page_public_category(client: FlaskClient, forum: Forum) -> None:
    page = text(client.get(f"/t/{forum.public_topic_id}"))
    assert f'id="m{forum.public_message_pk}"' in page
    assert "Comment est imposé le télétravail" in page
    # The quote of the reply and the signature are folded, and work without JavaScript (<details>).
    assert '<details class="folded folded-quote">' in page
    assert '<details class="folded folded-signature">' in page
    assert '<a href="https://example.org/doc" rel="nofollow noopener noreferrer ugc">' in page
    assert f'href="/a/{forum.public_attachment_id}/note%20fiscale.pdf"' in page
    assert f"/m/t{forum.public_topic_id}.0@test.example/raw" in page
    # Public readers see names, not addresses.
    assert "Jean Dupont" in page and "jean@strasbourg.eu" not in page


def test_thread_page_members_see_addresses(member_client: FlaskClient, forum: Forum) -> None:
    page = text(member_client.get(f"/t/{forum.public_topic_id}"))
    assert "jean@strasbourg.eu" in page


def test_thread_page_titles_only(client: FlaskClient, forum: Forum) -> None:
    r = client.get(f"/t/{forum.private_topic_id}")
    assert r.status_code == 200
    page = text(r)
    assert "Remboursement des soins transfrontaliers" in page
    assert "Sign in to read it" in page
    for secret in ("confidentiel", "Xavier", "secrète", "Anna", "anna@kehl.de", "dossier.txt", "/a/", "mbox"):
        assert secret not in page, secret


def test_thread_page_private_for_members(member_client: FlaskClient, forum: Forum) -> None:
    page = text(member_client.get(f"/t/{forum.private_topic_id}"))
    assert "confidentiel du patient Xavier" in page and "dossier.txt" in page


def test_unsubscribed_member_reads_titles_only(client: FlaskClient, forum: Forum) -> None:
    from tests.web.conftest import sign_in

    sign_in(client, forum.outsider_id)
    page = text(client.get(f"/t/{forum.private_topic_id}"))
    assert "Xavier" not in page


def test_merged_topic_redirects(client: FlaskClient, forum: Forum, db: Session) -> None:
    topic = db.get(Topic, forum.private_topic_id)
    topic.merged_into_id = forum.public_topic_id
    db.commit()
    r = client.get(f"/t/{forum.private_topic_id}")
    assert r.status_code == 301 and r.headers["Location"].endswith(f"/t/{forum.public_topic_id}")


def test_topics_alias_used_in_command_replies(client: FlaskClient, forum: Forum) -> None:
    r = client.get(f"/topics/{forum.public_topic_id}")
    assert r.status_code == 301 and r.headers["Location"].endswith(f"/t/{forum.public_topic_id}")


def test_permalink_redirects_to_anchor(client: FlaskClient, forum: Forum) -> None:
    mid = f"t{forum.public_topic_id}.1@test.example"
    for path in (f"/m/{mid}", f"/m/{quote(mid, safe='')}", f"/m/{quote('<' + mid + '>', safe='')}"):
        r = client.get(path)
        assert r.status_code == 302, path
        assert r.headers["Location"].endswith(f"/t/{forum.public_topic_id}#m{forum.public_message_pk + 1}")
    assert client.get("/m/nope@nowhere").status_code == 404


def test_permalink_with_slash_in_message_id(client: FlaskClient, forum: Forum, db: Session) -> None:
    msg = db.get(Message, forum.public_message_pk)
    msg.message_id = "a/b/raw@x.example"
    db.commit()
    r = client.get("/m/" + quote("a/b/raw@x.example", safe=""))
    assert r.status_code == 302


def test_raw_message(client: FlaskClient, forum: Forum) -> None:
    r = client.get(f"/m/t{forum.public_topic_id}.0@test.example/raw")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert b"Message-ID: <t" in r.data


def test_raw_message_private(client: FlaskClient, member_client: FlaskClient, forum: Forum) -> None:
    path = f"/m/t{forum.private_topic_id}.0@test.example/raw"
    member_page = member_client.get(path)
    assert member_page.status_code == 200 and b"Xavier" in member_page.data


def test_raw_message_refused_to_public(app, forum: Forum) -> None:
    r = english_client(app).get(f"/m/t{forum.private_topic_id}.0@test.example/raw")
    assert r.status_code == 403
    assert b"Xavier" not in r.data and b"sign in" in r.data and b'href="/login?next=/m/' in r.data
    assert english_client(app).get("/m/nope@test.example/raw").status_code == 404


def test_attachment_served_as_download(client: FlaskClient, forum: Forum) -> None:
    r = client.get(f"/a/{forum.public_attachment_id}/note%20fiscale.pdf")
    assert r.status_code == 200
    assert r.data == b"%PDF-1.4 test"
    assert r.headers["Content-Type"] == "application/octet-stream"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="note_fiscale.pdf"')
    assert "filename*=UTF-8''note%20fiscale.pdf" in r.headers["Content-Disposition"]
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get(f"/a/{forum.public_attachment_id}/other-name.pdf").status_code == 404
    assert client.get("/a/999999/x").status_code == 404


def test_private_attachment(client: FlaskClient, forum: Forum) -> None:
    path = f"/a/{forum.private_attachment_id}/dossier.txt"
    r = client.get(path)
    assert r.status_code == 403 and b"secret medical" not in r.data
    from tests.web.conftest import sign_in

    sign_in(client, forum.member_id)
    r = client.get(path)
    assert r.status_code == 200 and r.data == b"secret medical file"
    assert r.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert r.headers["Content-Disposition"].startswith("inline;")


def test_follow_and_mute_topic_and_category(member_client: FlaskClient, forum: Forum, db: Session) -> None:
    token = csrf(member_client)
    r = member_client.post(f"/t/{forum.public_topic_id}/follow", data={"mode": "follow", "csrf_token": token})
    assert r.status_code == 303
    db.rollback()
    assert db.get(TopicFollow, (forum.member_id, forum.public_topic_id)).mode == "follow"
    member_client.post(f"/t/{forum.public_topic_id}/follow", data={"mode": "mute", "csrf_token": token})
    db.rollback()
    assert db.get(TopicFollow, (forum.member_id, forum.public_topic_id)).mode == "mute"
    member_client.post(f"/t/{forum.public_topic_id}/follow", data={"mode": "none", "csrf_token": token})
    db.rollback()
    assert db.get(TopicFollow, (forum.member_id, forum.public_topic_id)) is None
    member_client.post(f"/c/{forum.private_category_id}/follow", data={"mode": "follow", "csrf_token": token})
    db.rollback()
    assert db.get(CategoryFollow, (forum.member_id, forum.private_category_id)).mode == "follow"
    assert member_client.post(f"/t/{forum.public_topic_id}/follow",
                              data={"mode": "loud", "csrf_token": token}).status_code == 400


def test_follow_requires_sign_in(client: FlaskClient, forum: Forum) -> None:
    token = csrf(client)
    r = client.post(f"/t/{forum.public_topic_id}/follow", data={"mode": "follow", "csrf_token": token})
    assert r.status_code == 302 and "/login" in r.headers["Location"]


def test_formatted_version_of_html_mail(client: FlaskClient, forum: Forum, db: Session) -> None:
    from tests.web.conftest import add_attachment

    msg = db.get(Message, forum.public_message_pk)
    msg.html = (
        '<p>Voir <b>le tableau</b><img src="cid:chart@x" alt="graphique">'
        '<img src="https://tracker.example/p.gif" alt="pixel"></p>'
    )
    add_attachment(db, msg, "chart.png", "image/png", b"\x89PNG fake", content_id="<chart@x>", inline=True)
    db.commit()
    page = text(client.get(f"/t/{forum.public_topic_id}"))
    assert "Formatted version" in page
    r = client.get(f"/m/t{forum.public_topic_id}.0@test.example/html")
    assert r.status_code == 200
    html = text(r)
    assert "<b>le tableau</b>" in html
    assert '<img src="/a/' in html and "chart.png" in html
    assert "tracker.example" not in html and "[pixel]" in html


def test_no_n_plus_one_on_topic_list(client: FlaskClient, forum: Forum, db: Session, engine) -> None:
    from sqlalchemy import event

    from passerelle.models import Category, MailingList

    ml = db.get(MailingList, forum.list_id)
    cat = db.get(Category, forum.public_category_id)
    member = db.get(Member, forum.member_id)
    for i in range(20):
        add_topic(db, ml, cat, f"Sujet {i}", [(member, "a"), (member, "b")], start=NOW - timedelta(days=i),
                  with_raw=False)
    db.commit()
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    event.listen(engine, "before_cursor_execute", count)
    try:
        assert client.get("/topics").status_code == 200
        topic_list = len(statements)
        statements.clear()
        topic_id = db.scalar(select(Topic.id).where(Topic.subject == "Sujet 3"))
        assert client.get(f"/t/{topic_id}").status_code == 200
        thread = len(statements)
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert topic_list <= 12, statements
    assert thread <= 12
