"""HTML to readable plain text, for the archive's text column, search and quote trimming.

Stdlib ``html.parser`` only (bleach stays in archive_web/sanitize.py). Paragraphs and line breaks are
kept, list items get bullets or numbers, links become ``text (url)``, images their alt text,
``<blockquote>`` lines get a ``> `` prefix so the quote trimmer sees them as quotes, and script/style
content is dropped. Entities are decoded. Never raises on malformed HTML.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "center", "dd", "details", "dialog", "dir", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "header", "hgroup", "main", "menu", "nav",
        "ol", "p", "section", "summary", "table", "tbody", "tfoot", "thead", "ul", "caption", "body",
        "html",
    }
)  # fmt: skip
_PARAGRAPH_TAGS = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "dl", "pre", "hr"})
_HEADING_TAGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
# Content never shown to a reader. <head> is dropped whole (its <title> repeats the subject).
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript", "object", "iframe", "svg"})
_VOID_TAGS = frozenset({"br", "img", "hr", "meta", "link", "input", "area", "base", "col", "embed", "wbr"})
_WS_RE = re.compile(r"[ \t\r\n\f\v\u00a0\u200b]+")
_MAX_LIST_DEPTH = 20


class _TextBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.current: list[str] = []
        self.skip_depth = 0
        self.pre_depth = 0
        self.quote_depth = 0
        self.lists: list[list[int | str]] = []  # [kind, counter]
        self.links: list[tuple[str, int]] = []  # (href, len of text collected when the link opened)
        self.link_text: list[str] = []
        self.pending_blank = False
        self.last_depth = 0

    # -- line handling -------------------------------------------------------------------------------
    def _prefix(self) -> str:
        return "> " * self.quote_depth

    def _flush_line(self) -> None:
        text = "".join(self.current)
        self.current = []
        text = text.strip() if self.pre_depth == 0 else text.rstrip()
        if not text:
            return
        if self.pending_blank and self.lines and self.lines[-1].strip("> ") != "":
            # A blank line between two depths of quoting belongs to the shallower one.
            self.lines.append(("> " * min(self.quote_depth, self.last_depth)).rstrip())
        self.pending_blank = False
        self.lines.append(self._prefix() + text)
        self.last_depth = self.quote_depth

    def _break(self, blank: bool = False) -> None:
        self._flush_line()
        if blank:
            self.pending_blank = True

    def _write(self, text: str) -> None:
        if self.links:
            self.link_text.append(text)
        self.current.append(text)

    # -- parser callbacks ----------------------------------------------------------------------------
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            if tag not in _VOID_TAGS:
                self.skip_depth += 1
            return
        if self.skip_depth:
            return
        attributes = dict(attrs)
        if tag == "br":
            self._flush_line_keep_empty()
        elif tag == "hr":
            self._break(blank=True)
            self.current.append("-" * 20)
            self._break(blank=True)
        elif tag == "blockquote":
            self._break(blank=True)
            self.quote_depth += 1
        elif tag == "pre":
            self._break(blank=True)
            self.pre_depth += 1
        elif tag in ("ul", "ol", "menu", "dir"):
            self._break(blank=not self.lists)
            if len(self.lists) < _MAX_LIST_DEPTH:
                self.lists.append([tag, 0])
        elif tag == "li":
            self._break()
            indent = "  " * max(0, len(self.lists) - 1)
            if self.lists and self.lists[-1][0] == "ol":
                counter = int(self.lists[-1][1]) + 1
                self.lists[-1][1] = counter
                self.current.append(f"{indent}{counter}. ")
            else:
                self.current.append(f"{indent}• ")
        elif tag in _HEADING_TAGS or tag in _PARAGRAPH_TAGS:
            self._break(blank=True)
        elif tag in _BLOCK_TAGS or tag in ("tr", "dt", "dd"):
            self._break()
        elif tag in ("td", "th"):
            if self.current and "".join(self.current).strip():
                self.current.append(" | ")
        elif tag == "img":
            alt = (attributes.get("alt") or "").strip()
            if alt:
                self._write(f"[{alt}]")
        elif tag == "a":
            self.links.append((attributes.get("href") or "", len(self.link_text)))

    def _flush_line_keep_empty(self) -> None:
        if not "".join(self.current).strip():
            self.current = []
            if self.lines and self.lines[-1].strip("> "):
                # Two <br> in a row make a blank line.
                self.pending_blank = True
            return
        self._flush_line()

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if tag not in _VOID_TAGS:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            if self.skip_depth:
                self.skip_depth -= 1
            return
        if self.skip_depth:
            return
        if tag == "a" and self.links:
            href, start = self.links.pop()
            text = "".join(self.link_text[start:]).strip()
            if not self.links:
                self.link_text = []
            self._link_suffix(href.strip(), text)
        elif tag == "blockquote":
            self._break(blank=True)
            self.quote_depth = max(0, self.quote_depth - 1)
        elif tag == "pre":
            self._break(blank=True)
            self.pre_depth = max(0, self.pre_depth - 1)
        elif tag in ("ul", "ol", "menu", "dir"):
            self._break(blank=True)
            if self.lists:
                self.lists.pop()
        elif tag in _HEADING_TAGS or tag in _PARAGRAPH_TAGS:
            self._break(blank=True)
        elif tag in _BLOCK_TAGS or tag in ("tr", "li", "dt", "dd"):
            self._break()

    def _link_suffix(self, href: str, text: str) -> None:
        if not href or href.startswith(("#", "javascript:", "data:", "cid:")):
            return
        shown = href[7:] if href.lower().startswith("mailto:") else href
        plain_text = text.strip().rstrip("/")
        if not plain_text or plain_text in (shown.rstrip("/"), href.rstrip("/")):
            if not plain_text:
                self._write(shown)
            return
        if plain_text.lower().startswith(("http://", "https://", "www.")) and shown.rstrip("/").endswith(
            plain_text.split("://", 1)[-1]
        ):
            return
        self._write(f" ({shown})")

    def handle_data(self, data: str) -> None:
        if self.skip_depth:
            return
        if self.pre_depth:
            parts = data.replace("\r\n", "\n").split("\n")
            for i, part in enumerate(parts):
                if i:
                    self._flush_line_keep_empty()
                self._write(part)
            return
        text = _WS_RE.sub(" ", data)
        if not text.strip() and (not self.current or "".join(self.current).endswith(" ")):
            return
        self._write(text)

    def result(self) -> str:
        self._flush_line()
        lines = [line.rstrip() for line in self.lines]
        text = "\n".join(lines).strip("\n")
        return re.sub(r"\n{3,}", "\n\n", text)


def html_to_text(html: str) -> str:
    """Readable plain text from an HTML mail part. Never raises."""
    if not html or not html.strip():
        return ""
    builder = _TextBuilder()
    try:
        builder.feed(html.replace("\x00", ""))
        builder.close()
    except (AssertionError, ValueError, IndexError):
        # html.parser asserts on some malformed declarations; keep what was read so far.
        pass
    return builder.result().replace("\u00a0", " ")
