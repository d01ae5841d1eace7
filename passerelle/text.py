"""Small text helpers shared by every package."""

from __future__ import annotations

import re
import unicodedata

_NON_WORD = re.compile(r"[^a-z0-9]+")


def strip_accents(value: str) -> str:
    """"Fiscalité" -> "Fiscalite" (NFKD, combining marks dropped)."""
    decomposed = unicodedata.normalize("NFKD", value)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def slugify(value: str, *, max_length: int = 80) -> str:
    """"Santé & Mobilité transfrontalière" -> "sante-mobilite-transfrontaliere"."""
    slug = _NON_WORD.sub("-", strip_accents(value).lower()).strip("-")
    return slug[:max_length].rstrip("-") or "sans-titre"
