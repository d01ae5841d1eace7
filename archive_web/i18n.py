"""Languages: Flask-Babel with catalogues read straight from the .po files (no compile step).

The .po files under archive_web/translations/<lang>/LC_MESSAGES/messages.po are the only source: they are
compiled in memory the first time a language is used, so a fresh clone works with nothing but
``pip install``. Message ids are English. The reader's language comes from the switcher (kept in the
session), else the browser's Accept-Language, else ``site.default_language``.

Adding or changing a string anywhere in archive_web (tests/web/test_i18n.py fails until French is complete
again): ``python -m archive_web.i18n`` (extracts messages.pot and merges it into every messages.po), then
translate the new entries (French at least; German, Italian, Spanish where you can) and drop "fuzzy" flags.
"""

from __future__ import annotations

import io
import logging
import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytz
from babel import Locale
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import NullTranslations, Translations
from flask import Flask, request, session
from flask_babel import Babel, Domain, get_locale, get_translations
from jinja2 import pass_context
from jinja2.runtime import Context
from markupsafe import Markup
from werkzeug.utils import cached_property

from .app import WebState

log = logging.getLogger(__name__)

TRANSLATIONS_DIR = Path(__file__).resolve().parent / "translations"
DOMAIN = "messages"
LANGUAGE_NAMES = {"fr": "Français", "en": "English", "de": "Deutsch", "it": "Italiano", "es": "Español"}


def po_path(language: str, directory: Path = TRANSLATIONS_DIR) -> Path:
    return directory / language / "LC_MESSAGES" / f"{DOMAIN}.po"


def load_catalogue(language: str, directory: Path = TRANSLATIONS_DIR) -> NullTranslations:
    """The translations of ``language`` compiled from its .po file (fuzzy entries left out)."""
    path = po_path(language, directory)
    if not path.is_file():
        return NullTranslations()
    with path.open("rb") as fh:
        catalog = read_po(fh, locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(fp=buffer, domain=DOMAIN)


class PoDomain(Domain):
    """A Flask-Babel domain whose catalogues come from .po files, cached per language for this app."""

    def __init__(self, directory: Path = TRANSLATIONS_DIR) -> None:
        super().__init__(translation_directories=[str(directory)], domain=DOMAIN)
        self._directory = directory
        self._loaded: dict[str, NullTranslations] = {}
        self._lock = threading.Lock()

    def get_translations(self) -> Any:
        locale = get_locale()
        if locale is None:
            return NullTranslations()
        key = locale.language
        cached = self._loaded.get(key)
        if cached is not None:
            return cached
        with self._lock:
            if key not in self._loaded:
                self._loaded[key] = load_catalogue(key, self._directory)
            return self._loaded[key]


class _Babel(Babel):
    @cached_property
    def domain_instance(self) -> Domain:
        return PoDomain()


def select_language(state: WebState) -> str:
    languages = state.languages
    chosen = session.get("lang")
    if isinstance(chosen, str) and chosen in languages:
        return chosen
    best = request.accept_languages.best_match(languages)
    if best:
        return best
    default = state.settings.site.default_language
    return default if default in languages else (languages[0] if languages else "en")


def select_timezone(state: WebState) -> str:
    from .web import viewer

    try:
        member = viewer().member
    except Exception:  # the error page of a broken database still renders dates
        member = None
    for name in (member.timezone if member else None, state.settings.site.default_timezone):
        if name:
            try:
                pytz.timezone(name)
            except pytz.UnknownTimeZoneError:
                continue
            return name
    return "UTC"


def init_app(app: Flask, state: WebState) -> None:
    babel = _Babel()
    babel.init_app(
        app,
        default_locale=state.settings.site.default_language,
        default_timezone="UTC",
        locale_selector=lambda: select_language(state),
        timezone_selector=lambda: select_timezone(state),
    )

    def current_language() -> str:
        locale = get_locale()
        return locale.language if isinstance(locale, Locale) else state.settings.site.default_language

    app.jinja_env.globals["current_language"] = current_language
    app.jinja_env.globals["language_names"] = LANGUAGE_NAMES
    # Templates translate a hundred strings per page; look the catalogue up once per page instead of
    # through Flask-Babel's context lookups for each string (same output as Flask-Babel's callables).
    app.jinja_env.globals.update(gettext=template_gettext, ngettext=template_ngettext, _=template_gettext)

    @app.context_processor
    def _page_translations() -> dict[str, Any]:
        return {PAGE_TRANSLATIONS: get_translations()}


PAGE_TRANSLATIONS = "_page_translations"


def _translations(context: Context) -> Any:
    # Macros imported without context do not see the page's catalogue: ask Flask-Babel.
    translations = context.get(PAGE_TRANSLATIONS)
    return translations if translations is not None else get_translations()


@pass_context
def template_gettext(__context: Context, __string: str, **variables: Any) -> str:
    """``_()``/``gettext()`` of templates: Jinja's "newstyle" gettext (escaping, %-formatting)."""
    translations = _translations(__context)
    if not variables:
        return _gettext(translations, __string, __context.eval_ctx.autoescape)
    return _format(translations.ugettext(__string), __context.eval_ctx.autoescape, variables)


@pass_context
def template_ngettext(__context: Context, __singular: str, __plural: str, __num: int, **variables: Any) -> str:
    """``ngettext()`` of templates, as Jinja's "newstyle" ngettext (``num`` is available to the string)."""
    translations = _translations(__context)
    if not variables and isinstance(__num, int):
        return _ngettext(translations, __singular, __plural, __num, __context.eval_ctx.autoescape)
    variables.setdefault("num", __num)
    return _format(translations.ungettext(__singular, __plural, __num), __context.eval_ctx.autoescape, variables)


def _format(rv: str, autoescape: bool, variables: dict[str, Any]) -> str:
    if autoescape:
        rv = Markup(rv)  # noqa: S704 (the catalogue is ours; values are escaped by % as in Jinja)
    return rv % variables


# A page repeats the same strings ("12 messages" on every row): the result of a string without
# variables, or with only its count, is kept per catalogue (catalogues live as long as the app).
@lru_cache(maxsize=4096)
def _gettext(translations: Any, string: str, autoescape: bool) -> str:
    return _format(translations.ugettext(string), autoescape, {})


@lru_cache(maxsize=4096)
def _ngettext(translations: Any, singular: str, plural: str, num: int, autoescape: bool) -> str:
    return _format(translations.ungettext(singular, plural, num), autoescape, {"num": num})


def update_catalogues() -> None:
    """Extract every string of archive_web into messages.pot and merge it into each messages.po (new
    entries empty, changed ones marked fuzzy): ``python -m archive_web.i18n``, then translate."""
    from babel.messages.frontend import CommandLineInterface

    root = TRANSLATIONS_DIR.parent.parent
    pot = TRANSLATIONS_DIR / "messages.pot"
    CommandLineInterface().run([
        "pybabel", "-q", "extract", "-F", str(TRANSLATIONS_DIR / "babel.cfg"), "-k", "_l", "-k", "lazy_gettext",
        "--no-location", "--omit-header", "-o", str(pot), str(root),
    ])
    CommandLineInterface().run([
        "pybabel", "-q", "update", "-i", str(pot), "-d", str(TRANSLATIONS_DIR), "-D", DOMAIN, "--width", "120",
        "--ignore-obsolete",
    ])


if __name__ == "__main__":
    update_catalogues()
