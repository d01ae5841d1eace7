"""The signed links of digests (follow, mute, open) and of bounce notices (reenable) on the web archive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session, sessionmaker

from archive_web import create_app
from archive_web.app import BLUEPRINTS
from digests import links
from gateway.bounce_score import reenable_url
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import Subscription, TopicFollow
from tests.digests.builders import make_topic
from tests.factories import make_list, make_member

NOW = datetime(2026, 11, 3, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.value = NOW

    def __call__(self) -> datetime:
        return self.value


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def app(settings: Settings, session_factory: sessionmaker[Session], clock: Clock) -> Flask:
    extra = () if "archive_web.digest_links" in BLUEPRINTS else ("archive_web.digest_links",)
    app = create_app(settings, session_factory=session_factory, clock=clock, extra_blueprints=extra)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def forum(session_factory: sessionmaker[Session]) -> dict:
    with session_scope(session_factory) as s:
        ml = make_list(s)
        reader, sub = make_member(s, "leser@example.de", mailing_list=ml, mode="daily", language="de")
        author, _ = make_member(s, "author@example.org", mailing_list=ml)
        stranger, _ = make_member(s, "stranger@example.org")
        topic, _ = make_topic(s, ml, "Grenzgänger & Steuern", at=NOW - timedelta(hours=5), author=author)
        return {"reader": reader.id, "sub": sub.id, "topic": topic.id, "stranger": stranger.id}


def _path(url: str) -> str:
    return url.split("http://archive.test", 1)[1]


def _follow_mode(factory: sessionmaker[Session], member_id: int, topic_id: int) -> str | None:
    with session_scope(factory) as s:
        row = s.get(TopicFollow, (member_id, topic_id))
        return row.mode if row else None


@pytest.mark.parametrize("action", ["follow", "mute"])
def test_follow_and_mute_get_asks_post_does(client: FlaskClient, settings: Settings, forum: dict, action: str,
                                            session_factory: sessionmaker[Session]) -> None:
    url = _path(links.action_url(settings, action, member_id=forum["reader"], topic_id=forum["topic"], now=NOW))
    page = client.get(url)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'lang="de"' in html and "Grenzgänger &amp; Steuern" in html and "Bestätigen" in html
    # A GET (a link scanner) changed nothing.
    assert _follow_mode(session_factory, forum["reader"], forum["topic"]) is None
    done = client.post(url)
    assert done.status_code == 200
    assert _follow_mode(session_factory, forum["reader"], forum["topic"]) == action
    # Doing it again is harmless; the other link switches the mode.
    assert client.post(url).status_code == 200
    other = "mute" if action == "follow" else "follow"
    client.post(_path(links.action_url(settings, other, member_id=forum["reader"], topic_id=forum["topic"], now=NOW)))
    assert _follow_mode(session_factory, forum["reader"], forum["topic"]) == other


def test_open_signs_the_member_in_while_the_link_is_fresh(client: FlaskClient, settings: Settings, forum: dict,
                                                          clock: Clock) -> None:
    url = _path(links.action_url(settings, "open", member_id=forum["reader"], topic_id=forum["topic"], now=NOW))
    response = client.get(url)
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/t/{forum['topic']}")
    assert client.get("/account").status_code == 200  # signed in

    # A month later the same link only shows the topic.
    fresh = FlaskClient(client.application)
    clock.value = NOW + timedelta(days=settings.digests.open_link_days + 1)
    response = fresh.get(url)
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/t/{forum['topic']}")
    assert fresh.get("/account").status_code == 302  # sent to the sign-in page


def test_reenable_link(client: FlaskClient, settings: Settings, forum: dict,
                       session_factory: sessionmaker[Session]) -> None:
    with session_scope(session_factory) as s:
        sub = s.get(Subscription, forum["sub"])
        sub.status, sub.bounce_score, sub.disabled_reason = "disabled", 6.0, "bounces: score 6.0 >= 5"
        url = _path(reenable_url(settings, sub, now=NOW))
    page = client.get(url)
    assert page.status_code == 200 and "wieder aufnehmen" in page.get_data(as_text=True)
    with session_scope(session_factory) as s:
        assert s.get(Subscription, forum["sub"]).status == "disabled"
    assert client.post(url).status_code == 200
    with session_scope(session_factory) as s:
        sub = s.get(Subscription, forum["sub"])
        assert (sub.status, sub.bounce_score, sub.disabled_reason) == ("active", 0.0, "")
    assert "werden an leser@example.de zugestellt" in client.get(url).get_data(as_text=True)


def test_garbage_and_misused_links(client: FlaskClient, settings: Settings, forum: dict, clock: Clock,
                                   session_factory: sessionmaker[Session]) -> None:
    follow = _path(links.action_url(settings, "follow", member_id=forum["reader"], topic_id=forum["topic"], now=NOW))
    token = follow.rsplit("/", 1)[1]
    assert client.get("/d/follow/garbage").status_code == 400
    assert client.post("/d/follow/" + token[:-2] + "xx").status_code == 400
    assert client.post(f"/d/mute/{token}").status_code == 400  # made for follow
    assert client.get(f"/d/reenable/{token}").status_code == 400
    assert client.get(f"/d/explode/{token}").status_code == 404
    assert client.get("/d/follow/" + "a" * 600).status_code == 404
    assert client.get("/d/follow/%00%ff").status_code in (400, 404)
    # A member who is not on the topic's list; a topic that does not exist.
    stranger = links.action_url(settings, "follow", member_id=forum["stranger"], topic_id=forum["topic"], now=NOW)
    assert client.post(_path(stranger)).status_code == 403
    missing = links.action_url(settings, "follow", member_id=forum["reader"], topic_id=999999, now=NOW)
    assert client.post(_path(missing)).status_code == 404
    # Too old.
    clock.value = NOW + timedelta(seconds=links.MAX_AGE_SECONDS + 60)
    assert client.post(follow).status_code == 400
    assert _follow_mode(session_factory, forum["reader"], forum["topic"]) is None
