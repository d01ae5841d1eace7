"""gateway.command_parse: every alias of every command in every language, the scanners, and garbage."""

from __future__ import annotations

import re
import string

import pytest

from gateway import command_parse as cp
from gateway.templates import TEMPLATE_DIR, available_languages, render

LANGS = ("fr", "en", "de", "it", "es")


def _all(table: dict[str, dict[str, tuple[str, ...]]]) -> list[tuple[str, str, str]]:
    return [(name, lang, alias) for name, by_lang in table.items() for lang, aliases in by_lang.items()
            for alias in aliases]


# ------------------------------------------------------------------------------------------ alias tables


def test_every_command_has_aliases_in_the_five_languages() -> None:
    for table in (cp.MEMBER_ALIASES, cp.HASH_ALIASES, cp.OUTCOME_ALIASES, cp.LEVEL_ALIASES, cp.DECISION_ALIASES,
                  cp.SHEET_KIND_ALIASES):
        for name, by_lang in table.items():
            assert set(by_lang) == set(LANGS), f"{name}: languages {sorted(by_lang)}"
            assert all(by_lang[lang] for lang in LANGS), name


def test_alias_tables_build_without_ambiguity() -> None:
    # Building raises when one word would mean two commands.
    for build in (cp.member_table, cp.hash_table, cp.outcome_table, cp.level_table, cp.decision_table,
                  cp.sheet_table):
        assert len(build().entries) > 20


@pytest.mark.parametrize(("name", "lang", "alias"), _all(cp.MEMBER_ALIASES))
def test_member_alias(name: str, lang: str, alias: str) -> None:
    for line in (alias, alias.upper(), f"  {alias}  ", f"#{alias}", f"/{alias}", f"{alias}."):
        cmd = cp.parse_member_line(line)
        assert cmd is not None, line
        assert cmd.name == name, line
        assert cmd.language in (lang, None)


@pytest.mark.parametrize(("name", "lang", "alias"), _all(cp.HASH_ALIASES))
def test_hash_alias(name: str, lang: str, alias: str) -> None:
    cmd = cp.parse_hash_line(f"#{alias}")
    assert cmd is not None
    assert cmd.name == name
    assert cmd.language in (lang, None)
    assert cp.parse_hash_line(alias) is None, "a # command needs its #"
    assert cp.parse_hash_line(f"# {alias}") is None, "'# word' is a heading, not a command"


@pytest.mark.parametrize(("outcome", "lang", "alias"), _all(cp.OUTCOME_ALIASES))
def test_close_with_every_outcome_alias(outcome: str, lang: str, alias: str) -> None:
    for close in ("close", "clos", "geschlossen", "chiuso", "cerrado"):
        cmd = cp.parse_hash_line(f"#{close} {alias}")
        assert cmd is not None and cmd.name == "close"
        assert cmd.error is None, cmd
        assert cmd.params["outcome"] == outcome


@pytest.mark.parametrize(("level", "lang", "alias"), _all(cp.LEVEL_ALIASES))
def test_escalate_with_every_level_alias(level: str, lang: str, alias: str) -> None:
    cmd = cp.parse_hash_line(f"#escalate {alias} la préfecture ne répond pas")
    assert cmd is not None and cmd.error is None
    assert cmd.params["level"] == level
    assert cmd.params["note"] == "la préfecture ne répond pas"


@pytest.mark.parametrize(("kind", "lang", "alias"), _all(cp.SHEET_KIND_ALIASES))
def test_sheet_kinds(kind: str, lang: str, alias: str) -> None:
    cmd = cp.parse_hash_line(f"#fiche {alias}")
    assert cmd is not None and cmd.error is None and cmd.params["kind"] == kind


@pytest.mark.parametrize(("action", "lang", "alias"), _all(cp.DECISION_ALIASES))
def test_decisions(action: str, lang: str, alias: str) -> None:
    decision = cp.parse_decision(f"{alias} hors sujet, merci\n\n> Le 2 nov. a écrit :\n> approve")
    assert decision is not None and decision.action == action
    assert decision.reason == "hors sujet, merci"


