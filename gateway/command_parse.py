"""Reading mail commands: the alias tables in five languages and the line scanners. Pure functions only.

Two kinds of mail carry commands:

* mail to ``LIST-request@`` (or ``LIST+<word>@``): every line of the new text (quotes and signature already
  removed by the caller) may be a member command, with or without a leading ``#`` or ``/``
  (``subscribe``, ``s'abonner``, ``täglich``, ``darse de baja``...). Reading stops at ``end``/``fin``/
  ``ende``/``fine``, after :data:`MAX_REQUEST_LINES` non-empty lines, or at the first paragraph of
  :data:`PROSE_PARAGRAPH_LINES` lines that are not commands (a letter, not a command list: people write
  "Bonjour, pourriez-vous me désabonner ? Merci").
* posts to the list: ``#``-commands on their own lines (``#close solved``, ``#clos résolu``,
  ``#tag transport santé``) or in the subject (``Re: Frontaliers #close solved``).

Words are compared without case or accents, and multi-word aliases match with spaces, hyphens,
underscores or nothing between the words ("no mail", "no-mail", "nomail").

Answers to the mails Passerelle writes (``confirm``, moderation decisions) are read here too.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from passerelle.text import strip_accents

LANGUAGES = ("fr", "en", "de", "it", "es")

# A -request mail is a command list, not a letter: read at most this many non-empty lines.
MAX_REQUEST_LINES = 25
# This many consecutive non-command lines (one paragraph) end the reading of a -request mail.
PROSE_PARAGRAPH_LINES = 3
# Longest alias, in words ("cancelar la suscripcion" ...).
_MAX_ALIAS_WORDS = 4

# canonical name -> language -> aliases. English first in each list: it is the canonical spelling.
MEMBER_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "subscribe": {
        "en": ("subscribe", "join", "sub"),
        "fr": ("abonner", "s'abonner", "abonnement", "inscrire", "s'inscrire", "inscription", "adhérer"),
        "de": ("abonnieren", "anmelden", "anmeldung", "beitreten"),
        "it": ("iscrivi", "iscriviti", "iscrivimi", "iscrivere", "iscrizione", "abbonati", "abbonamento"),
        "es": ("suscribir", "suscribirse", "suscribirme", "suscripción", "alta", "darse de alta", "darme de alta"),
    },
    "unsubscribe": {
        "en": ("unsubscribe", "leave", "signoff", "unsub"),
        "fr": ("désabonner", "se désabonner", "désabonnement", "désinscrire", "se désinscrire", "désinscription",
               "résilier"),
        "de": ("abbestellen", "abmelden", "abmeldung", "austreten", "kündigen"),
        "it": ("disiscrivi", "disiscriviti", "disiscrivimi", "disiscrizione", "cancellami", "annulla iscrizione"),
        "es": ("desuscribir", "desuscribirse", "desuscribirme", "baja", "darse de baja", "darme de baja",
               "cancelar suscripción"),
    },
    "instant": {
        "en": ("instant", "immediate", "realtime", "real time"),
        "fr": ("immédiat", "instantané", "temps réel", "chaque message"),
        "de": ("sofort", "einzeln", "einzelmails", "echtzeit"),
        "it": ("immediato", "istantaneo", "tempo reale"),
        "es": ("inmediato", "instantáneo", "tiempo real"),
    },
    "daily": {
        "en": ("daily", "digest", "daily digest"),
        "fr": ("quotidien", "journalier", "résumé quotidien", "résumé"),
        "de": ("täglich", "tageszusammenfassung", "zusammenfassung", "tägliche zusammenfassung"),
        "it": ("giornaliero", "quotidiano", "riepilogo", "riepilogo giornaliero"),
        "es": ("diario", "resumen", "resumen diario"),
    },
    "weekly": {
        "en": ("weekly", "weekly digest"),
        "fr": ("hebdomadaire", "hebdo", "résumé hebdomadaire"),
        "de": ("wöchentlich", "wochenzusammenfassung", "wöchentliche zusammenfassung"),
        "it": ("settimanale", "riepilogo settimanale"),
        "es": ("semanal", "resumen semanal"),
    },
    "nomail": {
        "en": ("nomail", "no mail", "no email", "pause"),
        "fr": ("aucun mail", "pas de mail", "sans mail", "aucun courriel", "pas de courriel", "suspendre"),
        "de": ("keine mail", "keine mails", "keine e-mails", "pausieren"),
        "it": ("nessuna mail", "nessuna email", "niente mail", "sospendi"),
        "es": ("sin correo", "sin correos", "ningún correo", "pausar"),
    },
    # Delivery back on after bounces disabled it (gateway.bounce_score.reenable_delivery).
    "enable": {
        "en": ("enable", "reenable", "re-enable"),
        "fr": ("réactiver", "reprendre", "réactivation"),
        "de": ("reaktivieren", "fortsetzen", "wieder aktivieren"),
        "it": ("riattiva", "riattivare", "riprendi"),
        "es": ("reactivar", "reanudar"),
    },
    "follow": {
        "en": ("follow", "watch"),
        "fr": ("suivre",),
        "de": ("folgen", "verfolgen", "beobachten"),
        "it": ("segui", "seguire"),
        "es": ("seguir",),
    },
    "mute": {
        "en": ("mute", "unfollow", "ignore"),
        "fr": ("ignorer", "silence", "ne plus suivre"),
        "de": ("stumm", "stummschalten", "ignorieren", "nicht mehr folgen"),
        "it": ("silenzia", "ignora", "non seguire", "smetti di seguire"),
        "es": ("silenciar", "ignorar", "dejar de seguir"),
    },
    "help": {
        "en": ("help", "info", "commands"),
        "fr": ("aide", "aidez-moi"),
        "de": ("hilfe",),
        "it": ("aiuto",),
        "es": ("ayuda",),
    },
    "confirm": {
        "en": ("confirm",),
        "fr": ("confirmer", "confirmation", "je confirme"),
        "de": ("bestätigen", "bestätigung", "ich bestätige"),
        "it": ("conferma", "confermare", "confermo"),
        "es": ("confirmar", "confirmación", "confirmo"),
    },
    # Stops the reading (Mailman folklore: "end" before a signature the client adds without "-- ").
    "end": {
        "en": ("end", "stop", "thanks", "thank you", "thanks a lot"),
        "fr": ("fin", "merci", "merci beaucoup"),
        "de": ("ende", "danke", "vielen dank", "danke schön"),
        "it": ("fine", "grazie", "grazie mille"),
        "es": ("fin", "gracias", "muchas gracias"),
    },
}

# Commands in posts, after "#". Moderators: everything but follow/mute; members: follow and mute.
HASH_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "tag": {
        "en": ("tag", "tags"),
        "fr": ("étiquette", "étiquettes", "étiqueter", "mot-clé", "mots-clés"),
        "de": ("schlagwort", "schlagworte", "stichwort", "stichworte"),
        "it": ("etichetta", "etichette"),
        "es": ("etiqueta", "etiquetas"),
    },
    "category": {
        "en": ("category", "cat"),
        "fr": ("catégorie", "rubrique"),
        "de": ("kategorie", "rubrik"),
        "it": ("categoria", "rubrica"),
        "es": ("categoría", "rubro"),
    },
    "close": {
        "en": ("close", "closed"),
        "fr": ("clos", "clore", "clôturer", "clôture", "clôturé", "fermer", "fermé"),
        "de": ("geschlossen", "schließen", "abschließen", "abgeschlossen"),
        "it": ("chiuso", "chiudi", "chiudere"),
        "es": ("cerrado", "cerrar"),
    },
    "reopen": {
        "en": ("reopen", "reopened"),
        "fr": ("rouvrir", "réouvrir", "rouvert", "réouvert"),
        "de": ("wiedereröffnen", "wiederöffnen", "wiedereröffnet", "öffnen"),
        "it": ("riapri", "riaprire", "riaperto"),
        "es": ("reabrir", "reabierto"),
    },
    "escalate": {
        "en": ("escalate", "escalation"),
        "fr": ("escalader", "escalade", "remonter"),
        "de": ("eskalieren", "eskalation"),
        "it": ("escalare", "segnalare", "inoltrare"),
        "es": ("escalar", "elevar"),
    },
    "merge": {
        "en": ("merge",),
        "fr": ("fusionner", "fusion"),
        "de": ("zusammenführen", "zusammenlegen", "verbinden"),
        "it": ("unisci", "unire", "fondi"),
        "es": ("fusionar", "unir"),
    },
    "split": {
        "en": ("split",),
        "fr": ("scinder", "séparer", "diviser"),
        "de": ("teilen", "abtrennen", "aufteilen"),
        "it": ("dividi", "separa", "dividere"),
        "es": ("dividir", "separar"),
    },
    "sheet": {
        "en": ("sheet",),
        "fr": ("fiche",),
        "de": ("steckbrief", "merkblatt", "blatt"),
        "it": ("scheda",),
        "es": ("ficha",),
    },
    "follow": MEMBER_ALIASES["follow"],
    "mute": MEMBER_ALIASES["mute"],
}
MEMBER_HASH_COMMANDS = frozenset({"follow", "mute"})
MODERATOR_COMMANDS = frozenset(HASH_ALIASES) - MEMBER_HASH_COMMANDS

OUTCOME_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "solved": {
        "en": ("solved", "resolved", "fixed", "solution"),
        "fr": ("résolu", "résolue", "réglé", "solution trouvée"),
        "de": ("gelöst", "erledigt", "behoben"),
        "it": ("risolto", "risolta"),
        "es": ("resuelto", "resuelta", "solucionado"),
    },
    "study-needed": {
        "en": ("study-needed", "study needed", "needs study", "study", "to study"),
        "fr": ("étude", "à étudier", "étude nécessaire", "étude requise", "à l'étude"),
        "de": ("prüfung", "zu prüfen", "prüfung nötig", "studie", "studie nötig"),
        "it": ("studio", "da studiare", "studio necessario"),
        "es": ("estudio", "a estudiar", "estudio necesario"),
    },
    "legal-impossibility": {
        "en": ("legal-impossibility", "legal impossibility", "legally impossible", "impossible"),
        "fr": ("impossibilité juridique", "juridiquement impossible", "impossibilité légale"),
        "de": ("rechtlich unmöglich", "unmöglich", "rechtliche unmöglichkeit"),
        "it": ("impossibilità giuridica", "impossibile", "giuridicamente impossibile"),
        "es": ("imposibilidad jurídica", "imposible", "jurídicamente imposible"),
    },
    "duplicate": {
        "en": ("duplicate", "dup", "dupe"),
        "fr": ("doublon", "duplicata"),
        "de": ("duplikat", "doppelt", "dublette"),
        "it": ("duplicato", "doppione"),
        "es": ("duplicado",),
    },
    "no-action": {
        "en": ("no-action", "no action", "none", "wontfix"),
        "fr": ("sans suite", "classé sans suite", "aucune action", "classé"),
        "de": ("keine aktion", "keine maßnahme", "ohne folge", "ohne folgen"),
        "it": ("nessuna azione", "archiviato", "senza seguito"),
        "es": ("sin acción", "ninguna acción", "archivado", "sin seguimiento"),
    },
}

LEVEL_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "national": {
        "en": ("national", "national level"),
        "fr": ("nationale", "niveau national", "état"),
        "de": ("bund", "bundesebene", "staatlich"),
        "it": ("nazionale", "livello nazionale"),
        "es": ("nacional", "nivel nacional"),
    },
    "european": {
        "en": ("european", "europe", "eu", "european level"),
        "fr": ("européen", "européenne", "niveau européen"),
        "de": ("europäisch", "eu-ebene", "europaebene"),
        "it": ("europeo", "europea", "livello europeo"),
        "es": ("europea", "nivel europeo"),
    },
}

SHEET_KIND_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "obstacle": {
        "en": ("obstacle", "obstacle/solution", "problem"),
        "fr": ("obstacle/solution", "problème"),
        "de": ("hindernis", "hindernis/lösung"),
        "it": ("ostacolo", "ostacolo/soluzione"),
        "es": ("obstáculo", "obstáculo/solución"),
    },
    "practice": {
        "en": ("practice", "good practice", "best practice"),
        "fr": ("pratique", "bonne pratique"),
        "de": ("praxis", "gute praxis", "praxisbeispiel"),
        "it": ("pratica", "buona pratica", "buone pratiche"),
        "es": ("práctica", "buena práctica"),
    },
}

DECISION_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "approve": {
        "en": ("approve", "approved", "accept", "ok", "yes", "post"),
        "fr": ("approuver", "approuvé", "accepter", "accepté", "valider", "oui", "publier"),
        "de": ("genehmigen", "genehmigt", "freigeben", "annehmen", "akzeptieren", "ja", "veröffentlichen"),
        "it": ("approva", "approvare", "approvato", "accetta", "accettare", "sì", "pubblica"),
        "es": ("aprobar", "aprobado", "aceptar", "sí", "publicar"),
    },
    "reject": {
        "en": ("reject", "rejected", "refuse", "deny", "no"),
        "fr": ("rejeter", "rejeté", "refuser", "refusé", "non"),
        "de": ("ablehnen", "abgelehnt", "zurückweisen", "nein"),
        "it": ("rifiuta", "rifiutare", "rifiutato", "respingi"),
        "es": ("rechazar", "rechazado", "denegar"),
    },
    "discard": {
        "en": ("discard", "discarded", "drop", "delete", "spam", "trash"),
        "fr": ("supprimer", "jeter", "poubelle", "écarter"),
        "de": ("verwerfen", "löschen", "wegwerfen"),
        "it": ("scarta", "scartare", "elimina", "cestina"),
        "es": ("descartar", "eliminar", "borrar"),
    },
}

# Tokens Passerelle puts in its reply addresses and subjects (secrets.token_hex(12)).
TOKEN_RE = re.compile(r"(?<![0-9a-f])([0-9a-f]{24})(?![0-9a-f])")
_WORD_SPLIT = re.compile(r"[\s,;]+")
_SEPARATORS = re.compile(r"[\s\-_]+")
# Punctuation people put around a command word ("subscribe.", "aide ?", "«clos»").
_EDGE_PUNCT = "\"'«»“”‘’.,;:!¡¿()[]<>*_"
_HASH_IN_SUBJECT = re.compile(r"(?:^|(?<=\s))#(?=\w)")
_SIGNATURE_LINE = re.compile(r"^--\s*$")


def normalize_word(word: str) -> str:
    """Case- and accent-insensitive key of a word ("Désabonner" -> "desabonner", "’" -> "'")."""
    word = word.replace("’", "'").replace("ß", "ss")
    return strip_accents(word).lower().strip(_EDGE_PUNCT.replace("'", "").replace("?", ""))


def _variants(alias: str) -> set[str]:
    words = [normalize_word(w) for w in re.split(r"[\s\-_]+", alias) if w]
    if not words:
        return set()
    return {sep.join(words) for sep in (" ", "-", "_", "")}


@dataclass(frozen=True)
class AliasTable:
    """Normalised alias -> (canonical name, language or None when the word is shared by several)."""

    entries: Mapping[str, tuple[str, str | None]]

    @classmethod
    def build(cls, table: Mapping[str, Mapping[str, Iterable[str]]]) -> AliasTable:
        entries: dict[str, tuple[str, str | None]] = {}
        for name, by_language in table.items():
            for language, aliases in by_language.items():
                for alias in (name, *aliases) if language == "en" else aliases:
                    for key in _variants(alias):
                        known = entries.get(key)
                        if known is None:
                            entries[key] = (name, language)
                        elif known[0] == name and known[1] != language:
                            entries[key] = (name, None)
                        elif known[0] != name:
                            raise ValueError(f"alias {alias!r} means both {known[0]!r} and {name!r}")
        return cls(entries)

    def match(self, words: list[str]) -> tuple[str, str | None, int] | None:
        """Longest alias at the start of ``words``: (name, language, number of words used)."""
        keys = [normalize_word(w) for w in words[:_MAX_ALIAS_WORDS]]
        for n in range(len(keys), 0, -1):
            joined = " ".join(keys[:n])
            for candidate in (_SEPARATORS.sub(" ", joined), _SEPARATORS.sub("", joined)):
                hit = self.entries.get(candidate)
                if hit:
                    return hit[0], hit[1], n
        return None

    def lookup(self, text: str) -> tuple[str, str | None] | None:
        """The whole of ``text`` as one alias."""
        words = _words(text)
        hit = self.match(words)
        if hit and hit[2] == len(words):
            return hit[0], hit[1]
        return None


@cache
def member_table() -> AliasTable:
    return AliasTable.build(MEMBER_ALIASES)


@cache
def hash_table() -> AliasTable:
    return AliasTable.build(HASH_ALIASES)


@cache
def outcome_table() -> AliasTable:
    return AliasTable.build(OUTCOME_ALIASES)


@cache
def level_table() -> AliasTable:
    return AliasTable.build(LEVEL_ALIASES)


@cache
def sheet_table() -> AliasTable:
    return AliasTable.build(SHEET_KIND_ALIASES)


@cache
def decision_table() -> AliasTable:
    return AliasTable.build(DECISION_ALIASES)


def _words(text: str) -> list[str]:
    return [w for w in _WORD_SPLIT.split(text.strip()) if w and w.strip(_EDGE_PUNCT)]


def _tail(text: str, used: int) -> str:
    """``text`` after its first ``used`` words (as counted by :func:`_words`), punctuation kept."""
    count = 0
    for match in re.finditer(r"[^\s,;]+", text):
        if not match.group().strip(_EDGE_PUNCT):
            continue
        count += 1
        if count == used:
            return text[match.end():].strip(" \t,;:-")
    return "" if used else text.strip()


@dataclass(frozen=True)
class Command:
    """One recognised command.

    ``params`` holds the checked arguments (``outcome``, ``level``, ``note``, ``tags``, ``name``, ``topic``,
    ``kind``, ``token``); ``error`` is a phrase key (see :func:`phrase`) when the arguments are wrong,
    with ``error_arg`` as the offending text.
    """

    name: str
    line: str
    language: str | None = None
    args: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    error: str | None = None
    error_arg: str = ""

    @property
    def is_moderator_command(self) -> bool:
        return self.name in MODERATOR_COMMANDS

    def key(self) -> tuple[str, tuple[str, ...]]:
        return self.name, tuple(normalize_word(a) for a in self.args)

    def as_payload(self) -> dict[str, Any]:
        """JSON-serialisable form (kept in a PendingConfirmation until the sender confirms)."""
        return {"name": self.name, "line": self.line, "language": self.language, "args": list(self.args),
                "params": dict(self.params), "error": self.error, "error_arg": self.error_arg}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Command:
        return cls(name=str(data["name"]), line=str(data.get("line", "")), language=data.get("language"),
                   args=tuple(str(a) for a in data.get("args", ())), params=dict(data.get("params") or {}),
                   error=data.get("error"), error_arg=str(data.get("error_arg", "")))


# ---------------------------------------------------------------------------------------------- arguments


def parse_topic_ref(text: str, base_url: str = "") -> int | None:
    """A topic number from "123", "#123", "n°123", "t123" or an archive URL (".../topics/123-slug#m4")."""
    text = text.strip().strip(_EDGE_PUNCT)
    if not text:
        return None
    match = re.fullmatch(r"(?:#|n°|no\.?|nr\.?|t)?\s*(\d{1,12})", text, re.IGNORECASE)
    if match:
        return int(match.group(1))
    if re.match(r"^[a-z][a-z0-9+.-]*://", text, re.IGNORECASE) or (base_url and text.startswith(base_url)):
        path = re.sub(r"^[a-z][a-z0-9+.-]*://[^/]*", "", text, flags=re.IGNORECASE)
        path = path.split("?", 1)[0].split("#", 1)[0]
        for segment in path.split("/"):
            seg = re.fullmatch(r"(\d{1,12})(?:-[^/]*)?", segment)
            if seg:
                return int(seg.group(1))
    return None


def _checked(name: str, args: list[str], line: str, language: str | None, rest: str | None = None) -> Command:
    """Check the arguments of a command and build it (``rest``: the arguments as written)."""
    params: dict[str, Any] = {}
    error: str | None = None
    error_arg = ""
    rest = " ".join(args) if rest is None else rest
    if name == "tag":
        tags = []
        for word in args:
            tag = normalize_tag(word)
            if tag:
                tags.append(tag)
        if not tags:
            error = "error.tag_missing"
        params["tags"] = tags
    elif name == "category":
        category = rest.strip().strip(_EDGE_PUNCT + "#").strip()
        if not category:
            error = "error.category_missing"
        elif len(category) > 120:
            error, error_arg = "error.category_too_long", category[:40]
        params["name"] = category
    elif name == "close":
        if args:
            hit = outcome_table().match(args)
            if hit is None:
                error, error_arg = "error.outcome_unknown", rest[:60]
            else:
                params["outcome"] = hit[0]
                params["note"] = _tail(rest, hit[2])
        else:
            params["outcome"] = None
    elif name == "escalate":
        hit = level_table().match(args) if args else None
        if hit is None:
            error, error_arg = ("error.level_unknown" if args else "error.level_missing"), rest[:60]
        else:
            params["level"] = hit[0]
            params["note"] = _tail(rest, hit[2])
    elif name == "merge":
        target = parse_topic_ref(args[0]) if args else None
        if target is None:
            error, error_arg = ("error.merge_target" if args else "error.merge_missing"), rest[:80]
        params["topic"] = target
    elif name == "sheet":
        hit = sheet_table().match(args) if args else None
        if hit is None:
            error, error_arg = ("error.sheet_kind_unknown" if args else "error.sheet_kind_missing"), rest[:60]
        else:
            params["kind"] = hit[0]
    elif name in ("follow", "mute") and args:
        target = parse_topic_ref(args[0])
        if target is None:
            error, error_arg = "error.topic_ref", rest[:80]
        params["topic"] = target
    elif name == "confirm":
        match = TOKEN_RE.search(rest.lower())
        params["token"] = match.group(1) if match else None
    return Command(name=name, line=line, language=language, args=tuple(args), params=params, error=error,
                   error_arg=error_arg)


def normalize_tag(word: str) -> str:
    """A tag as stored: lower case, no spaces or edge punctuation, at most 60 characters ("#Santé," -> "santé")."""
    return word.strip(_EDGE_PUNCT + "#").lower().replace("’", "'")[:60]


# ---------------------------------------------------------------------------------------------- lines


def parse_member_line(line: str) -> Command | None:
    """A member command line of a -request mail ("subscribe", "#follow 12", "/aide"), or None."""
    text = line.strip()
    if not text:
        return None
    if text[0] in "#/" and len(text) > 1 and text[1] != " ":
        text = text[1:]
    words = _words(text)
    if not words:
        return None
    hit = member_table().match(words)
    if hit is None:
        return None
    name, language, used = hit
    if name == "end" and used != len(words):
        # "Merci de me désabonner" is a request, not the end of the commands.
        return None
    return _checked(name, words[used:], line.strip(), language, _tail(text, used))


def parse_hash_line(line: str) -> Command | None:
    """A ``#command args`` line of a post (moderator commands, #follow, #mute), or None."""
    text = line.strip()
    if len(text) < 2 or text[0] != "#" or text[1].isspace() or text[1] == "#":
        return None
    words = _words(text[1:])
    if not words:
        return None
    hit = hash_table().match(words)
    if hit is None:
        return None
    name, language, used = hit
    return _checked(name, words[used:], text, language, _tail(text[1:], used))


