"""Signed, URL-safe tokens for links in mails (one-click unsubscribe, digests, confirmations).

A token carries a small JSON dict, the purpose it was made for (a token made to unsubscribe cannot be
replayed to confirm something else) and the time it was signed. The key comes from the environment variable
named by ``web.secret_key_env`` or else from ``<var_dir>/secret_key``, created once with a random value.
"""

from __future__ import annotations

import logging
import os
import secrets
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner, URLSafeTimedSerializer

from .config import Settings

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "secret_key"  # noqa: S105 - a file name, not a secret


class TokenError(ValueError):
    """The token is malformed, was signed with another key, or for another purpose."""


class TokenExpired(TokenError):
    """The token is genuine but older than ``max_age``."""


def secret_key(settings: Settings) -> str:
    """The site's secret: the environment variable if set, else var/secret_key (created on first use)."""
    from_env = os.environ.get(settings.web.secret_key_env, "") if settings.web.secret_key_env else ""
    if from_env:
        return from_env
    path = settings.var_dir / SECRET_FILE_NAME
    try:
        return _read_secret(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole to a private temp file, then hard-linked into place: link() fails when the name
    # exists, so when two processes start at once exactly one secret wins and nobody reads a file that
    # is still being written (O_EXCL alone left a window where the other process read it empty).
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=".secret_key.")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp_name, path)
        except FileExistsError:
            return _read_secret(path)
    finally:
        os.unlink(tmp_name)
    log.info("created a new secret key in %s", path)
    return _read_secret(path)

def _read_secret(path: Path) -> str:
    value = path.read_text(encoding="ascii").strip()
    if not value:
        raise TokenError(f"{path} is empty: delete it to have a new secret key created")
    return value


def _serializer(settings: Settings, purpose: str, now: datetime | None) -> URLSafeTimedSerializer:
    signer: type[TimestampSigner] = TimestampSigner
    if now is not None:
        fixed = int(now.timestamp())

        class _FixedClockSigner(TimestampSigner):
            def get_timestamp(self) -> int:
                return fixed

        signer = _FixedClockSigner
    return URLSafeTimedSerializer(secret_key(settings), salt=f"passerelle:{purpose}", signer=signer)


def signer(settings: Settings, purpose: str, *, now: datetime | None = None) -> Callable[[dict[str, Any]], str]:
    """:func:`sign` for many tokens of one purpose and time: the key is read and the serializer built once
    (delivery signs an unsubscribe link for every copy it sends)."""
    if not purpose:
        raise ValueError("a token needs a purpose")
    serializer = _serializer(settings, purpose, now)

    def sign_one(data: dict[str, Any]) -> str:
        return str(serializer.dumps(data))

    return sign_one


def sign(settings: Settings, purpose: str, data: dict[str, Any], *, now: datetime | None = None) -> str:
    """A URL-safe token carrying ``data`` (JSON-serialisable) for ``purpose``."""
    return signer(settings, purpose, now=now)(data)


def unsign(
    settings: Settings, purpose: str, token: str, *, max_age: int | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """The dict inside ``token``; raises TokenExpired (older than max_age seconds) or TokenError."""
    try:
        value = _serializer(settings, purpose, now).loads(token, max_age=max_age)
    except SignatureExpired as exc:
        raise TokenExpired(f"this {purpose} link has expired; ask for a new one") from exc
    except BadSignature as exc:
        raise TokenError(f"this {purpose} link is not valid (damaged, or made for something else)") from exc
    except (ValueError, TypeError) as exc:
        raise TokenError(f"this {purpose} link is not valid: {exc}") from exc
    if not isinstance(value, dict):
        raise TokenError(f"this {purpose} link is not valid (unexpected content)")
    return value


__all__ = ["TokenError", "TokenExpired", "secret_key", "sign", "signer", "unsign"]
