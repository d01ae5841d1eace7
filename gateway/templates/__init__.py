"""The mails Passerelle writes, one text file per template and language: NAME.LANG.txt.

The first line is the subject ("Subject: ..."), then an empty line, then the body. Placeholders are
str.format fields. A missing language falls back to English, then French.

A field may be a :class:`Localised` text (a reason decided before anyone knew who would read it, such as a
rule's "not a member"): :func:`render` puts it in the template's language. Its plain ``str`` value stays the
English sentence, for the spool row's reason and the logs operators read.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from gateway.command_parse import phrase

TEMPLATE_DIR = Path(__file__).resolve().parent
FALLBACKS = ("en", "fr")


class TemplateMissing(LookupError):
    pass


class Localised(str):
    """A sentence of gateway/templates/phrases.toml, kept as its key and fields until a reader's language is
    known. As a ``str`` it is the English sentence (or ``operator_text``, a shorter line for the spool row's
    reason and the logs); :meth:`in_language` gives the sentence in any language."""

    key: str
    fields: dict[str, Any]

    def __new__(cls, key: str, *, operator_text: str | None = None, **fields: Any) -> Localised:
        text = super().__new__(cls, operator_text if operator_text is not None else phrase(key, "en", **fields))
        text.key = key
        text.fields = fields
        return text

    def in_language(self, language: str) -> str:
        return phrase(self.key, language, **self.fields)


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
            fields = {k: v.in_language(lang) if isinstance(v, Localised) else v for k, v in fields.items()}
            return subject.format(**fields), body.format(**fields)
    raise TemplateMissing(f"no template {name!r} in {language!r} or {FALLBACKS}")


def available_languages(name: str) -> list[str]:
    return sorted(p.name.split(".")[1] for p in TEMPLATE_DIR.glob(f"{name}.*.txt"))