def test_multiword_aliases_with_hyphens_underscores_or_nothing() -> None:
    for line in ("no mail", "no-mail", "no_mail", "nomail", "NoMail", "pas de mail", "keine Mails", "Sin correo",
                 "nessuna mail", "keine E-Mails"):
        cmd = cp.parse_member_line(line)
        assert cmd is not None and cmd.name == "nomail", line
    assert cp.parse_member_line("darse de baja").name == "unsubscribe"  # type: ignore[union-attr]
    assert cp.parse_member_line("Se désabonner").name == "unsubscribe"  # type: ignore[union-attr]
    assert cp.parse_member_line("s’abonner").name == "subscribe"  # type: ignore[union-attr]  # typographic apostrophe


def test_accents_and_case_do_not_matter() -> None:
    assert cp.parse_member_line("DESABONNER").name == "unsubscribe"  # type: ignore[union-attr]
    assert cp.parse_member_line("taglich").name == "daily"  # type: ignore[union-attr]
    assert cp.parse_member_line("Wöchentlich").name == "weekly"  # type: ignore[union-attr]
    assert cp.parse_hash_line("#SCHLIESSEN gelöst").params["outcome"] == "solved"  # type: ignore[union-attr]
    assert cp.parse_hash_line("#Catégorie Santé").params["name"] == "Santé"  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------ arguments


def test_close_arguments() -> None:
    cmd = cp.parse_hash_line("#clos résolu, bravo à tous !")
    assert cmd is not None and cmd.params == {"outcome": "solved", "note": "bravo à tous !"}
    cmd = cp.parse_hash_line("#close legal impossibility (see art. 4)")
    assert cmd is not None and cmd.params["outcome"] == "legal-impossibility"
    assert cmd.params["note"] == "(see art. 4)"
    cmd = cp.parse_hash_line("#close")
    assert cmd is not None and cmd.error is None and cmd.params["outcome"] is None
    cmd = cp.parse_hash_line("#close maybe-later")
    assert cmd is not None and cmd.error == "error.outcome_unknown" and cmd.error_arg == "maybe-later"


def test_tag_category_merge_arguments() -> None:
    cmd = cp.parse_hash_line("#tag Transport, santé; #Emploi -fiscalité")
    assert cmd is not None and cmd.params["tags"] == ["transport", "santé", "emploi", "-fiscalité"]
    assert cp.parse_hash_line("#tag").error == "error.tag_missing"  # type: ignore[union-attr]
    assert cp.parse_hash_line("#category").error == "error.category_missing"  # type: ignore[union-attr]
    assert cp.parse_hash_line("#category " + "x" * 200).error == "error.category_too_long"  # type: ignore[union-attr]
    cmd = cp.parse_hash_line("#rubrique Santé & sécurité sociale")
    assert cmd is not None and cmd.params["name"] == "Santé & sécurité sociale"
    assert cp.parse_hash_line("#merge 42").params["topic"] == 42  # type: ignore[union-attr]
    assert cp.parse_hash_line("#fusionner https://archive.test/topics/42-double-imposition#m3").params["topic"] == 42  # type: ignore[union-attr]
    assert cp.parse_hash_line("#merge").error == "error.merge_missing"  # type: ignore[union-attr]
    assert cp.parse_hash_line("#merge the other one").error == "error.merge_target"  # type: ignore[union-attr]
    assert cp.parse_hash_line("#escalate").error == "error.level_missing"  # type: ignore[union-attr]
    assert cp.parse_hash_line("#escalate mars").error == "error.level_unknown"  # type: ignore[union-attr]
    assert cp.parse_hash_line("#sheet").error == "error.sheet_kind_missing"  # type: ignore[union-attr]
    assert cp.parse_hash_line("#sheet poem").error == "error.sheet_kind_unknown"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("123", 123), ("#123", 123), ("n°123", 123), ("T123", 123), ("no. 7", 7), ("nr.7", 7),
        ("http://archive.test/topics/55", 55), ("https://x.example/forum/t/55-slug?page=2#m9", 55),
        ("https://x.example/search?q=12", None), ("abc", None), ("", None), ("12abc", None),
        ("9" * 40, None),
    ],
)
def test_parse_topic_ref(text: str, expected: int | None) -> None:
    assert cp.parse_topic_ref(text) == expected


