"""Signed tokens (passerelle.tokens): round trip, purpose binding, expiry with injected time, key storage."""

from __future__ import annotations

import stat
from datetime import UTC, datetime, timedelta

import pytest

from passerelle import tokens
from passerelle.config import Settings

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_round_trip_and_purpose(settings: Settings) -> None:
    token = tokens.sign(settings, "unsubscribe", {"list": "forum", "email": "a@b.example"})
    assert tokens.unsign(settings, "unsubscribe", token) == {"list": "forum", "email": "a@b.example"}
    with pytest.raises(tokens.TokenError, match="made for something else"):
        tokens.unsign(settings, "confirm", token)
    with pytest.raises(tokens.TokenError):
        tokens.unsign(settings, "unsubscribe", token[:-3] + "xyz")
    for garbage in ("", "....", "\x00\xff", "a" * 5000):
        with pytest.raises(tokens.TokenError):
            tokens.unsign(settings, "unsubscribe", garbage)


def test_expiry_uses_the_injected_time(settings: Settings) -> None:
    token = tokens.sign(settings, "login", {"m": 1}, now=NOW)
    assert tokens.unsign(settings, "login", token, max_age=3600, now=NOW + timedelta(minutes=59)) == {"m": 1}
    with pytest.raises(tokens.TokenExpired, match="expired"):
        tokens.unsign(settings, "login", token, max_age=3600, now=NOW + timedelta(minutes=61))


def test_secret_key_file_created_once_private(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    key = tokens.secret_key(settings)
    path = settings.var_dir / "secret_key"
    assert path.read_text().strip() == key and len(key) == 64
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tokens.secret_key(settings) == key
    token = tokens.sign(settings, "x", {"a": 1})
    # Another key (the environment variable wins): old tokens no longer verify.
    monkeypatch.setenv(settings.web.secret_key_env, "another-secret")
    assert tokens.secret_key(settings) == "another-secret"
    with pytest.raises(tokens.TokenError):
        tokens.unsign(settings, "x", token)


def test_empty_secret_file_is_a_clear_error(settings: Settings) -> None:
    path = settings.var_dir / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("")
    with pytest.raises(tokens.TokenError, match="delete it"):
        tokens.sign(settings, "x", {})


def test_processes_starting_at_once_agree_on_one_secret(settings: Settings) -> None:
    """Two schedulers (or a scheduler and the web) creating var/secret_key at the same moment: each gets
    the same key and none reads a half-written file (CI once saw "secret_key is empty" here)."""
    import threading

    keys: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def start() -> None:
        barrier.wait()
        try:
            keys.append(tokens.secret_key(settings))
        except BaseException as exc:
            errors.append(exc)

    for _ in range(20):
        (settings.var_dir / tokens.SECRET_FILE_NAME).unlink(missing_ok=True)
        keys.clear()
        threads = [threading.Thread(target=start) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert not errors, errors
        assert len(keys) == 8 and len(set(keys)) == 1
    assert [p.name for p in settings.var_dir.iterdir() if p.name.startswith(".secret_key.")] == []
