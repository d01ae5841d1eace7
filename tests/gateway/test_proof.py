"""gateway.proof: DKIM verified with dkimpy against a stub resolver, trusted Authentication-Results, forgeries."""

from __future__ import annotations

import dns.exception
import pytest

from gateway.proof import aligned, parse_authentication_results, prove_sender, trusted_results
from passerelle.config import Settings
from tests.gateway.command_util import raw_mail
from tests.gateway.dkim_util import StubResolver, rsa_key, sign

MOD = "moderation@eurometropole.example"
DOMAIN = "eurometropole.example"


def _mail(body: str = "#close solved\n", sender: str = MOD, extra: str = "") -> bytes:
    return raw_mail(sender=sender, subject="Re: Frontaliers", body=body, message_id="c1@eurometropole.example",
                    in_reply_to="t1@x", extra=extra)


@pytest.fixture
def resolver() -> StubResolver:
    r = StubResolver()
    r.add_dkim_key(DOMAIN)
    return r


def test_dkim_signed_mail_is_proven(settings: Settings, resolver: StubResolver) -> None:
    proof = prove_sender(sign(_mail(), domain=DOMAIN), MOD, settings=settings, resolver=resolver)
    assert proof.ok and proof.method == "dkim", proof
    assert "sel1._domainkey.eurometropole.example" in resolver.queries


def test_unsigned_mail_is_not_proven(settings: Settings, resolver: StubResolver) -> None:
    proof = prove_sender(_mail(), MOD, settings=settings, resolver=resolver)
    assert not proof.ok and "no DKIM signature" in proof.detail


def test_body_changed_after_signing_is_not_proven(settings: Settings, resolver: StubResolver) -> None:
    signed = sign(_mail("Thanks\n"), domain=DOMAIN)
    tampered = signed.replace(b"Thanks", b"#close solved")
    proof = prove_sender(tampered, MOD, settings=settings, resolver=resolver)
    assert not proof.ok and "body hash mismatch" in proof.detail


def test_from_changed_after_signing_is_not_proven(settings: Settings, resolver: StubResolver) -> None:
    signed = sign(_mail(sender="someone@eurometropole.example"), domain=DOMAIN)
    forged = signed.replace(b"someone@eurometropole.example", MOD.encode())
    assert not prove_sender(forged, MOD, settings=settings, resolver=resolver).ok


def test_signature_of_another_domain_is_not_proof(settings: Settings) -> None:
    resolver = StubResolver()
    resolver.add_dkim_key("attacker.example")
    signed = sign(_mail(), domain="attacker.example")
    proof = prove_sender(signed, MOD, settings=settings, resolver=resolver)
    assert not proof.ok and "not the From domain" in proof.detail
    assert resolver.queries == [], "an unaligned signature is not even looked up"


def test_subdomain_signature_is_aligned(settings: Settings) -> None:
    resolver = StubResolver()
    resolver.add_dkim_key("mail.eurometropole.example", selector="s2024")
    signed = sign(_mail(), domain="mail.eurometropole.example", selector="s2024")
    assert prove_sender(signed, MOD, settings=settings, resolver=resolver).ok
    assert aligned("mail.example.co.uk", "example.co.uk")
    assert not aligned("example.co.uk", "other.co.uk")


def test_length_limited_signature_is_not_proof(settings: Settings, resolver: StubResolver) -> None:
    # l= lets anyone append lines (commands) after the signed part and keep a valid signature.
    signed = sign(_mail("Bonjour\n"), domain=DOMAIN, length=True)
    appended = signed + b"#close solved\r\n"
    proof = prove_sender(appended, MOD, settings=settings, resolver=resolver)
    assert not proof.ok and "l=" in proof.detail


def test_key_missing_from_dns(settings: Settings) -> None:
    proof = prove_sender(sign(_mail(), domain=DOMAIN), MOD, settings=settings, resolver=StubResolver())
    assert not proof.ok


def test_wrong_key_in_dns(settings: Settings) -> None:
    resolver = StubResolver()
    resolver.add_dkim_key(DOMAIN, key=rsa_key(1280))
    proof = prove_sender(sign(_mail(), domain=DOMAIN), MOD, settings=settings, resolver=resolver)
    assert not proof.ok and "did not verify" in proof.detail


def test_dns_timeout_is_no_proof_not_a_crash(settings: Settings) -> None:
    class Failing:
        def resolve(self, name: str, rdtype: str = "A", **_: object) -> object:
            raise dns.exception.Timeout()

    proof = prove_sender(sign(_mail(), domain=DOMAIN), MOD, settings=settings, resolver=Failing())
    assert not proof.ok


