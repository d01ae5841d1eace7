"""Subject normalisation: stalwart's thread_name() vectors plus the prefixes our readers' clients use."""

from __future__ import annotations

import json

import pytest

from passerelle.mail.subject import is_reply_subject, normalize_subject, subject_key
from tests.mail.conftest import corpus_folder


def test_stalwart_thread_name_and_trailing_fwd_cases(corpus, report) -> None:
    cases = json.loads((corpus_folder(corpus, "stalwart-mail-parser") / "subject_normalization_cases.json").read_text())
    vectors = cases["thread_name_cases"] + cases["trim_trailing_fwd_cases"]
    assert len(vectors) >= 50
    failures = [(c["input"], c["expected"], normalize_subject(c["input"])) for c in vectors]
    failures = [f for f in failures if f[1] != f[2]]
    report("stalwart subject cases", f"{len(vectors) - len(failures)}/{len(vectors)}")
    assert failures == []


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: Réunion du comité", "Réunion du comité"),
        ("RE : Réunion du comité", "Réunion du comité"),
        ("TR: Réf. : Frontière fermée", "Frontière fermée"),
        ("Réf. : Frontière fermée", "Frontière fermée"),
        ("AW: WG: Grenzgänger Steuer", "Grenzgänger Steuer"),
        ("Aw: Antw: Re: Grenzgänger", "Grenzgänger"),
        ("R: RIF: I: Lavoratori frontalieri", "Lavoratori frontalieri"),
        ("RV: RE: Trabajadores transfronterizos", "Trabajadores transfronterizos"),
        ("Enc: Re: Trabalhadores", "Trabalhadores"),
        ("Antw: Doorst: Grensarbeiders", "Grensarbeiders"),
        ("SV: VS: Gränsarbetare", "Gränsarbetare"),
        ("Odp: Pracownicy transgraniczni", "Pracownicy transgraniczni"),
        ("Re[2]: Re(3): Re^4: deep", "deep"),
        ("RE: [forum] AW: Re[2]: TR: Réunion", "Réunion"),
        ("[forum] [SPAM] Re: obstacle", "obstacle"),
        ("Re: [forum] Fwd: [autre] Re: fw: point (fwd)", "point"),
        ("Re:   plusieurs    espaces\t ici ", "plusieurs espaces ici"),
        ("Re: [Fwd: transféré]", "transféré"),
        ("回复：边境", "边境"),
        ("Réponse automatique", "Réponse automatique"),
        ("Renouvellement: dossier", "Renouvellement: dossier"),
        ("Ref 2024/17: dossier", "Ref 2024/17: dossier"),
        ("", ""),
    ],
)
def test_normalize_subject(subject: str, expected: str) -> None:
    assert normalize_subject(subject) == expected


@pytest.mark.parametrize(
    ("subject", "is_reply"),
    [
        ("Re: x", True),
        ("RE : x", True),
        ("AW: x", True),
        ("R: x", True),
        ("RIF: x", True),
        ("SV: x", True),
        ("Antw: x", True),
        ("Odp: x", True),
        ("Réf. : x", True),
        ("[forum] Re: x", True),
        ("Fwd: Re: x", True),
        ("Fwd: x", False),
        ("TR: x", False),
        ("WG: x", False),
        ("[forum] x", False),
        ("x", False),
        ("Response: x", False),
    ],
)
def test_is_reply_subject(subject: str, is_reply: bool) -> None:
    assert is_reply_subject(subject) is is_reply


def test_subject_key_ignores_case_and_prefixes() -> None:
    assert subject_key("Re: RÉUNION du Comité") == subject_key("réunion du comité")


def test_garbage_subjects_never_raise() -> None:
    nasty = ["[" * 5000, "]" * 100, "Re:" * 10000, "(fwd)" * 3000, "\x00\x01\n\r\t", "[a [b [c] d] e"]
    for subject in nasty:
        assert isinstance(normalize_subject(subject), str)
        assert isinstance(is_reply_subject(subject), bool)
    assert normalize_subject(None) == ""
