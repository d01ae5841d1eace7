"""IMAP ingestion against a real Dovecot (tests/dovecot.py starts a throwaway one per test)."""

from __future__ import annotations

import gzip
import logging
import mailbox
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from gateway.imap import TOO_LARGE_KEYWORD, ImapError, ImapFetcher, ImapService, imap_status
from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.models import ImapCursor, InboundMessage, Message, Topic
from tests import corpus_dir
from tests.dovecot import INSTALL_HINT, Dovecot, find_dovecot
from tests.factories import make_list

pytestmark = pytest.mark.imap

USERS = {"forum": "forum-secret", "regio": "regio-secret"}
# Dovecot 2.3's post-login capabilities without IDLE and MOVE: a server that needs polling and COPY+EXPUNGE.
OLD_SERVER_CAPABILITIES = [
    "IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "SORT", "THREAD=REFERENCES", "MULTIAPPEND",
    "UNSELECT", "CHILDREN", "NAMESPACE", "UIDPLUS", "LIST-EXTENDED", "I18NLEVEL=1", "LITERAL+",
]  # fmt: skip
_CRLF = re.compile(rb"\r\n|\r|\n")


def now() -> datetime:
    return datetime.now(UTC)


def make_message(n: int, *, tag: str = "m", body: str = "") -> bytes:
    return (
        f"From: Camille Martin <camille.martin{n % 7}@eurometropole.example>\r\n"
        f"To: forum@forum.test\r\n"
        f"Subject: Obstacle n°{n}: reconnaissance des diplômes\r\n"
        f"Date: Mon, 02 Nov 2026 09:{n % 60:02d}:00 +0100\r\n"
        f"Message-ID: <{tag}-{n}@eurometropole.example>\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        f"\r\n"
        f"Bonjour,\r\nmessage {n}. {body}\r\n"
    ).encode()


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def spool(factory: sessionmaker[Session]) -> list[InboundMessage]:
    with session_scope(factory) as session:
        rows = list(session.scalars(select(InboundMessage).order_by(InboundMessage.id)))
        for row in rows:
            _ = row.raw  # load the deferred column before the session closes
        session.expunge_all()
    return rows


def spooled_ids(factory: sessionmaker[Session]) -> list[str]:
    with session_scope(factory) as session:
        return list(session.scalars(select(InboundMessage.message_id_header).order_by(InboundMessage.id)))


def cursor(factory: sessionmaker[Session], name: str) -> ImapCursor:
    with session_scope(factory) as session:
        row = session.get(ImapCursor, name)
        assert row is not None, f"no cursor for {name}"
        session.expunge(row)
        return row


def server_uids(server: Dovecot, user: str, criteria: Sequence[str] = ("ALL",), folder: str = "INBOX") -> list[int]:
    client = server.client(user)
    try:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        return sorted(client.search(list(criteria)))
    finally:
        client.logout()


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    if find_dovecot() is None:
        pytest.fail(INSTALL_HINT)
    server = Dovecot(USERS)
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def imap_settings(settings: Settings) -> Settings:
    return settings.with_overrides(
        {"imap": {"retry_initial_seconds": 0.05, "retry_max_seconds": 0.4, "idle_seconds": 30, "poll_seconds": 30}}
    )


def multiappend(server: Dovecot, user: str, messages: Sequence[bytes], folder: str = "INBOX") -> None:
    client = server.client(user)
    try:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        for start in range(0, len(messages), 100):
            client.multiappend(folder, messages[start : start + 100])
    finally:
        client.logout()


# -- draining ---------------------------------------------------------------------------------------------


