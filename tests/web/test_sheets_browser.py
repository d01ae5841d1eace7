"""End to end in headless Chromium: a moderator turns a topic into a sheet from the topic page, corrects a
bad field, publishes it, escalates the topic; readers see the published sheet, the register and the
overview's charts. Screenshots in test-output/screenshots/ (sheet-*, escalation*, overview*)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from passerelle.models import Category, Escalation, Member, Organisation, Sheet, Topic
from tests.factories import make_category, make_list, make_member, make_org
from tests.web.conftest import NOW, Forum, add_topic
from tests.web.test_browser import browser, live_server, page, shot, sign_in_by_link  # noqa: F401 - fixtures

pytestmark = pytest.mark.browser


def shot_dir() -> Path:
    from tests.web.test_browser import SCREENSHOTS

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


@pytest.fixture
def busy_forum(forum: Forum, db: Session) -> Forum:
    """A year of topics on three borders, so that the overview's charts have something to show."""
    ml = make_list(db)
    orgs = [
        db.get(Organisation, forum.org_id),
        make_org(db, "Région Grand Est", "FR", kind="region", border="DE-FR"),
        make_org(db, "Ville de Genève", "CH", border="CH-FR"),
        make_org(db, "Provincia di Cuneo", "IT", border="FR-IT"),
        make_org(db, "Eurodistrict PAMINA", "DE", kind="cross-border body", border="DE-FR"),
    ]
    people = [make_member(db, f"p{i}@net.example", name=f"Personne {i}", mailing_list=ml, org=org)[0]
              for i, org in enumerate(orgs)]
    categories = [db.get(Category, forum.public_category_id), make_category(db, ml, "Transports", public_access="full"),
                  make_category(db, ml, "Emploi", public_access="titles")]
    start = NOW - timedelta(days=330)
    for i in range(24):
        author, other = people[i % len(people)], people[(i * 2 + 1) % len(people)]
        topic, _ = add_topic(db, ml, categories[i % 3], f"Sujet {i}",
                             [(author, f"Question {i}"), (other, f"Réponse {i}")],
                             start=start + timedelta(days=13 * i), with_raw=False)
        topic.first_answer_at = topic.created_at + timedelta(hours=2 + 5 * (i % 6))
        if i % 3 != 2:
            topic.status, topic.outcome = "closed", ("solved" if i % 2 else "legal-impossibility")
            topic.closed_at = topic.created_at + timedelta(days=3 + 2 * (i % 7))
        else:
            topic.status = "answered"
    db.commit()
    return forum


