"""archive_web.sanitize (HTML parts) and archive_web.render (plain-text bodies) on hostile and real input."""

from __future__ import annotations

import re

import pytest

from archive_web.render import body_blocks, linkify
from archive_web.sanitize import sanitize_html
from passerelle.mail.parse import MessageParseError, parse_message
from tests import corpus_dir

XSS = [
    ("<script>alert(1)</script>ok", "ok"),
    ("<img src=x onerror=alert(1)>", ""),
    ("<a href=\"javascript:alert(1)\">x</a>", "<a rel=\"nofollow noopener noreferrer ugc\">x</a>"),
    ("<a href=\"JaVaScRiPt:alert(1)\">x</a>", "<a rel=\"nofollow noopener noreferrer ugc\">x</a>"),
    ("<a href=\"jav&#x09;ascript:alert(1)\">x</a>", "<a rel=\"nofollow noopener noreferrer ugc\">x</a>"),
    ("<a href=\"data:text/html;base64,PHNjcmlwdD4=\">x</a>", "<a rel=\"nofollow noopener noreferrer ugc\">x</a>"),
    ("<svg><script>alert(1)</script></svg>after", "after"),
    ("<math><mi xlink:href=\"javascript:alert(1)\">m</mi></math>", ""),
    ("<iframe src=\"https://evil.example\"></iframe>", ""),
    ("<style>body{display:none}</style>text", "text"),
    ("<div style=\"background:url(javascript:alert(1))\">d</div>", "<div>d</div>"),
    ("<p onclick=\"alert(1)\" onmouseover=alert(2)>p</p>", "<p>p</p>"),
    ("<form action=\"/logout\"><button>b</button></form>", "b"),
    ("<object data=\"x.swf\"></object><embed src=\"x.swf\">", ""),
    ("<meta http-equiv=\"refresh\" content=\"0;url=https://evil.example\">", ""),
    ("<base href=\"https://evil.example/\"><a href=\"/x\">x</a>",
     "<a href=\"/x\" rel=\"nofollow noopener noreferrer ugc\">x</a>"),
    ("<!--[if IE]><script>alert(1)</script><![endif]-->c", "c"),
    ("<scr<script>ipt>alert(1)</script>", "&lt;scr"),
    ("<script", "&lt;script"),
    ("<img src=\"https://tracker.example/open.gif\" alt=\"logo\">", "[logo]"),
    ("<table><tr><td colspan=2 onclick=x>t</td></tr></table>",
     "<table><tbody><tr><td colspan=\"2\">t</td></tr></tbody></table>"),
]


@pytest.mark.parametrize(("dirty", "clean"), XSS)
def test_sanitize_payloads(dirty: str, clean: str) -> None:
    assert sanitize_html(dirty) == clean


def test_inline_images_are_mapped_to_the_archive() -> None:
    html = '<img src="cid:logo@x" alt="Logo" width="40" height="40%" onload="x"><img src="cid:other@x">'
    out = sanitize_html(html, resolve_cid={"logo@x": "/a/5/logo.png"}.get)
    assert out == '<img src="/a/5/logo.png" alt="Logo" width="40" height="40%">'


def test_links_are_hardened() -> None:
    assert sanitize_html('<a href="https://example.org" target="_blank">e</a>') == (
        '<a href="https://example.org" rel="nofollow noopener noreferrer ugc">e</a>'
    )
    assert sanitize_html('<a href="cid:part@x">c</a>') == '<a rel="nofollow noopener noreferrer ugc">c</a>'


def test_real_html_mail_from_the_corpus() -> None:
    """Every text/html part of the corpus's HTML mails sanitises without scripts or handlers."""
    seen = 0
    for path in sorted(corpus_dir().rglob("*")):
        if not path.is_file() or path.stat().st_size > 2_000_000 or path.suffix in (".md", ".json", ".txt", ".py"):
            continue
        data = path.read_bytes()
        if b"text/html" not in data:
            continue
        try:
            parsed = parse_message(data)
        except MessageParseError:
            continue
        if not parsed.html:
            continue
        out = sanitize_html(parsed.html).lower()
        assert "<script" not in out and "javascript:" not in out and "<style" not in out and "<iframe" not in out
        assert not re.search(r"<[^>]*\son\w+\s*=", out), path
        seen += 1
        if seen >= 60:
            break
    assert seen >= 10


def test_linkify() -> None:
    assert str(linkify("voir https://example.org/a?b=1&c=2. Merci")) == (
        'voir <a href="https://example.org/a?b=1&amp;c=2" rel="nofollow noopener noreferrer ugc">'
        "https://example.org/a?b=1&amp;c=2</a>. Merci"
    )
    assert str(linkify("(https://fr.wikipedia.org/wiki/Kehl_(Baden))")).count("Kehl_(Baden)") == 2
    assert "<a" not in str(linkify("javascript:alert(1) ftp://x.example data:text/html,x"))
    assert str(linkify("<b>&</b>")) == "&lt;b&gt;&amp;&lt;/b&gt;"


def test_body_blocks_fold_quotes_and_signatures() -> None:
    body = (
        "Merci pour la réponse.\n\n-- \nMarie Curie\nRégion Grand Est\n\n"
        "Le 3 nov. 2026 à 10:00, Jean a écrit :\n> Bonjour,\n> question\n"
    )
    kinds = [b.kind for b in body_blocks(body)]
    assert kinds[0] == "text" and "signature" in kinds and "quote" in kinds
    interleaved = "> q1\n> q2\nanswer 1\n> a\n> b\n> c\n> d\n> e\nanswer 2"
    kinds = [b.kind for b in body_blocks(interleaved)]
    assert kinds == ["context", "text", "quote", "text"]
    only_quote = "> forwarded\n> text"
    assert next(b.kind for b in body_blocks(only_quote)) in ("text", "context")
    assert body_blocks("") == []
