"""Address headers, validation and VERP."""

from __future__ import annotations

import json

import pytest

from passerelle.mail.addresses import (
    Address,
    InvalidAddressError,
    is_valid_address,
    normalize_addr,
    parse_address,
    parse_address_list,
    validate_address,
    verp_decode,
    verp_encode,
)
from tests.mail.conftest import corpus_folder


def _expected_mailboxes(expected: dict) -> list[tuple[str, str]]:
    groups = expected.get("Group")
    boxes = expected.get("List") or [a for g in groups or [] for a in g["addresses"]]
    return [(b["name"] or "", b["address"]) for b in boxes if b["address"] and "@" in b["address"]]


def test_stalwart_address_vectors(corpus, report) -> None:
    vectors = json.loads((corpus_folder(corpus, "stalwart-mail-parser") / "resources" / "address.json").read_text())
    # List-* header vectors (URLs, "NO") are not mailboxes; everything else is compared.
    vectors = [v for v in vectors if "://" not in v["header"] and "mailto:" not in v["header"]]
    addr_ok = names_ok = 0
    for v in vectors:
        header = v["header"].split("\n\n", 1)[0]
        got = parse_address_list(header)
        want = _expected_mailboxes(v["expected"])
        addr_ok += [a.addr.lower() for a in got] == [normalize_addr(w[1]).lower().replace(" ", "") for w in want]
        names_ok += [a.name for a in got] == [w[0].strip() for w in want]
    report("stalwart address vectors (addr-spec)", f"{addr_ok}/{len(vectors)}")
    report("stalwart address vectors (display name)", f"{names_ok}/{len(vectors)}")
    assert addr_ok >= len(vectors) - 3
    assert names_ok >= len(vectors) - 10


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Alice Martin <Alice@Example.ORG>", [Address("Alice Martin", "Alice@example.org")]),
        ('"Martin, Alice" <alice@example.org>', [Address("Martin, Alice", "alice@example.org")]),
        ("=?utf-8?q?Am=C3=A9lie_Poulain?= <amelie@example.fr>", [Address("Amélie Poulain", "amelie@example.fr")]),
        ('"=?utf-8?q?Dupont=2C_Ren=C3=A9?=" <rene@example.fr>', [Address("Dupont, René", "rene@example.fr")]),
        ("=?utf-8?q?Dupont=2C_Ren=C3=A9?= <rene@example.fr>", [Address("Dupont, René", "rene@example.fr")]),
        ("bob@example.org (Bob Smith)", [Address("Bob Smith", "bob@example.org")]),
        ("bob@example.org", [Address("", "bob@example.org")]),
        ("<bob@example.org>", [Address("", "bob@example.org")]),
        ("a@x.example, B <b@y.example>", [Address("", "a@x.example"), Address("B", "b@y.example")]),
        ("Team: a@x.example, b@y.example;", [Address("", "a@x.example"), Address("", "b@y.example")]),
        ("Undisclosed recipients:;", []),
        ('"alice@example.org" <mallory@evil.example>', [Address("alice@example.org", "mallory@evil.example")]),
        (
            "Mallory <mallory@evil.example> alice@example.org",
            [Address("Mallory alice@example.org", "mallory@evil.example")],
        ),
        ("Jörg <jörg@bücher.example>", [Address("Jörg", "jörg@bücher.example")]),
        ("", []),
        ("not an address", []),
    ],
)
def test_parse_address_list(raw: str, expected: list[Address]) -> None:
    assert parse_address_list(raw) == expected


def test_parse_address_first_mailbox() -> None:
    assert parse_address("A <a@x.example>, B <b@x.example>") == Address("A", "a@x.example")
    assert parse_address(None) is None
    assert parse_address("garbage") is None


def test_validate_address() -> None:
    assert validate_address("Alice@EXAMPLE.org") == "Alice@example.org"
    assert is_valid_address("bob@forum.test", allow_test_domains=True)
    assert not is_valid_address("bob@forum.test")
    with pytest.raises(InvalidAddressError) as error:
        validate_address("bob@@example.org")
    assert "@" in error.value.reason
    for bad in ("", "no-at-sign", "a@b", "a b@example.org", "@example.org", "x" * 300 + "@example.org"):
        assert not is_valid_address(bad)


def test_verp_round_trip() -> None:
    bounce = verp_encode("forum-bounces", "Lists.Example.org", "Alice@Example.ORG")
    assert bounce == "forum-bounces+Alice=example.org@lists.example.org"
    assert verp_decode(bounce) == "Alice@example.org"
    assert verp_decode(bounce, list_local="FORUM-bounces") == "Alice@example.org"
    assert verp_decode(bounce, list_local="other-bounces") is None
    tricky = verp_encode("forum-bounces", "lists.example.org", "a+tag=x@example.org")
    assert verp_decode(tricky) == "a+tag=x@example.org"
    assert verp_decode(f"<{bounce}>") == "Alice@example.org"


@pytest.mark.parametrize(
    "address",
    [
        "",
        "forum@lists.example.org",
        "forum-bounces+@lists.example.org",
        "+a=b.org@x",
        "forum-bounces+nodomain@x",
        "forum-bounces+a=nodot@x",
        "no-at-all",
        "forum-bounces+a=b.org",
    ],
)
def test_verp_decode_rejects_non_verp(address: str) -> None:
    assert verp_decode(address) is None


def test_verp_encode_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="not an addr-spec"):
        verp_encode("forum-bounces", "lists.example.org", "no-at-sign")


def test_address_parser_survives_garbage() -> None:
    import random

    rng = random.Random(99)
    alphabet = 'ab@.<>"(),;:\\ \n\t=?' + "\udce9\x00"
    for _ in range(500):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 60)))
        for address in parse_address_list(junk):
            assert isinstance(address.name, str) and isinstance(address.addr, str)
