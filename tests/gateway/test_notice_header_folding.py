"""RFC 2369 list headers on the mails the gateway writes stay plain ``<URI>`` lists, never RFC 2047 words.

A signed one-click unsubscribe URL has no spaces; folding it at 78 columns made the stdlib encode it as
``=?utf-8?q?=3Chttp...`` and mail clients could no longer offer RFC 8058 one-click unsubscribe.
"""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from gateway.notices import build_notice
from passerelle.config import Settings

TOKEN = "eyJsaXN0IjoiZm9ydW0iLCJlbWFpbCI6Im1hcmt1cy53ZWJlckBsb2VycmFjaC5leGFtcGxlIn0.axP8hg.dN4u3Cw5Db7AxzIfjid08J76Mzs"


def test_a_long_one_click_unsubscribe_header_is_written_as_is(settings: Settings) -> None:
    unsubscribe = f"<http://127.0.0.1:8080/u/{TOKEN}>, <mailto:forum-request@forum.test?subject=unsubscribe>"
    mailing_list = SimpleNamespace(name="forum", title="Forum du réseau transfrontalier", language="fr")
    msg = build_notice(
        settings, mailing_list, to="markus.weber@loerrach.example", subject="Résumé quotidien du forum",
        body="Bonjour é", html="<p>Bonjour é</p>", now=datetime(2026, 12, 5, 8, tzinfo=UTC),
        extra_headers=[("List-Unsubscribe", unsubscribe), ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click")],
    )
    raw = bytes(msg)
    assert f"List-Unsubscribe: {unsubscribe}\n".encode() in raw.replace(b"\r\n", b"\n")
    assert b"=?utf-8?q?=3C" not in raw
