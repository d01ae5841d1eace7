"""Proof of sender: does this mail really come from the address in its From header?

Anybody can write any From (RFC 5322 puts no check on it), so a moderator command is obeyed only when
one of these holds (otherwise the moderator is asked to confirm by reply, see gateway.commands):

* a DKIM signature (RFC 6376) verifies, checked here with dkimpy, whose signing domain ``d=`` is aligned
  with the From domain the way DMARC checks it (RFC 7489 3.1.1, relaxed: same organisational domain).
  Signatures with a body length limit ``l=`` are not accepted as proof: anyone may append text (and
  commands) after the signed length and the signature still verifies;
* an ``Authentication-Results`` header (RFC 8601) added by one of *our* mail servers
  (``auth.trusted_authserv_ids``) says ``dkim=pass`` for an aligned ``header.d`` or ``dmarc=pass`` for
  ``header.from`` = the From domain. Such headers from anyone else are ignored: senders can write them.
  RFC 8601 section 5 requires the trusted MTA to delete incoming headers that carry its own authserv-id,
  which is what makes its headers trustworthy.

The From header must hold exactly one address (RFC 7489 6.6.1: several From addresses, or several From
headers, make the message's author ambiguous, and such mail is never taken as proven).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import TYPE_CHECKING, Any

from gateway.dmarc import organizational_domain

if TYPE_CHECKING:
    from gateway.context import MailContext
    from passerelle.config import Settings

log = logging.getLogger(__name__)

# A message carries one or two signatures in practice (author domain + ESP); more is either a mailing
# list chain or an attempt to make us do many DNS lookups.
MAX_SIGNATURES = 5
# Never verify more than this many bytes (dkimpy hashes the whole body; the size rule limits mail anyway).
MAX_VERIFY_BYTES = 30 * 1024 * 1024


@dataclass(frozen=True)
class Proof:
    """Whether the sender is proven, how ("dkim", "auth-results") and a line for logs and replies."""

    ok: bool
    method: str
    detail: str

    def __bool__(self) -> bool:
        return self.ok


NO_PROOF = Proof(False, "", "no DKIM signature or trusted Authentication-Results")


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().strip(".").lower()


def aligned(signing_domain: str, from_domain: str) -> bool:
    """DMARC relaxed alignment: the two domains have the same organisational domain."""
    a = signing_domain.strip().strip(".").lower()
    b = from_domain.strip().strip(".").lower()
    if not a or not b:
        return False
    return a == b or organizational_domain(a) == organizational_domain(b)


# --------------------------------------------------------------------------------------------- DNS


def _txt_bytes(rdata: Any) -> bytes:
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        # One TXT record may be split into several <character-string>s: concatenated (RFC 6376 3.6.2.2).
        return b"".join(s if isinstance(s, bytes) else str(s).encode() for s in strings)
    text = str(rdata)
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('" "', "")
    return text.encode()


def make_dnsfunc(resolver: Any, timeout: float = 5.0) -> Callable[..., bytes | None]:
    """A dkimpy ``dnsfunc`` (TXT lookup) on top of a dnspython-compatible resolver (tests pass a stub)."""
    import dkim
    import dns.exception
    import dns.resolver

    def dnsfunc(name: bytes | str, timeout: float = timeout) -> bytes | None:
        qname = name.decode("ascii", "replace") if isinstance(name, bytes) else name
        try:
            try:
                answer = resolver.resolve(qname, "TXT", lifetime=timeout)
            except TypeError:
                answer = resolver.resolve(qname, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer, dns.resolver.NoNameservers):
            return None
        except (dns.exception.DNSException, OSError) as exc:
            # dkimpy turns this into "signature not verified" (temperror in RFC 6376 terms).
            raise dkim.DnsTimeoutError(f"{qname}: {exc}") from exc
        records = [_txt_bytes(r) for r in answer]
        # A selector record starts with v=DKIM1 or directly with its tags (v= is optional, RFC 6376 3.6.1).
        for record in records:
            if record.lstrip().startswith(b"v=DKIM1"):
                return record
        return records[0] if records else None

    return dnsfunc


def default_resolver(timeout: float) -> Any:
    import dns.resolver

    resolver = dns.resolver.Resolver()
    resolver.lifetime = timeout
    resolver.timeout = timeout
    return resolver


# --------------------------------------------------------------------------------------------- headers


def _headers(raw: bytes) -> Any:
    return BytesHeaderParser(policy=compat32).parsebytes(raw[: 256 * 1024], headersonly=True)


def single_from(raw: bytes) -> str | None:
    """The one address of the From header, lower-cased; None when there are zero or several."""
    from passerelle.mail.addresses import parse_address_list

    values = _headers(raw).get_all("From") or []
    if len(values) != 1:
        return None
    addresses = parse_address_list(str(values[0]))
    if len(addresses) != 1:
        return None
    return addresses[0].addr.lower() or None


# --------------------------------------------------------------------------------------------- DKIM


def _signature_tags(value: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in value.split(";"):
        name, sep, val = part.partition("=")
        if sep:
            tags[name.strip().lower()] = re.sub(r"\s+", "", val)
    return tags


def verify_dkim(raw: bytes, from_domain: str, *, dnsfunc: Callable[..., bytes | None], timeout: float = 5.0) -> Proof:
    """Proof when one DKIM signature aligned with ``from_domain`` verifies."""
    import dkim

    if len(raw) > MAX_VERIFY_BYTES:
        return Proof(False, "", "message too large to verify its DKIM signature")
    signatures = _headers(raw).get_all("DKIM-Signature") or []
    if not signatures:
        return Proof(False, "", "no DKIM signature")
    reasons: list[str] = []
    for index, value in enumerate(signatures[:MAX_SIGNATURES]):
        tags = _signature_tags(str(value))
        domain = tags.get("d", "").lower()
        if not aligned(domain, from_domain):
            reasons.append(f"signature {index + 1}: d={domain or '?'} is not the From domain {from_domain}")
            continue
        if "l" in tags:
            reasons.append(f"signature {index + 1}: d={domain} has a body length limit (l=), not accepted")
            continue
        try:
            verifier = dkim.DKIM(raw, timeout=int(max(1, timeout)))
            ok = verifier.verify(idx=index, dnsfunc=dnsfunc)
        except dkim.DKIMException as exc:
            reasons.append(f"signature {index + 1}: d={domain}: {exc}")
            continue
        except Exception as exc:
            log.warning("DKIM verification of d=%s raised %s: %s", domain, type(exc).__name__, exc)
            reasons.append(f"signature {index + 1}: d={domain}: {type(exc).__name__}")
            continue
        if ok:
            return Proof(True, "dkim", f"dkim=pass d={domain} s={tags.get('s', '?')}")
        reasons.append(f"signature {index + 1}: d={domain} did not verify")
    return Proof(False, "", "; ".join(reasons) or "no usable DKIM signature")


# --------------------------------------------------------------------------------------------- A-R

_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^\s*([a-z0-9_.-]+)\s*(?:/\s*\d+\s*)?=\s*([a-z]+)", re.IGNORECASE)
_PROPERTY = re.compile(r"([a-z0-9_-]+)\.([a-z0-9_.-]+)\s*=\s*(\"[^\"]*\"|[^\s;]+)", re.IGNORECASE)


@dataclass(frozen=True)
class AuthResult:
    method: str
    result: str
    properties: dict[str, str]


def parse_authentication_results(value: str) -> tuple[str, list[AuthResult]]:
    """(authserv-id, results) of one Authentication-Results header value (RFC 8601 section 2.2)."""
    text = " ".join(value.split())
    for _ in range(5):
        # Comments may nest; strip the innermost ones until none is left.
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    parts = [p.strip() for p in text.split(";")]
    if not parts or not parts[0]:
        return "", []
    authserv_id = parts[0].split()[0].lower()
    results: list[AuthResult] = []
    for part in parts[1:]:
        match = _RESULT.match(part)
        if not match:
            continue
        props = {
            f"{m.group(1).lower()}.{m.group(2).lower()}": m.group(3).strip('"')
            for m in _PROPERTY.finditer(part[match.end():])
        }
        results.append(AuthResult(match.group(1).lower(), match.group(2).lower(), props))
    return authserv_id, results


def trusted_results(raw: bytes, from_domain: str, trusted_ids: Iterable[str]) -> Proof:
    """Proof from an Authentication-Results header written by one of our own servers."""
    trusted = {t.strip().lower() for t in trusted_ids if t and t.strip()}
    if not trusted:
        return Proof(False, "", "no trusted Authentication-Results server configured")
    seen_trusted = False
    for value in _headers(raw).get_all("Authentication-Results") or []:
        authserv_id, results = parse_authentication_results(str(value))
        if authserv_id not in trusted:
            continue
        seen_trusted = True
        for res in results:
            if res.result != "pass":
                continue
            if res.method == "dmarc":
                header_from = res.properties.get("header.from", "").lower()
                if header_from and header_from.strip(".") == from_domain:
                    return Proof(True, "auth-results", f"{authserv_id}: dmarc=pass header.from={header_from}")
            elif res.method == "dkim":
                domain = res.properties.get("header.d", "") or _domain_of(res.properties.get("header.i", ""))
                if aligned(domain, from_domain):
                    return Proof(True, "auth-results", f"{authserv_id}: dkim=pass header.d={domain}")
    if seen_trusted:
        return Proof(False, "", f"our server found no dkim/dmarc pass for {from_domain}")
    return Proof(False, "", "no Authentication-Results header from a trusted server")


# --------------------------------------------------------------------------------------------- together


def prove_sender(
    raw: bytes,
    claimed_from: str,
    *,
    settings: Settings,
    resolver: Any = None,
    trusted_ids: Sequence[str] | None = None,
) -> Proof:
    """Is ``claimed_from`` (the address the sender was recognised by) proven to have sent ``raw``?"""
    claimed = claimed_from.strip().lower()
    if not claimed or "@" not in claimed:
        return Proof(False, "", "no sender address")
    try:
        header_from = single_from(raw)
    except Exception as exc:  # a header the parser chokes on is simply not a proof
        return Proof(False, "", f"unreadable From header ({type(exc).__name__})")
    if header_from is None:
        return Proof(False, "", "the From header does not hold exactly one address")
    if header_from != claimed:
        return Proof(False, "", f"From is {header_from}, not {claimed}")
    domain = _domain_of(claimed)
    ids = settings.auth.trusted_authserv_ids if trusted_ids is None else trusted_ids
    by_header = trusted_results(raw, domain, ids)
    if by_header.ok:
        return by_header
    timeout = float(settings.dmarc.dns_timeout)
    dnsfunc = make_dnsfunc(resolver if resolver is not None else default_resolver(timeout), timeout)
    by_dkim = verify_dkim(raw, domain, dnsfunc=dnsfunc, timeout=timeout)
    if by_dkim.ok:
        return by_dkim
    detail = by_dkim.detail if not ids else f"{by_dkim.detail}; {by_header.detail}"
    return Proof(False, "", detail)


def prove_context(ctx: MailContext) -> Proof:
    """Proof of sender for the mail being processed (its raw bytes from the spool row)."""
    claimed = ctx.sender.email if ctx.sender is not None else ""
    proof = prove_sender(ctx.inbound.raw or b"", claimed, settings=ctx.settings, resolver=ctx.resolver)
    log.info("proof of sender for %s <%s>: %s (%s)", claimed, ctx.inbound.message_id_header,
             proof.method or "none", proof.detail)
    return proof


__all__ = [
    "NO_PROOF",
    "AuthResult",
    "Proof",
    "aligned",
    "make_dnsfunc",
    "parse_authentication_results",
    "prove_context",
    "prove_sender",
    "single_from",
    "trusted_results",
    "verify_dkim",
]
