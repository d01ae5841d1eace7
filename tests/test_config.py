"""Settings: defaults, site file, environment, and clear errors for bad values."""

from __future__ import annotations

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


def test_missing_site_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "nope.toml", environ={})