def test_500_waiting_messages_are_spooled_once_and_flagged_seen(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    messages = [make_message(i) for i in range(500)]
    multiappend(dovecot, "forum", messages)
    notified: list[int] = []
    fetcher = ImapFetcher(imap_settings, session_factory, dovecot.account("forum", batch_size=100), clock=now,
                          on_spooled=notified.extend)

    started = time.monotonic()
    assert fetcher.run_once() == 500
    elapsed = time.monotonic() - started

    rows = spool(session_factory)
    assert [r.raw for r in rows] == messages
    assert {r.source for r in rows} == {"imap:forum"}
    assert {tuple(r.envelope_to) for r in rows} == {("forum@forum.test",)}
    assert {r.list_name for r in rows} == {"forum"}
    assert {r.status for r in rows} == {"new"}
    assert sorted(notified) == [r.id for r in rows]
    assert server_uids(dovecot, "forum", ["UNSEEN"]) == []
    state = cursor(session_factory, "forum")
    assert (state.last_uid, state.messages_spooled) == (500, 500)
    assert state.last_ok_at is not None
    assert fetcher.run_once() == 0
    assert len(spool(session_factory)) == 500
    print(f"drained 500 messages in {elapsed:.2f}s ({500 / elapsed:.0f} messages/s)")


def test_processed_mail_is_moved_to_the_processed_folder(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    multiappend(dovecot, "forum", [make_message(i) for i in range(12)])
    account = dovecot.account("forum", processed_folder="Forum/done", batch_size=5)
    assert ImapFetcher(imap_settings, session_factory, account, clock=now).run_once() == 12
    assert server_uids(dovecot, "forum") == []
    assert len(server_uids(dovecot, "forum", folder="Forum/done")) == 12
    # Moved mail never comes back as unread: a second pass finds nothing.
    assert ImapFetcher(imap_settings, session_factory, account, clock=now).run_once() == 0


@pytest.fixture
def old_dovecot() -> Iterator[Dovecot]:
    if find_dovecot() is None:
        pytest.fail(INSTALL_HINT)
    with Dovecot(USERS, capabilities=OLD_SERVER_CAPABILITIES) as server:
        yield server


def test_server_without_move_gets_copy_then_uid_expunge(
    old_dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    server = old_dovecot
    server.append("forum", [make_message(i) for i in range(3)])

    def someone_deletes_their_own_mail(_ids: Sequence[int]) -> None:
        # Between our spool commit and our expunge, a person flags another message \Deleted: UID EXPUNGE
        # (RFC 4315) removes only our UIDs; a plain EXPUNGE would remove theirs too.
        other = server.client("forum")
        other.append("INBOX", make_message(99, tag="human"), flags=[b"\\Deleted"])
        other.logout()

    fetcher = ImapFetcher(imap_settings, session_factory, server.account("forum", processed_folder="Done"),
                          clock=now, on_spooled=someone_deletes_their_own_mail)
    assert fetcher.run_once() == 3
    assert server_uids(server, "forum") == [4]
    assert server_uids(server, "forum", ["DELETED"]) == [4]
    assert server_uids(server, "forum", folder="Done") == [1, 2, 3]


def test_server_without_idle_is_polled(
    old_dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    server = old_dovecot
    settings = imap_settings.with_overrides({"imap": {"poll_seconds": 0.2, "accounts": [server.account("forum")]}})
    server.append("forum", [make_message(1)])
    service = ImapService(settings, session_factory, now)
    service.start()
    try:
        wait_until(lambda: len(spooled_ids(session_factory)) == 1, what="the waiting message")
        server.append("forum", [make_message(2)])
        wait_until(lambda: len(spooled_ids(session_factory)) == 2, timeout=5, what="a polled message")
    finally:
        service.stop()
    assert server_uids(server, "forum", ["UNSEEN"]) == []


# -- waiting for mail --------------------------------------------------------------------------------------


def test_new_mail_while_idle_wakes_the_fetcher(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    # poll_seconds is 30: only IDLE can bring the mail in within the deadline below.
    settings = imap_settings.with_overrides({"imap": {"accounts": [dovecot.account("forum")]}})
    service = ImapService(settings, session_factory, now)
    service.start()
    try:
        wait_until(lambda: cursor_exists(session_factory, "forum"), what="the first session")
        time.sleep(0.3)  # in IDLE by now
        for n in range(3):
            sent = time.monotonic()
            dovecot.append("forum", [make_message(n)])
            wait_until(lambda n=n: len(spooled_ids(session_factory)) == n + 1, timeout=3, what="IDLE wake-up")
            latency = time.monotonic() - sent
            assert latency < 2
            print(f"IDLE delivery latency {latency * 1000:.0f} ms")
    finally:
        service.stop()
    assert spooled_ids(session_factory) == [f"m-{n}@eurometropole.example" for n in range(3)]
    assert server_uids(dovecot, "forum", ["UNSEEN"]) == []


class MailArrivesJustBeforeIdle(ImapFetcher):
    """A message lands after the drain's SEARCH and before IDLE: the server announces it right after
    "+ idling", in the same packet, where a socket poll cannot see it."""

    server: Dovecot
    sent: float = 0.0

    def _drain(self, client: Any) -> int:
        spooled = super()._drain(client)
        if not self.sent:
            self.server.append("forum", [make_message(1)])
            time.sleep(0.7)  # Dovecot has noticed it by the time IDLE starts
            self.sent = time.monotonic()
        return spooled



class MailArrivesDuringTheDrain(ImapFetcher):
    """A message lands while the drain's own commands run: the server announces it as an untagged EXISTS
    in the reply to one of them (here a SEARCH), and will not announce it again once IDLE starts."""

    server: Dovecot
    sent: float = 0.0

    def _drain(self, client: Any) -> int:
        spooled = super()._drain(client)
        if not self.sent:
            self.server.append("forum", [make_message(2)])
            # The EXISTS arrives in this command's reply, before its tagged OK. (Dovecot also sends a RECENT
            # later, during IDLE; IMAP4rev2 servers have no RECENT, and then nothing would wake IDLE.)
            deadline = time.monotonic() + 3
            while "EXISTS" not in client._imap.untagged_responses:
                assert time.monotonic() < deadline, "Dovecot never announced the new message"
                time.sleep(0.05)
                client.search(["ALL"])
            self.sent = time.monotonic()
        return spooled


def test_mail_announced_during_a_drain_command_is_read_at_once(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    fetcher = MailArrivesDuringTheDrain(imap_settings, session_factory, dovecot.account("forum"), clock=now)
    fetcher.server = dovecot
    stop = threading.Event()
    thread = threading.Thread(target=fetcher.run_forever, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: len(spooled_ids(session_factory)) == 1, timeout=5, what="the message (idle_seconds=30)")
        assert time.monotonic() - fetcher.sent < 2
    finally:
        stop.set()
        thread.join(5)
    assert spooled_ids(session_factory) == ["m-2@eurometropole.example"]

def test_mail_arriving_just_before_idle_is_not_left_until_renewal(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    fetcher = MailArrivesJustBeforeIdle(imap_settings, session_factory, dovecot.account("forum"), clock=now)
    fetcher.server = dovecot
    stop = threading.Event()
    thread = threading.Thread(target=fetcher.run_forever, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: len(spooled_ids(session_factory)) == 1, timeout=5, what="the message (idle_seconds=30)")
        assert time.monotonic() - fetcher.sent < 2
    finally:
        stop.set()
        thread.join(5)


def test_idle_is_renewed(dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]) -> None:
    settings = imap_settings.with_overrides(
        {"imap": {"idle_seconds": 0.3, "accounts": [dovecot.account("forum")]}}
    )
    service = ImapService(settings, session_factory, now)
    service.start()
    try:
        time.sleep(1.2)  # several IDLE/DONE rounds
        dovecot.append("forum", [make_message(7)])
        wait_until(lambda: len(spooled_ids(session_factory)) == 1, timeout=3, what="mail after IDLE renewals")
    finally:
        service.stop()
    assert cursor(session_factory, "forum").last_error == ""


def cursor_exists(factory: sessionmaker[Session], name: str) -> bool:
    with session_scope(factory) as session:
        row = session.get(ImapCursor, name)
        return row is not None and row.last_ok_at is not None


# -- faults -----------------------------------------------------------------------------------------------


def test_server_restart_mid_session_loses_and_duplicates_nothing(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    restarted = threading.Event()

    def restart_after_first_batch(_ids: Sequence[int]) -> None:
        # Runs in the fetcher's thread after the first batch is committed and before it is marked \Seen:
        # the worst moment for a restart.
        if not restarted.is_set():
            restarted.set()
            dovecot.restart()

    account = dovecot.account("forum", batch_size=10)
    settings = imap_settings.with_overrides({"imap": {"accounts": [account]}})
    multiappend(dovecot, "forum", [make_message(i) for i in range(40)])
    service = ImapService(settings, session_factory, now, on_spooled=restart_after_first_batch)
    service.start()
    try:
        wait_until(lambda: len(spooled_ids(session_factory)) == 40, timeout=15, what="40 messages")
        assert restarted.is_set()
        assert "connection lost" in cursor(session_factory, "forum").last_error
        # A second restart while the fetcher sits in IDLE; new mail after it still arrives.
        time.sleep(0.3)
        dovecot.restart()
        multiappend(dovecot, "forum", [make_message(i) for i in range(40, 45)])
        wait_until(lambda: len(spooled_ids(session_factory)) == 45, timeout=15, what="mail after the restart")
        wait_until(lambda: server_uids(dovecot, "forum", ["UNSEEN"]) == [], what="every message marked \\Seen")
    finally:
        service.stop()
    ids = spooled_ids(session_factory)
    assert sorted(ids) == sorted(f"m-{i}@eurometropole.example" for i in range(45))
    assert imap_status(session_factory)[0]["state"] == "ok"


class ConnectionDropsMidFetch(ImapFetcher):
    """The server restarts just as the second batch is being fetched."""

    server: Dovecot
    fetches = 0

    def _fetch_bodies(self, client: Any, uids: Sequence[int]) -> dict[int, bytes]:
        self.fetches += 1
        if self.fetches == 2:
            self.server.restart()
        return super()._fetch_bodies(client, uids)


def test_connection_dropped_mid_fetch_is_resumed(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    multiappend(dovecot, "forum", [make_message(i) for i in range(25)])
    fetcher = ConnectionDropsMidFetch(imap_settings, session_factory, dovecot.account("forum", batch_size=10),
                                      clock=now)
    fetcher.server = dovecot
    stop = threading.Event()
    thread = threading.Thread(target=fetcher.run_forever, args=(stop,))
    thread.start()
    try:
        wait_until(lambda: len(spooled_ids(session_factory)) == 25, timeout=10, what="all 25 messages")
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert sorted(spooled_ids(session_factory)) == sorted(f"m-{i}@eurometropole.example" for i in range(25))
    assert "connection lost" in cursor(session_factory, "forum").last_error
    assert server_uids(dovecot, "forum", ["UNSEEN"]) == []


class MarkingCrashes(ImapFetcher):
    """Dies after the spool commit and before marking, once: what a power cut at that moment does."""

    crashed = False

    def _mark_processed(self, client: Any, uids: Sequence[int]) -> None:
        if not self.crashed:
            self.crashed = True
            raise OSError("simulated crash after the spool commit")
        super()._mark_processed(client, uids)


def test_crash_between_spool_and_mark_neither_loses_nor_duplicates(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    multiappend(dovecot, "forum", [make_message(i) for i in range(8)])
    account = dovecot.account("forum", batch_size=5)
    fetcher = MarkingCrashes(imap_settings, session_factory, account, clock=now)
    with pytest.raises(ImapError, match="simulated crash"):
        fetcher.run_once()
    assert len(spooled_ids(session_factory)) == 5
    assert len(server_uids(dovecot, "forum", ["UNSEEN"])) == 8  # nothing marked yet
    assert fetcher.run_once() == 3
    assert sorted(spooled_ids(session_factory)) == sorted(f"m-{i}@eurometropole.example" for i in range(8))
    assert server_uids(dovecot, "forum", ["UNSEEN"]) == []  # the interrupted batch was marked on reconnect


def test_uidvalidity_change_rescans_without_duplicates(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    no_id = b"From: someone@example.org\r\nSubject: no message-id here\r\n\r\nbody\r\n"
    first = [make_message(i) for i in range(5)] + [no_id]
    multiappend(dovecot, "forum", first, folder="Lists/forum")
    account = dovecot.account("forum", folder="Lists/forum")
    fetcher = ImapFetcher(imap_settings, session_factory, account, clock=now)
    assert fetcher.run_once() == 6
    before = cursor(session_factory, "forum")

    # An already archived post (arrived by SMTP, say) is not spooled again either.
    archived = make_message(1, tag="archived")
    with session_scope(session_factory) as session:
        ml = make_list(session)
        topic = Topic(list_id=ml.id, subject="s", normalized_subject="s", created_at=now(), last_post_at=now())
        session.add(topic)
        session.flush()
        session.add(Message(topic_id=topic.id, message_id="archived-1@eurometropole.example", date=now(),
                            received_at=now()))

    # The mailbox is deleted and recreated (a new UIDVALIDITY), then the same mail is put back with news.
    client = dovecot.client("forum")
    client.delete_folder("Lists/forum")
    client.create_folder("Lists/forum")
    client.logout()
    multiappend(dovecot, "forum", [*first, archived, make_message(5), make_message(6)], folder="Lists/forum")

    assert fetcher.run_once() == 2
    after = cursor(session_factory, "forum")
    assert after.uidvalidity != before.uidvalidity
    assert after.last_uid == 9
    ids = spooled_ids(session_factory)
    assert sorted(i for i in ids if i) == sorted(f"m-{i}@eurometropole.example" for i in range(7))
    assert ids.count("") == 1
    assert fetcher.run_once() == 0


def test_interrupted_rescan_is_resumed_without_duplicates(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    first = [make_message(i) for i in range(6)]
    multiappend(dovecot, "forum", first, folder="Lists/forum")
    account = dovecot.account("forum", folder="Lists/forum", batch_size=4)
    assert ImapFetcher(imap_settings, session_factory, account, clock=now).run_once() == 6
    old = cursor(session_factory, "forum").uidvalidity
    client = dovecot.client("forum")
    client.delete_folder("Lists/forum")
    client.create_folder("Lists/forum")
    client.logout()
    multiappend(dovecot, "forum", [*first, *(make_message(i) for i in range(6, 10))], folder="Lists/forum")

    # The re-scan dies after its first batch (UIDs 1-4, nothing new) is committed, then after its
    # second (UIDs 5-8: two new ones spooled); the cursor keeps the old UIDVALIDITY meanwhile.
    crashing = MarkingCrashes(imap_settings, session_factory, account, clock=now)
    with pytest.raises(ImapError):
        crashing.run_once()
    assert cursor(session_factory, "forum").uidvalidity == old
    assert crashing.run_once() == 4
    assert cursor(session_factory, "forum").uidvalidity != old
    assert cursor(session_factory, "forum").last_uid == 10
    assert sorted(spooled_ids(session_factory)) == sorted(f"m-{i}@eurometropole.example" for i in range(10))
    assert server_uids(dovecot, "forum", ["UNSEEN"], folder="Lists/forum") == []


def test_changing_the_folder_reads_it_from_the_start_without_duplicates(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    multiappend(dovecot, "forum", [make_message(i) for i in range(3)])
    assert ImapFetcher(imap_settings, session_factory, dovecot.account("forum"), clock=now).run_once() == 3
    # The operator points the account at another folder that holds copies plus new mail.
    multiappend(dovecot, "forum", [make_message(i) for i in range(5)], folder="Forum")
    moved = dovecot.account("forum", folder="Forum")
    assert ImapFetcher(imap_settings, session_factory, moved, clock=now).run_once() == 2
    state = cursor(session_factory, "forum")
    assert (state.folder, state.last_uid) == ("Forum", 5)
    assert len(spooled_ids(session_factory)) == 5


class ExpungedWhileFetching(ImapFetcher):
    """Another client expunges some of the batch just before the fetcher's FETCH reaches the server."""

    victims: tuple[int, ...] = ()
    server: Dovecot

    def _fetch_bodies(self, client: Any, uids: Sequence[int]) -> dict[int, bytes]:
        doomed = [u for u in uids if u in self.victims]
        if doomed:
            other = self.server.client("forum")
            other.select_folder("INBOX")
            other.add_flags(doomed, [b"\\Deleted"])
            other.uid_expunge(doomed)
            other.logout()
            self.victims = tuple(u for u in self.victims if u not in doomed)
        return super()._fetch_bodies(client, uids)


def test_message_expunged_by_someone_else_while_being_fetched(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    multiappend(dovecot, "forum", [make_message(i) for i in range(20)])
    fetcher = ExpungedWhileFetching(imap_settings, session_factory, dovecot.account("forum", batch_size=8),
                                    clock=now)
    fetcher.server = dovecot
    fetcher.victims = (3, 9, 10, 20)
    assert fetcher.run_once() == 16
    gone = {3, 9, 10, 20}
    assert spooled_ids(session_factory) == [f"m-{i - 1}@eurometropole.example" for i in range(1, 21) if i not in gone]
    assert cursor(session_factory, "forum").last_uid == 20
    assert server_uids(dovecot, "forum", ["UNSEEN"]) == []


def test_expunged_between_batches_by_someone_else(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    multiappend(dovecot, "forum", [make_message(i) for i in range(12)])
    done = threading.Event()

    def expunge_next_batch(_ids: Sequence[int]) -> None:
        if not done.is_set():
            done.set()
            other = dovecot.client("forum")
            other.select_folder("INBOX")
            other.add_flags([6, 7], [b"\\Deleted"])
            other.expunge()
            other.logout()

    fetcher = ImapFetcher(imap_settings, session_factory, dovecot.account("forum", batch_size=5), clock=now,
                          on_spooled=expunge_next_batch)
    assert fetcher.run_once() == 10
    assert len(set(spooled_ids(session_factory))) == 10


def test_wrong_password_backs_off_and_other_accounts_go_on(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture, tmp_path: Path,
) -> None:
    caplog.set_level(logging.WARNING, logger="gateway.imap")
    wrong = tmp_path / "regio.password"
    wrong.write_text("not-the-password\n")
    good = dovecot.account("forum")
    bad = dovecot.account("regio", password_file=str(wrong))
    settings = imap_settings.with_overrides({"imap": {"accounts": [bad, good]}})
    service = ImapService(settings, session_factory, now)
    service.start()

    def delays() -> list[float]:
        return [float(m) for m in re.findall(r"imap\[regio\]: .*; retrying in ([0-9.]+)s", caplog.text)]

    try:
        dovecot.append("forum", [make_message(i) for i in range(3)])
        wait_until(lambda: len(spooled_ids(session_factory)) == 3, what="the good account's mail")
        # Dovecot answers each failed login after ~0.5 s; four failures take about 3 s.
        wait_until(lambda: len(delays()) >= 4, timeout=10, what="four retries")
    finally:
        service.stop()
    status = {row["account"]: row for row in imap_status(session_factory, settings)}
    assert status["forum"]["state"] == "ok"
    assert status["regio"]["state"] == "failing"
    assert "login refused" in status["regio"]["last_error"]
    assert "authentication failed" in status["regio"]["last_error"].lower()
    # Exponential and capped (0.05, 0.1, 0.2, 0.4, 0.4 …): never a tight loop hammering the server.
    assert delays()[:4] == [0.05, 0.1, 0.2, 0.4]
    assert set(delays()[4:]) <= {0.4}
    assert "imap[forum]" not in caplog.text


def test_server_down_is_retried_until_it_comes_up(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    dovecot.stop()
    settings = imap_settings.with_overrides({"imap": {"accounts": [dovecot.account("forum")]}})
    service = ImapService(settings, session_factory, now)
    service.start()
    try:
        wait_until(lambda: imap_status(session_factory)[:1] != [], what="the failure to be recorded")
        assert "network error" in imap_status(session_factory)[0]["last_error"]
        assert imap_status(session_factory)[0]["state"] == "failing"
        dovecot.start()
        dovecot.append("forum", [make_message(1)])
        wait_until(lambda: len(spooled_ids(session_factory)) == 1, what="mail once the server is back")
    finally:
        service.stop()
    assert imap_status(session_factory)[0]["state"] == "ok"


def test_missing_folder_is_a_recorded_error(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    fetcher = ImapFetcher(imap_settings, session_factory, dovecot.account("forum", folder="Nope"), clock=now)
    with pytest.raises(ImapError, match=r"account forum: server said: .*Nope"):
        fetcher.run_once()
    assert imap_status(session_factory)[0]["state"] == "failing"


def test_too_large_message_is_left_in_the_mailbox_and_reported(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    settings = imap_settings.with_overrides({"lists": {"max_message_bytes": 20_000}})
    big = make_message(2, body="x" * 30_000)
    dovecot.append("forum", [make_message(1), big, make_message(3)])
    fetcher = ImapFetcher(settings, session_factory, dovecot.account("forum"), clock=now)
    assert fetcher.run_once() == 2
    assert spooled_ids(session_factory) == ["m-1@eurometropole.example", "m-3@eurometropole.example"]
    assert server_uids(dovecot, "forum", ["UNSEEN"]) == [2]
    assert server_uids(dovecot, "forum", ["KEYWORD", TOO_LARGE_KEYWORD]) == [2]
    error = cursor(session_factory, "forum").last_error
    assert "UID 2 of INBOX" in error and "max_message_bytes" in error
    assert fetcher.run_once() == 0  # not retried, not marked: a person decides
    assert server_uids(dovecot, "forum", ["UNSEEN"]) == [2]


def test_garbage_bytes_are_spooled_as_they_are(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    garbage = [b"\xff\xfe\x00binary \x80\x81 junk without headers\r\n", b"x\r\n", b"Subject: \xe9t\xe9\r\n\r\n\xe9\r\n"]
    dovecot.append("forum", garbage)
    assert ImapFetcher(imap_settings, session_factory, dovecot.account("forum"), clock=now).run_once() == 3
    raws = [row.raw for row in spool(session_factory)]
    assert raws[1:] == garbage[1:]
    # Dovecot stores the NUL byte (forbidden in IMAP literals) as 0x80; the rest arrives untouched.
    assert raws[0] == garbage[0].replace(b"\x00", b"\x80")


# -- real mail ------------------------------------------------------------------------------------------------


def corpus_messages() -> list[tuple[str, bytes]]:
    base = corpus_dir()
    found = [(p.name, p.read_bytes()) for p in sorted((base / "hyperkitty-1.3.12").glob("*.txt"))]
    gz = next((base / "jwzthreading-fedora-devel").rglob("2010-January.txt.gz"))
    return found + fedora_messages(gz, 40)


def fedora_messages(gz: Path, count: int) -> list[tuple[str, bytes]]:
    # The archive is one gzipped mbox; split it on the "From " separator lines (mboxo).
    text = gzip.decompress(gz.read_bytes())
    parts = re.split(rb"(?:^|\n)From [^\n]*\n", text)
    return [(f"{gz.name}#{i}", part) for i, part in enumerate(p for p in parts if p.strip())][:count]


def test_corpus_messages_appended_arrive_byte_identical(
    dovecot: Dovecot, imap_settings: Settings, session_factory: sessionmaker[Session]
) -> None:
    messages = corpus_messages()
    assert len(messages) > 50
    dovecot.append("forum", [raw for _, raw in messages])
    assert ImapFetcher(imap_settings, session_factory, dovecot.account("forum"), clock=now).run_once() == len(
        messages
    )
    rows = spool(session_factory)
    assert len(rows) == len(messages)
    for (name, raw), row in zip(messages, rows, strict=True):
        # IMAP carries mail with CRLF line ends (RFC 3501 4.3); APPEND from any client sends exactly that.
        # NUL cannot travel in an IMAP literal: Dovecot stores it as 0x80 (unicode_issue.txt has some).
        assert row.raw == _CRLF.sub(b"\r\n", raw).replace(b"\x00", b"\x80"), name


def test_mailbox_read_with_mbox_module_matches(tmp_path: Path) -> None:
    """The mbox splitter used above agrees with the stdlib's reading of the same archive."""
    gz = next((corpus_dir() / "jwzthreading-fedora-devel").rglob("2010-January.txt.gz"))
    plain = tmp_path / "jan.mbox"
    plain.write_bytes(gzip.decompress(gz.read_bytes()))
    box = mailbox.mbox(plain, create=False)
    try:
        first = [box.get_bytes(key) for key in list(box.keys())[:5]]
    finally:
        box.close()
    ours = [raw for _, raw in fedora_messages(gz, 5)]
    assert [m.rstrip(b"\n") for m in first] == [m.rstrip(b"\n") for m in ours]


# -- TLS ------------------------------------------------------------------------------------------------------


def test_tls_and_starttls_with_a_private_ca(imap_settings: Settings, session_factory: sessionmaker[Session]) -> None:
    if find_dovecot() is None:
        pytest.fail(INSTALL_HINT)
    with Dovecot(USERS, tls=True) as server:
        server.append("forum", [make_message(1), make_message(2)])
        implicit = server.account("forum", security="tls", port=server.tls_port, ca_file=str(server.cert_path))
        assert ImapFetcher(imap_settings, session_factory, implicit, clock=now).run_once() == 2
        server.append("regio", [make_message(3)])
        starttls = server.account("regio", security="starttls", ca_file=str(server.cert_path))
        assert ImapFetcher(imap_settings, session_factory, starttls, clock=now).run_once() == 1
        # Without the CA the self-signed certificate is refused: nothing is read, the reason is recorded.
        untrusted = server.account("regio", name="untrusted", security="tls", port=server.tls_port)
        with pytest.raises(ImapError, match="TLS failure"):
            ImapFetcher(imap_settings, session_factory, untrusted, clock=now).run_once()
    assert len(spooled_ids(session_factory)) == 3
