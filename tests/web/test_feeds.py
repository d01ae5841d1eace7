"""Atom feeds and mbox exports, parsed back; private content never leaks through them."""

from __future__ import annotations

import mailbox
import xml.etree.ElementTree as ET
from pathlib import Path

from flask.testing import FlaskClient

from tests.web.conftest import Forum, sign_in

ATOM = "{http://www.w3.org/2005/Atom}"


def entries(data: bytes) -> list[ET.Element]:
    root = ET.fromstring(data)  # noqa: S314 - our own feed, built by ElementTree
    assert root.tag == f"{ATOM}feed"
    assert root.find(f"{ATOM}id") is not None and root.find(f"{ATOM}updated") is not None
    return root.findall(f"{ATOM}entry")


def test_latest_feed_public(client: FlaskClient, forum: Forum) -> None:
    r = client.get("/feeds/latest.atom")
    assert r.status_code == 200 and r.mimetype == "application/atom+xml"
    items = entries(r.data)
    titles = [e.findtext(f"{ATOM}title") for e in items]
    assert "Fiscalité des frontaliers en télétravail" in titles
    # The titles-only topic appears once, by its title, without content or author.
    private = [e for e in items if e.findtext(f"{ATOM}title") == "Remboursement des soins transfrontaliers"]
    assert len(private) == 1
    assert private[0].find(f"{ATOM}content") is None and private[0].find(f"{ATOM}author") is None
    for secret in (b"Xavier", b"secr", b"anna@kehl.de", b"jean@strasbourg.eu"):
        assert secret not in r.data
    public = next(e for e in items if e.findtext(f"{ATOM}title") == "Fiscalité des frontaliers en télétravail")
    assert "télétravail des frontaliers" in public.findtext(f"{ATOM}content")
    assert public.find(f"{ATOM}link").get("href").startswith("http://archive.test/t/")


def test_category_feed(client: FlaskClient, forum: Forum) -> None:
    items = entries(client.get(f"/feeds/c/{forum.public_category_id}.atom").data)
    assert len(items) == 2
    r = client.get(f"/feeds/c/{forum.private_category_id}.atom")
    assert b"Xavier" not in r.data and len(entries(r.data)) == 1
    assert client.get("/feeds/c/424242.atom").status_code == 404


def test_category_feed_for_members(client: FlaskClient, forum: Forum) -> None:
    sign_in(client, forum.member_id)
    r = client.get(f"/feeds/c/{forum.private_category_id}.atom")
    assert b"Xavier" in r.data and len(entries(r.data)) == 2


def test_search_feed(client: FlaskClient, forum: Forum) -> None:
    items = entries(client.get("/feeds/search.atom?q=fiscalite").data)
    assert len(items) == 2
    r = client.get("/feeds/search.atom?q=Xavier")
    assert entries(r.data) == [] and b"Xavier" not in r.data.split(b"<entry")[0].replace(b"Xavier", b"")
    r = client.get("/feeds/search.atom?q=remboursement")
    assert b"confidentiel" not in r.data and len(entries(r.data)) == 1
    assert client.get("/feeds/search.atom?from=garbage").status_code == 400


def test_topic_mbox(client: FlaskClient, forum: Forum, tmp_path: Path) -> None:
    r = client.get(f"/t/{forum.public_topic_id}/mbox")
    assert r.status_code == 200 and r.mimetype == "application/mbox"
    assert r.headers["Content-Disposition"] == f'attachment; filename="topic-{forum.public_topic_id}.mbox"'
    path = tmp_path / "t.mbox"
    path.write_bytes(r.data)
    box = mailbox.mbox(str(path))
    try:
        ids = [m["Message-ID"] for m in box]
    finally:
        box.close()
    assert ids == [f"<t{forum.public_topic_id}.0@test.example>", f"<t{forum.public_topic_id}.1@test.example>"]


def test_mbox_escapes_from_lines_and_rebuilds_missing_originals(client: FlaskClient, forum: Forum, db,
                                                                tmp_path: Path) -> None:
    from passerelle.models import InboundMessage, Message

    msg = db.get(Message, forum.public_message_pk)
    inbound = db.get(InboundMessage, msg.inbound_id)
    inbound.raw = inbound.raw.replace(b"Bonjour,", b"From the start, hello\r\n>From quoted")
    db.get(Message, forum.public_message_pk + 1).inbound_id = None
    db.commit()
    data = client.get(f"/t/{forum.public_topic_id}/mbox").data
    assert b"\n>From the start" in data and b"\n>>From quoted" in data
    path = tmp_path / "t.mbox"
    path.write_bytes(data)
    box = mailbox.mbox(str(path))
    try:
        messages = list(box)
    finally:
        box.close()
    assert len(messages) == 2
    assert messages[1]["Message-ID"] == f"<t{forum.public_topic_id}.1@test.example>"


def test_private_mbox_refused_to_public(client: FlaskClient, forum: Forum) -> None:
    for path in (f"/t/{forum.private_topic_id}/mbox", f"/c/{forum.private_category_id}/mbox"):
        r = client.get(path)
        # It exists (its title is public) but is for members: 403 with a way to sign in, never the content.
        assert r.status_code == 403 and b"Xavier" not in r.data
        assert f'href="/login?next=/{path[1]}/'.encode() in r.data
    assert client.get(f"/c/{forum.public_category_id}/mbox").status_code == 200
    assert client.get("/t/999999/mbox").status_code == 404 and client.get("/c/999999/mbox").status_code == 404


def test_private_mbox_for_members(client: FlaskClient, forum: Forum) -> None:
    sign_in(client, forum.member_id)
    r = client.get(f"/c/{forum.private_category_id}/mbox")
    assert r.status_code == 200 and b"Xavier" in r.data and r.data.count(b"\nFrom ") + r.data.startswith(b"From ") == 2
