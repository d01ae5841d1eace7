"""The overview page: public, aggregate figures only (never a title or a message), charts drawn by pygal
as SVG images with text alternatives and tables, the same figures as CSV, garbage in every parameter."""

from __future__ import annotations

import csv
import io
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session

from passerelle.models import Category, Organisation, Topic
from passerelle.overview import FIGURES
from tests.web.conftest import NOW, Forum, sign_in

TITLES = ("Fiscalité des frontaliers en télétravail", "Remboursement des soins transfrontaliers")
PRIVATE_WORDS = ("Xavier", "confidentiel", "secrète", "jean@strasbourg.eu")


def english(client: FlaskClient) -> None:
    with client.session_transaction() as sess:
        sess["lang"] = "en"


@pytest.fixture
def closed(forum: Forum, db: Session) -> Forum:
    topic = db.get(Topic, forum.public_topic_id)
    assert topic is not None
    topic.first_answer_at = topic.created_at + timedelta(hours=2)
    topic.status, topic.outcome, topic.closed_at = "closed", "solved", topic.created_at + timedelta(days=5)
    db.commit()
    return forum


def test_page_for_everyone_with_charts_and_tables(client: FlaskClient, closed: Forum) -> None:
    english(client)
    r = client.get("/overview")
    assert r.status_code == 200
    page = r.get_data(as_text=True)
    for figure in FIGURES:
        assert f'src="/overview/chart/{figure}.svg"' in page
        assert f'href="/overview/{figure}.csv"' in page
    assert page.count("<figure") == len(FIGURES) and page.count('alt="') >= len(FIGURES)
    assert "Santé" in page and "Fiscalité" in page  # category names (public)
    assert "Eurométropole de Strasbourg" in page and "DE-FR" in page
    assert "2026-11" in page and "5.0 days" in page and "2.0 h" in page  # resolution, first answer
    # Aggregates only: no topic title, no message, no address, whoever reads.
    for word in (*TITLES, *PRIVATE_WORDS):
        assert word not in page, word
    sign_in(client, closed.member_id)
    members_page = client.get("/overview").get_data(as_text=True)
    assert not any(t in members_page for t in TITLES)


@pytest.mark.parametrize("figure", FIGURES)
def test_each_chart_is_an_svg_image(client: FlaskClient, closed: Forum, figure: str) -> None:
    r = client.get(f"/overview/chart/{figure}.svg?from=2026-01&to=2026-12")
    assert r.status_code == 200 and r.mimetype == "image/svg+xml"
    assert "script-src" not in r.headers["Content-Security-Policy"]
    assert r.headers["Content-Security-Policy"].startswith("default-src 'none'")
    root = ET.fromstring(r.data)  # noqa: S314 - our own server's output
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    text = r.get_data(as_text=True)
    assert "pygal" in text and not any(t in text for t in TITLES)


def test_csv_parses_back(client: FlaskClient, closed: Forum) -> None:
    rows = list(csv.DictReader(io.StringIO(client.get("/overview.csv").data.decode("utf-8-sig"))))
    values = {(r["figure"], r["label"], r["measure"]): r["value"] for r in rows}
    assert values[("totals", "all", "topics")] == "2"
    assert values[("months", "2026-11", "opened")] == "2" and values[("months", "2026-11", "closed")] == "1"
    assert values[("categories", "Santé", "open")] == "1"
    assert values[("countries", "FR", "topics")] == "2" and values[("borders", "DE-FR", "topics")] == "2"
    assert values[("timings", "resolution", "median_hours")] == "120.0"
    assert values[("organisations", "Stadt Kehl", "messages")] == "2"
    months = list(csv.DictReader(io.StringIO(client.get("/overview/months.csv").data.decode("utf-8-sig"))))
    assert months == [{"month": "2026-11", "opened": "2", "closed": "1"}]
    r = client.get("/overview/organisations.csv")
    assert r.headers["Content-Disposition"] == 'attachment; filename="overview-organisations.csv"'
    orgs = list(csv.DictReader(io.StringIO(r.data.decode("utf-8-sig"))))
    assert {o["organisation"] for o in orgs} == {"Eurométropole de Strasbourg", "Stadt Kehl"}
    assert not any(w in r.get_data(as_text=True) for w in PRIVATE_WORDS)


