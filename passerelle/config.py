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
        _merge(data, overrides, origin="override")
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
    return Settings({k: _freeze(v) for k, v in data.items()})
