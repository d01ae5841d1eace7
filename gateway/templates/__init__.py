"""The mails Passerelle writes, one text file per template and language: NAME.LANG.txt.

The first line is the subject ("Subject: ..."), then an empty line, then the body. Placeholders are
str.format fields. A missing language falls back to English, then French.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

TEMPLATE_DIR = Path(__file__).resolve().parent
FALLBACKS = ("en", "fr")


class TemplateMissing(LookupError):
    pass


@cache
def _load(name: str, language: str) -> tuple[str, str] | None:
    path = TEMPLATE_DIR / f"{name}.{language}.txt"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    first, _, body = text.partition("\n\n")
    if not first.startswith("Subject:"):
        raise TemplateMissing(f"{path.name}: the first line must be 'Subject: ...'")
    return first[len("Subject:") :].strip(), body


def render(name: str, language: str, **fields: Any) -> tuple[str, str]:
    """(subject, body) of template ``name`` in ``language`` (or a fallback), fields filled in."""
    for lang in (language, *FALLBACKS):
        loaded = _load(name, lang)
        if loaded:
            subject, body = loaded
            return subject.format(**fields), body.format(**fields)
    raise TemplateMissing(f"no template {name!r} in {language!r} or {FALLBACKS}")


def available_languages(name: str) -> list[str]:
    return sorted(p.name.split(".")[1] for p in TEMPLATE_DIR.glob(f"{name}.*.txt"))
