"""The `passerelle` command: serve everything, manage the database, lists and members, inspect the queues."""

from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from .config import ConfigError, Settings, derived_base_url, load_settings
from .db import make_engine, make_session_factory, migrate, session_scope

if TYPE_CHECKING:
    from apscheduler.events import JobExecutionEvent
    from apscheduler.schedulers.base import BaseScheduler

log = logging.getLogger("passerelle")

Handler = Callable[[argparse.Namespace, Settings], int]


def utcnow() -> datetime:
    return datetime.now(UTC)


def _factory(settings: Settings, *, writer: bool = True) -> sessionmaker[Session]:
    engine = make_engine(
        settings.database.url, busy_timeout=settings.database.sqlite_busy_timeout, sqlite_immediate=writer
    )
    return make_session_factory(engine)


@contextmanager
def _database(settings: Settings, *, writer: bool = True) -> Iterator[sessionmaker[Session]]:
    """A session factory for one command; its connections are closed when the command ends."""
    factory = _factory(settings, writer=writer)
    try:
        yield factory
    finally:
        factory.kw["bind"].dispose()


# --- serve -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListeningPort:
    """A port `serve` listens on, and how a user moves it."""

    what: str
    host: str
    port: int
    env: str
    option: str = ""


def listening_ports(settings: Settings) -> list[ListeningPort]:
    """The ports `serve` will listen on with these settings (port 0: any free port, never checked)."""
    ports = [
        ListeningPort("web archive", settings.web.host, settings.web.port, "PASSERELLE_WEB__PORT", "--web-port"),
        ListeningPort("SMTP gateway", settings.smtp.host, settings.smtp.port, "PASSERELLE_SMTP__PORT", "--smtp-port"),
    ]
    if settings.relay.capture_dir:
        ports.append(ListeningPort("mail capture relay", settings.relay.host, settings.relay.port,
                                   "PASSERELLE_RELAY__PORT"))
    return [p for p in ports if p.port]


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # As the servers themselves do (werkzeug, asyncio): a port left in TIME_WAIT by a previous run is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1)
    except BaseException:
        sock.close()
        raise
    return sock


def _free_port_after(host: str, port: int, avoid: set[int]) -> int | None:
    for candidate in range(port + 1, min(port + 50, 65536)):
        if candidate in avoid:
            continue
        try:
            _bind(host, candidate).close()
        except OSError:
            continue
        return candidate
    return None


def check_ports(settings: Settings) -> list[str]:
    """What stops `serve` from listening, found before anything starts (no database opened, no mail sent):
    one message per port that cannot be bound, naming the setting, environment variable and option that
    move it. The ports are held together while checking, so two settings naming the same port are caught."""
    problems: list[str] = []
    held: list[socket.socket] = []
    ports = listening_ports(settings)
    try:
        for item in ports:
            try:
                held.append(_bind(item.host, item.port))
            except OSError as exc:
                problems.append(_port_problem(item, exc, avoid={p.port for p in ports}))
    finally:
        for sock in held:
            sock.close()
    return problems


def _port_problem(item: ListeningPort, exc: OSError, avoid: set[int]) -> str:
    where = f"{item.host}:{item.port} ({item.what})"
    section = item.env.removeprefix("PASSERELLE_").split("__")[0].lower()
    if isinstance(exc, socket.gaierror) or exc.errno == errno.EADDRNOTAVAIL:
        host_env = item.env.replace("__PORT", "__HOST")
        return (f"cannot listen on {where}: {item.host!r} is not an address of this machine ({exc.strerror}).\n"
                f"  Set another host: {host_env}=127.0.0.1, or host in [{section}] of the site file.")
    if exc.errno == errno.EACCES:
        reason = "this user may not open it (ports below 1024 need privileges)"
    elif exc.errno == errno.EADDRINUSE:
        reason = "the port is already in use (another program, or Passerelle still running?)"
    else:
        reason = exc.strerror or str(exc)
    found = _free_port_after(item.host, item.port, avoid)
    free = found or item.port + 1
    ways = [f"./run demo {item.option} {free}", f"passerelle serve {item.option} {free}"] if item.option else []
    ways += [f"{item.env}={free} ./run demo   (the environment variable)",
             f"port = {free} in [{section}] of the site file"]
    free_now = f" ({free} is free)" if found else ""
    return (f"cannot listen on {where}: {reason}.\n  Start it on another port{free_now}, with one of:\n"
            + "".join(f"    {way}\n" for way in ways)).rstrip("\n")