# ------------------------------------------------------------------------------------------ -request scans


def test_scan_request_subject_and_body() -> None:
    scan = cp.scan_request("abonnement", "quotidien\nsuivre 12\n\nfoo bar\n")
    assert [c.name for c in scan.commands] == ["subscribe", "daily", "follow"]
    assert scan.commands[2].params["topic"] == 12
    assert scan.unknown == ("foo bar",)
    assert scan.language == "fr"
    assert not scan.truncated


def test_scan_request_unknown_subject_is_not_reported() -> None:
    scan = cp.scan_request("Question about the forum", "help\n")
    assert [c.name for c in scan.commands] == ["help"]
    assert scan.unknown == ()


def test_scan_request_same_command_twice_runs_once() -> None:
    scan = cp.scan_request("unsubscribe", "unsubscribe\nUNSUBSCRIBE\n")
    assert [c.name for c in scan.commands] == ["unsubscribe"]


def test_scan_request_stops_at_end_signature_and_prose() -> None:
    assert [c.name for c in cp.scan_request("", "daily\nend\nweekly\n").commands] == ["daily"]
    assert [c.name for c in cp.scan_request("", "daily\nmerci\nweekly\n").commands] == ["daily"]
    assert [c.name for c in cp.scan_request("", "daily\n-- \nweekly\nJean\n").commands] == ["daily"]
    letter = ("Bonjour,\nJe souhaiterais recevoir un résumé.\nPourriez-vous faire le nécessaire ?\n"
              "weekly\nCordialement\n")
    scan = cp.scan_request("", letter)
    assert scan.commands == ()
    assert len(scan.unknown) == 3
    assert scan.truncated


def test_scan_request_merci_de_is_not_the_end() -> None:
    # "Merci de me désabonner" is a polite request, not "end" (it is not understood, but reading goes on).
    scan = cp.scan_request("", "Merci de me désabonner\ndésabonner\n")
    assert [c.name for c in scan.commands] == ["unsubscribe"]
    assert scan.unknown == ("Merci de me désabonner",)


def test_scan_request_reads_at_most_max_lines() -> None:
    body = "\n".join(["help"] + ["daily"] * 5 + ["weekly"] * 40)
    scan = cp.scan_request("", body, max_lines=10)
    assert scan.truncated
    assert [c.name for c in scan.commands] == ["help", "daily", "weekly"]


def test_scan_request_ignores_quoted_lines() -> None:
    scan = cp.scan_request("", "nomail\n> unsubscribe\n>> subscribe\n")
    assert [c.name for c in scan.commands] == ["nomail"]
    assert scan.unknown == ()


def test_address_command() -> None:
    assert cp.address_command("subscribe").name == "subscribe"  # type: ignore[union-attr]
    assert cp.address_command("digest").name == "daily"  # type: ignore[union-attr]
    assert cp.address_command("nomail").name == "nomail"  # type: ignore[union-attr]
    assert cp.address_command("no-mail").name == "nomail"  # type: ignore[union-attr]
    assert cp.address_command("abonner").language == "fr"  # type: ignore[union-attr]
    assert cp.address_command("hilfe").name == "help"  # type: ignore[union-attr]
    assert cp.address_command("end") is None
    assert cp.address_command("confirm") is None
    assert cp.address_command("xyzzy") is None


# ------------------------------------------------------------------------------------------ post scans


