"""Settings: defaults, site file, environment, and clear errors for bad values."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from passerelle.config import DEFAULTS_FILE, ConfigError, load_settings


def test_defaults_load_and_every_key_is_commented() -> None:
    settings = load_settings(environ={})
    assert settings.smtp.port == 8025
    assert settings.lists.domain
    # Every key in defaults.toml has a comment line somewhere above it in its block.
    lines = DEFAULTS_FILE.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if "=" in line and not line.startswith("#") and not line.startswith("["):
            j = i - 1
            while j >= 0 and lines[j].strip() and not lines[j].startswith("#"):
                j -= 1
            assert j >= 0 and lines[j].startswith("#"), f"setting without a comment: {line!r}"


def test_site_file_then_environment_override(tmp_path: Path) -> None:
    site = tmp_path / "site.toml"
    site.write_text('[smtp]\nport = 2525\n[lists]\ndomain = "forum.example.net"\n', encoding="utf-8")
    settings = load_settings(site, environ={"PASSERELLE_SMTP__PORT": "2526", "PASSERELLE_DMARC__ENABLED": "no"})
    assert settings.smtp.port == 2526
    assert settings.lists.domain == "forum.example.net"
    assert settings.dmarc.enabled is False
    assert settings.list_address("forum", "-request") == "forum-request@forum.example.net"


def test_settings_are_read_only() -> None:
    settings = load_settings(environ={})
    with pytest.raises(AttributeError):
        settings.smtp.port = 1  # type: ignore[misc]
    assert settings.with_overrides({"smtp": {"port": 1}}).smtp.port == 1
    assert settings.smtp.port == 8025


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[smtp]\nprot = 1\n", "unknown setting 'smtp.prot'"),
        ("[smtp]\nport = 'eighty'\n", "must be a int"),
        ("[smtp\n", "not valid TOML"),
        ("smtp = 3\n", "must be a table"),
    ],
)
def test_bad_site_files_give_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    site = tmp_path / "site.toml"
    site.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(site, environ={})


def test_bad_environment_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"smtp\.port"):
        load_settings(environ={"PASSERELLE_SMTP__PORT": "lots"})
    with pytest.raises(ConfigError, match=r"dmarc\.enabled"):
        load_settings(environ={"PASSERELLE_DMARC__ENABLED": "perhaps"})


@pytest.mark.parametrize(
    ("value", "bad"),
    [
        ("registre", "registre"),
        ("ok@gouv.example, registre@", "registre@"),
        ("ok@gouv.example; autre@region.example", "ok@gouv.example; autre@region.example"),
        ("Registre <ok@gouv.example>", "Registre <ok@gouv.example>"),
    ],
)
def test_report_to_addresses_are_checked_at_load(tmp_path: Path, value: str, bad: str) -> None:
    site = tmp_path / "site.toml"
    site.write_text(f'[escalation]\nreport_to = "{value}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"'escalation\.report_to': {re.escape(repr(bad))} is not a mail address"):
        load_settings(site, environ={})
    with pytest.raises(ConfigError, match=r"escalation\.report_to"):
        load_settings(environ={"PASSERELLE_ESCALATION__REPORT_TO": value})
    with pytest.raises(ConfigError, match=r"escalation\.report_to.*empty address"):
        load_settings(environ={"PASSERELLE_ESCALATION__REPORT_TO": "ok@gouv.example,,b@region.example"})


def test_report_to_takes_one_address_or_several() -> None:
    # What config/defaults.toml says: one address, or several separated by commas; empty: not mailed.
    for value in ("", "registre@gouv.example", "registre@gouv.example, suivi@region.example"):
        assert load_settings(environ={"PASSERELLE_ESCALATION__REPORT_TO": value}).escalation.report_to == value


def test_missing_site_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_base_url_follows_the_web_port_unless_set() -> None:
    # Links in mail (List-Archive, digests, sign-in links) must point where the archive really listens.
    assert load_settings(environ={}).site.base_url == "http://127.0.0.1:8080"
    moved = load_settings(environ={"PASSERELLE_WEB__PORT": "8081"})
    assert moved.site.base_url == "http://127.0.0.1:8081"
    assert moved.with_overrides({"web": {"port": 9090}}).site.base_url == "http://127.0.0.1:9090"
    everywhere = load_settings(environ={"PASSERELLE_WEB__HOST": "0.0.0.0"})  # noqa: S104 - not bound here
    assert everywhere.site.base_url == "http://localhost:8080"
    assert load_settings(environ={"PASSERELLE_WEB__HOST": "::1"}).site.base_url == "http://[::1]:8080"
    demo = load_settings(Path(__file__).resolve().parent.parent / "config" / "demo.toml",
                         environ={"PASSERELLE_WEB__PORT": "8081"})
    assert demo.site.base_url == "http://127.0.0.1:8081"
    # An explicit base URL (a public site behind a proxy) is kept whatever the port.
    public = load_settings(environ={"PASSERELLE_SITE__BASE_URL": "https://forum.example.org",
                                    "PASSERELLE_WEB__PORT": "8081"})
    assert public.site.base_url == "https://forum.example.org"
    assert public.with_overrides({"web": {"port": 9090}}).site.base_url == "https://forum.example.org"


def test_reply_to_policy_is_checked() -> None:
    assert load_settings(environ={}).lists.reply_to == "list"
    assert load_settings(environ={"PASSERELLE_LISTS__REPLY_TO": "author"}).lists.reply_to == "author"
    with pytest.raises(ConfigError, match=r"'lists\.reply_to' must be one of list, author, both, got 'auteur'"):
        load_settings(environ={"PASSERELLE_LISTS__REPLY_TO": "auteur"})
    # The key moved from [dmarc] (it now applies to every copy): an old site file is told so by name.
    with pytest.raises(ConfigError, match=r"unknown setting 'dmarc\.reply_to'"):
        load_settings(environ={"PASSERELLE_DMARC__REPLY_TO": "list"})
