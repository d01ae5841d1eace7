"""DMARC policy lookup with a stub resolver: organisational domain fallback, sp=, broken records, timeouts,
cache."""

from __future__ import annotations

import dns.exception
import pytest

from gateway.dmarc import DmarcChecker, organizational_domain, parse_dmarc_record
from tests.gateway.conftest import StubResolver


@pytest.mark.parametrize(
    ("domain", "org"),
    [
        ("example.org", "example.org"),
        ("mail.lists.example.org", "example.org"),
        ("Mail.Example.CO.UK.", "example.co.uk"),
        ("a.b.region.gouv.fr", "region.gouv.fr"),
        ("localhost", "localhost"),
    ],
)
def test_organizational_domain(domain: str, org: str) -> None:
    assert organizational_domain(domain) == org


def test_parse_record() -> None:
    assert parse_dmarc_record("v=DMARC1; p=reject; sp=none; pct=100") == {
        "v": "DMARC1", "p": "reject", "sp": "none", "pct": "100"}
    assert parse_dmarc_record("v=spf1 -all") is None
    assert parse_dmarc_record("garbage;;;===") is None


def _checker(records: dict[str, list[str]], **kwargs: float) -> tuple[DmarcChecker, StubResolver]:
    resolver = StubResolver(records)
    clock = kwargs.pop("clock", None)
    checker = DmarcChecker(resolver=resolver, cache_seconds=kwargs.get("cache_seconds", 3600),
                           **({"monotonic": clock} if clock else {}))
    return checker, resolver


def test_policies_and_organisational_fallback() -> None:
    checker, _ = _checker({
        "_dmarc.strict.example": ["v=DMARC1; p=reject"],
        "_dmarc.quarantine.example": ["v=DMARC1; p=quarantine; rua=mailto:x@quarantine.example"],
        "_dmarc.relaxed.example": ["v=DMARC1; p=none"],
        "_dmarc.parent.example": ["v=DMARC1; p=reject; sp=none"],
        "_dmarc.strictparent.example": ["v=DMARC1; p=quarantine"],
        "_dmarc.twice.example": ["v=DMARC1; p=reject", "v=DMARC1; p=none"],
        "_dmarc.other.example": ["v=spf1 include:x -all"],
    })
    assert checker.is_strict("alice@strict.example")
    assert checker.is_strict("quarantine.example")
    assert not checker.is_strict("bob@relaxed.example")
    # Subdomain without its own record: the organisational domain's sp= applies, else its p=.
    assert not checker.is_strict("carol@mail.parent.example")
    assert checker.is_strict("carol@mail.strictparent.example")
    assert checker.lookup("mail.strictparent.example").record_domain == "strictparent.example"
    # Two DMARC records at one name: none applies (RFC 7489 6.6.3).
    assert not checker.is_strict("dan@twice.example")
    assert not checker.is_strict("eve@other.example")
    assert not checker.is_strict("nobody@nowhere.example")
    assert not checker.is_strict("not-an-address")


def test_answers_are_cached_and_failures_retried_sooner() -> None:
    now = [0.0]
    checker, resolver = _checker({"_dmarc.strict.example": ["v=DMARC1; p=reject"]}, clock=lambda: now[0])
    assert checker.is_strict("a@strict.example")
    assert checker.is_strict("b@strict.example")
    assert resolver.queries == ["_dmarc.strict.example"]
    now[0] = 3601
    assert checker.is_strict("c@strict.example")
    assert len(resolver.queries) == 2

    class Timeout(StubResolver):
        def resolve(self, name: str, rdtype: str = "A", **_: object) -> list:
            self.queries.append(name)
            raise dns.exception.Timeout()

    slow = Timeout()
    timed = DmarcChecker(resolver=slow, monotonic=lambda: now[0])
    # A timeout counts as "no policy" (the copy keeps its From), and is asked again after a minute.
    assert not timed.is_strict("x@slow.example")
    assert not timed.is_strict("y@slow.example")
    assert slow.queries == ["_dmarc.slow.example"]
    now[0] += 61
    timed.is_strict("z@slow.example")
    assert len(slow.queries) == 2
