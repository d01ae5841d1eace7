"""Personalised copies built once per post: the template renders exactly what build_post_copy builds, the
relay commands quote addresses exactly as smtplib does, and a reused signer makes the tokens sign() makes."""

from __future__ import annotations

import smtplib
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gateway.compose import CopyHeaders, build_post_copy, post_copy_template
from gateway.delivery import _quote, unsubscribe_links, unsubscribe_url
from passerelle import tokens
from passerelle.config import Settings
from tests import corpus_dir
from tests.gateway.conftest import AUTHOR, make_mail

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
INFO = CopyHeaders(list_name="forum", list_title="Forum transfrontalier", topic_id=7, message_id="m1@x.example",
                   unsubscribe_url="")
# Real mail with folded headers, encoded words, attachments, a prior list's headers, no Message-ID.
CORPUS = (
    "hyperkitty-1.3.12/attachment-2.txt",
    "hyperkitty-1.3.12/bad_folding.txt",
    "hyperkitty-1.3.12/bad-subject-header.txt",
    "hyperkitty-1.3.12/another-wrong-encoding.txt",
)


def _raws() -> list[bytes]:
    found = [(corpus_dir() / name).read_bytes() for name in CORPUS]
    found += [p.read_bytes() for p in sorted((corpus_dir() / "cpython-test_email").glob("msg_0*.txt"))]
    assert len(found) > 10, f"corpus messages missing under {corpus_dir()}"
    return [*found, make_mail(), make_mail(sender_name="Zoë Müller"), b"\x00\xffnot a mail at all\r\n", b""]


@pytest.mark.parametrize("rewrite_from", [False, True])
@pytest.mark.parametrize("edited", [False, True])
def test_template_renders_what_build_post_copy_builds(settings: Settings, rewrite_from: bool, edited: bool) -> None:
    s = settings.with_overrides({"lists": {"subject_prefix": "[forum]"}})
    extra = {"replacement_text": "Texte sans les commandes.\n", "replacement_subject": "Sujet é"} if edited else {}
    urls = [f"http://archive.test/u/{'x' * n}" for n in (5, 90)]
    for raw in _raws():
        options = dict(author_name="Zoë Müller", author_addr=AUTHOR, rewrite_from=rewrite_from, **extra)
        template = post_copy_template(s, raw, INFO, add_message_id=True, **options)
        for url in urls:
            expected = build_post_copy(s, raw, replace(INFO, unsubscribe_url=url), add_message_id=True, **options)
            assert template.render(url) == expected
        first, second = (template.render(url) for url in urls)
        assert first != second and first.split(b"List-Unsubscribe")[0] == second.split(b"List-Unsubscribe")[0]


def test_relay_commands_quote_addresses_like_smtplib() -> None:
    for address in (
        "forum-bounces+hans.weber=landkreis.example@forum.test", "a.b@c.d", "x@y", "o'brien@example.ie",
        "a..b@c.d", ".a@b.c", "a@b..c", "a@-b.c", "<a@b.c>", "Name <a@b.c>", '"quoted local"@x.org', "é@x.org",
        "a@[192.0.2.1]", "", "<>", "no-at-sign", "a@b@c", " spaced@x.org ", "\x00@x",
    ):
        assert _quote(address) == smtplib.quoteaddr(address), address


def test_reused_signer_makes_the_same_tokens(settings: Settings) -> None:
    data = {"list": "forum", "email": "hans.weber@landkreis.example"}
    sign = tokens.signer(settings, "unsubscribe", now=NOW)
    assert sign(data) == tokens.sign(settings, "unsubscribe", data, now=NOW)
    assert tokens.unsign(settings, "unsubscribe", sign(data)) == data
    links = unsubscribe_links(settings, now=NOW)
    assert links("forum", "Hans.Weber@Landkreis.example") == unsubscribe_url(
        settings, "forum", "hans.weber@landkreis.example", now=NOW)
    with pytest.raises(ValueError, match="purpose"):
        tokens.signer(settings, "")
