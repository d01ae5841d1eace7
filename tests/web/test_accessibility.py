"""Accessibility basics on every main page: language, skip link, one h1 and no skipped heading level, a
label for every form field."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from flask.testing import FlaskClient

from tests.web.conftest import Forum, sign_in
from tests.web.test_moderation import hold


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: list[int] = []
        self.fields: list[dict[str, str | None]] = []
        self.labels_for: set[str] = set()
        self.label_depth = 0
        self.wrapped: int = 0
        self.lang: str | None = None
        self.skip_link = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang")
        if len(tag) == 2 and tag[0] == "h" and tag[1].isdigit():
            self.headings.append(int(tag[1]))
        if tag == "label":
            self.label_depth += 1
            if a.get("for"):
                self.labels_for.add(str(a["for"]))
        if tag == "a" and a.get("href") == "#main":
            self.skip_link = True
        if tag in ("input", "select", "textarea"):
            if a.get("type") in ("hidden", "submit", "button"):
                return
            if self.label_depth:
                self.wrapped += 1
                return
            self.fields.append(a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.label_depth -= 1


def check(html: str, where: str) -> None:
    page = _Page()
    page.feed(html)
    assert page.lang in ("fr", "en", "de", "it", "es"), where
    assert page.skip_link, where
    assert page.headings.count(1) == 1, (where, page.headings)
    for before, after in zip(page.headings, page.headings[1:], strict=False):
        assert after <= before + 1, (where, page.headings)
    for field in page.fields:
        assert field.get("aria-label") or field.get("id") in page.labels_for, (where, field)


PUBLIC = ["/", "/topics", "/c/{category}", "/t/{topic}", "/t/{private}", "/search", "/search?q=fiscalite",
          "/login", "/t/424242"]
MEMBER = ["/account"]
MODERATOR = ["/moderation/", "/moderation/held/{held}", "/moderation/categories", "/moderation/members",
             "/moderation/members/{member}", "/moderation/organisations", "/moderation/topics/{topic}"]
OPERATOR = ["/status"]


@pytest.mark.parametrize("lang", ["en", "fr"])
def test_pages_are_accessible(client: FlaskClient, forum: Forum, db, lang: str) -> None:
    held = hold(db, forum)
    values = {"category": forum.public_category_id, "topic": forum.public_topic_id, "private": forum.private_topic_id,
              "held": held.id, "member": forum.member_id}
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    for who, paths in ((None, PUBLIC), (forum.member_id, MEMBER), (forum.moderator_id, MODERATOR),
                       (forum.operator_id, OPERATOR)):
        if who is not None:
            sign_in(client, who)
        for path in paths:
            url = path.format(**values)
            r = client.get(url)
            assert r.status_code in (200, 404), url
            check(r.get_data(as_text=True), url)
