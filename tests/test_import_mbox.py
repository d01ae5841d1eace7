"""Reading archives for import: mbox splitting, mboxrd unescaping, pipermail quirks, Sympa directories."""

from __future__ import annotations

import gzip
import io
import shutil
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path

import pytest

from passerelle.importer import (
    OBFUSCATED_DOMAIN,
    ArchiveError,
    ProgressBar,
    deobfuscate_address_text,
    iter_archive,
    iter_mbox,
    parse_from_line,
    repair_headers,
    total_bytes,
)
from passerelle.mail.parse import parse_message
from tests import corpus_dir

R_HELP = corpus_dir() / "r-help-pipermail" / "r-help-2019.mbox"
HYPERKITTY = corpus_dir() / "hyperkitty-1.3.12"


def test_r_help_pipermail_is_split_into_its_messages() -> None:
    entries = list(iter_archive(R_HELP))
    # The file has 4,258 lines starting with "From ", 11 of which are unescaped body text ("From the
    # dataset, I selected...", "From reading"): they follow an empty line but carry no time of day.
    assert len(entries) == 4247
    assert all(e.raw.startswith(b"From: ") for e in entries)
    first = entries[0]
    assert first.where == "r-help-2019.mbox:1"
    assert first.envelope_date == datetime(2019, 1, 1, 13, 40, 25, tzinfo=UTC)
    msg = message_from_bytes(first.raw)
    assert msg["Message-ID"] == "<CALUZZGamcW0zCREF8EYyRyeqKo86tUp3VWwzq0X7tpoi4KZU5Q@mail.gmail.com>"
    assert msg["Subject"] == "[R] Recursive Feature Elimination with SVM"
    # The mbox's separating empty line is not part of the message.
    assert not first.raw.endswith(b"\n\n\n")
    body_lines = [e for e in entries if b"\nFrom the dataset, I selected one participant" in e.raw]
    assert len(body_lines) == 5
    assert entries[-1].progress_bytes == R_HELP.stat().st_size


def test_eth_obfuscated_authors_get_a_stable_invalid_address_and_keep_their_name() -> None:
    entries = list(iter_archive(R_HELP))
    msg = message_from_bytes(entries[0].raw)
    assert msg["From"] == f"ppurk_y__th_2010.at.gm____com@{OBFUSCATED_DOMAIN} (Priyanka Purkayastha)"
    assert entries[0].envelope_from == f"ppurk_y__th_2010.at.gm____com@{OBFUSCATED_DOMAIN}"
    # The same author always maps to the same address.
    # The same author always maps to the same address, across both variants of the scheme ("r@turner
    # @ending from @uckl@nd@@c@nz" early in 2019, "r@turner @end|ng |rom @uck|@nd@@c@nz" later).
    rolf = {message_from_bytes(e.raw)["From"] for e in entries if b"(Rolf Turner)" in e.raw.split(b"\n", 1)[0]}
    assert rolf == {f"r_turner.at._uck__nd__c_nz@{OBFUSCATED_DOMAIN} (Rolf Turner)"}


def test_mbox_escaped_from_lines_are_unescaped() -> None:
    entries = list(iter_archive(R_HELP))
    [entry] = [e for e in entries if b"<CAGx1TMBPQxCuDQ37ZmnO+=JwyaKjFznu-5t0UB_nWe7m+h0E_g@mail.gmail.com>" in e.raw]
    body = message_from_bytes(entry.raw).get_payload()
    assert body.startswith("From ?Arithmetic")
    with R_HELP.open("rb") as stream:
        raw_kept = list(iter_mbox(stream, unescape=False))
    [kept] = [e for e in raw_kept if b"<CAGx1TMBPQxCuDQ37ZmnO+=JwyaKjFznu-5t0UB_nWe7m+h0E_g@mail.gmail.com>" in e.raw]
    assert b"\n>From ?Arithmetic" in kept.raw


def test_mboxrd_removes_exactly_one_level_of_quoting() -> None:
    mbox = (
        b"From alice@example.org Mon Nov  2 09:00:00 2026\n"
        b"From: alice@example.org\nSubject: escapes\nMessage-ID: <rd@example.org>\n\n"
        b">From the start\n>>From quoted once\n>>>From quoted twice\n> From is a quote\nFrom here on, plain\n\n"
        b"From bob@example.org Mon Nov  2 09:05:00 2026\n"
        b"From: bob@example.org\nSubject: second\nMessage-ID: <rd2@example.org>\n\nbody\n"
    )
    entries = list(iter_mbox(io.BytesIO(mbox)))
    assert len(entries) == 2
    assert entries[0].raw.split(b"\n\n", 1)[1] == (
        b"From the start\n>From quoted once\n>>From quoted twice\n> From is a quote\nFrom here on, plain\n"
    )
    assert entries[1].raw.endswith(b"\n\nbody\n")


def test_classic_pipermail_at_obfuscation_from_hyperkitty_archive() -> None:
    entries = list(iter_archive(HYPERKITTY / "non-ascii-headers.txt"))
    assert len(entries) == 6
    froms = [message_from_bytes(e.raw)["From"] for e in entries]
    assert froms[0] == "vondruch@redhat.com (=?ISO-8859-2?Q?V=EDt_Ondruch?=)"
    assert froms[2] == "bjorn@xn--rombobjrn-67a.se (=?iso-8859-1?q?Bj=F6rn_Persson?=)"
    assert entries[0].envelope_from == "vondruch@redhat.com"
    assert entries[0].envelope_date == datetime(2012, 7, 10, 11, 29, 44, tzinfo=UTC)