def test_scan_post_top_block_and_text() -> None:
    text = "#clos résolu\n#tagg transport\n#tag emploi\n\nMerci à tous pour vos réponses.\n#Luxembourg reste à part.\n"
    scan = cp.scan_post("Re: Frontaliers", text)
    assert [c.name for c in scan.commands] == ["close", "tag"]
    assert scan.unknown_lines == ("#tagg transport",)
    assert scan.command_lines == ("#clos résolu", "#tagg transport", "#tag emploi")
    assert scan.cleaned_subject is None
    remaining = cp.strip_lines(text, scan.command_lines)
    assert remaining == "Merci à tous pour vos réponses.\n#Luxembourg reste à part.\n"


def test_scan_post_hashtags_in_prose_are_left_alone() -> None:
    scan = cp.scan_post("Re: x", "Voir #Luxembourg et #Saarland.\n#Interreg\nmerci\n")
    assert scan.commands == () and scan.unknown_lines == () and not scan.has_commands


def test_scan_post_command_line_at_the_end() -> None:
    scan = cp.scan_post("Re: x", "C'est réglé avec la caisse.\n\n#close solved\n")
    assert [c.name for c in scan.commands] == ["close"]


def test_scan_post_quoted_commands_are_ignored() -> None:
    scan = cp.scan_post("Re: x", "Je suis d'accord.\n> #close solved\n")
    assert scan.commands == ()


def test_scan_post_subject_commands() -> None:
    scan = cp.scan_post("Re: Frontaliers #close solved #tag emploi", "")
    assert [c.name for c in scan.commands] == ["close", "tag"]
    assert scan.subject_commands == scan.commands
    assert scan.cleaned_subject == "Re: Frontaliers"
    scan = cp.scan_post("Re: Problème avec C# et #Luxembourg", "")
    assert scan.commands == () and scan.cleaned_subject is None


def test_strip_lines_keeps_everything_else() -> None:
    text = "  #close solved\r\nhello\r\n#close solved\r\n"
    assert cp.strip_lines(text, ["#close solved"]) == "hello\r\n#close solved\r\n"


def test_find_token() -> None:
    token = "0123456789abcdef01234567"
    assert cp.find_token(f"Re: [forum] Confirm [confirm {token}]") == token
    assert cp.find_token("nothing", f"In reply to confirm-{token.upper()}@forum.test") == token
    assert cp.find_token("notice.0123456789abcdef0123456789abcdef@x") is None
    assert cp.find_token("", "") is None


# ------------------------------------------------------------------------------------------ garbage


GARBAGE = [
    "", " ", "#", "##", "# ", "#\x00\x01", "\x00" * 100, "#" * 5000, "a" * 100_000, "subscribe " + "x" * 10_000,
    "#close " + "é" * 3000, "\ud7ff\ufffd\u202e#close solved", "#tag ,,,;;;", "#merge " + "9" * 400,
    "/", "//subscribe", "#/subscribe", "confirm zzzz", "#escalate ((((", "\t#close\tsolved",
]


@pytest.mark.parametrize("line", GARBAGE)
def test_garbage_lines_never_raise(line: str) -> None:
    for fn in (cp.parse_member_line, cp.parse_hash_line):
        cmd = fn(line)
        assert cmd is None or isinstance(cmd, cp.Command)
    cp.scan_request(line, line)
    cp.scan_post(line, line)
    cp.parse_decision(line, line)
    cp.find_token(line)
    cp.parse_topic_ref(line)


def test_garbage_body_of_random_bytes() -> None:
    junk = bytes(range(256)).decode("latin-1") * 50
    scan = cp.scan_request("", junk)
    assert scan.commands == ()
    assert len(scan.unknown) <= cp.MAX_REQUEST_LINES
    assert cp.scan_post("", junk).commands == ()


def test_command_payload_round_trip() -> None:
    cmd = cp.parse_hash_line("#escalate european note")
    assert cmd is not None
    assert cp.Command.from_payload(cmd.as_payload()) == cmd


# ------------------------------------------------------------------------------------------ texts