def is_hash_word_line(line: str) -> bool:
    """"#something ..." on its own line (recognised or not)."""
    text = line.strip()
    return len(text) > 1 and text[0] == "#" and (text[1].isalpha())


# ---------------------------------------------------------------------------------------------- -request mail


@dataclass(frozen=True)
class RequestScan:
    commands: tuple[Command, ...]
    # Non-empty lines that are not commands (reported once, not per line).
    unknown: tuple[str, ...]
    # True when reading stopped before the end (too many lines, or a paragraph of prose).
    truncated: bool

    @property
    def language(self) -> str | None:
        return guess_language(self.commands)


def scan_request(
    subject: str, body: str, *, max_lines: int = MAX_REQUEST_LINES, prose_lines: int = PROSE_PARAGRAPH_LINES
) -> RequestScan:
    """Commands of a -request mail: the subject (reply prefixes already removed), then the new text.

    An unrecognised subject is not reported (people write "Question" or "Hello"): only body lines are.
    Duplicate commands (same command in the subject and the body) are kept once.
    """
    commands: list[Command] = []
    seen: set[tuple[str, tuple[str, ...]]] = set()
    unknown: list[str] = []
    truncated = False

    def add(cmd: Command) -> None:
        if cmd.key() not in seen:
            seen.add(cmd.key())
            commands.append(cmd)

    subject_cmd = parse_member_line(subject) if subject else None
    # A subject is free text more often than a command: it counts only when it reads as a complete, valid
    # command ("Confirmation of Booking" is not a confirmation without its token).
    if (subject_cmd is not None and subject_cmd.name != "end" and subject_cmd.error is None
            and (subject_cmd.name != "confirm" or subject_cmd.params.get("token"))):
        add(subject_cmd)
    read = 0
    prose_run = 0
    lines = body.splitlines()
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not line:
            prose_run = 0
            continue
        if _SIGNATURE_LINE.match(raw.rstrip()) or raw.startswith("-- "):
            break
        if line.startswith(">"):
            continue
        read += 1
        if read > max_lines:
            truncated = True
            break
        cmd = parse_member_line(line)
        if cmd is not None:
            prose_run = 0
            if cmd.name == "end":
                break
            add(cmd)
            continue
        unknown.append(line)
        prose_run += 1
        if prose_run >= prose_lines:
            # A letter rather than a command list: stop, and do not count what follows as unknown.
            truncated = any(ln.strip() and not ln.startswith(">") for ln in lines[index + 1:])
            break
    return RequestScan(tuple(commands), tuple(unknown), truncated)


