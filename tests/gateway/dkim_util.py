"""DKIM in tests: a freshly generated RSA key (pure Python, no openssl), signing with dkimpy, and a stub
DNS resolver that serves the selector's public key as a TXT record."""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from functools import cache

import dkim
import dns.resolver

_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]


def _is_probable_prime(n: int, rounds: int = 24) -> bool:
    if n < 2:
        return False
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, r = n - 1, 0
    while d % 2 == 0:
        d //= 2
        r += 1
    for _ in range(rounds):
        a = secrets.randbelow(n - 3) + 2
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(r - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _prime(bits: int) -> int:
    while True:
        candidate = secrets.randbits(bits) | (1 << (bits - 1)) | (1 << (bits - 2)) | 1
        if _is_probable_prime(candidate):
            return candidate


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der(tag: int, body: bytes) -> bytes:
    return bytes([tag]) + _der_len(len(body)) + body


def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")
    return _der(0x02, body)


@dataclass(frozen=True)
class RsaKey:
    private_pem: bytes
    public_b64: str


@cache
def rsa_key(bits: int = 1024) -> RsaKey:
    """One RSA key per test session and size (generation takes a fraction of a second)."""
    e = 65537
    while True:
        p, q = _prime(bits // 2), _prime(bits // 2)
        phi = (p - 1) * (q - 1)
        if p != q and phi % e and (p * q).bit_length() == bits:
            break
    n = p * q
    d = pow(e, -1, phi)
    private_der = _der(0x30, b"".join(_der_int(v) for v in (0, n, e, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p))))
    pem = b"-----BEGIN RSA PRIVATE KEY-----\n"
    b64 = base64.b64encode(private_der)
    pem += b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64)) + b"\n-----END RSA PRIVATE KEY-----\n"
    rsa_public = _der(0x30, _der_int(n) + _der_int(e))
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + b"\x05\x00")
    spki = _der(0x30, algorithm + _der(0x03, b"\x00" + rsa_public))
    return RsaKey(pem, base64.b64encode(spki).decode())


def sign(raw: bytes, *, domain: str, selector: str = "sel1", key: RsaKey | None = None,
         headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date", b"message-id", b"in-reply-to"),
         length: bool = False) -> bytes:
    """``raw`` with a DKIM-Signature header prepended (relaxed/relaxed, rsa-sha256)."""
    key = key or rsa_key()
    signature = dkim.sign(
        raw, selector.encode(), domain.encode(), key.private_pem, include_headers=list(headers),
        canonicalize=(b"relaxed", b"relaxed"), length=length,
    )
    return signature + raw


class _Txt:
    def __init__(self, text: str) -> None:
        # Long records are split into 255-byte strings, as DNS servers do.
        data = text.encode()
        self.strings = [data[i : i + 255] for i in range(0, len(data), 255)]


@dataclass
class StubResolver:
    """``resolve(name, "TXT")`` from a dict; unknown names raise NXDOMAIN like a real resolver."""

    records: dict[str, list[str]] = field(default_factory=dict)
    queries: list[str] = field(default_factory=list)

    def add_dkim_key(self, domain: str, selector: str = "sel1", key: RsaKey | None = None) -> None:
        key = key or rsa_key()
        self.records[f"{selector}._domainkey.{domain}"] = [f"v=DKIM1; k=rsa; p={key.public_b64}"]

    def resolve(self, name: str, rdtype: str = "A", **_: object) -> list[_Txt]:
        qname = str(name).rstrip(".").lower()
        self.queries.append(qname)
        if rdtype != "TXT" or qname not in self.records:
            raise dns.resolver.NXDOMAIN()
        return [_Txt(t) for t in self.records[qname]]
