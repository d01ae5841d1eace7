"""Readers see the forum's name (its title, or site.name), not the software's, in pages, feeds and mail."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from email import message_from_bytes, policy

from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from archive_web import create_app
from passerelle.config import Settings
from passerelle.models import OutboxMessage
from tests.web.conftest import Clock, Forum, csrf, english_client

ATOM = "{http://www.w3.org/2005/Atom}"


def _sign_in_mail(client: FlaskClient, db: Session, email: str) -> str:
    assert client.post("/login", data={"email": email, "csrf_token": csrf(client)}).status_code == 200
    db.rollback()
    row = db.scalars(select(OutboxMessage).where(OutboxMessage.recipient == email)).one()
    mail = message_from_bytes(row.payload, policy=policy.default)
    return f"{mail['Subject']}\n{mail.get_content()}"


def test_pages_feeds_and_sign_in_mail_carry_the_forums_title(client: FlaskClient, forum: Forum, db: Session) -> None:
    # site.name is empty by default: the title of the forum (lists.default_list) is the site's name.
    page = client.get("/").get_data(as_text=True)
    assert re.search(r"<title>[^<]* · Forum transfrontalier</title>", page)
    assert '<a class="brand" href="/">Forum transfrontalier</a>' in page
    assert "Passerelle" not in page

    feed = ET.fromstring(client.get("/feeds/latest.atom").data)  # noqa: S314 - our own feed
    assert feed.findtext(f"{ATOM}title", "").endswith(" · Forum transfrontalier")
    assert feed.findtext(f"{ATOM}author/{ATOM}name") == "Forum transfrontalier"

    mail = _sign_in_mail(client, db, "jean@strasbourg.eu")
    assert mail.startswith("Your sign-in link for Forum transfrontalier\n")
    assert "sign in to Forum transfrontalier with this address" in mail
    assert "Passerelle" not in mail


def test_site_name_when_set_wins(
    settings: Settings, session_factory: sessionmaker[Session], clock: Clock, forum: Forum, db: Session
) -> None:
    app = create_app(settings.with_overrides({"site": {"name": "Réseau MOT"}}), session_factory=session_factory,
                     clock=clock)
    app.config["TESTING"] = True
    try:
        client = english_client(app)
        assert "<title>Home · Réseau MOT</title>" in client.get("/").get_data(as_text=True)
        assert _sign_in_mail(client, db, "anna@kehl.de").startswith("Your sign-in link for Réseau MOT\n")
    finally:
        app.extensions["passerelle"].dispose()