def guess_language(commands: Iterable[Command]) -> str | None:
    """The language most of the commands were written in (None when every word was language-neutral)."""
    counts: dict[str, int] = {}
    for cmd in commands:
        if cmd.language:
            counts[cmd.language] = counts.get(cmd.language, 0) + 1
    if not counts:
        return None
    return max(counts, key=lambda lang: (counts[lang], -LANGUAGES.index(lang) if lang in LANGUAGES else -99))


def address_command(word: str) -> Command | None:
    """The command named by a sub-address: ``forum+subscribe@``, ``forum+digest@``, ``forum+abonner@``."""
    word = word.replace("_", " ").replace("-", " ").replace(".", " ")
    hit = member_table().lookup(word)
    if hit is None or hit[0] in ("end", "confirm"):
        return None
    return _checked(hit[0], [], f"+{word}", hit[1])


# ---------------------------------------------------------------------------------------------- posts


@dataclass(frozen=True)
class PostScan:
    # Every recognised command: those of the subject first, then those of the text.
    commands: tuple[Command, ...]
    # The ones found in the subject.
    subject_commands: tuple[Command, ...]
    # The lines of the new text that are commands (exactly as they appear, without the line break).
    command_lines: tuple[str, ...]
    # "#word" lines next to recognised commands that are not commands themselves (reported to moderators).
    unknown_lines: tuple[str, ...]
    # The subject without its commands (None when it had none).
    cleaned_subject: str | None

    @property
    def has_commands(self) -> bool:
        return bool(self.commands or self.unknown_lines)