def test_scope_parameters(client: FlaskClient, closed: Forum) -> None:
    rows = list(csv.DictReader(io.StringIO(client.get("/overview.csv?from=2026-12").data.decode("utf-8-sig"))))
    assert {(r["figure"], r["measure"]): r["value"] for r in rows}[("totals", "topics")] == "0"
    rows = list(csv.DictReader(io.StringIO(
        client.get(f"/overview/months.csv?list={closed.list_id}&from=2026-11&to=2026-11").data.decode("utf-8-sig"))))
    assert rows[0]["opened"] == "2"
    assert "No data yet" in client.get("/overview/chart/months.svg?from=2030-01").get_data(as_text=True)


@pytest.mark.parametrize("query", [
    "from=2026-13", "from=abc", "to=2026-1", "from=0000-01", "from=2026-05&to=2026-01", "list=abc",
    "list=" + "9" * 40, "from=%00", "to=2026-01-01",
])
def test_garbage_parameters(client: FlaskClient, closed: Forum, query: str) -> None:
    for path in ("/overview", "/overview.csv", "/overview/months.csv", "/overview/chart/countries.svg"):
        assert client.get(f"{path}?{query}").status_code == 400, (path, query)


def test_unknown_things(client: FlaskClient, closed: Forum) -> None:
    assert client.get("/overview?list=999999").status_code == 404
    assert client.get("/overview/chart/secrets.svg").status_code == 404
    assert client.get("/overview/secrets.csv").status_code == 404
    assert client.get("/overview/chart/..%2Fmonths.svg").status_code == 404


def test_hostile_names_stay_text(client: FlaskClient, closed: Forum, db: Session) -> None:
    payload = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    db.get(Category, closed.public_category_id).name = payload  # type: ignore[union-attr]
    db.get(Organisation, closed.org_id).name = "=HYPERLINK(\"http://x\")" + payload  # type: ignore[union-attr]
    db.commit()
    page = client.get("/overview").get_data(as_text=True)
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    svg = client.get("/overview/chart/categories.svg").get_data(as_text=True)
    assert "<script>alert(1)" not in svg
    ET.fromstring(svg)  # noqa: S314 - still well-formed XML: the name is escaped text
    rows = list(csv.DictReader(io.StringIO(client.get("/overview/organisations.csv").data.decode("utf-8-sig"))))
    assert any(r["organisation"].startswith("'=HYPERLINK") for r in rows)


def test_empty_forum(client: FlaskClient, db: Session) -> None:
    from tests.factories import make_list

    make_list(db)
    db.commit()
    english(client)
    page = client.get("/overview").get_data(as_text=True)
    assert "No data yet" in page
    for figure in FIGURES:
        assert client.get(f"/overview/chart/{figure}.svg").status_code == 200


def test_figures_are_computed_once_for_a_page_view(client: FlaskClient, closed: Forum, db: Session, clock) -> None:
    """The page, its six charts and the CSV come from one computation, kept five minutes."""
    first = client.get("/overview.csv").data.decode("utf-8-sig")
    topic = db.get(Topic, closed.private_topic_id)
    topic.status, topic.outcome, topic.closed_at = "closed", "no-action", NOW  # type: ignore[union-attr]
    db.commit()
    assert client.get("/overview.csv").data.decode("utf-8-sig") == first
    clock.advance(seconds=301)
    rows = list(csv.DictReader(io.StringIO(client.get("/overview.csv").data.decode("utf-8-sig"))))
    assert {(r["figure"], r["measure"]): r["value"] for r in rows}[("totals", "closed")] == "2"
