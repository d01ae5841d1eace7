"""DMARC policy lookup (RFC 7489): should a list copy's From be rewritten to the list?

A list copy keeps the author's From but is sent by our server, so it fails SPF alignment, and DKIM too as
soon as anything in the signed headers changes. Receivers honouring a ``p=reject`` or ``p=quarantine``
policy of the author's domain would then refuse or bin it: for those domains the copy is sent "From: Author
via Forum <forum@domain>" instead (what Mailman calls dmarc_moderation_action = munge_from).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

STRICT_POLICIES = frozenset({"reject", "quarantine"})

# Second-level public suffixes under which organisations register their domain (a small approximation of
# the Public Suffix List, which RFC 7489 section 3.2 uses to find the organisational domain).
_TWO_LEVEL_SUFFIXES = frozenset(
    {
        "co.uk", "org.uk", "ac.uk", "gov.uk", "ltd.uk", "plc.uk", "me.uk", "net.uk", "nhs.uk", "police.uk",
        "com.au", "net.au", "org.au", "edu.au", "gov.au", "co.nz", "org.nz", "govt.nz", "co.jp", "ne.jp",
        "or.jp", "ac.jp", "go.jp", "com.br", "org.br", "gov.br", "co.za", "org.za", "gov.za", "com.cn",
        "org.cn", "gov.cn", "edu.cn", "com.tw", "co.kr", "or.kr", "co.in", "org.in", "gov.in", "com.mx",
        "com.ar", "com.tr", "gov.tr", "co.il", "org.il", "ac.il", "com.sg", "com.hk", "gouv.fr", "asso.fr",
        "nom.fr", "gv.at", "co.at", "or.at", "ac.at", "com.pl", "org.pl", "gov.pl", "com.es", "org.es",
        "gob.es", "com.pt", "gov.pt", "gov.it", "edu.it", "gov.be", "admin.ch",
    }
)


def organizational_domain(domain: str) -> str:
    """"mail.lists.example.co.uk" -> "example.co.uk"; "a.b.example.org" -> "example.org"."""
    labels = [label for label in domain.lower().strip(".").split(".") if label]
    if len(labels) <= 2:
        return ".".join(labels)
    if ".".join(labels[-2:]) in _TWO_LEVEL_SUFFIXES:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def parse_dmarc_record(text: str) -> dict[str, str] | None:
    """Tags of a DMARC TXT record ("v=DMARC1; p=reject; sp=none"), or None if it is not one."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = value.strip()
    if tags.get("v", "").upper() != "DMARC1":
        return None
    return tags


def _txt_strings(rdata: Any) -> str:
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        # A TXT record may be split into several <character-string>s: they are concatenated (RFC 7208 3.3).
        return "".join(s.decode("utf-8", "replace") if isinstance(s, bytes) else str(s) for s in strings)
    text = str(rdata)
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('" "', "")
    return text


@dataclass(frozen=True)
class DmarcResult:
    domain: str
    # "reject", "quarantine", "none", or "" when no record was found or the lookup failed.
    policy: str
    # The domain whose record gave the policy (the author's domain, or its organisational domain).
    record_domain: str = ""

    @property
    def strict(self) -> bool:
        return self.policy in STRICT_POLICIES


class DmarcChecker:
    """Looks up and caches DMARC policies; thread-safe; one per process (passed explicitly)."""

    def __init__(
        self,
        *,
        timeout: float = 2.0,
        cache_seconds: float = 3600.0,
        resolver: Any = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self._resolver = resolver
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, DmarcResult]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Any, resolver: Any = None) -> DmarcChecker:
        return cls(timeout=settings.dmarc.dns_timeout, cache_seconds=settings.dmarc.cache_seconds, resolver=resolver)

    def _get_resolver(self) -> Any:
        if self._resolver is None:
            import dns.resolver

            resolver = dns.resolver.Resolver()
            resolver.lifetime = self.timeout
            resolver.timeout = self.timeout
            self._resolver = resolver
        return self._resolver

    def _lookup_txt(self, name: str) -> list[str] | None:
        """TXT strings at ``name``; [] when the name has none; None when the lookup failed (timeout...)."""
        import dns.exception
        import dns.resolver

        resolver = self._get_resolver()
        try:
            try:
                answer = resolver.resolve(name, "TXT", lifetime=self.timeout)
            except TypeError:
                # Stub resolvers in tests (and older dnspython) take no lifetime argument.
                answer = resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.DNSException, OSError) as exc:
            log.warning("DMARC lookup of %s failed: %s", name, exc)
            return None
        return [_txt_strings(r) for r in answer]

    def _record(self, domain: str) -> tuple[dict[str, str] | None, bool]:
        strings = self._lookup_txt(f"_dmarc.{domain}")
        if strings is None:
            return None, False
        # RFC 7489 6.6.3: several DMARC records at one name means none applies.
        records = [r for r in (parse_dmarc_record(s) for s in strings) if r is not None]
        return (records[0] if len(records) == 1 else None), True

    def _compute(self, domain: str) -> tuple[DmarcResult, bool]:
        tags, ok = self._record(domain)
        if tags is not None:
            return DmarcResult(domain, tags.get("p", "").lower(), domain), True
        if not ok:
            return DmarcResult(domain, ""), False
        org = organizational_domain(domain)
        if org and org != domain:
            tags, ok = self._record(org)
            if tags is not None:
                # The organisational domain's sp= applies to its subdomains, else its p= (RFC 7489 6.6.3).
                policy = (tags.get("sp") or tags.get("p", "")).lower()
                return DmarcResult(domain, policy, org), True
        return DmarcResult(domain, ""), ok

    def lookup(self, domain: str) -> DmarcResult:
        domain = domain.lower().strip().strip(".")
        if not domain or "." not in domain:
            return DmarcResult(domain, "")
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get(domain)
            if cached and cached[0] > now:
                return cached[1]
        result, ok = self._compute(domain)
        # A failed lookup is retried sooner than a real answer is refreshed.
        ttl = self.cache_seconds if ok else min(self.cache_seconds, 60.0)
        with self._lock:
            self._cache[domain] = (now + ttl, result)
        if result.strict:
            log.debug("DMARC p=%s for %s (record at _dmarc.%s)", result.policy, domain, result.record_domain)
        return result

    def is_strict(self, address_or_domain: str) -> bool:
        """True when mail From this address's domain must not leave with that From (p=reject/quarantine)."""
        domain = address_or_domain.rpartition("@")[2]
        return self.lookup(domain).strict


__all__ = ["DmarcChecker", "DmarcResult", "organizational_domain", "parse_dmarc_record"]
