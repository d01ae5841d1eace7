"""Message bodies for pages: plain text escaped and linkified, quotes and signatures folded in <details>.

Plain text is turned into HTML here, without an HTML parser (fast: a thread page renders many bodies).
Only http(s) and mailto URLs become links. Folding uses the mail package's reply splitter
(passerelle.mail.quotes: multilingual attributions, Outlook header blocks, "-----Original Message-----",
"-- " and mobile signatures); the inline quotes it leaves in an interleaved answer are folded here when
long, and shown as context when short.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from markupsafe import Markup, escape

from passerelle.mail.quotes import split_reply

# A URL runs to white space or a character that cannot be in one; trailing punctuation is the sentence's.
_URL = re.compile(r"\b(?:https?://|mailto:)[^\s<>\"'`\x00-\x1f\x7f]+", re.IGNORECASE)
_TRAILING = ".,;:!?'\")]}»"
MAX_BODY_CHARS = 200_000


@dataclass(frozen=True)
class Block:
    """A piece of a message body: "text" and "context" (a short inline quote) shown, "quote" and
    "signature" folded."""

    kind: str
    html: Markup


def linkify(text: str) -> Markup:
    """``text`` escaped for HTML, with its URLs as links."""
    out: list[str] = []
    pos = 0
    for match in _URL.finditer(text):
        url = match.group(0)
        # Keep a closing bracket that belongs to the URL (Wikipedia style "..._(ville)").
        while url and url[-1] in _TRAILING:
            if url[-1] == ")" and url.count("(") >= url.count(")"):
                break
            url = url[:-1]
        if len(url) <= len("mailto:") or url.lower() in ("http://", "https://"):
            continue
        start, end = match.start(), match.start() + len(url)
        out.append(str(escape(text[pos:start])))
        out.append(
            f'<a href="{escape(url)}" rel="nofollow noopener noreferrer ugc">{escape(url)}</a>'
        )
        pos = end
    out.append(str(escape(text[pos:])))
    # Every piece above went through escape(): the joined string is safe HTML.
    return Markup("".join(out))  # noqa: S704


_QUOTE_LINE = re.compile(r"^\s*>")
# Inline quotes of an interleaved answer up to this many lines stay visible (they are the context of the
# answer below them); longer ones are folded like a trailing quote.
SHORT_QUOTE_LINES = 3


def _fold_inline_quotes(text: str) -> list[tuple[str, str]]:
    """Split the author's text into text and runs of ">" lines ("context" when short, else "quote")."""
    lines = text.split("\n")
    out: list[tuple[str, list[str]]] = []
    for i, line in enumerate(lines):
        is_quote = bool(_QUOTE_LINE.match(line))
        if not is_quote and not line.strip() and out and out[-1][0] == "quote":
            # An empty line inside a quote run belongs to it when the quote goes on after it.
            following = next((ln for ln in lines[i + 1 :] if ln.strip()), "")
            is_quote = bool(_QUOTE_LINE.match(following))
        kind = "quote" if is_quote else "text"
        if out and out[-1][0] == kind:
            out[-1][1].append(line)
        else:
            out.append((kind, [line]))
    result: list[tuple[str, str]] = []
    for kind, chunk in out:
        if kind == "quote" and sum(1 for ln in chunk if ln.strip()) <= SHORT_QUOTE_LINES:
            kind = "context"
        result.append((kind, "\n".join(chunk)))
    return result


def _split(body_text: str, new_text: str) -> list[tuple[str, str]]:
    reply = split_reply(body_text or new_text or "")
    parts = _fold_inline_quotes(reply.new_text) if reply.new_text else []
    if reply.signature:
        parts.append(("signature", reply.signature))
    if reply.quoted_text:
        parts.append(("quote", reply.quoted_text))
    return parts


# Thread pages of recent topics are read again and again: the blocks of bodies up to this size are kept
# (keyed by the texts themselves, so an edited body is another entry), at most MEMO_ENTRIES of them.
MEMO_MAX_CHARS = 16_000
MEMO_ENTRIES = 2048


def body_blocks(body_text: str, new_text: str = "") -> list[Block]:
    """The blocks of a message body, consecutive blocks of the same kind merged, empty ones left out."""
    body_text = body_text or ""
    new_text = new_text or ""
    if len(body_text) + len(new_text) <= MEMO_MAX_CHARS:
        return list(_memo_blocks(body_text, new_text))
    return _body_blocks(body_text, new_text)


@lru_cache(maxsize=MEMO_ENTRIES)
def _memo_blocks(body_text: str, new_text: str) -> tuple[Block, ...]:
    return tuple(_body_blocks(body_text, new_text))


def _body_blocks(body_text: str, new_text: str) -> list[Block]:
    body_text = body_text[:MAX_BODY_CHARS]
    blocks: list[tuple[str, str]] = []
    for kind, text in _split(body_text, new_text):
        if not text or not text.strip():
            continue
        if blocks and blocks[-1][0] == kind:
            blocks[-1] = (kind, blocks[-1][1] + "\n" + text)
        else:
            blocks.append((kind, text))
    result = [Block(kind=kind, html=linkify(text.strip("\n"))) for kind, text in blocks]
    if result and all(b.kind not in ("text", "context") for b in result):
        # A message that is only a quote (a forward without a word): show it rather than fold everything.
        result[0] = Block(kind="text", html=result[0].html)
    return result
