"""Subject normalisation for threading and display.

Mail clients prefix replies and forwards in their user's language, stack the prefixes, number them,
and lists add tags: ``RE : [forum] AW: Re[2]: TR: Réunion`` is one real subject. ``normalize_subject``
removes all of that and keeps the case of what remains (it is shown as a topic title); compare
subjects with :func:`subject_key`.
"""

from __future__ import annotations

import re

# Reply prefixes by language. "VS" is Finnish "vastaus" (reply) and Danish "videresendt" (forward); we
# count it as a reply, the cheaper mistake. "R"/"RIF" are Italian Outlook, "Réf."/"Ref" French.
REPLY_PREFIXES: tuple[str, ...] = (
    "re", "res", "aw", "antw", "antwort", "sv", "vs", "ref", "réf", "r", "rif", "odp", "ynt", "atb",
    "vá", "bls", "svar", "απ", "σχετ", "השב", "رد", "回复", "回覆", "答复", "答覆", "返信", "отв",
    "відп", "회신", "yanıt", "vastaus",
)  # fmt: skip
# Forward prefixes: "TR" French (transféré), "WG" German (weitergeleitet), "RV"/"ENC" Spanish and
# Portuguese, "I" Italian (inoltrato), "Doorst" Dutch, "PD" Polish, "VL" Finnish, "VB"/"FS" Scandinavian.
FORWARD_PREFIXES: tuple[str, ...] = (
    "fwd", "fw", "fwrd", "tr", "trs", "wg", "rv", "enc", "i", "inoltro", "doorst", "vl", "fs", "vb",
    "pd", "πρθ", "הועבר", "továbbítás", "i̇lt", "yml", "إعادة توجيه", "轉寄", "转发", "転送", "전달",
)  # fmt: skip

_REPLY_SET = frozenset(REPLY_PREFIXES)


def _alternation(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


# "Re:", "RE :", "Réf. :", "Re[2]:", "Re(2):", "Re^2:", "fwd[a]:", full-width colon "回复：".
_PREFIX_RE = re.compile(
    r"\s*(?P<p>" + _alternation(REPLY_PREFIXES + FORWARD_PREFIXES) + r")"
    r"\s*(?:\[[^\]]*\]|\(\d+\)|\^\d+)?\s*\.?\s*[:：]\s*",
    re.IGNORECASE,
)
# Trailing "(fwd)" markers (old Pine and Eudora habit): "hello (fwd) (fwd)". One-letter words are left
# alone: "(i)" or "(r)" at the end of a title is more often an enumeration than a forward mark.
_TRAILING_RE = re.compile(
    r"\s*\(\s*(?:" + _alternation(tuple(w for w in REPLY_PREFIXES + FORWARD_PREFIXES if len(w) > 1)) + r")\s*\)\s*$",
    re.IGNORECASE,
)
_WS_RE = re.compile(r"\s+")
_MAX_ROUNDS = 200
_TRAILING_WINDOW = 80


def _leading_groups(text: str) -> tuple[list[str], str]:
    """Leading balanced ``[...]`` groups (list tags such as ``[forum]``) and the text after them."""
    groups: list[str] = []
    pos = 0
    n = len(text)
    while pos < n and text[pos] == "[":
        depth = 0
        end = -1
        for i in range(pos, n):
            if text[i] == "[":
                depth += 1
            elif text[i] == "]":
                depth -= 1
                if depth == 0:
                    end = i
                    break
        if end < 0:
            break
        groups.append(text[pos + 1 : end])
        pos = end + 1
        while pos < n and text[pos] == " ":
            pos += 1
    return groups, text[pos:]


def _strip(subject: str) -> tuple[str, bool]:
    text = _WS_RE.sub(" ", subject or "").strip()
    is_reply = False
    for _ in range(_MAX_ROUNDS):
        match = _PREFIX_RE.match(text)
        if match:
            if match.group("p").lower() in _REPLY_SET:
                is_reply = True
            text = text[match.end() :]
            continue
        groups, tail = _leading_groups(text)
        if groups:
            if tail.strip():
                # "[forum] Re: hello", "[SPAM] [forum] hello": list tags before real text go.
                text = tail.lstrip()
                continue
            # Only bracketed text: "[Fwd: hello world]" is a forward wrapper (old Netscape); a plain
            # "[hello world]" is the subject itself.
            inner = groups[-1].strip()
            inner_match = _PREFIX_RE.match(inner)
            if inner_match:
                if inner_match.group("p").lower() in _REPLY_SET:
                    is_reply = True
                text = inner
                continue
        # Only the tail can hold the marker; searching the whole text each round would be quadratic.
        tail_start = max(0, len(text) - _TRAILING_WINDOW)
        trailing = _TRAILING_RE.search(text, tail_start)
        if trailing:
            text = text[: trailing.start()].rstrip()
            continue
        break
    return _WS_RE.sub(" ", text).strip(), is_reply


def normalize_subject(subject: str | None) -> str:
    """The subject without any reply/forward prefix, list tag or trailing ``(fwd)``, whitespace collapsed.

    ``normalize_subject("RE : [forum] AW: Re[2]: TR: Réunion")`` gives ``"Réunion"``. Case is kept.
    """
    return _strip(subject or "")[0]


def is_reply_subject(subject: str | None) -> bool:
    """True when the subject carries a reply prefix (``Re:``, ``AW:``, ``R:``, ``SV:`` ...), even under
    a list tag or a forward prefix. A forward alone (``Fwd: x``) is not a reply."""
    return _strip(subject or "")[1]


def subject_key(subject: str | None) -> str:
    """The comparison key of a subject: normalised, then case-folded (``Réunion`` == ``RÉUNION``)."""
    return normalize_subject(subject).casefold()
