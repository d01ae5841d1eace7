"""IMAP account configuration, password sources, status and bad input — no server needed."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from gateway.imap import (
    ImapAccount,
    ImapError,
    ImapFetcher,
    ImapService,
    imap_status,
    parse_accounts,
    sniff_return_path,
)
from passerelle.config import ConfigError, Settings, load_settings
from passerelle.db import session_scope
from passerelle.models import ImapCursor

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def account(**extra: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "regio",
        "host": "imap.example.org",
        "username": "forum@example.org",
        "password_env": "PASSERELLE_IMAP_REGIO_PASSWORD",
        "list": "forum",
    }
    base.update(extra)
    return {k: v for k, v in base.items() if v is not None}


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_defaults_are_filled_in() -> None:
    acct = ImapAccount.from_mapping(account())
    assert (acct.port, acct.security, acct.folder, acct.processed_folder, acct.idle) == (993, "tls", "INBOX", "", True)
    assert ImapAccount.from_mapping(account(security="starttls")).port == 143
    assert ImapAccount.from_mapping(account(timeout=5)).timeout == 5.0
    assert acct.list_name == "forum"


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (account(password="hunter2"), "passwords are not read from the configuration file"),
        (account(pasword_env="X"), r"unknown key\(s\) pasword_env"),
        (account(host=None), "'host' is required"),
        (account(host="  "), "'host' is required"),
        (account(list=None), "'list' is required"),
        (account(security="ssl"), "'security' must be one of tls, starttls, none"),
        (account(password_file="/run/secrets/x"), "set exactly one of password_env and password_file"),
        (account(password_env=None), "set exactly one of password_env and password_file"),
        (account(port="993"), "'port' must be an integer"),
        (account(port=70000), "'port' must be between 1 and 65535"),
        (account(idle="yes"), "'idle' must be true or false"),
        (account(batch_size=0), "'batch_size' must be between 1 and 1000"),
        (account(timeout=0), "'timeout' must be positive"),
        (account(processed_folder="INBOX"), "'processed_folder' must differ from 'folder'"),
        (account(name="x" * 81), "longer than 80"),
        ("not a table", "each account must be a table"),
    ],
)
def test_bad_account_tables_are_refused_with_the_reason(bad: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ImapAccount.from_mapping(bad)


def test_duplicate_account_names_are_refused(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(ConfigError, match="duplicate name"):
        parse_accounts([account(), account(host="other.example.org")])
    doubled = settings.with_overrides({"imap": {"accounts": [account(), account()]}})
    with pytest.raises(ConfigError, match="duplicate name"):
        ImapService(doubled, session_factory, lambda: T0)


def test_accounts_from_a_site_file_and_the_environment(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text(
        '[[imap.accounts]]\nname = "regio"\nhost = "imap.example.org"\nusername = "u"\n'
        'password_file = "/run/secrets/regio"\nlist = "forum"\nprocessed_folder = "Done"\n'
    )
    settings = load_settings(site, environ={"PASSERELLE_IMAP__POLL_SECONDS": "15"})
    [acct] = parse_accounts(settings.imap.accounts)
    assert (acct.name, acct.processed_folder, acct.password_file) == ("regio", "Done", "/run/secrets/regio")
    assert settings.imap.poll_seconds == 15.0


def test_password_from_environment_or_file(tmp_path: Path) -> None:
    acct = ImapAccount.from_mapping(account())
    assert acct.password({"PASSERELLE_IMAP_REGIO_PASSWORD": "s3cret"}) == "s3cret"
    with pytest.raises(ImapError, match="environment variable PASSERELLE_IMAP_REGIO_PASSWORD is not set"):
        acct.password({})
    secret = tmp_path / "secret"
    secret.write_text("pa ss\n")
    from_file = ImapAccount.from_mapping(account(password_env=None, password_file=str(secret)))
    assert from_file.password({}) == "pa ss"
    missing = ImapAccount.from_mapping(account(password_env=None, password_file=str(tmp_path / "nope")))
    with pytest.raises(ImapError, match="cannot read password file"):
        missing.password({})
    secret.write_bytes(b"\xff\xfe")
    with pytest.raises(ImapError, match="cannot read password file"):
        from_file.password({})


def test_missing_password_is_recorded_and_nothing_is_attempted(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    fetcher = ImapFetcher(settings, session_factory, account(), clock=lambda: T0, environ={})
    with pytest.raises(ImapError, match=r"account regio: .*PASSERELLE_IMAP_REGIO_PASSWORD is not set"):
        fetcher.run_once()
    [row] = imap_status(session_factory)
    assert row["state"] == "failing"
    assert row["last_error_at"] == T0
    assert "is not set" in row["last_error"]


def test_unreachable_server_is_a_recorded_network_error(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    acct = account(host="127.0.0.1", port=closed_port(), security="none", timeout=2)
    fetcher = ImapFetcher(settings, session_factory, acct, clock=lambda: T0, environ={acct["password_env"]: "x"})
    with pytest.raises(ImapError, match="account regio: network error"):
        fetcher.run_once()
    assert imap_status(session_factory)[0]["state"] == "failing"


def test_a_server_that_speaks_garbage_is_a_recorded_error(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    # Something listens on the port but is not an IMAP server (a web server, a wrong port number).
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        acct = account(host="127.0.0.1", port=port, security="none", timeout=2)
        fetcher = ImapFetcher(settings, session_factory, acct, clock=lambda: T0, environ={acct["password_env"]: "x"})
        with pytest.raises(ImapError, match="account regio: "):
            fetcher.run_once()
    finally:
        thread.join(5)
        listener.close()
    assert imap_status(session_factory)[0]["state"] == "failing"


def test_status_lists_configured_accounts_never_read(
    settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    with session_scope(session_factory) as session:
        session.add(ImapCursor(account="old", folder="INBOX", uidvalidity=7, last_uid=42, messages_spooled=40,
                               last_ok_at=T0, last_error="network error: refused", last_error_at=T0 - timedelta(1)))
    configured = settings.with_overrides({"imap": {"accounts": [account()]}})
    rows = {row["account"]: row for row in imap_status(session_factory, configured)}
    assert rows["old"]["state"] == "ok"  # the error is older than the last success
    assert rows["old"]["configured"] is False
    assert (rows["old"]["last_uid"], rows["old"]["messages_spooled"], rows["old"]["uidvalidity"]) == (42, 40, 7)
    assert rows["regio"]["state"] == "never read"
    assert rows["regio"]["configured"] is True
    assert imap_status(session_factory)[0]["account"] == "old"


def test_service_with_no_accounts_starts_and_stops(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    service = ImapService(settings, session_factory, lambda: T0)
    service.start()
    service.stop()
    assert service.fetchers == []


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"Return-Path: <alice@example.org>\r\nFrom: a\r\n\r\nbody", "alice@example.org"),
        (b"Return-Path: <>\r\nFrom: MAILER-DAEMON\r\n\r\n", ""),
        (b"From: a\r\n\r\nReturn-Path: <not-a-header@example.org>\r\n", ""),
        (b"return-path:\r\n <folded@example.org>\r\n\r\n", "folded@example.org"),
        (b"\xff\xfe garbage", ""),
        (b"", ""),
    ],
)
def test_return_path_becomes_the_envelope_sender(raw: bytes, expected: str) -> None:
    assert sniff_return_path(raw) == expected
