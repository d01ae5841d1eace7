"""Every character the archive's pages show renders with the fonts every machine has.

Emoji and dingbats (a lock for "Members only", an envelope, a warning sign, a check mark) are drawn from an
emoji font; Chromium on a machine without one (many Linux desktops, servers taking screenshots, kiosks) shows
an empty box instead. Templates, style sheets and translations may use letters of any script and the usual
typography (accents, quotes, dashes, ellipsis, ‹ › « »), plus the four arrows of the WGL4 set that every
system font carries; markers are drawn in CSS.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

WEB = Path(__file__).resolve().parents[2] / "archive_web"
# The WGL4 arrows (present in Arial, Segoe UI, Helvetica, DejaVu, Liberation) and the euro sign.
SAFE_SYMBOLS = frozenset("←↑→↓↔€")


def renders_everywhere(char: str) -> bool:
    code = ord(char)
    if code < 0x250:  # ASCII, Latin-1, Latin Extended-A/B: accented letters, « », °, ¿, ...
        return True
    if unicodedata.category(char)[0] in "LMZ" and code < 0x2000:  # letters of other scripts, combining marks
        return True
    if 0x2010 <= code <= 0x2044:  # General Punctuation: dashes, quotes, „, bullets, ellipsis, ‹ ›
        return True
    return char in SAFE_SYMBOLS


def page_sources() -> list[Path]:
    sources = sorted(
        p for p in WEB.rglob("*") if p.is_file() and p.suffix in (".html", ".css", ".js", ".po", ".txt", ".svg")
    )
    if not sources:
        pytest.fail(f"no templates or style sheets found under {WEB}")
    return sources


def unusual_glyphs(text: str) -> list[tuple[int, str]]:
    """(line number, "U+XXXX NAME") for each character that needs a special font."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for char in line:
            if not renders_everywhere(char):
                found.append((number, f"U+{ord(char):04X} {unicodedata.name(char, '?')}"))
    return found


def test_the_checker_tells_emoji_from_typography() -> None:
    assert unusual_glyphs("Réservé aux membres « Santé » — Gesundheit „Grenze“ … ‹ › ← ¿Qué? 20 °C Ελλάδα") == []
    assert [name for _, name in unusual_glyphs("🔒 ✉ ⚠ ✓ ★")] == [
        "U+1F512 LOCK", "U+2709 ENVELOPE", "U+26A0 WARNING SIGN", "U+2713 CHECK MARK", "U+2605 BLACK STAR",
    ]
    assert unusual_glyphs("\u26a0\ufe0f")[1][1] == "U+FE0F VARIATION SELECTOR-16"


def test_templates_style_sheets_and_translations_use_no_emoji() -> None:
    problems = [
        f"{path.relative_to(WEB.parent)}:{line}: {name}"
        for path in page_sources()
        for line, name in unusual_glyphs(path.read_text(encoding="utf-8"))
    ]
    assert not problems, "characters that show as empty boxes without an emoji font:\n" + "\n".join(problems)
