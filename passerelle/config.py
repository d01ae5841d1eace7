"""Settings: one commented defaults file, a site override, environment variables; frozen once loaded.

The merged settings are exposed as read-only sections with attribute access (``settings.smtp.port``).
They are loaded once by the entry point (cli) and passed explicitly to whatever needs them.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

DEFAULTS_FILE = Path(__file__).resolve().parent.parent / "config" / "defaults.toml"
ENV_PREFIX = "PASSERELLE_"
# Values of lists.reply_to (see config/defaults.toml).
REPLY_TO_POLICIES = ("list", "author", "both")


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong type."""


def _freeze(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Section({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Section):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


class Section(Mapping[str, Any]):
    """A read-only mapping whose keys are also attributes."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        object.__setattr__(self, "_data", MappingProxyType(dict(data)))

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"no setting {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("settings are read-only")

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Section({dict(self._data)!r})"


class Settings(Section):
    """The whole configuration. Build it with :func:`load_settings`."""

    __slots__ = ()

    def with_overrides(self, overrides: Mapping[str, Mapping[str, Any]]) -> Settings:
        """A copy with some keys replaced (``{"smtp": {"port": 2525}}``); unknown keys are an error."""
        data = _thaw(self)
        # A base URL that was derived from the web address follows a new web host or port.
        derived = data["site"]["base_url"] == derived_base_url(data["web"]["host"], data["web"]["port"])
        if derived and "base_url" not in overrides.get("site", {}):
            data["site"]["base_url"] = ""
        _merge(data, overrides, origin="override")
        _validate(data, origin="override")
        return Settings({k: _freeze(v) for k, v in data.items()})

    @property
    def var_dir(self) -> Path:
        return Path(self.paths.var_dir)

    def list_address(self, list_name: str, suffix: str = "") -> str:
        """``forum@domain``, ``forum-request@domain`` (suffix="-request")."""
        return f"{list_name}{suffix}@{self.lists.domain}"


def _merge(base: dict[str, Any], extra: Mapping[str, Any], *, origin: str, path: str = "") -> None:
    for key, value in extra.items():
        where = f"{path}{key}"
        if key not in base:
            raise ConfigError(f"{origin}: unknown setting {where!r} (see config/defaults.toml)")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{origin}: {where!r} must be a table")
            _merge(base[key], value, origin=origin, path=f"{where}.")
        else:
            base[key] = _coerce(value, base[key], where, origin)


def _coerce(value: Any, default: Any, where: str, origin: str) -> Any:
    if isinstance(value, str) and not isinstance(default, str):
        # Values from the environment arrive as text: read them as the default's type.
        try:
            if isinstance(default, bool):
                lowered = value.strip().lower()
                if lowered not in {"1", "0", "true", "false", "yes", "no", "on", "off"}:
                    raise ValueError(value)
                return lowered in {"1", "true", "yes", "on"}
            if isinstance(default, int):
                return int(value)
            if isinstance(default, float):
                return float(value)
            if isinstance(default, list):
                parsed = json.loads(value)
                if not isinstance(parsed, list):
                    raise ValueError(value)
                return parsed
        except ValueError:
            raise ConfigError(f"{origin}: {where!r} must be a {type(default).__name__}, got {value!r}") from None
    if isinstance(default, bool) != isinstance(value, bool):
        raise ConfigError(f"{origin}: {where!r} must be a {type(default).__name__}, got {value!r}")
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if not isinstance(value, type(default)):
        raise ConfigError(f"{origin}: {where!r} must be a {type(default).__name__}, got {value!r}")
    return value


def address_list(value: str, where: str, origin: str = "configuration") -> list[str]:
    """The addresses of a comma-separated setting (RFC 5322 addr-specs, no display names), normalised;
    ConfigError naming ``where`` and the bad part otherwise. An empty value is an empty list."""
    from email_validator import EmailNotValidError, validate_email

    out: list[str] = []
    parts = value.split(",")
    for part in parts:
        address = part.strip()
        if not address:
            if len(parts) > 1:
                raise ConfigError(
                    f"{origin}: {where!r} has an empty address (two commas in a row, or one at an end): {value!r}"
                )
            continue
        try:
            out.append(validate_email(address, check_deliverability=False).normalized)
        except EmailNotValidError as exc:
            raise ConfigError(f"{origin}: {where!r}: {address!r} is not a mail address ({exc})") from None
    return out


def _validate(data: Mapping[str, Any], *, origin: str) -> None:
    """Checks of values whose type alone says too little, done once at load so a typo stops the start with a
    message naming the key rather than losing mail later."""
    address_list(str(data["escalation"]["report_to"]), "escalation.report_to", origin)
    reply_to = data["lists"]["reply_to"]
    if reply_to not in REPLY_TO_POLICIES:
        raise ConfigError(f"{origin}: 'lists.reply_to' must be one of {', '.join(REPLY_TO_POLICIES)}, got {reply_to!r}")
    if not data["site"]["base_url"]:
        data["site"]["base_url"] = derived_base_url(data["web"]["host"], data["web"]["port"])


def derived_base_url(host: str, port: int) -> str:
    """The web archive's own address, ``http://HOST:PORT``: the base URL of links in mail when
    ``site.base_url`` is not set. A wildcard host (listening on every interface) is no address a reader can
    open: links then name ``localhost``; a public site sets ``site.base_url``."""
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 - compared with, not bound
        host = "localhost"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal in a URL is bracketed (RFC 3986 3.2.2)
    return f"http://{host}:{port}"


def _env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, str]]:
    overrides: dict[str, dict[str, str]] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("__")
        overrides.setdefault(section, {})[key] = value
    return overrides


def load_settings(
    site_file: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Defaults, then the site file (argument or $PASSERELLE_CONFIG), then the environment, then overrides."""
    environ = os.environ if environ is None else environ
    with DEFAULTS_FILE.open("rb") as fh:
        data = tomllib.load(fh)
    site_file = site_file or environ.get("PASSERELLE_CONFIG") or None
    if site_file:
        try:
            with open(site_file, "rb") as fh:
                _merge(data, tomllib.load(fh), origin=str(site_file))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {site_file}: {exc.strerror}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{site_file} is not valid TOML: {exc}") from None
    _merge(data, _env_overrides(environ), origin="environment")
    if overrides:
        _merge(data, overrides, origin="override")
    _validate(data, origin="configuration")
    return Settings({k: _freeze(v) for k, v in data.items()})
