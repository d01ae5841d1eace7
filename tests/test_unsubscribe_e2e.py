"""Nobody is ever unable to leave: the four ways out, end to end, on the real stack.

A real gateway (aiosmtpd + worker + delivery thread) relays to the smtp_sink fixture; the real web archive
is served by werkzeug's make_server in a thread; members use smtplib and urllib like a mail client and a
browser would. One fake clock drives everything.

1. RFC 8058 one-click: POST ``List-Unsubscribe=One-Click`` to the https URL of the List-Unsubscribe header of
   a copy the relay received.
2. mailto: the List-Unsubscribe mailto (``LIST-request@...?subject=unsubscribe``), then the reply to the
   confirmation request (no DKIM on the member's mail: a forged From must not unsubscribe anyone).
3. The unsubscribe link at the foot of a digest (GET shows a button, the button POSTs).
4. The account page: sign in by a mailed link, then "unsubscribe from everything".
"""

from __future__ import annotations

import http.cookiejar
import re
import smtplib
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.serving import BaseWSGIServer, make_server

from archive_web import create_app
from archive_web.app import BLUEPRINTS
from digests.jobs import send_due_digests
from gateway.service import GatewayService
from passerelle.config import Settings
from passerelle.db import make_engine, make_session_factory, session_scope
from passerelle.models import Member, Subscription
from tests.factories import make_list, make_member
from tests.smtp_sink import Received, SmtpSink, free_port

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
AUTHOR = "camille.martin@eurometropole.example"
ONE_CLICK = "alice@example.org"
MAILTO = "erin@example.org"
DIGEST = "carol@example.org"
ACCOUNT = "dave@example.org"
STAYS = "bob@example.org"


class Clock:
    def __init__(self) -> None:
        self.value = START
        self.lock = threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.value

    def set(self, value: datetime) -> None:
        with self.lock:
            self.value = value


@dataclass
class Stack:
    settings: Settings
    factory: sessionmaker[Session]
    gateway: GatewayService
    web_url: str
    clock: Clock
    sink: SmtpSink

    def send(self, sender: str, to: str, subject: str, body: str, **headers: str) -> None:
        msg = EmailMessage()
        msg["From"] = sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = format_datetime(self.clock())
        msg["Message-ID"] = f"<{abs(hash((sender, to, subject, body)))}@client.example>"
        for name, value in headers.items():
            msg[name.replace("_", "-")] = value
        msg.set_content(body)
        with smtplib.SMTP("127.0.0.1", self.gateway.smtp_port, timeout=30) as client:
            client.send_message(msg, from_addr=sender, to_addrs=[to])

    def mail_to(self, rcpt: str, count: int = 1, timeout: float = 15.0) -> list[Received]:
        """Wait until ``rcpt`` has received ``count`` mails; return them all."""
        def mine() -> list[Received]:
            return [r for r in self.sink.received if rcpt in r.rcpt_tos]

        deadline = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if len(mine()) >= count:
                return mine()
            deadline.wait(0.05)
        raise AssertionError(f"{rcpt} received {len(mine())} mail(s), expected {count}")

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float = 15.0) -> None:
        pause = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if predicate():
                return
            pause.wait(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}")

    def status(self, email: str) -> str:
        with session_scope(self.factory) as s:
            return s.scalars(
                select(Subscription.status).join(Member, Member.id == Subscription.member_id)
                .where(Member.email == email)
            ).one()


