"""passerelle.overview: the figures of the network's overview, computed on a known forum, and their CSV."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime

import pytest
from sqlalchemy.orm import Session

from passerelle import overview as ov
from tests.sheets.conftest import Network
from tests.web.conftest import add_topic


def test_percentiles_interpolate_between_ranks() -> None:
    assert ov.percentile([], 50) is None
    assert ov.percentile([4.0], 90) == 4.0
    assert ov.percentile([1, 2, 3, 4], 50) == 2.5
    assert ov.percentile(list(range(1, 11)), 90) == pytest.approx(9.1)
    with pytest.raises(ValueError):
        ov.percentile([1], 101)
    s = ov.stat([2.0, 4.0, -1.0])  # a negative duration (clock skew) is left out
    assert (s.count, s.median_hours, s.mean_hours) == (2, 3.0, 3.0)


def test_figures_of_the_network(db: Session, network: Network) -> None:
    scope = ov.Scope(timezone="Europe/Paris")
    result = ov.build_overview(db, scope)
    assert (result.total_topics, result.open_topics, result.closed_topics) == (2, 1, 1)
    # Opened in September and October; closed in September; every month in between listed.
    assert [(m.month, m.opened, m.closed) for m in result.months] == [("2026-09", 1, 1), ("2026-10", 1, 0)]
    assert [(c.label, c.topics, c.closed, c.open) for c in result.categories] == [
        ("Emploi et formation", 1, 1, 0), ("", 1, 0, 1)]
    # Countries of the participants' organisations: each topic counted once per country.
    assert {c.label: c.topics for c in result.countries} == {"FR": 2, "DE": 1, "LU": 1}
    assert {c.label: c.topics for c in result.borders} == {"DE-FR": 2, "FR-LU": 1}
    t = result.timings
    assert t is not None
    assert t.first_answer.count == 2 and t.first_answer.median_hours == pytest.approx((1 + 30) / 2)
    assert t.resolution.count == 1 and t.resolution.median_hours == pytest.approx(72)
    assert t.closing.count == 1
    orgs = [(o.name, o.messages, o.topics_started, o.topics_joined) for o in result.organisations]
    assert orgs[0] == ("Eurométropole de Strasbourg", 3, 1, 2)
    assert ("Ville d'Esch", 1, 1, 1) in orgs


def test_scope_by_dates_and_list(db: Session, network: Network) -> None:
    october = ov.Scope(since=date(2026, 10, 1), until=date(2026, 11, 1), timezone="Europe/Paris")
    result = ov.build_overview(db, october)
    assert result.total_topics == 1 and [m.month for m in result.months] == ["2026-10"]
    assert ov.build_overview(db, ov.Scope(list_id=network.ml.id + 99)).total_topics == 0
    empty = ov.build_overview(db, ov.Scope(list_id=network.ml.id + 99))
    assert empty.months == [] and empty.organisations == [] and empty.timings.first_answer.median_hours is None


def test_month_gaps_and_time_zone(db: Session, network: Network) -> None:
    # 31 December 23:30 UTC is already January in Paris; merged topics are not counted.
    late, _ = add_topic(db, network.ml, None, "Nouvel an", [(network.jean, "?")],
                        start=datetime(2026, 12, 31, 23, 30, tzinfo=UTC), with_raw=False)
    merged, _ = add_topic(db, network.ml, None, "Doublon", [(network.jean, "?")],
                          start=datetime(2026, 11, 5, tzinfo=UTC), with_raw=False)
    merged.merged_into_id = late.id
    db.flush()
    months = ov.topics_per_month(db, ov.Scope(timezone="Europe/Paris"))
    assert [m.month for m in months] == ["2026-09", "2026-10", "2026-11", "2026-12", "2027-01"]
    assert [m.opened for m in months] == [1, 1, 0, 0, 1]
    months_utc = ov.topics_per_month(db, ov.Scope(timezone="UTC"))
    assert months_utc[-1].month == "2026-12"


def test_csv_of_the_figures(db: Session, network: Network) -> None:
    network.anna.organisation.name = "=SUM(A1:A9)"  # type: ignore[union-attr]
    db.flush()
    result = ov.build_overview(db, ov.Scope())
    header, _rows = ov.figure_table(result, "organisations")
    assert header[0] == "organisation"
    out = io.StringIO()
    csv.writer(out).writerows([["figure", "label", "measure", "value"],
                               *([ov.spreadsheet_safe(c) for c in row] for row in ov.long_rows(result))])
    back = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert {"figure": "totals", "label": "all", "measure": "topics", "value": "2"} in back
    assert {"figure": "months", "label": "2026-09", "measure": "opened", "value": "1"} in back
    assert any(r["label"] == "'=SUM(A1:A9)" for r in back)
    timing = [r for r in back if r["figure"] == "timings" and r["label"] == "resolution"]
    assert {r["measure"]: r["value"] for r in timing}["median_hours"] == "72.0"
    with pytest.raises(ValueError):
        ov.figure_table(result, "nope")
    assert ov.spreadsheet_safe(None) == "" and ov.spreadsheet_safe(-3) == "-3" and ov.spreadsheet_safe(True) == "true"
