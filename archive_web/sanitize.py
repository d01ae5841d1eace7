"""Display HTML mail parts safely. The only module of the project that imports bleach.

Allow-list sanitising: structural and text-level tags only; no scripts, styles, forms, frames, objects,
event handlers, ``style`` attributes or ``javascript:``/``data:`` URLs. Remote images are never loaded
(they are tracking beacons as often as pictures): an image is shown only when it is part of the message
itself (``cid:`` URL, RFC 2392) and the caller maps it to the archived attachment; otherwise its alt text
stands in its place. Links get rel="nofollow noopener noreferrer ugc".
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import bleach
from bleach.html5lib_shim import Filter

ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "address", "b", "bdi", "bdo", "big", "blockquote", "br", "caption", "center", "cite",
        "code", "col", "colgroup", "dd", "del", "dfn", "div", "dl", "dt", "em", "figcaption", "figure",
        "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "mark", "ol", "p",
        "pre", "q", "rp", "rt", "ruby", "s", "samp", "small", "span", "strike", "strong", "sub", "sup",
        "table", "tbody", "td", "tfoot", "th", "thead", "time", "tr", "tt", "u", "ul", "var", "wbr",
    }
)
ALLOWED_ATTRIBUTES: Mapping[str, list[str]] = {
    "a": ["href", "title"],
    "abbr": ["title"],
    "img": ["src", "alt", "title", "width", "height"],
    "td": ["colspan", "rowspan", "align"],
    "th": ["colspan", "rowspan", "align", "scope"],
    "ol": ["start", "type"],
    "q": ["cite"],
    "blockquote": ["cite"],
    "time": ["datetime"],
    "p": ["align"],
    "div": ["align"],
}
# "cid" lets the sanitiser keep <img src="cid:..."> for the filter below, which maps or removes it.
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto", "cid"})
MAX_HTML_CHARS = 1_000_000

# Elements whose content is not text for a reader: dropped whole before sanitising (bleach would keep
# their content as text). An element left unclosed runs to the end of the document, as browsers do.
_DROP_WITH_CONTENT = re.compile(
    r"<(script|style|head|title|noscript|template|iframe|object|embed|textarea|xmp|noembed|noframes|svg|math)"
    r"\b[^>]*>.*?(?:</\1\s*>|\Z)",
    re.IGNORECASE | re.DOTALL,
)
_DIMENSION = re.compile(r"^\d{1,4}%?$")

CidResolver = Callable[[str], str | None]


class _ImagesAndLinks(Filter):  # type: ignore[misc]
    """After sanitising: map cid: images to archive URLs or replace them by their alt text; harden links."""

    def __init__(self, source: Any, resolve_cid: CidResolver | None = None) -> None:
        super().__init__(source)
        self.resolve_cid = resolve_cid

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for token in super().__iter__():
            kind = token.get("type")
            name = token.get("name")
            if kind in ("StartTag", "EmptyTag") and name == "img":
                replacement = self._image(token)
                if replacement is not None:
                    yield replacement
                continue
            if kind == "StartTag" and name == "a":
                attrs = dict(token.get("data") or {})
                href = attrs.get((None, "href"), "")
                if href.lower().startswith("cid:"):
                    attrs.pop((None, "href"), None)
                attrs[(None, "rel")] = "nofollow noopener noreferrer ugc"
                token = {**token, "data": attrs}
            yield token

    def _image(self, token: dict[str, Any]) -> dict[str, Any] | None:
        attrs = dict(token.get("data") or {})
        src = attrs.get((None, "src"), "")
        alt = (attrs.get((None, "alt")) or "").strip()
        url = None
        if src.lower().startswith("cid:") and self.resolve_cid is not None:
            url = self.resolve_cid(src[4:].strip().strip("<>"))
        if url is None:
            text = f"[{alt}]" if alt else ""
            return {"type": "Characters", "data": text} if text else None
        clean: dict[tuple[None, str], str] = {(None, "src"): url, (None, "alt"): alt}
        for dim in ("width", "height"):
            value = attrs.get((None, dim), "")
            if _DIMENSION.match(value):
                clean[(None, dim)] = value
        if (None, "title") in attrs:
            clean[(None, "title")] = attrs[(None, "title")]
        return {**token, "data": clean}


def sanitize_html(value: str, *, resolve_cid: CidResolver | None = None) -> str:
    """HTML safe to insert in a page (still to be marked safe by the caller, e.g. markupsafe.Markup)."""
    if not value:
        return ""
    if len(value) > MAX_HTML_CHARS:
        value = value[:MAX_HTML_CHARS]
    value = _DROP_WITH_CONTENT.sub("", value)
    cleaner = bleach.Cleaner(
        tags=ALLOWED_TAGS,
        attributes=dict(ALLOWED_ATTRIBUTES),
        protocols=ALLOWED_PROTOCOLS,
        strip=True,
        strip_comments=True,
        filters=[functools.partial(_ImagesAndLinks, resolve_cid=resolve_cid)],
    )
    return str(cleaner.clean(value))