@contextmanager
def _quieter(names: Sequence[str], level: int, *, unless: bool) -> Iterator[None]:
    """Raise the level of some loggers for a while (unless ``unless``)."""
    loggers = [] if unless else [logging.getLogger(name) for name in names]
    saved = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(level)
    try:
        yield
    finally:
        for logger, old in zip(loggers, saved, strict=True):
            logger.setLevel(old)


def quiet_library_logs(*, verbose: bool, demo: bool) -> None:
    """Keep the log of `serve` to what an operator reads (mail posted, delivered, held, digests sent,
    faults): libraries' chatter goes to --verbose only."""
    if verbose:
        return
    # aiosmtpd logs every SMTP command and reply at INFO (a dozen lines per mail received).
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    # APScheduler logs each run of each job twice ("Running job", "executed successfully"); our jobs log
    # what they did themselves, and a failing job is still logged (ERROR).
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    if demo:
        # One line per web request (every page, stylesheet and image) drowns the demo's log; a real site's
        # reverse proxy keeps the access log.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)


def _first_round(scheduler: BaseScheduler) -> threading.Event:
    """Set once every job of ``scheduler`` has run once; call before the scheduler starts (its jobs run at
    once, and a run that ended before the listener was added would never be seen)."""
    from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED

    pending = {job.id for job in scheduler.get_jobs()}
    lock = threading.Lock()
    done = threading.Event()

    def ran(event: JobExecutionEvent) -> None:
        with lock:
            pending.discard(event.job_id)
            if not pending and not done.is_set():
                done.set()
                scheduler.remove_listener(ran)

    if pending:
        scheduler.add_listener(ran, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
    else:
        done.set()
    return done


def _wait_until_settled(first_round: threading.Event, factory: sessionmaker[Session], timeout: float) -> None:
    """Wait (at most ``timeout`` seconds) for the scheduler's first round of jobs and the delivery of what
    they queued (digests missed while stopped are sent at start), so that the banner printed next is not
    buried under their log lines."""
    from .models import OutboxMessage

    deadline = time.monotonic() + timeout
    first_round.wait(timeout)
    due = (select(func.count()).select_from(OutboxMessage)
           .where(OutboxMessage.status == "pending", OutboxMessage.next_attempt_at <= utcnow()))
    while time.monotonic() < deadline:
        with session_scope(factory) as session:
            if not session.scalar(due):
                return
        time.sleep(0.2)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    """SMTP gateway + worker + delivery, IMAP fetchers, scheduler and web archive in one process."""
    overrides: dict[str, dict[str, int]] = {}
    if args.web_port is not None:
        overrides["web"] = {"port": args.web_port}
    if args.smtp_port is not None:
        overrides["smtp"] = {"port": args.smtp_port}
    if overrides:
        # site.base_url, when not set, follows the web port (links in mail point where the archive listens).
        settings = settings.with_overrides(overrides)
    problems = check_ports(settings)
    if problems:
        for problem in problems:
            print(problem, file=sys.stderr)
        return 1

    from werkzeug.serving import make_server

    from archive_web import create_app
    from digests.scheduler import build_scheduler
    from gateway.service import GatewayService

    quiet_library_logs(verbose=args.verbose, demo=args.demo)
    migrate(settings.database.url)
    factory = _factory(settings)
    if args.demo:
        from .demo import load_demo

        # The demo's 20 posts (and its two sheets) would log a line each: its summary line says enough.
        with (_quieter(("gateway.inbound", "gateway.worker", "gateway.sheets"), logging.WARNING,
                       unless=args.verbose),
              session_scope(factory) as session):
            loaded = load_demo(session, settings, factory=factory, now=utcnow())
        if loaded:
            log.info("demo forum loaded: %s", loaded)

    stopping = threading.Event()
    capture = None
    if settings.relay.capture_dir:
        from .capture import CaptureRelay

        capture = CaptureRelay(settings.relay.host, settings.relay.port, settings.relay.capture_dir)
        capture.start()

    gateway = GatewayService(settings, factory, clock=utcnow)
    gateway.start()
    imap = None
    if settings.imap.accounts:
        from gateway.imap import ImapService

        imap = ImapService(settings, factory, clock=utcnow)
        imap.start()
    scheduler = build_scheduler(settings, factory, clock=utcnow)
    first_round = _first_round(scheduler)
    scheduler.start()
    app = create_app(settings, session_factory=_factory(settings, writer=False), clock=utcnow)
    web = make_server(settings.web.host, settings.web.port, app, threaded=True)
    web_thread = threading.Thread(target=web.serve_forever, name="web", daemon=True)
    web_thread.start()

    _wait_until_settled(first_round, factory, timeout=15.0)
    list_name = settings.lists.default_list
    print(f"Passerelle is running ({settings.database.url})")
    listening = derived_base_url(settings.web.host, web.server_port)
    print(f"  web archive    {listening}/")
    if settings.site.base_url.rstrip("/") != listening:
        print(f"                 links in mail point to {settings.site.base_url} (site.base_url)")
    print(f"  SMTP gateway   {settings.smtp.host}:{gateway.smtp_port}  — post to {settings.list_address(list_name)}")
    print(f"                 commands to {settings.list_address(list_name, '-request')} (send 'help')")
    if capture is not None:
        print(f"  outgoing mail  captured by a local relay on {settings.relay.host}:{settings.relay.port}"
              f" into {settings.relay.capture_dir}/")
    else:
        print(f"  outgoing mail  relayed through {settings.relay.host}:{settings.relay.port}")
    example = f"swaks --server {settings.smtp.host}:{gateway.smtp_port} --to {settings.list_address(list_name)}"
    print(f"  try: {example} --from camille.martin@eurometropole.example")
    print("Stop with Ctrl-C.", flush=True)

    def _stop(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    stopping.wait()
    print("stopping…", flush=True)
    web.shutdown()
    scheduler.shutdown(wait=False)
    if imap is not None:
        imap.stop()
    gateway.stop()
    if capture is not None:
        capture.stop()
    return 0


# --- database and data --------------------------------------------------------------------------------


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    migrate(settings.database.url)
    print("database schema is up to date")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from .demo import load_demo

    migrate(settings.database.url)
    with _database(settings) as factory, session_scope(factory) as session:
        loaded = load_demo(session, settings, factory=factory, now=utcnow())
    print(f"demo forum: {loaded or 'already loaded'}")
    return 0


def cmd_create_list(args: argparse.Namespace, settings: Settings) -> int:
    from .models import MailingList

    migrate(settings.database.url)
    with _database(settings) as factory, session_scope(factory) as session:
        if session.scalar(select(MailingList).where(MailingList.name == args.name)):
            print(f"list {args.name} already exists", file=sys.stderr)
            return 1
        session.add(MailingList(name=args.name, title=args.title or args.name, description=args.description,
                                language=args.language, created_at=utcnow()))
    print(f"created {settings.list_address(args.name)}")
    return 0


def cmd_add_member(args: argparse.Namespace, settings: Settings) -> int:
    from email_validator import EmailNotValidError, validate_email

    from .models import MailingList, Member, Organisation, Subscription

    try:
        email = validate_email(args.email, check_deliverability=False).normalized.lower()
    except EmailNotValidError as exc:
        print(f"not a valid address: {exc}", file=sys.stderr)
        return 2
    with _database(settings) as factory, session_scope(factory) as session:
        ml = session.scalar(select(MailingList).where(MailingList.name == args.list))
        if ml is None:
            print(f"no list named {args.list!r} (create it with `passerelle create-list`)", file=sys.stderr)
            return 1
        org = None
        if args.organisation:
            org = session.scalar(select(Organisation).where(Organisation.name == args.organisation))
            if org is None:
                org = Organisation(name=args.organisation, country=(args.country or "FR").upper()[:2])
                session.add(org)
        member = session.scalar(select(Member).where(Member.email == email))
        if member is None:
            member = Member(email=email, name=args.name or "", organisation=org, language=args.language,
                            timezone=args.timezone, created_at=utcnow())
            session.add(member)
            session.flush()
        sub = session.scalar(select(Subscription).where(Subscription.member_id == member.id,
                                                         Subscription.list_id == ml.id))
        if sub is None:
            sub = Subscription(member_id=member.id, list_id=ml.id, created_at=utcnow())
            session.add(sub)
        sub.role, sub.delivery_mode, sub.status = args.role, args.mode, "active"
    print(f"{email} is a {args.role} of {args.list} ({args.mode})")
    return 0


def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    """Queues at a glance, for operators: spool, outbox, held messages, IMAP accounts."""
    with _database(settings, writer=False) as factory:
        _print_status(factory)
    return 0


def _print_status(factory: sessionmaker[Session]) -> None:
    from .models import HeldMessage, InboundMessage, OutboxMessage

    with session_scope(factory) as session:
        spool = dict(session.execute(select(InboundMessage.status, func.count()).group_by(InboundMessage.status)).all())
        outbox = dict(session.execute(select(OutboxMessage.status, func.count()).group_by(OutboxMessage.status)).all())
        held = session.scalar(select(func.count()).select_from(HeldMessage).where(HeldMessage.decision.is_(None)))
        print("spool:  " + (", ".join(f"{k} {v}" for k, v in sorted(spool.items())) or "empty"))
        print("outbox: " + (", ".join(f"{k} {v}" for k, v in sorted(outbox.items())) or "empty"))
        print(f"held for moderation: {held}")
        shunted = select(InboundMessage).where(InboundMessage.status == "shunted")
        for row in session.scalars(shunted.order_by(InboundMessage.id.desc()).limit(20)):
            print(f"  shunted #{row.id} <{row.message_id_header}> from {row.envelope_from}: {row.reason}")
        for row in session.scalars(
            select(OutboxMessage).where(OutboxMessage.status == "failed").order_by(OutboxMessage.id.desc()).limit(20)
        ):
            print(f"  failed delivery #{row.id} to {row.recipient}: {row.last_error}")
    from gateway.imap import imap_status

    for account in imap_status(factory):
        print("imap: " + ", ".join(f"{k}={v}" for k, v in account.items()))


def cmd_retry_shunted(args: argparse.Namespace, settings: Settings) -> int:
    """Put shunted spool rows back in the queue (after fixing what made them fail)."""
    from .models import InboundMessage

    with _database(settings) as factory, session_scope(factory) as session:
        query = select(InboundMessage).where(InboundMessage.status == "shunted")
        if args.ids:
            query = query.where(InboundMessage.id.in_(args.ids))
        rows = list(session.scalars(query))
        for row in rows:
            row.status, row.attempts, row.claimed_by, row.claimed_at = "new", 0, "", None
            row.reason = f"retried by operator (was: {row.reason})"[:2000]
    print(f"{len(rows)} message(s) queued again")
    return 0


# --- wiring --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="passerelle", description=__doc__)
    parser.add_argument("--config", help="site configuration file (TOML), overriding config/defaults.toml")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="run the SMTP gateway, the web archive and the scheduler")
    p.add_argument("--demo", action="store_true", help="load a small demo forum first if the database is empty")
    p.add_argument("--web-port", type=int, metavar="PORT",
                   help="port of the web archive (setting web.port, env PASSERELLE_WEB__PORT; default 8080); "
                        "links in mail follow it unless site.base_url is set")
    p.add_argument("--smtp-port", type=int, metavar="PORT",
                   help="port of the SMTP gateway (setting smtp.port, env PASSERELLE_SMTP__PORT; default 8025)")
    # Also after `serve`, so that `./run demo -v` works (SUPPRESS: the global -v is not reset when absent).
    p.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                   help="debug logging, with the SMTP dialogue and one line per web request")
    p.set_defaults(handler=cmd_serve)

    sub.add_parser("migrate", help="create or upgrade the database schema").set_defaults(handler=cmd_migrate)
    sub.add_parser("demo-data", help="load the demo forum into an empty database").set_defaults(handler=cmd_demo)

    p = sub.add_parser("create-list", help="create a forum (mailing list)")
    p.add_argument("name", help="local part of the posting address, e.g. forum")
    p.add_argument("--title", default="")
    p.add_argument("--description", default="")
    p.add_argument("--language", default="fr", choices=["fr", "en", "de", "it", "es"])
    p.set_defaults(handler=cmd_create_list)

    p = sub.add_parser("add-member", help="add or update a member and subscribe them to a list")
    p.add_argument("email")
    p.add_argument("--list", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--organisation", default="")
    p.add_argument("--country", default="")
    p.add_argument("--role", default="member", choices=["member", "moderator", "owner"])
    p.add_argument("--mode", default="instant", choices=["instant", "daily", "weekly", "nomail"])
    p.add_argument("--language", default="fr", choices=["fr", "en", "de", "it", "es"])
    p.add_argument("--timezone", default="Europe/Paris")
    p.set_defaults(handler=cmd_add_member)

    sub.add_parser("status", help="queues, shunted messages, failed deliveries, IMAP accounts").set_defaults(
        handler=cmd_status
    )
    p = sub.add_parser("retry-shunted", help="queue shunted messages again")
    p.add_argument("ids", nargs="*", type=int)
    p.set_defaults(handler=cmd_retry_shunted)

    for extension in ("passerelle.importer",):
        try:
            module = __import__(extension, fromlist=["add_parser"])
        except ImportError:
            continue
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    return int(args.handler(args, settings))


if __name__ == "__main__":
    sys.exit(main())
