"""End to end in headless Chromium (Debian's /usr/bin/chromium driven by Playwright, never a downloaded
browser): sign in by the mailed link, search, filter, moderate. Screenshots of the main pages are saved in
test-output/screenshots/ at the project root."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.serving import make_server

from archive_web import create_app
from passerelle.config import Settings
from passerelle.models import HeldMessage, OutboxMessage, Topic
from tests.web.conftest import Forum
from tests.web.test_auth import LINK
from tests.web.test_moderation import hold

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"


@pytest.fixture
def live_server(settings: Settings, engine: object, forum: Forum) -> Iterator[str]:
    """The archive as in production (its own engine on the configured database), on a free port."""
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-web", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        app.extensions["passerelle"].dispose()


@pytest.fixture
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail(
            "browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install chromium); "
            "Playwright's own browser downloads are not used"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def page(browser: object) -> Iterator[object]:
    context = browser.new_context(locale="fr-FR", viewport={"width": 1100, "height": 900})  # type: ignore[attr-defined]
    context.set_default_timeout(10_000)
    pg = context.new_page()
    try:
        yield pg
    finally:
        context.close()


def shot(page: object, name: str, *, full_page: bool = True) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)  # type: ignore[attr-defined]
    assert path.stat().st_size > 5000
    return path


def sign_in_by_link(page: object, base: str, db: Session, email: str) -> None:
    page.goto(f"{base}/login")  # type: ignore[attr-defined]
    page.get_by_label("Votre adresse électronique").fill(email)  # type: ignore[attr-defined]
    page.get_by_role("button", name="M'envoyer un lien de connexion").click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Consultez votre messagerie").wait_for()  # type: ignore[attr-defined]
    db.rollback()
    row = db.scalars(
        select(OutboxMessage).where(OutboxMessage.recipient == email).order_by(OutboxMessage.id.desc())
    ).first()
    assert row is not None, "the sign-in mail was not queued"
    body = message_from_bytes(row.payload, policy=policy.default).get_content()
    link = LINK.search(body)
    assert link, body
    page.goto(link.group(0).replace("http://archive.test", base))  # type: ignore[attr-defined]
    page.get_by_role("main").get_by_role("button", name="Se connecter").click()  # type: ignore[attr-defined]
    page.get_by_text("Vous êtes connecté.").wait_for()  # type: ignore[attr-defined]


def test_read_search_and_filter(page: object, live_server: str, forum: Forum) -> None:
    page.goto(live_server + "/")  # type: ignore[attr-defined]
    assert page.locator("html").get_attribute("lang") == "fr"  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Sujets récents").wait_for()  # type: ignore[attr-defined]
    # "Members only" is marked by a padlock drawn in CSS, not an emoji (an empty box without an emoji font).
    locked = page.locator(".locked", has_text="Réservé aux membres").first  # type: ignore[attr-defined]
    marker = locked.evaluate("e => { const s = getComputedStyle(e, '::before');"
                             " return [s.content, s.width, s.backgroundImage]; }")
    assert marker[0] == '""' and marker[1] != "auto" and "gradient" in marker[2], marker
    shot(page, "home")

    # Filter the topic list without JavaScript: the <details> form, a select, a submit button.
    page.get_by_role("link", name="Sujets", exact=True).first.click()  # type: ignore[attr-defined]
    page.get_by_text("Filtrer les sujets").click()  # type: ignore[attr-defined]
    page.get_by_label("Statut", exact=True).select_option("answered")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Filtrer").click()  # type: ignore[attr-defined]
    page.wait_for_url("**/topics?*status=answered*")  # type: ignore[attr-defined]
    topics = page.locator(".topic-title").all_inner_texts()  # type: ignore[attr-defined]
    assert topics == ["Fiscalité des frontaliers en télétravail"]
    shot(page, "topic-list")

    # The thread: quotes folded in <details>, opened by a click, no script involved.
    page.get_by_role("link", name="Fiscalité des frontaliers en télétravail").click()  # type: ignore[attr-defined]
    quote = page.locator("details.folded-quote").first  # type: ignore[attr-defined]
    assert quote.get_attribute("open") is None
    assert not quote.locator(".text").is_visible()
    quote.locator("summary").click()
    assert quote.locator(".text").is_visible()
    shot(page, "thread")

    # Search, accent-insensitive, with highlighted words.
    page.get_by_label("Rechercher dans l'archive").fill("fiscalite")  # type: ignore[attr-defined]
    page.get_by_label("Rechercher dans l'archive").press("Enter")  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Résultats").wait_for()  # type: ignore[attr-defined]
    marks = page.locator(".hit mark").all_inner_texts()  # type: ignore[attr-defined]
    assert marks and all(m.lower() == "fiscalité" for m in marks)
    # The titles-only topic is found by its title and shows nothing else.
    page.goto(live_server + "/search?q=remboursement")  # type: ignore[attr-defined]
    assert page.locator(".hit").count() == 1  # type: ignore[attr-defined]
    assert "Xavier" not in page.content()  # type: ignore[attr-defined]
    page.goto(live_server + "/search?q=fiscalite&author=dupont")  # type: ignore[attr-defined]
    shot(page, "search-results")


def test_sign_in_by_link_then_account(page: object, live_server: str, forum: Forum, db: Session) -> None:
    page.goto(f"{live_server}/t/{forum.private_topic_id}")  # type: ignore[attr-defined]
    assert "Xavier" not in page.content()  # type: ignore[attr-defined]
    sign_in_by_link(page, live_server, db, "jean@strasbourg.eu")
    page.goto(f"{live_server}/t/{forum.private_topic_id}")  # type: ignore[attr-defined]
    page.get_by_text("confidentiel du patient Xavier").wait_for()  # type: ignore[attr-defined]
    page.get_by_role("link", name="Jean Dupont").click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Mon compte").wait_for()  # type: ignore[attr-defined]
    page.get_by_label("Un résumé quotidien").check()  # type: ignore[attr-defined]
    page.locator("form[action='/account/delivery'] button").click()  # type: ignore[attr-defined]
    page.get_by_text("Votre mode de réception est enregistré.").wait_for()  # type: ignore[attr-defined]
    shot(page, "account")
    # Mobile width: the layout reflows, nothing overflows horizontally.
    page.set_viewport_size({"width": 375, "height": 800})  # type: ignore[attr-defined]
    page.goto(f"{live_server}/t/{forum.public_topic_id}")  # type: ignore[attr-defined]
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")  # type: ignore[attr-defined]
    assert overflow <= 0
    shot(page, "thread-mobile")


def test_moderator_approves_a_held_post(page: object, live_server: str, forum: Forum, db: Session) -> None:
    held = hold(db, forum, subject="Question sur le détachement", body="Bonjour, quelles formalités ?")
    held_id = held.id
    sign_in_by_link(page, live_server, db, "mod@mot.example")
    page.get_by_role("link", name="Modération").first.click()  # type: ignore[attr-defined]
    item = page.locator(".held-list li", has_text="Question sur le détachement")  # type: ignore[attr-defined]
    item.wait_for()
    shot(page, "moderation-queue")
    item.get_by_role("button", name="Accepter").click()
    page.get_by_text("Aucun message n'attend de décision.").wait_for()  # type: ignore[attr-defined]
    db.rollback()
    assert db.get(HeldMessage, held_id).decision == "approved"
    # And a topic's status, from its page.
    page.goto(f"{live_server}/t/{forum.private_topic_id}")  # type: ignore[attr-defined]
    page.get_by_role("link", name="Modérer ce sujet").click()  # type: ignore[attr-defined]
    page.get_by_label("Statut").select_option("closed")  # type: ignore[attr-defined]
    page.get_by_label("Issue (si clos)").select_option("solved")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Enregistrer").click()  # type: ignore[attr-defined]
    page.get_by_text("Sujet enregistré.").wait_for()  # type: ignore[attr-defined]
    db.rollback()
    assert db.get(Topic, forum.private_topic_id).status == "closed"


def test_screenshots_dir_is_ignored_by_git() -> None:
    root = Path(__file__).resolve().parents[2]
    ignored = (root / ".gitignore").read_text().splitlines()
    assert "test-output/" in ignored or "test-output" in ignored
    assert os.path.isdir(root)