def test_sheet_lifecycle_escalation_and_overview(page: object, live_server: str, busy_forum: Forum,  # noqa: F811
                                                  db: Session) -> None:
    forum = busy_forum
    sign_in_by_link(page, live_server, db, "mod@mot.example")

    # From the topic page: make an Obstacle/Solution draft.
    page.goto(f"{live_server}/t/{forum.private_topic_id}")  # type: ignore[attr-defined]
    page.get_by_text("Faire une fiche ou une remontée (modérateurs)").click()  # type: ignore[attr-defined]
    page.get_by_label("Faire une fiche").select_option("obstacle")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Créer le brouillon").click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Modifier la fiche").wait_for()  # type: ignore[attr-defined]
    assert page.get_by_label("Titre").input_value() == "Remboursement des soins transfrontaliers"  # type: ignore[attr-defined]
    assert page.get_by_label("Frontière").input_value() == "DE-FR"  # type: ignore[attr-defined]

    # A bad border: a clear error next to the field, what was typed kept.
    page.get_by_label("Domaine juridique ou administratif").fill("Sécurité sociale des frontaliers")  # type: ignore[attr-defined]
    page.get_by_label("Niveau compétent pour le résoudre").select_option("national")  # type: ignore[attr-defined]
    page.get_by_label("Frontière").fill("France/Allemagne")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Enregistrer une nouvelle version").click()  # type: ignore[attr-defined]
    page.get_by_role("alert").get_by_text("1 champ est à revoir").wait_for()  # type: ignore[attr-defined]
    assert page.locator("#err-border").inner_text().startswith("« France/Allemagne » n'est pas une frontière")  # type: ignore[attr-defined]
    assert page.get_by_label("Domaine juridique ou administratif").input_value() == "Sécurité sociale des frontaliers"  # type: ignore[attr-defined]
    shot(page, "sheet-edit-error")
    page.get_by_label("Frontière").fill("DE-FR")  # type: ignore[attr-defined]
    refs = "Règlement (CE) n° 883/2004, article 20\nAccord-cadre franco-allemand du 22 juillet 2005"
    page.get_by_label("Références juridiques").fill(refs)  # type: ignore[attr-defined]
    page.get_by_role("button", name="Enregistrer une nouvelle version").click()  # type: ignore[attr-defined]
    page.get_by_text("Fiche enregistrée (version 2).").wait_for()  # type: ignore[attr-defined]
    page.get_by_role("button", name="Publier").click()  # type: ignore[attr-defined]
    page.get_by_text("La fiche est publiée.").wait_for()  # type: ignore[attr-defined]
    shot(page, "sheet")
    db.rollback()
    sheet = db.scalar(select(Sheet))
    assert sheet is not None and sheet.status == "published" and sheet.version == 2
    sheet_id = sheet.id
    db.rollback()

    page.get_by_role("link", name="Historique").click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Historique de la fiche").wait_for()  # type: ignore[attr-defined]
    shot(page, "sheet-history")
    page.goto(f"{live_server}/sheets/{sheet_id}/print")  # type: ignore[attr-defined]
    page.emulate_media(media="print")  # type: ignore[attr-defined]
    assert not page.get_by_text("Retour à la fiche").is_visible()  # type: ignore[attr-defined]
    shot(page, "sheet-print")
    page.emulate_media(media="screen")  # type: ignore[attr-defined]

    # Escalate the topic from its page; the topic then says where its escalation stands.
    page.goto(f"{live_server}/t/{forum.private_topic_id}")  # type: ignore[attr-defined]
    page.get_by_text("Faire une fiche ou une remontée (modérateurs)").click()  # type: ignore[attr-defined]
    page.get_by_label("Faire remonter au").select_option("european")  # type: ignore[attr-defined]
    page.locator("#x-note").fill("Saisine de la DG EMPL, réponse attendue.")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Faire remonter", exact=True).click()  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Suivi", exact=True).wait_for()  # type: ignore[attr-defined]
    page.get_by_label("État").select_option("acknowledged")  # type: ignore[attr-defined]
    page.get_by_label("Note (facultative) : ce qui a été fait, qui a répondu").fill("Accusé de réception reçu.")  # type: ignore[attr-defined]
    page.get_by_role("button", name="Enregistrer").click()  # type: ignore[attr-defined]
    page.get_by_text("Remontée mise à jour.").wait_for()  # type: ignore[attr-defined]
    shot(page, "escalation")
    db.rollback()
    assert db.scalar(select(Escalation.state)) == "acknowledged"
    assert db.get(Topic, forum.private_topic_id).escalation_level == "european"  # type: ignore[union-attr]
    db.rollback()
    page.goto(f"{live_server}/t/{forum.private_topic_id}")  # type: ignore[attr-defined]
    page.locator(".topic-sheet", has_text="Fiche :").wait_for()  # type: ignore[attr-defined]
    page.locator(".topic-escalation", has_text="Pris en compte").wait_for()  # type: ignore[attr-defined]
    shot(page, "sheet-topic-links", full_page=False)
    page.goto(f"{live_server}/escalations")  # type: ignore[attr-defined]
    shot(page, "escalations")

    # The overview: every chart is an image that loaded; tables under each.
    page.goto(f"{live_server}/overview")  # type: ignore[attr-defined]
    page.get_by_role("heading", name="Vue d'ensemble du réseau").wait_for()  # type: ignore[attr-defined]
    images = page.locator("figure.chart img")  # type: ignore[attr-defined]
    assert images.count() == 6
    for i in range(6):
        images.nth(i).scroll_into_view_if_needed()
        page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=images.nth(i).element_handle())  # type: ignore[attr-defined]
    shot(page, "overview")
    for i, name in enumerate(("months", "categories", "countries", "borders", "timings", "organisations")):
        images.nth(i).screenshot(path=str(shot_dir() / f"overview-chart-{name}.png"))
    page.set_viewport_size({"width": 375, "height": 800})  # type: ignore[attr-defined]
    overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")  # type: ignore[attr-defined]
    assert overflow <= 0
    shot(page, "overview-mobile", full_page=False)


def test_public_reader_sees_titles_only(browser: object, live_server: str, busy_forum: Forum,  # noqa: F811
                                        db: Session) -> None:
    from gateway.sheets import create_sheet_from_topic, set_status
    from passerelle.config import load_settings

    topic = db.get(Topic, busy_forum.private_topic_id)
    mod = db.get(Member, busy_forum.moderator_id)
    sheet = create_sheet_from_topic(db, load_settings(environ={}), topic, "practice", mod, now=NOW)
    set_status(db, sheet, "published", mod, now=NOW)
    db.commit()
    sheet_id = sheet.id
    context = browser.new_context(locale="fr-FR", viewport={"width": 1100, "height": 900})  # type: ignore[attr-defined]
    try:
        pg = context.new_page()
        pg.goto(f"{live_server}/sheets")
        pg.get_by_role("link", name="Remboursement des soins transfrontaliers").click()
        pg.get_by_text("Seul le titre de cette fiche est public.").wait_for()
        assert "Xavier" not in pg.content()
        shot(pg, "sheet-public-title-only")
        assert pg.goto(f"{live_server}/sheets/{sheet_id}/print").url.startswith(f"{live_server}/login")
    finally:
        context.close()
