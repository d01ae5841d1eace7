"""Importing an archive into a list: archived, threaded, searchable, dated as it happened, nothing sent,
re-runnable; failures shunted with their bytes and a reason; the `passerelle import-mbox` command."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from passerelle.cli import main
from passerelle.config import Settings
from passerelle.importer import ArchiveError, ImportReport, import_archive, iter_archive
from passerelle.models import InboundMessage, Message, OutboxMessage, Topic
from passerelle.search import SearchQuery, search_messages
from tests import corpus_dir
from tests.factories import T0, make_list, make_member
from tests.smtp_sink import SmtpSink

HYPERKITTY = corpus_dir() / "hyperkitty-1.3.12"
R_HELP = corpus_dir() / "r-help-pipermail" / "r-help-2019.mbox"


def _count(session: Session, model: type) -> int:
    return int(session.scalar(select(func.count()).select_from(model)) or 0)


def _import(settings: Settings, factory: sessionmaker[Session], path: Path) -> ImportReport:
    return import_archive(settings, factory, path, list_name="forum", now=T0)


def test_pipermail_archive_is_archived_threaded_searchable_and_sends_nothing(
    settings: Settings, session_factory: sessionmaker[Session], db: Session, smtp_sink: SmtpSink
) -> None:
    ml = make_list(db, "forum")
    # Subscribers in instant mode would get every new post: an import must not mail them.
    make_member(db, "reader@example.org", mailing_list=ml, mode="instant")
    vit, _ = make_member(db, "vondruch@redhat.com", name="Vít Ondruch")
    db.commit()

    report = _import(settings, session_factory, HYPERKITTY / "non-ascii-headers.txt")
    assert (report.imported, report.duplicates, report.shunted) == (6, 0, [])

    db.expire_all()
    assert _count(db, OutboxMessage) == 0
    messages = {m.message_id: m for m in db.scalars(select(Message))}
    first = messages["4FFC1228.3060409@redhat.com"]
    # Pipermail's "vondruch at redhat.com" is an address again, and links to today's member.
    assert first.from_addr == "vondruch@redhat.com"
    assert first.from_name == "Vít Ondruch"
    assert first.author_id == vit.id
    assert first.source == "import"
    # The reply (In-Reply-To/References) is in the first message's topic; dates are historical.
    reply = messages["4FFC1C09.6030907@redhat.com"]
    assert reply.topic_id == first.topic_id
    topic = db.get(Topic, first.topic_id)
    assert topic is not None
    assert topic.created_at.year == 2012 and topic.created_at.month == 7
    assert topic.message_count >= 2
    # Every message keeps its raw bytes in a spool row marked done.
    statuses = Counter(db.scalars(select(InboundMessage.status).where(InboundMessage.source == "import")))
    assert statuses == {"done": 6}
    # Searchable, accent-insensitive.
    page = search_messages(db, SearchQuery(text="macros", see_everything=True))
    assert "4FFC1228.3060409@redhat.com" in {h.message_id for h in page.hits}
    assert search_messages(db, SearchQuery(text="Horak", see_everything=True)).hits
    assert smtp_sink.received == []


def test_a_second_import_adds_nothing(settings: Settings, session_factory: sessionmaker[Session], db: Session) -> None:
    make_list(db, "forum")
    db.commit()
    _import(settings, session_factory, HYPERKITTY / "non-ascii-headers.txt")
    again = _import(settings, session_factory, HYPERKITTY / "non-ascii-headers.txt")
    assert (again.imported, again.duplicates, again.shunted) == (0, 6, [])
    db.expire_all()
    assert _count(db, Message) == 6
    assert _count(db, InboundMessage) == 6


def test_broken_messages_are_shunted_once_with_their_bytes_and_reason(
    settings: Settings, session_factory: sessionmaker[Session], db: Session, tmp_path: Path
) -> None:
    make_list(db, "forum")
    db.commit()
    # HyperKitty's archive-import edge cases, as one mbox (each file starts with its "From " line), then
    # two that reuse a Message-ID of the first ones (HyperKitty's test data does), and an entry that is
    # not mail at all.
    names = ["unixfrom-date.txt", "bad_date_tz.txt", "non-ascii-date-header.txt", "payload-utf8-wrong.txt",
             "wrong-in-reply-to-header.txt", "unconvertable_message.txt", "attachment-2.txt",
             "cant_write_error_message.txt", "attachment-3.txt"]
    reused = ["bad_folding.txt", "another-wrong-encoding.txt", "strange-in-reply-to-header.txt", "attachment-4.txt"]
    parts = [(HYPERKITTY / n).read_bytes().rstrip(b"\n") + b"\n" for n in names + reused]
    parts.append(b"From nobody Mon Nov  2 09:00:00 2026\n\n\n")
    mbox = tmp_path / "edge-cases.mbox"
    mbox.write_bytes(b"\n".join(parts))

    report = _import(settings, session_factory, mbox)
    assert (report.imported, report.duplicates) == (len(names), len(reused))
    assert [(where, reason.split(":")[0]) for where, _m, reason in report.shunted] == [
        (f"edge-cases.mbox:{len(names) + len(reused) + 1}", "not a usable mail message")
    ]
    assert "shunted:    1" in report.format()
    db.expire_all()
    shunted = db.scalars(select(InboundMessage).where(InboundMessage.status == "shunted")).all()
    assert len(shunted) == 1
    assert "not a usable mail message" in shunted[0].reason
    assert shunted[0].raw is not None
    # The message without Date is dated by its "From " line.
    dated = db.scalar(select(Message).where(Message.message_id == "msg@id"))
    assert dated is not None and (dated.date.year, dated.date.month, dated.date.day) == (1999, 11, 9)
    db.rollback()  # SQLite: an open transaction holds the write lock the next import needs

    again = _import(settings, session_factory, mbox)
    assert (again.imported, again.duplicates, len(again.shunted), again.already_shunted) == (
        0, len(names) + len(reused), 0, 1
    )
    db.expire_all()
    assert _count(db, InboundMessage) == len(names) + 1


def test_r_help_extract_threads_like_the_archive(
    settings: Settings, session_factory: sessionmaker[Session], db: Session, tmp_path: Path
) -> None:
    make_list(db, "forum")
    db.commit()
    # The first ~150 messages of January 2019, gzipped as pipermail publishes them.
    data = R_HELP.read_bytes()
    cut = data.index(b"\nFrom ", 600_000) + 1
    path = tmp_path / "2019-January.txt.gz"
    path.write_bytes(gzip.compress(data[:cut]))
    report = _import(settings, session_factory, path)
    assert report.shunted == []
    assert report.imported + report.duplicates == len(list(iter_archive(path))) > 140
    db.expire_all()
    # A reply naming its parent by In-Reply-To is in the parent's topic.
    rows = db.execute(select(Message.message_id, Message.in_reply_to, Message.topic_id)).all()
    topic_of = {r.message_id: r.topic_id for r in rows}
    linked = [(r.topic_id, topic_of[r.in_reply_to]) for r in rows if r.in_reply_to in topic_of]
    assert len(linked) > 50
    assert all(a == b for a, b in linked)
    assert _count(db, OutboxMessage) == 0


def test_unknown_list_is_refused(settings: Settings, session_factory: sessionmaker[Session]) -> None:
    with pytest.raises(ArchiveError, match="no list named 'forum'"):
        _import(settings, session_factory, HYPERKITTY / "non-ascii-headers.txt")


# --- the command ------------------------------------------------------------------------------------------


def _config(tmp_path: Path) -> Path:
    """A site file for the command, on a fresh SQLite database (the command migrates it, as in production)."""
    path = tmp_path / "site.toml"
    path.write_text(
        f'[paths]\nvar_dir = "{tmp_path / "clivar"}"\n'
        f'[database]\nurl = "sqlite:///{tmp_path / "cli.db"}"\n'
        '[lists]\ndomain = "forum.test"\n'
    )
    assert main(["--config", str(path), "create-list", "forum"]) == 0
    return path


def test_command_imports_prints_a_summary_and_a_progress_bar(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(tmp_path)
    capsys.readouterr()
    assert main(["import-mbox", str(HYPERKITTY / "non-ascii-headers.txt"), "--list", "forum",
                 "--config", str(config)]) == 0
    out, err = capsys.readouterr()
    assert "imported:   6" in out
    assert "duplicates: 0" in out
    assert "shunted:    0" in out
    assert "100.0%" in err and "6 messages" in err
    assert main(["--config", str(config), "import-mbox", str(HYPERKITTY / "non-ascii-headers.txt"),
                 "--list", "forum", "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert "imported:   0" in out and "duplicates: 6" in out
    assert "%" not in err


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("missing.mbox", None, "no such file"),
        ("picture.png", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "not an mbox archive"),
    ],
)
def test_command_refuses_garbage_clearly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: bytes | None, expected: str
) -> None:
    config = _config(tmp_path)
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert main(["--config", str(config), "import-mbox", str(path), "--list", "forum"]) == 1
    assert expected in capsys.readouterr().err


def test_command_names_a_missing_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = _config(tmp_path)
    assert main(["--config", str(config), "import-mbox", str(HYPERKITTY / "non-ascii-headers.txt"),
                 "--list", "nope"]) == 1
    assert "no list named 'nope'" in capsys.readouterr().err
