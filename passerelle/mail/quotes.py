"""Split a plain-text reply into what the author wrote, what they quoted, and their signature.

Works line by line. Each line is classified (empty, text, quote, attribution, original-message
separator, header line of a quoted Outlook/Gmail block, signature delimiter, mobile signature), with
multi-line attributions (``Le 4 janv. 2016 19:03, "Neil"`` / ``<info@x.org>`` / ``a écrit :``)
joined first. Then, in order:

1. everything from the first signature delimiter (``-- ``, ``__________``) on is signature (or quote
   when a quoted message follows it);
2. mobile signatures (``Envoyé de mon iPhone``, ``Von meinem iPhone gesendet``...) go to the signature;
3. a message that *starts* with an attribution and a quote is a bottom-post: the quote goes, unless
   further quotes follow (an interleaved answer keeps its quotes);
4. the first attribution / separator / header block after the author's text cuts the message there
   (top-posting), unless substantial text follows a quote (interleaved);
5. a quote ending the message after the author's text goes;
6. attribution lines left inside an interleaved answer are removed.

Inline quotes of an interleaved answer stay in ``new_text`` (the archive folds them). A message that
is nothing but a quote, without any attribution, is left whole: there is nothing else to show.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Reply:
    """``new_text``: what the author wrote (inline quotes of an interleaved answer included);
    ``quoted_text``: the quoted/forwarded material removed; ``signature``: the signature removed."""

    new_text: str
    quoted_text: str
    signature: str


EMPTY, TEXT, QUOTE, QUOTED_ATTRIBUTION, ATTRIBUTION, HEADER, DELIMITER, MOBILE = (
    "e", "t", "q", "Q", "a", "h", "d", "s",
)  # fmt: skip

# Verbs that end (or nearly end) an attribution line, in the languages of real mail clients.
_VERBS = (
    r"wrote|writes|has written|sent|a écrit|a ecrit|écrit|ecrit|schrieb|hat geschrieben|geschrieben|"
    r"schreef|geschreven|ha scritto|đã viết|scrisse|escribió|escribio|escreveu|skrev|skriver|napisał\(a\)|napisała|"
    r"napisał|napisal|pisze|написал\(а\)|написала|написал|написав|пише|kirjoitti|írta|yazdı|έγραψε|"
    r"a scris|napsal|写道|寫道|が書きました"
)
# "... wrote:" / "... a écrit :" / "... wrote ----" (Zoho) / "Den ... skrev Name <addr>:" (the verb is
# followed by the author) / "Name <addr> schrieb am Fr., 28. Apr. 2017 um 11:53 Uhr:" (Gmail, German).
_ATTRIBUTION_RE = re.compile(
    r"(?:\b|(?<=\s))(?:" + _VERBS + r")(?:\s*[:：]\s*-*\s*$|\s*-{2,}\s*$|[^\n]{0,140}[:：]\s*$)",
    re.IGNORECASE,
)
_ATTRIBUTION_CJK_RE = re.compile(r"(写道|寫道|が書きました)\s*[:：]?\s*$")
# Gmail's older, verb-less forms: "2013/7/20 sam via Discourse Meta <info@discourse.org>",
# "2016-03-03 17:21 GMT+01:00 Some One".
_GMAIL_DATE_RE = re.compile(r"^\s*\d{4}[-/.]\d{1,2}[-/.]\d{1,2}\b.{0,160}$")
_SEPARATOR_RE = re.compile(
    r"^\s*[*_>]*\s*[-=_~]*\s*(?:original message|message d['’]origine|message original|"
    r"ursprüngliche nachricht|originalnachricht|mensaje original|messaggio originale|mensagem original|"
    r"oorspronkelijk bericht|originalmeddelande|opprinnelig melding|oprindelig meddelelse|"
    r"alkuperäinen viesti|wiadomość oryginalna|oryginalna wiadomość|исходное сообщение|"
    r"forwarded message|message transféré|message transfere|weitergeleitete nachricht|"
    r"mensaje reenviado|messaggio inoltrato|mensagem encaminhada|doorgestuurd bericht|"
    r"vidarebefordrat meddelande|videresendt melding|begin forwarded message|"
    r"début du message réexpédié|anfang der weitergeleiteten nachricht|inicio del mensaje reenviado|"
    r"inizio messaggio inoltrato|forwarded by .{1,80})\s*:?\s*[-=_~]*\s*[*_]*\s*$",
    re.IGNORECASE,
)
# Field names of quoted header blocks (Outlook, Gmail forward, Apple Mail) in our readers' languages.
_FROM_FIELDS = r"from|de|von|da|van|från|fra|od|от|lähettäjä|feladó|afzender|remitente|mittente|absender"
_HEADER_FIELDS = (
    _FROM_FIELDS + r"|sent|envoyé|envoye|gesendet|inviato|enviado|enviada|verzonden|skickat|sendt|"
    r"wysłano|отправлено|lähetetty|elküldve|date|datum|data|fecha|to|à|a|an|para|aan|till|til|do|"
    r"кому|vastaanottaja|címzett|cc|kopie|copie|subject|objet|betreff|oggetto|asunto|assunto|"
    r"onderwerp|ämne|emne|temat|тема|aihe|tárgy|reply-to|répondre à|antwort an|rispondi a|"
    r"risposta|responder a|sujet|envoyé le|date d'envoi"
)
_HEADER_RE = re.compile(r"^\s*[*_]{0,2}\s*(?:" + _HEADER_FIELDS + r")\s*[*_]{0,2}\s*[:：]", re.IGNORECASE)
_FROM_HEADER_RE = re.compile(r"^\s*[*_]{0,2}\s*(?:" + _FROM_FIELDS + r")\s*[*_]{0,2}\s*[:：]", re.IGNORECASE)
_QUOTE_RE = re.compile(r"^\s*(?:>|[A-Za-z]{1,10}>)")
_QUOTE_PREFIX_RE = re.compile(r"^\s*(?:[A-Za-z]{0,10}>\s?)+")
# Signature and "end of my text" delimiters: "-- " (RFC 3676 4.3), "--", and rules of _ * = ~ # +.
_SIG_DELIMITER_RE = re.compile(r"^--\s*$")
_RULE_RE = re.compile(r"^\s*([-_*=~#+])\1{2,}\s*$")
_MOBILE_RES = tuple(
    re.compile(p, re.IGNORECASE)
    for p in (
        r"^\W{0,3}sent (?:from|via|by|using) ",
        r"^\W{0,3}sent from my\b",
        r"^\W{0,3}sent with (?:airmail|spark|newton|blue ?mail|blackberry|mailbird|proton ?mail|\w+ mail\b)",
        r"^\W{0,3}envoy[ée] (?:de|depuis|à partir de|a partir de|avec) (?:mon|ma|l'|un|une) ",
        r"^\W{0,3}(?:von meinem|gesendet von meinem|gesendet mit) ",
        r"\bvon meinem .{1,40} gesendet\W*$",
        r"^\W{0,3}diese nachricht wurde von meinem .{1,60} gesendet",
        r"^\W{0,3}(?:inviato|spedito) (?:da|dal|dal mio|con) ",
        r"^\W{0,3}(?:enviado|enviada) (?:desde|de|con|com|do) (?:mi|meu|minha|o|el|un|my)\b",
        r"^\W{0,3}(?:verzonden|verstuurd) (?:vanaf|met|van|via) ",
        r"^\W{0,3}(?:sendt|skickat|skickad|lähetetty|wysłane|wysłano|odesláno|отправлено|надіслано) "
        r"(?:fra|från|z|s|с|из|з|puhelimesta|iphonesta|mobil)",
        r"^\W{0,3}\w+ from (?:my )?mobile\W*$",
        r"^\W{0,3}from my (?:iphone|ipad|android|mobile|phone|samsung|galaxy|blackberry|htc|nokia)\b",
        r"^\W{0,3}get (?:\[)?outlook for (?:ios|android)",
        r"^\W{0,3}sent by (?:galaxy|my|mobile)",
        r"從我的.{1,20}傳送",
        r"(?:发自|来自)我的",
        r"(?:iPhone|iPad|Android)から送信",
    )
)
# Gmail and Outlook insert invisible marks (U+1427 "ᐧ" tracking, zero-width spaces) on lines of their
# own; such a line is empty.
_INVISIBLE_RE = re.compile(r"[\s\u1427\u200b\u200c\u200d\u2060\ufeff\u00a0]*")
_FENCE_RE = re.compile(r"^\s*(```|~~~)")
# How a wrapped attribution starts: a preposition ("On", "Le", "Am", "Il", "El", "Op", "Em", "Den",
# "Dnia", "W dniu", "På"...), a date, or "Name <address".
_ATTRIBUTION_START_RE = re.compile(
    r"^\s*(?:(?:on|le|am|il|el|op|em|den|dnia|w dniu|på|at|в|у)\b|在|\d|[^<>]{0,80}<\S*$|[^<>]{0,80}<[^<>]*@)",
    re.IGNORECASE,
)
# Some webmails glue the attribution to the last line of the reply: "reply On Wed, ... wrote:".
_GLUED_ATTRIBUTION_RE = re.compile(
    r"^(?P<before>.*?\S)\s*-*\s*(?P<attribution>(?:On|Le|Am|El|Il|Op)\s.{6,300}[:：])\s*$"
)
_MAX_ATTRIBUTION_LINES = 6
_MAX_ATTRIBUTION_CHARS = 400
# Text lines after the last quote that make a reply "interleaved" rather than top-posted with a quote.
_INTERLEAVED_MIN_TEXT_LINES = 7


def _is_mobile_signature(line: str) -> bool:
    stripped = line.strip()
    if not stripped or len(stripped) > 120:
        return False
    return any(r.search(stripped) for r in _MOBILE_RES)


def _attribution_strength(chunk: str) -> int:
    """2: certainly an attribution; 1: one only if a quote follows; 0: not one."""
    chunk = re.sub(r"\s+", " ", chunk).strip()
    if not chunk or len(chunk) > _MAX_ATTRIBUTION_CHARS:
        return 0
    if _SEPARATOR_RE.match(chunk):
        return 2
    if (
        ":" not in chunk
        and "：" not in chunk
        and "--" not in chunk
        and not chunk[:1].isdigit()
        and not _ATTRIBUTION_CJK_RE.search(chunk)
    ):
        return 0
    has_marker = bool(re.search(r"\d|@", chunk))
    if _ATTRIBUTION_RE.search(chunk) or _ATTRIBUTION_CJK_RE.search(chunk):
        if has_marker:
            return 2
        return 1 if len(chunk) <= 100 else 0
    if _GMAIL_DATE_RE.match(chunk) and ("@" in chunk or "GMT" in chunk):
        return 2
    # Verb-less forms (Yandex, Mail.ru, some Outlook locales): a date and "<address>" ending with ":".
    if chunk.endswith((":", "：")) and re.search(r"\d", chunk) and re.search(r"<[^<>\s]+@[^<>\s]+>", chunk):
        return 1
    return 0


def _is_rule(line: str, kinds: list[str]) -> bool:
    if not _RULE_RE.match(line):
        return False
    # "===" or "---" right under a line of text is a Setext heading underline, not a delimiter.
    return not (line.strip()[0] in "=-" and kinds and kinds[-1] == TEXT)


def _classify(lines: list[str]) -> list[str]:
    kinds: list[str] = []
    in_code = False
    for line in lines:
        if _FENCE_RE.match(line):
            in_code = not in_code
            kinds.append(TEXT)
            continue
        if in_code:
            kinds.append(TEXT)
            continue
        if _INVISIBLE_RE.fullmatch(line):
            kinds.append(EMPTY)
        elif _SIG_DELIMITER_RE.match(line) or _is_rule(line, kinds):
            kinds.append(DELIMITER)
        elif _QUOTE_RE.match(line):
            inner = _QUOTE_PREFIX_RE.sub("", line)
            kinds.append(QUOTED_ATTRIBUTION if _attribution_strength(inner) else QUOTE)
        elif _SEPARATOR_RE.match(line):
            kinds.append(ATTRIBUTION)
        elif _is_mobile_signature(line):
            kinds.append(MOBILE)
        elif _HEADER_RE.match(line):
            kinds.append(HEADER)
        else:
            kinds.append(TEXT)
    _mark_attributions(lines, kinds)
    _mark_header_blocks(lines, kinds)
    _mend_broken_quotes(lines, kinds)
    return kinds


def _mend_broken_quotes(lines: list[str], kinds: list[str]) -> None:
    """A long link wrapped by the quoting client leaves a line without ``>`` inside a quote
    (``_nonce=3dd518)``); a line between two quote lines that is a URL piece belongs to the quote.
    A real one-line answer between two quotes has words, so it stays text."""
    for i in range(1, len(kinds) - 1):
        if kinds[i] != TEXT or kinds[i - 1] not in (QUOTE, QUOTED_ATTRIBUTION):
            continue
        if kinds[i + 1] not in (QUOTE, QUOTED_ATTRIBUTION):
            continue
        stripped = lines[i].strip()
        if "http" in stripped or "www." in stripped or (" " not in stripped and not stripped.isalpha()):
            kinds[i] = QUOTE


def _unglue(lines: list[str]) -> list[str]:
    out: list[str] = []
    for line in lines:
        match = _GLUED_ATTRIBUTION_RE.match(line) if len(line) < 400 else None
        if match and _attribution_strength(match.group("attribution")) == 2 and not _QUOTE_RE.match(line):
            out.extend([match.group("before"), match.group("attribution")])
        else:
            out.append(line)
    return out


def _next_content(kinds: list[str], start: int) -> str | None:
    for kind in kinds[start:]:
        if kind != EMPTY:
            return kind
    return None


def _mark_attributions(lines: list[str], kinds: list[str]) -> None:
    """Find attributions, joining up to six lines: clients wrap them at 72-78 columns, and Gmail
    puts the address alone on a line (``<``, ``mailto:...``, ``> wrote:``)."""
    n = len(lines)
    i = 0
    while i < n:
        if kinds[i] not in (TEXT, HEADER):
            i += 1
            continue
        found = False
        first = lines[i].strip()
        can_wrap = bool(_ATTRIBUTION_START_RE.match(first)) and not first.endswith(("!", "?"))
        if first.endswith(".") and not re.search(r"\d\.$|\b\w{1,6}\.$", first):
            can_wrap = False
        for extra in range(_MAX_ATTRIBUTION_LINES if can_wrap else 1):
            end = i + extra
            if end >= n:
                break
            if extra and kinds[end] not in (TEXT, EMPTY, QUOTE, HEADER, QUOTED_ATTRIBUTION):
                break
            if extra and 0 < extra < _MAX_ATTRIBUTION_LINES and end > i + 1:
                # A continuation line ending a sentence means we are in prose, not an attribution.
                previous = lines[end - 1].strip()
                if previous.endswith(("!", "?")) or (previous.endswith(".") and len(previous) > 40):
                    break
            chunk = " ".join(line.strip() for line in lines[i : end + 1])
            strength = _attribution_strength(chunk)
            if strength == 0:
                continue
            if strength == 1 and _next_content(kinds, end + 1) not in (QUOTE, QUOTED_ATTRIBUTION):
                continue
            # Gmail wraps "2016-10-24 15:36 GMT+02:00 Foo bar <" / "info@foo.bar>:": take the rest.
            while (
                end + 1 < n
                and kinds[end + 1] == TEXT
                and (lines[end].rstrip().endswith("<") or lines[end + 1].rstrip().endswith(">:"))
                and len(lines[end + 1].strip()) <= 80
            ):
                end += 1
            for j in range(i, end + 1):
                kinds[j] = ATTRIBUTION
            i = end + 1
            found = True
            break
        if not found:
            i += 1


def _mark_header_blocks(lines: list[str], kinds: list[str]) -> None:
    """Header lines count only in a block of three or more that names a sender; a text line between
    two header lines is a wrapped value (``Subject: a long`` / ``subject``)."""
    n = len(kinds)
    i = 0
    while i < n:
        if kinds[i] != HEADER:
            i += 1
            continue
        j = i
        members = [i]
        while j + 1 < n:
            if kinds[j + 1] == HEADER:
                j += 1
                members.append(j)
            elif kinds[j + 1] == TEXT and j + 2 < n and kinds[j + 2] == HEADER:
                j += 2
                members.extend([j - 1, j])
            else:
                break
        headers = [k for k in members if kinds[k] == HEADER]
        if len(headers) >= 3 and any(_FROM_HEADER_RE.match(lines[k]) for k in headers):
            for k in members:
                kinds[k] = HEADER
        else:
            for k in headers:
                kinds[k] = TEXT
            # Keep "h" only for real blocks; a lone "Date: tomorrow" is prose.
        i = j + 1


def _is_boundary(kinds: list[str], index: int) -> bool:
    kind = kinds[index]
    if kind == ATTRIBUTION:
        return True
    return kind == HEADER and (index == 0 or kinds[index - 1] != HEADER)


def _join(lines: list[str], indices: list[int]) -> str:
    text = "\n".join("" if _INVISIBLE_RE.fullmatch(lines[i]) else lines[i].rstrip() for i in sorted(indices))
    return text.strip("\n")


def split_reply(text: str) -> Reply:
    """Split a plain-text body into ``Reply(new_text, quoted_text, signature)``. Never raises."""
    if not text or not text.strip():
        return Reply("", "", "")
    lines = _unglue(text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    kinds = _classify(lines)
    n = len(lines)
    kept = list(range(n))
    quoted: list[int] = []
    signature: list[int] = []

    # 1. Signature delimiter: the rest is signature, up to a quoted message that may follow it.
    for pos, i in enumerate(kept):
        if kinds[i] == DELIMITER:
            tail = kept[pos:]
            kept = kept[:pos]
            quote_kinds = (ATTRIBUTION, QUOTED_ATTRIBUTION, QUOTE, HEADER)
            split = next((k for k, j in enumerate(tail) if kinds[j] in quote_kinds), len(tail))
            signature.extend(tail[:split])
            quoted.extend(tail[split:])
            break

    # 2. Mobile signatures, wherever they stand.
    signature.extend(i for i in kept if kinds[i] == MOBILE)
    kept = [i for i in kept if kinds[i] != MOBILE]

    def kinds_of(indices: list[int]) -> list[str]:
        return [kinds[i] for i in indices]

    # 3. Bottom-posting: the message opens with an attribution (and usually a quote).
    first_content = next((pos for pos, i in enumerate(kept) if kinds[i] != EMPTY), None)
    if first_content is not None and kinds[kept[first_content]] in (ATTRIBUTION, QUOTED_ATTRIBUTION):
        first_text = next((pos for pos, i in enumerate(kept) if kinds[i] == TEXT), None)
        if first_text is None:
            quoted.extend(kept)
            kept = []
        else:
            later = kinds_of(kept[first_text:])
            if QUOTE in later or QUOTED_ATTRIBUTION in later:
                # Interleaved answer: keep the opening quote as context, drop the attribution.
                drop = [i for i in kept[:first_text] if kinds[i] == ATTRIBUTION]
            else:
                drop = kept[:first_text]
            quoted.extend(drop)
            dropped = set(drop)
            kept = [i for i in kept if i not in dropped]

    # 4. Top-posting: the first attribution, separator or header block after the author's text.
    quote_positions = [pos for pos, i in enumerate(kept) if kinds[i] in (QUOTE, QUOTED_ATTRIBUTION)]
    last_quote = quote_positions[-1] if quote_positions else -1
    texts_before = [0]  # texts_before[p] = TEXT lines in kept[:p]
    for i in kept:
        texts_before.append(texts_before[-1] + (kinds[i] == TEXT))
    texts_after_last_quote = texts_before[-1] - texts_before[last_quote + 1]
    for pos, i in enumerate(kept):
        if not texts_before[pos] or not _is_boundary(kinds, i):
            continue
        if last_quote < pos:
            # Nothing quoted after it: Outlook/Gmail top-posting, the original follows unquoted.
            cut = True
        else:
            # A quote follows: top-posting unless the author answers below it at length.
            text_inside_quote_zone = texts_before[last_quote + 1] - texts_before[pos] > 0
            cut = not text_inside_quote_zone and texts_after_last_quote < _INTERLEAVED_MIN_TEXT_LINES
        if cut:
            quoted.extend(kept[pos:])
            kept = kept[:pos]
            break

    # 5. A quote that ends the message, after the author's text.
    if TEXT in kinds_of(kept):
        end = len(kept)
        while end > 0 and kinds[kept[end - 1]] in (QUOTE, QUOTED_ATTRIBUTION, EMPTY, HEADER, ATTRIBUTION):
            end -= 1
        if any(kinds[i] in (QUOTE, QUOTED_ATTRIBUTION) for i in kept[end:]):
            quoted.extend(kept[end:])
            kept = kept[:end]

    # 6. Attribution lines left inside an interleaved answer.
    quoted.extend(i for i in kept if kinds[i] == ATTRIBUTION)
    kept = [i for i in kept if kinds[i] != ATTRIBUTION]

    return Reply(_join(lines, kept), _join(lines, quoted), _join(lines, signature))