def test_every_phrase_in_five_languages_with_the_same_fields() -> None:
    formatter = string.Formatter()
    for key in cp.phrase_keys():
        fields_by_lang = {}
        for lang in LANGS:
            entry = cp._phrases()[key]
            assert lang in entry, f"{key}: no {lang}"
            fields_by_lang[lang] = {f for _, f, _, _ in formatter.parse(entry[lang]) if f}
        assert len({frozenset(v) for v in fields_by_lang.values()}) == 1, f"{key}: {fields_by_lang}"


def test_every_phrase_used_in_the_code_exists() -> None:
    source = "".join(p.read_text(encoding="utf-8") for p in
                     (TEMPLATE_DIR.parent / "commands.py", TEMPLATE_DIR.parent / "moderation.py",
                      TEMPLATE_DIR.parent / "command_parse.py"))
    keys = set(cp.phrase_keys())
    used = set(re.findall(r"(?:say|phrase)\(\s*\"([a-z_.-]+)\"", source))
    used |= set(re.findall(r"\"(error\.[a-z_]+)\"", source))
    assert used - keys == set()
    for prefix, names in (("mode", ("instant", "daily", "weekly", "nomail")),
                          ("outcome", ("solved", "study-needed", "legal-impossibility", "duplicate", "no-action")),
                          ("level", ("national", "european")), ("sheet", ("obstacle", "practice")),
                          ("decision", ("approved", "rejected", "discarded", "expired")),
                          ("held", ("approved", "rejected", "discarded")), ("follow", ("done",)),
                          ("mute", ("done",)), ("category", ("done", "created")), ("enable", ("done", "already"))):
        for name in names:
            assert f"{prefix}.{name}" in keys


TEMPLATES = ("command_reply", "help", "help_moderator", "subscribe_confirm", "confirm_commands", "welcome",
             "held_notice", "held_author", "held_rejected", "held_expired")


@pytest.mark.parametrize("name", TEMPLATES)
def test_templates_in_five_languages_with_the_same_fields(name: str) -> None:
    assert available_languages(name) == sorted(LANGS)
    formatter = string.Formatter()
    fields = set()
    for lang in LANGS:
        text = (TEMPLATE_DIR / f"{name}.{lang}.txt").read_text(encoding="utf-8")
        found = frozenset(f for _, f, _, _ in formatter.parse(text) if f)
        fields.add(found)
    assert len(fields) == 1, f"{name}: the languages use different fields: {fields}"
    values = {f: f"<{f}>" for f in next(iter(fields))}
    for lang in LANGS:
        subject, body = render(name, lang, **values)
        assert subject and body.strip()


# ------------------------------------------------------------------------------------------ real mail


def test_real_mail_holds_no_post_commands() -> None:
    """Over every readable message of the real corpus, read as a moderator's post: no false command (a
    hashtag, a Markdown heading, a "#include" line must never close or tag a topic)."""
    from passerelle.mail.parse import MessageParseError, parse_message
    from passerelle.mail.quotes import split_reply
    from tests import corpus_dir

    checked = 0
    false_commands: list[str] = []
    subject_requests: list[str] = []
    for path in sorted(corpus_dir().rglob("*")):
        if not path.is_file() or path.stat().st_size > 2_000_000 or path.suffix in (".md", ".json", ".py"):
            continue
        try:
            parsed = parse_message(path.read_bytes())
        except MessageParseError:
            continue
        checked += 1
        new_text = split_reply(parsed.text).new_text
        scan = cp.scan_post(parsed.subject, new_text)
        false_commands.extend(f"{path.name}: {c.line}" for c in scan.commands)
        request = cp.scan_request(parsed.normalized_subject, new_text)
        subject_requests.extend(f"{path.name}: {c.line}" for c in request.commands if c.name == "confirm")
    assert checked > 500, f"only {checked} corpus messages could be read"
    assert false_commands == []
    assert subject_requests == [], "a subject like 'Confirmation of Booking' is not a confirmation"
