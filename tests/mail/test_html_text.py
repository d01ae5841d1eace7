"""HTML to readable text."""

from __future__ import annotations

from passerelle.mail.html_text import html_to_text


def test_paragraphs_breaks_and_entities() -> None:
    html = (
        "<html><head><title>T</title><style>p{color:red}</style></head><body>"
        "<p>Bonjour&nbsp;&eacute;quipe,</p><p>Ligne 1<br>Ligne 2</p><script>alert(1)</script></body></html>"
    )
    assert html_to_text(html) == "Bonjour équipe,\n\nLigne 1\nLigne 2"


def test_lists_and_links() -> None:
    html = (
        '<ul><li>Un</li><li>Deux <a href="https://example.org/doc">le document</a></li></ul>'
        "<ol><li>premier</li><li>second</li></ol>"
        '<p><a href="https://example.org/">https://example.org/</a> '
        '<a href="mailto:info@example.org">info@example.org</a></p>'
    )
    text = html_to_text(html)
    assert "• Un\n• Deux le document (https://example.org/doc)" in text
    assert "1. premier\n2. second" in text
    assert "https://example.org/ info@example.org" in text
    assert "(https://example.org/)" not in text


def test_blockquote_becomes_quote_lines() -> None:
    html = "<div>Réponse</div><div>Le 5 mai, Bob a écrit :<blockquote><p>Question ?</p><p>Suite</p></blockquote></div>"
    assert html_to_text(html) == "Réponse\nLe 5 mai, Bob a écrit :\n\n> Question ?\n>\n> Suite"


def test_pre_keeps_whitespace_and_images_keep_alt() -> None:
    html = '<pre>  indent\n    more</pre><p><img src="cid:x" alt="Carte"></p>'
    assert html_to_text(html) == "  indent\n    more\n\n[Carte]"


def test_tables_are_readable() -> None:
    html = "<table><tr><td>Pays</td><td>Délai</td></tr><tr><td>FR</td><td>3 j</td></tr></table>"
    assert html_to_text(html) == "Pays | Délai\nFR | 3 j"


def test_garbage_html_never_raises() -> None:
    for html in [
        "",
        "   ",
        "<",
        "<<<>>>",
        "<p",
        "</p></div></ul>",
        "<![CDATA[x",
        "<!DOCTYPE",
        "&#xFFFFFFFF;",
        "\x00<b>x",
    ]:
        assert isinstance(html_to_text(html), str)
    deep = "<div>" * 5000 + "fond" + "</div>" * 5000
    assert html_to_text(deep) == "fond"
    lists = "<ul><li>" * 100 + "x"
    assert "x" in html_to_text(lists)