def scan_subject(subject: str) -> tuple[list[Command], str | None]:
    """``#``-commands in a subject ("Re: Frontaliers #close solved #tag emploi") and the subject without them."""
    if "#" not in subject:
        return [], None
    starts = [m.start() for m in _HASH_IN_SUBJECT.finditer(subject)]
    if not starts:
        return [], None
    commands: list[Command] = []
    keep: list[str] = [subject[: starts[0]]]
    for i, start in enumerate(starts):
        end = starts[i + 1] if i + 1 < len(starts) else len(subject)
        chunk = subject[start:end]
        cmd = parse_hash_line(chunk)
        if cmd is None:
            keep.append(chunk)
        else:
            commands.append(cmd)
    if not commands:
        return [], None
    cleaned = re.sub(r"\s{2,}", " ", "".join(keep)).strip()
    return commands, cleaned


def scan_post(subject: str, new_text: str) -> PostScan:
    """The ``#``-commands of a post: in the subject, and on their own lines in the new text.

    ``new_text`` is the author's own text (quotes and signature removed by passerelle.mail.quotes). The
    leading block of "#word" lines counts as a command block when it holds at least one recognised
    command: its other "#word" lines are reported as unknown commands. Elsewhere only recognised command
    lines count, so a hashtag in prose ("#Luxembourg") is left alone.
    """
    subject_commands, cleaned = scan_subject(subject)
    commands = list(subject_commands)
    command_lines: list[str] = []
    unknown: list[str] = []
    lines = new_text.splitlines()
    top_block: list[str] = []
    for raw in lines:
        if not raw.strip():
            continue
        if is_hash_word_line(raw):
            top_block.append(raw)
            continue
        break
    block_has_command = any(parse_hash_line(raw) is not None for raw in top_block)
    for raw in lines:
        if raw.startswith(">"):
            continue
        cmd = parse_hash_line(raw)
        if cmd is not None:
            commands.append(cmd)
            command_lines.append(raw)
        elif block_has_command and raw in top_block:
            unknown.append(raw.strip())
            command_lines.append(raw)
    return PostScan(tuple(commands), tuple(subject_commands), tuple(command_lines), tuple(unknown), cleaned)