def test_deobfuscation_leaves_real_addresses_and_prose_alone() -> None:
    assert deobfuscate_address_text('"Jean at Home" <jean@example.org>') == '"Jean at Home" <jean@example.org>'
    assert deobfuscate_address_text("jane at example.org (Jane)") == "jane@example.org (Jane)"
    assert deobfuscate_address_text("Meet me at noon") == "Meet me at noon"
    assert deobfuscate_address_text("h@nk|n@rob|n @end|ng |rom gm@||@com") == (
        f"h_nk_n_rob_n.at.gm____com@{OBFUSCATED_DOMAIN}"
    )


def test_missing_date_comes_from_the_from_line() -> None:
    [entry] = list(iter_archive(HYPERKITTY / "unixfrom-date.txt"))
    msg = message_from_bytes(entry.raw)
    # The From line says "Mon Nov  9 1999", a Tuesday: the weekday written is the calendar's.
    assert msg["Date"] == "Tue, 09 Nov 1999 21:54:11 +0000"
    assert msg["Message-ID"] == "<msg@id>"
    raw = b"From: a@example.org\nSubject: no date\n\nhello\n"
    assert repair_headers(raw, envelope_date=None) == raw
    dated = repair_headers(raw, envelope_date=datetime(2019, 1, 1, 13, 40, 25, tzinfo=UTC))
    assert dated == b"From: a@example.org\nSubject: no date\nDate: Tue, 01 Jan 2019 13:40:25 +0000\n\nhello\n"
    # A message without Message-ID: the parser gives it a hash of its bytes, the same at every import.
    assert parse_message(dated).message_id == parse_message(dated).message_id
    assert parse_message(dated).message_id_is_synthetic


def test_from_line_variants() -> None:
    assert parse_from_line(b"From MAILER-DAEMON Fri Jul  8 12:08:34 2011\n") == (
        "MAILER-DAEMON", datetime(2011, 7, 8, 12, 8, 34, tzinfo=UTC)
    )
    sender, date = parse_from_line(b"From a@b.example Tue Jan 1 13:40:25 +0200 2019\r\n")  # type: ignore[misc]
    assert sender == "a@b.example"
    assert date == datetime(2019, 1, 1, 11, 40, 25, tzinfo=UTC)
    assert parse_from_line(b"From here on, we disagree\n") is None


def test_concatenated_monthly_archives_without_final_blank_line() -> None:
    mbox = (
        b"From a@example.org  Tue Jan  1 13:40:25 2019\nFrom: a@example.org\nMessage-ID: <m1@x>\n\nlast line\n"
        b"From b@example.org  Fri Feb  1 08:00:00 2019\nFrom: b@example.org\nMessage-ID: <m2@x>\n\nnext\n"
    )
    entries = list(iter_mbox(io.BytesIO(mbox)))
    assert [message_from_bytes(e.raw)["Message-ID"] for e in entries] == ["<m1@x>", "<m2@x>"]


def test_gzip_and_pipermail_directory_in_chronological_order(tmp_path: Path) -> None:
    archive = tmp_path / "archives"
    archive.mkdir()
    source = (HYPERKITTY / "non-ascii-headers.txt").read_bytes()
    parts = source.split(b"\nFrom mmaslano")
    (archive / "2012-July.txt.gz").write_bytes(gzip.compress(b"\nFrom mmaslano".join([parts[0]]) + b"\n"))
    (archive / "2012-August.txt").write_bytes(b"From mmaslano" + parts[1])
    (archive / "index.html").write_bytes(b"<html>pipermail index</html>\n")
    entries = list(iter_archive(archive))
    assert [e.where for e in entries] == ["2012-July.txt.gz:1", "2012-July.txt.gz:2", "2012-July.txt.gz:3",
                                         "2012-August.txt:1", "2012-August.txt:2", "2012-August.txt:3"]
    assert total_bytes(archive) >= entries[-1].progress_bytes > 0


def test_sympa_arctxt_directory_of_single_messages(tmp_path: Path) -> None:
    arctxt = tmp_path / "2016-04" / "arctxt"
    arctxt.mkdir(parents=True)
    for n, name in enumerate(["attachment-1.txt", "attachment-2.txt", "bad_folding.txt"], start=1):
        shutil.copy(HYPERKITTY / name, arctxt / str(n * 5))  # 5, 10, 15: natural order, not "10" < "5"
    entries = list(iter_archive(tmp_path))
    assert [e.where.rsplit("/", 1)[1] for e in entries] == ["5", "10:1", "15:1"]
    assert message_from_bytes(entries[0].raw)["X-Account-Key"] == "account5"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" * 10, "not an mbox archive"),
        (b"", "not an mbox archive"),
    ],
)
def test_garbage_input_is_refused_clearly(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "garbage.mbox"
    path.write_bytes(content)
    with pytest.raises(ArchiveError, match=message):
        list(iter_archive(path))


def test_missing_or_empty_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="no such file"):
        list(iter_archive(tmp_path / "nope.mbox"))
    with pytest.raises(ArchiveError, match="holds no files"):
        list(iter_archive(tmp_path))


def test_truncated_gzip_is_reported(tmp_path: Path) -> None:
    data = gzip.compress(R_HELP.read_bytes()[:200_000])
    path = tmp_path / "cut.txt.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="read error"):
        list(iter_archive(path))


def test_progress_bar_plain_text_when_not_a_terminal() -> None:
    out = io.StringIO()
    ticks = iter([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    bar = ProgressBar(1000, out, clock=lambda: next(ticks))
    bar.update(50, 10)
    bar.update(60, 12)  # same decile: not printed again
    bar.update(500, 100)
    bar.finish(200)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("[") and "5.0%" in lines[0] and "10 messages" in lines[0]
    assert "100.0%" in lines[-1] and "200 messages" in lines[-1]