def test_claimed_sender_must_be_the_single_from(settings: Settings, resolver: StubResolver) -> None:
    signed = sign(_mail(), domain=DOMAIN)
    assert not prove_sender(signed, "other@eurometropole.example", settings=settings, resolver=resolver).ok
    two_from = _mail().replace(b"From: <", b"From: <x@evil.example>, <", 1)
    assert not prove_sender(sign(two_from, domain=DOMAIN), MOD, settings=settings, resolver=resolver).ok
    double_header = b"From: <x@evil.example>\r\n" + _mail()
    proof = prove_sender(double_header, MOD, settings=settings, resolver=resolver)
    assert not proof.ok and "exactly one" in proof.detail
    assert not prove_sender(signed, "", settings=settings, resolver=resolver).ok


AR_DKIM = ("Authentication-Results: mx.forum.test;\n"
           "  dkim=pass (2048-bit key; unprotected) header.d=eurometropole.example header.i=@eurometropole.example\n"
           "  header.s=sel1 header.b=AbCd;\n  spf=pass smtp.mailfrom=eurometropole.example")
AR_DMARC = "Authentication-Results: mx.forum.test 1; dmarc=pass (p=reject dis=none) header.from=eurometropole.example"


def test_trusted_authentication_results(settings: Settings) -> None:
    trusted = settings.with_overrides({"auth": {"trusted_authserv_ids": ["mx.forum.test"]}})
    for header in (AR_DKIM, AR_DMARC):
        proof = prove_sender(_mail(extra=header), MOD, settings=trusted, resolver=StubResolver())
        assert proof.ok and proof.method == "auth-results", (header, proof)


def test_untrusted_authentication_results_are_ignored(settings: Settings) -> None:
    # Anyone can write this header: without our server's authserv-id in the settings it means nothing.
    proof = prove_sender(_mail(extra=AR_DKIM), MOD, settings=settings, resolver=StubResolver())
    assert not proof.ok
    other = settings.with_overrides({"auth": {"trusted_authserv_ids": ["mx.other.test"]}})
    assert not prove_sender(_mail(extra=AR_DMARC), MOD, settings=other, resolver=StubResolver()).ok


def test_trusted_header_saying_fail_or_other_domain_is_no_proof(settings: Settings) -> None:
    trusted = settings.with_overrides({"auth": {"trusted_authserv_ids": ["mx.forum.test"]}})
    for header in (
        "Authentication-Results: mx.forum.test; dkim=fail header.d=eurometropole.example",
        "Authentication-Results: mx.forum.test; dkim=pass header.d=attacker.example",
        "Authentication-Results: mx.forum.test; dmarc=pass header.from=attacker.example",
        "Authentication-Results: mx.forum.test; none",
        "Authentication-Results: mx.forum.test; dkim=neutral (no signature)",
    ):
        assert not prove_sender(_mail(extra=header), MOD, settings=trusted, resolver=StubResolver()).ok, header


def test_parse_authentication_results() -> None:
    authserv, results = parse_authentication_results(
        "mx.example.net (Postfix (with comments)) 1; dkim=pass (good (nested) sig) header.d=example.org "
        "header.s=\"sel\"; dmarc=fail header.from=example.org; spf=softfail smtp.mailfrom=x@example.org"
    )
    assert authserv == "mx.example.net"
    assert [(r.method, r.result) for r in results] == [("dkim", "pass"), ("dmarc", "fail"), ("spf", "softfail")]
    assert results[0].properties == {"header.d": "example.org", "header.s": "sel"}


@pytest.mark.parametrize("value", ["", ";", ";;;", "(((", "x; =pass", "x; dkim=", "\x00; dkim=pass header.d="])
def test_garbage_authentication_results(value: str) -> None:
    parse_authentication_results(value)
    raw = _mail(extra=f"Authentication-Results: {value}")
    assert not trusted_results(raw, DOMAIN, ["x", "mx.forum.test"]).ok


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not a mail at all",
        b"\x00\xff\xfe" * 1000,
        b"From: <moderation@eurometropole.example>\r\nDKIM-Signature: v=1; a=rsa-sha256; d=eurometropole.example;"
        b" s=sel1; h=from; bh=AAAA; b=!!!!\r\n\r\nbody",
        b"From: <moderation@eurometropole.example>\r\nDKIM-Signature: garbage\r\n\r\nbody",
        b"From: =?utf-8?q?broken?= <moderation@eurometropole.example>\r\n" + b"X: y\r\n" * 5000 + b"\r\n",
    ],
)
def test_garbage_messages_are_never_proven_and_never_crash(settings: Settings, resolver: StubResolver,
                                                           raw: bytes) -> None:
    assert not prove_sender(raw, MOD, settings=settings, resolver=resolver).ok