@pytest.fixture
def stack(settings: Settings, smtp_sink: SmtpSink, session_factory: sessionmaker[Session]) -> Iterator[Stack]:
    web_port = free_port()
    settings = settings.with_overrides({
        "site": {"base_url": f"http://127.0.0.1:{web_port}"},
        "worker": {"poll_interval": 0.05},
    })
    factory = session_factory
    with session_scope(factory) as s:
        ml = make_list(s, "forum", title="Forum transfrontalier", now=START)
        make_member(s, AUTHOR, name="Camille Martin", mailing_list=ml, now=START)
        for email in (ONE_CLICK, MAILTO, ACCOUNT, STAYS):
            make_member(s, email, mailing_list=ml, now=START, language="en")
        make_member(s, DIGEST, mailing_list=ml, mode="daily", now=START, language="fr")
    clock = Clock()
    web_engine = make_engine(settings.database.url, sqlite_immediate=False)
    extra = () if "archive_web.digest_links" in BLUEPRINTS else ("archive_web.digest_links",)
    app = create_app(settings, session_factory=make_session_factory(web_engine), clock=clock,
                     extra_blueprints=extra)
    server: BaseWSGIServer = make_server("127.0.0.1", web_port, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
    thread.start()
    gateway = GatewayService(settings, factory, clock=clock)
    gateway.start()
    try:
        yield Stack(settings, factory, gateway, f"http://127.0.0.1:{web_port}", clock, smtp_sink)
    finally:
        gateway.stop()
        server.shutdown()
        server.server_close()
        thread.join(10)
        web_engine.dispose()


def _list_unsubscribe(copy: Received) -> tuple[str, str]:
    """(http URL, mailto URL) of a received copy's List-Unsubscribe header (RFC 2369: <...>, <...>)."""
    message = message_from_bytes(copy.data, policy=policy.default)
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    uris = re.findall(r"<([^>]+)>", str(message["List-Unsubscribe"]))
    http = [u for u in uris if u.startswith("http")]
    mailto = [u for u in uris if u.startswith("mailto:")]
    assert len(http) == 1 and len(mailto) == 1, uris
    return http[0], mailto[0]


def _post(url: str, body: bytes) -> int:
    """POST a form body like a mail client's one-click unsubscribe; the HTTP status."""
    if not url.startswith("http://127.0.0.1:"):
        raise AssertionError(f"not our test web server: {url}")
    request = urllib.request.Request(  # noqa: S310 - the scheme and host are checked above
        url, data=body, method="POST", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as error:
        error.close()
        return int(error.code)


def _browser() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def test_the_four_ways_to_leave(stack: Stack) -> None:
    stack.send(AUTHOR, "forum@forum.test", "Covoiturage transfrontalier", "Bonjour, qui covoiture ?\n")
    for rcpt in (ONE_CLICK, MAILTO, ACCOUNT, STAYS):
        stack.mail_to(rcpt)

    # 1. RFC 8058 one-click, as Gmail or Yahoo do it: a POST with that exact body to the header's URL.
    url, _ = _list_unsubscribe(stack.mail_to(ONE_CLICK)[0])
    assert url.startswith(stack.web_url + "/u/")
    assert _post(url, b"List-Unsubscribe=One-Click") == 200
    assert stack.status(ONE_CLICK) == "unsubscribed"

    # 2. mailto: the address and subject from the header, then the confirmation round-trip by mail.
    _, mailto = _list_unsubscribe(stack.mail_to(MAILTO)[0])
    target = urllib.parse.urlsplit(mailto)
    subject = urllib.parse.parse_qs(target.query)["subject"][0]
    assert (target.path, subject) == ("forum-request@forum.test", "unsubscribe")
    stack.send(MAILTO, target.path, subject, "")
    def confirmation() -> EmailMessage | None:
        for received in stack.sink.received:
            message = message_from_bytes(received.data, policy=policy.default)
            if MAILTO in received.rcpt_tos and "+confirm-" in str(message["Reply-To"] or ""):
                return message  # type: ignore[return-value]
        return None

    stack.wait_for("the confirmation request", lambda: confirmation() is not None)
    assert stack.status(MAILTO) == "active"  # no proof of sender yet
    confirm = confirmation()
    assert confirm is not None
    reply_to = parseaddr(str(confirm["Reply-To"]))[1]
    assert reply_to.startswith("forum+confirm-")
    stack.send(MAILTO, reply_to, f"Re: {confirm['Subject']}", "yes\n", In_Reply_To=confirm["Message-ID"])
    stack.wait_for("erin's unsubscription", lambda: stack.status(MAILTO) == "unsubscribed")
    assert stack.status(MAILTO) == "unsubscribed"

    # 3. The digest's link: the next morning carol's daily digest comes with her unsubscribe link.
    stack.clock.set(datetime(2026, 11, 3, 6, 5, tzinfo=UTC))  # 07:05 in Paris
    assert send_due_digests(stack.settings, stack.factory, now=stack.clock()).sent == 1
    stack.gateway.wake_delivery()
    digest = message_from_bytes(stack.mail_to(DIGEST)[0].data, policy=policy.default)
    text = digest.get_body(("plain",)).get_content()
    assert "Covoiturage transfrontalier" in text
    footer = re.search(r"Se désabonner : (\S+)", text)
    assert footer and footer.group(1) == _list_unsubscribe(stack.mail_to(DIGEST)[0])[0]
    browser = _browser()
    with browser.open(footer.group(1), timeout=10) as page:  # GET: a page with a button, nothing changed
        html = page.read().decode()
    assert "<form" in html and stack.status(DIGEST) == "active"
    action = re.search(r'<form method="post" action="([^"]+)"', html)
    assert action
    with browser.open(stack.web_url + action.group(1), data=b"List-Unsubscribe=One-Click", timeout=10) as page:
        assert page.status == 200
    assert stack.status(DIGEST) == "unsubscribed"

    # 4. The account page: a sign-in link by mail, then the button.
    browser = _browser()
    with browser.open(stack.web_url + "/login", timeout=10) as page:
        token = _csrf(page.read().decode())
    form = urllib.parse.urlencode({"email": ACCOUNT, "csrf_token": token, "next": "/account"}).encode()
    with browser.open(stack.web_url + "/login", data=form, timeout=10) as page:
        assert page.status == 200
    login_mail = message_from_bytes(stack.mail_to(ACCOUNT, 2)[-1].data, policy=policy.default)
    link = re.search(r"(http://127\.0\.0\.1:\d+/login/\S+)", login_mail.get_content())
    assert link, "no sign-in link in the mail"
    with browser.open(link.group(1), timeout=10) as page:
        html = page.read().decode()
    form = urllib.parse.urlencode({"csrf_token": _csrf(html), "next": "/account"}).encode()
    with browser.open(link.group(1), data=form, timeout=10) as page:
        account = page.read().decode()
        assert page.url.endswith("/account")
    form = urllib.parse.urlencode({"csrf_token": _csrf(account)}).encode()
    with browser.open(stack.web_url + "/account/unsubscribe-all", data=form, timeout=10) as page:
        assert page.status == 200
    assert stack.status(ACCOUNT) == "unsubscribed"

    # Afterwards only bob still receives the forum's mail.
    stack.sink.clear()
    stack.send(AUTHOR, "forum@forum.test", "Re: Covoiturage transfrontalier", "Relance.\n")
    stack.mail_to(STAYS)
    stack.clock.set(datetime(2026, 11, 4, 6, 5, tzinfo=UTC))
    assert send_due_digests(stack.settings, stack.factory, now=stack.clock()).sent == 0
    stack.gateway.wake_delivery()
    threading.Event().wait(0.5)
    assert sorted({r for rec in stack.sink.received for r in rec.rcpt_tos}) == [STAYS]


def test_garbage_unsubscribe_links(stack: Stack) -> None:
    for path, body in [("/u/garbage", b"List-Unsubscribe=One-Click"), ("/u/" + "x" * 2000, b""),
                       ("/u/%00", b"List-Unsubscribe=One-Click")]:
        assert _post(stack.web_url + path, body) in (400, 404)
    for email in (ONE_CLICK, MAILTO, ACCOUNT, STAYS, DIGEST):
        assert stack.status(email) == "active"


def test_digest_and_copies_carry_the_same_unsubscribe_target(stack: Stack) -> None:
    """The one-click URL in a digest unsubscribes its reader exactly like a copy's would (and only them)."""
    stack.send(AUTHOR, "forum@forum.test", "Télétravail frontalier", "Question.\n")
    stack.mail_to(STAYS)
    stack.clock.set(START + timedelta(days=1) - timedelta(hours=2, minutes=55))  # 07:05 Paris next day
    assert send_due_digests(stack.settings, stack.factory, now=stack.clock()).sent == 1
    stack.gateway.wake_delivery()
    url, _ = _list_unsubscribe(stack.mail_to(DIGEST)[0])
    assert _post(url, b"List-Unsubscribe=One-Click") == 200
    assert stack.status(DIGEST) == "unsubscribed"
    assert stack.status(STAYS) == "active"