def strip_lines(text: str, lines: Iterable[str]) -> str:
    """``text`` without the first occurrence of each of ``lines`` (command lines), blank lines at the top
    squeezed away."""
    remaining = [line.strip() for line in lines]
    out: list[str] = []
    for raw in text.splitlines(keepends=True):
        bare = raw.strip()
        if bare and bare in remaining:
            remaining.remove(bare)
            continue
        out.append(raw)
    while out and not out[0].strip():
        out.pop(0)
    return "".join(out)


# ---------------------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Decision:
    """A moderator's answer to a held message: approve, reject (with a reason) or discard."""

    action: str
    reason: str
    language: str | None
    line: str


def parse_decision(new_text: str, subject: str = "", *, max_lines: int = 10) -> Decision | None:
    """The first decision line of a moderator's reply ("approve", "rejeter hors sujet", "#verwerfen").

    The subject is only read when the text holds no decision (a reply with an empty body and
    "approve" typed in the subject).
    """
    candidates = [ln for ln in new_text.splitlines() if ln.strip() and not ln.startswith(">")][:max_lines]
    if subject:
        candidates.append(subject)
    for raw in candidates:
        text = raw.strip()
        if text[:1] in "#/":
            text = text[1:]
        words = _words(text)
        if not words:
            continue
        hit = decision_table().match(words)
        if hit is not None:
            return Decision(hit[0], _tail(text, hit[2]), hit[1], raw.strip())
    return None


