"""At a phone's width (375 CSS pixels) no page scrolls sideways: wide tables scroll inside their own box,
with a hint saying so, long addresses wrap, and the header's search field shows its whole placeholder.
In headless Chromium, as in tests/web/test_browser.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session

from passerelle.models import Escalation, ModerationAction
from tests.web.conftest import Forum
from tests.web.test_browser import browser, live_server, page, shot, sign_in_by_link  # noqa: F401 (fixtures)
from tests.web.test_moderation import hold

pytestmark = pytest.mark.browser

WIDTH = 375
PAGES = ("/", "/topics", "/moderation/", "/moderation/members", "/escalations", "/status", "/overview", "/sheets")
# The placeholder's text, measured in the field's own font, fits between the field's paddings.
PLACEHOLDER_FITS = """() => {
  const field = document.querySelector('#quick-q');
  const style = getComputedStyle(field);
  const context = document.createElement('canvas').getContext('2d');
  context.font = `${style.fontWeight} ${style.fontSize} ${style.fontFamily}`;
  const room = field.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return [context.measureText(field.placeholder).width, room];
}"""


def busy_forum(db: Session, forum: Forum) -> None:
    """What made the owner's moderation page 479 px wide: long addresses and subjects in the log."""
    when = datetime(2026, 12, 5, 13, 2, tzinfo=UTC)
    held = hold(db, forum, subject="Demande d'information sur le réseau", sender="jean@stranger.example")
    for action, detail, via in (
        ("approve", f"held #{held.id} from jean.tres-long-nom@administration-stranger.example: Demande", "mail"),
        ("close", "solved", "mail-confirmed"),
        ("escalate", "european: Reconnaissance mutuelle des véhicules d'urgence", "mail-confirmed"),
        ("tag", "+fiscalité +télétravail +suisse +indemnités-journalières-maladie", "mail-confirmed"),
    ):
        db.add(ModerationAction(list_id=forum.list_id, topic_id=forum.public_topic_id, actor_id=forum.moderator_id,
                                action=action, detail=detail, via=via, created_at=when))
    for topic_id, level in ((forum.public_topic_id, "national"), (forum.private_topic_id, "european")):
        db.add(Escalation(topic_id=topic_id, level=level, note="Saisine.", escalated_by_id=forum.moderator_id,
                          escalated_at=when, updated_at=when, state="escalated"))
    db.commit()


def test_no_page_scrolls_sideways_on_a_phone(page: object, live_server: str, forum: Forum,  # noqa: F811
                                             db: Session) -> None:
    busy_forum(db, forum)
    sign_in_by_link(page, live_server, db, "ops@mot.example")
    page.set_viewport_size({"width": WIDTH, "height": 800})  # type: ignore[attr-defined]
    for path in PAGES:
        page.goto(f"{live_server}{path}")  # type: ignore[attr-defined]
        width = page.evaluate("document.scrollingElement.scrollWidth")  # type: ignore[attr-defined]
        assert width <= WIDTH, (path, width)
        text, room = page.evaluate(PLACEHOLDER_FITS)  # type: ignore[attr-defined]
        assert text <= room, (path, text, room)
    shot(page, "status-375")
    # A table wider than the screen scrolls in its box, and the reader is told so.
    page.goto(f"{live_server}/escalations")  # type: ignore[attr-defined]
    box = page.locator(".table-scroll").first  # type: ignore[attr-defined]
    assert box.evaluate("el => el.scrollWidth > el.clientWidth")
    page.get_by_text("faites défiler le tableau horizontalement").wait_for()  # type: ignore[attr-defined]
    shot(page, "escalations-375")
    page.goto(f"{live_server}/moderation/")  # type: ignore[attr-defined]
    page.get_by_text("Message retenu accepté").first.wait_for()  # type: ignore[attr-defined]
    shot(page, "moderation-375")
    # On a wide screen the hint is not shown.
    page.set_viewport_size({"width": 1100, "height": 900})  # type: ignore[attr-defined]
    assert not page.get_by_text("faites défiler le tableau horizontalement").is_visible()  # type: ignore[attr-defined]