def find_token(*texts: str) -> str | None:
    """The first Passerelle token (24 hex digits) in any of ``texts`` (subject, In-Reply-To, body)."""
    for text in texts:
        if text:
            match = TOKEN_RE.search(text.lower())
            if match:
                return match.group(1)
    return None


# ---------------------------------------------------------------------------------------------- phrases

PHRASES_FILE = Path(__file__).resolve().parent / "templates" / "phrases.toml"


@cache
def _phrases() -> dict[str, dict[str, str]]:
    """{"mode.daily": {"fr": ..., "en": ...}}: TOML's dotted table names ([mode.daily]) flattened."""
    with PHRASES_FILE.open("rb") as fh:
        data = tomllib.load(fh)
    flat: dict[str, dict[str, str]] = {}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        leaves = {k: v for k, v in table.items() if isinstance(v, str)}
        if leaves:
            flat[prefix] = leaves
        for key, value in table.items():
            if isinstance(value, dict):
                walk(f"{prefix}.{key}" if prefix else key, value)

    walk("", data)
    return flat


def phrase(key: str, language: str, **fields: Any) -> str:
    """One localised sentence of a command reply (gateway/templates/phrases.toml), English as fallback."""
    entry = _phrases().get(key)
    if entry is None:
        raise KeyError(f"no phrase {key!r} in {PHRASES_FILE.name}")
    text = entry.get(language) or entry.get("en") or entry["fr"]
    return text.format(**fields)


def phrase_keys() -> list[str]:
    return sorted(_phrases())


def aliases_for(name: str, language: str, table: Mapping[str, Mapping[str, Iterable[str]]] | None = None) -> list[str]:
    """The aliases of ``name`` in ``language`` (for help texts), English canonical name last if absent."""
    source = table if table is not None else (MEMBER_ALIASES if name in MEMBER_ALIASES else HASH_ALIASES)
    words = list(source.get(name, {}).get(language, ()))
    if language == "en" and name not in words:
        words.insert(0, name)
    return words
