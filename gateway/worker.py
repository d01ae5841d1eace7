"""The spool worker: claim rows, decide (rules), do (handlers), and mark each row in the same transaction.

Every row ends in a status an operator can read: done, held, duplicate, bounce, command, dropped or
shunted, with the reason. A row whose processing raises is rolled back and retried; after
worker.max_attempts it is shunted with the error, its raw bytes kept. A row claimed by a worker that died
(claimed_at older than worker.claim_timeout) is claimed again: a restart finishes what was spooled.
"""

from __future__ import annotations

import importlib
import logging
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, bindparam, or_, select, update
from sqlalchemy.orm import Session, lazyload, sessionmaker, undefer
from sqlalchemy.orm.attributes import set_committed_value

from passerelle.config import Settings
from passerelle.db import session_scope
from passerelle.mail.parse import DEFAULT_MAX_BYTES, MessageParseError, parse_message
from passerelle.models import InboundMessage, MailingList, Member, Subscription, Topic

from .claims import claim_ids, worker_identity
from .context import MailContext
from .dedupe import already_archived, replayed_command
from .handlers import Outcome
from .handlers.bounce import handle_bounce
from .handlers.closed import closed_topic
from .handlers.command import handle_command
from .handlers.drop import drop
from .handlers.hold import hold
from .handlers.owner import forward_to_owners
from .handlers.post import find_duplicate, keep_loaded, post_message, write_columns
from .handlers.refuse import refuse
from .recipients import classify_local, split_address
from .rules import decide
from .threadindex import place_message

log = logging.getLogger(__name__)

# Rows claimed per transaction: fewer claim transactions, while a crash strands at most this many rows
# until claim_timeout.
CLAIM_BATCH = 20
# SQLite: claimed rows are processed in one transaction (a failing row rolls back alone: see _process_batch),
# because a commit costs more than a small post: it writes every page it touched (search index,
# outbox, thread refs) to the WAL, and SQLite has one writer anyway. The transaction is committed after this
# many seconds, so that SMTP commits waiting for the write lock (WriteGate) are not held back longer.
# PostgreSQL keeps one row per transaction: several workers run side by side there, and a transaction
# holding one list's placement lock while waiting for another row's lock could deadlock with another worker.
BATCH_SECONDS = 0.2
# ...but when SMTP commits are waiting for the write lock (``yield_to``), the batch ends as soon as it has run
# this long: a sender waits at most this (plus one row) for its 250, instead of a whole batch, and its
# next message is sent and spooled while the worker goes on with the next batch.
BATCH_YIELD_SECONDS = 0.03
# A batch's raw messages are read in one query when they add up to no more than this.
BATCH_RAW_BYTES = 4 * 1024 * 1024


def _recipient_local(settings: Settings, inbound: InboundMessage, mailing_list: MailingList) -> str:
    """Which of the list's addresses the row was sent to ("forum", "forum-request", "forum+help"...).

    Anything that is not one of them (an IMAP mailbox at another domain, an import without envelope) is
    treated as the posting address, so that every rule for posts (membership first) applies to it.
    """
    domain = settings.lists.domain.lower()
    for address in inbound.envelope_to or ():
        local, address_domain = split_address(str(address))
        if local and address_domain == domain and classify_local(local, [mailing_list.name]) is not None:
            return local.lower()
    return mailing_list.name


@dataclass(frozen=True)
class _Intercepted:
    post: bool = True
    text: str | None = None
    subject: str | None = None
    summary: str = ""
    # First mail of a topic: its commands run on the topic once post_message created it.
    after_topic_created: Callable[[Topic], None] | None = None


def _intercept(ctx: MailContext, topic: Topic | None) -> _Intercepted:
    """What gateway.commands.intercept_post (moderators' #commands in posts) says, when it is installed."""
    try:
        commands = importlib.import_module("gateway.commands")
    except ModuleNotFoundError as exc:
        if exc.name != "gateway.commands":
            raise
        return _Intercepted()
    intercept = getattr(commands, "intercept_post", None)
    result = intercept(ctx, topic) if intercept is not None else None
    if result is None:
        return _Intercepted()
    return _Intercepted(
        post=bool(getattr(result, "post", True)),
        text=getattr(result, "text", None),
        subject=getattr(result, "subject", None),
        summary=str(getattr(result, "summary", "") or ""),
        after_topic_created=getattr(result, "after_topic_created", None),
    )


# The list, the sender and their subscription; their relationships (the member's organisation...) are
# loaded if a handler reads them, not joined here. Built once: every spool row runs it.
_MEMBERSHIP = (
    select(MailingList, Member, Subscription)
    .select_from(MailingList)
    .outerjoin(Member, Member.email == bindparam("sender"))
    .outerjoin(Subscription, and_(Subscription.member_id == Member.id, Subscription.list_id == MailingList.id))
    .where(MailingList.name == bindparam("list_name"))
    .options(lazyload("*"))
)


def process_message(
    session: Session, settings: Settings, inbound: InboundMessage, *, now: datetime, resolver: Any = None
) -> Outcome:
    """Decide and do for one spool row, in the caller's transaction; returns the row's outcome."""
    raw = inbound.raw or b""
    try:
        parsed = parse_message(raw, max_bytes=max(DEFAULT_MAX_BYTES, len(raw)))
    except MessageParseError as exc:
        return Outcome("shunted", f"not a usable mail message: {exc.reason}")
    # The list, the sender and their subscription in one query. The sender is the From address; only a
    # message without a usable From is attributed to its envelope sender.
    sender_address = (parsed.from_addr or inbound.envelope_from or "").lower()
    found = session.execute(_MEMBERSHIP, {"sender": sender_address, "list_name": inbound.list_name}).first()
    if found is None:
        return Outcome("shunted", f"the list {inbound.list_name!r} does not exist (any more)")
    mailing_list, sender, subscription = found
    keep_loaded(session, mailing_list, sender, subscription)
    ctx = MailContext(
        session=session,
        settings=settings,
        now=now,
        inbound=inbound,
        parsed=parsed,
        mailing_list=mailing_list,
        sender=sender,
        subscription=subscription,
        recipient_local=_recipient_local(settings, inbound, mailing_list),
        resolver=resolver,
    )
    decision = decide(ctx)
    if decision is not None:
        if decision.kind == "drop":
            return drop(ctx, decision.reason)
        if decision.kind == "bounce":
            return handle_bounce(ctx, decision.data)
        if decision.kind == "command":
            return replayed_command(ctx) or handle_command(ctx)
        if decision.kind == "owner":
            return forward_to_owners(ctx)
        if decision.kind == "hold":
            return hold(ctx, decision.reason)
        if decision.kind == "refuse":
            return refuse(ctx, decision.reason)
        raise AssertionError(f"unhandled decision {decision!r}")
    # Posting: duplicate check, thread placement, moderator commands, closed topic, then the post itself.
    duplicate = find_duplicate(session, parsed.message_id)
    if duplicate is not None:
        return already_archived(session, parsed.message_id, duplicate)
    replay = replayed_command(ctx, posting=True)
    if replay is not None:
        return replay
    placement = place_message(ctx)
    intercepted = _intercept(ctx, placement.topic)
    if not intercepted.post:
        return Outcome("command", intercepted.summary or "moderator commands handled; nothing to post",
                       topic_id=placement.topic.id if placement.topic else None)
    topic = placement.topic
    if topic is not None and topic.status == "closed" and not ctx.is_moderator:
        return closed_topic(ctx, topic)
    outcome = post_message(ctx, placement, cleaned_text=intercepted.text, cleaned_subject=intercepted.subject,
                           on_new_topic=intercepted.after_topic_created)
    if intercepted.summary:
        outcome = Outcome(outcome.status, f"{outcome.reason}; {intercepted.summary}"[:2000], outcome.message_pk,
                          outcome.topic_id, outcome.recipients)
    return outcome


def _claim(
    settings: Settings, factory: sessionmaker[Session], *, now: datetime, worker_id: str, limit: int
) -> list[int]:
    stale = now - timedelta(seconds=settings.worker.claim_timeout)
    with session_scope(factory) as session:
        return claim_ids(
            session,
            InboundMessage,
            where=or_(
                InboundMessage.status == "new",
                and_(InboundMessage.status == "processing", InboundMessage.claimed_at < stale),
            ),
            order_by=(InboundMessage.id,),
            limit=limit,
            status="processing",
            worker_id=worker_id,
            now=now,
        )


_INBOUND = InboundMessage.__table__
_LOAD_ROW = select(InboundMessage).where(InboundMessage.id == bindparam("row_id")).options(undefer(InboundMessage.raw))
_LOAD_ROWS = select(InboundMessage).where(InboundMessage.id.in_(bindparam("ids", expanding=True)))
_LOAD_ROWS_WITH_RAW = _LOAD_ROWS.options(undefer(InboundMessage.raw))
_LOAD_RAW = select(_INBOUND.c.raw).where(_INBOUND.c.id == bindparam("row_id"))


def _load_claimed(session: Session, row_id: int, worker_id: str) -> InboundMessage | None:
    inbound = session.scalar(_LOAD_ROW, {"row_id": row_id})
    if inbound is None or inbound.status != "processing" or inbound.claimed_by != worker_id:
        # Taken over by another worker after our claim timed out: theirs now.
        return None
    return inbound


def _mark(session: Session, inbound: InboundMessage, outcome: Outcome, now: datetime) -> None:
    write_columns(
        session, inbound, status=outcome.status, reason=outcome.reason[:4000], processed_at=now, claimed_by="",
        claimed_at=None,
    )


def _log_outcome(row_id: int, message_id: str, outcome: Outcome) -> None:
    log.info("inbound #%s <%s>: %s (%s)", row_id, message_id, outcome.status, outcome.reason[:300])


def _process_claimed(
    settings: Settings, factory: sessionmaker[Session], row_id: int, *, now: datetime, resolver: Any, worker_id: str
) -> str:
    try:
        with session_scope(factory) as session:
            inbound = _load_claimed(session, row_id, worker_id)
            if inbound is None:
                return "skipped"
            outcome = process_message(session, settings, inbound, now=now, resolver=resolver)
            _mark(session, inbound, outcome, now)
            message_id = inbound.message_id_header
        _log_outcome(row_id, message_id, outcome)
        return outcome.status
    except Exception as exc:
        log.exception("inbound #%s: processing failed", row_id)
        _record_failure(settings, factory, row_id, exc, now=now, worker_id=worker_id)
        return "failed"


def _single_writer(factory: sessionmaker[Session]) -> bool:
    session = factory()
    try:
        return session.get_bind().dialect.name == "sqlite"
    finally:
        session.close()


# Rows waiting for a worker: new ones, and ones whose worker died (claimed before ``stale``).
_WAITING = (
    select(_INBOUND.c.id, _INBOUND.c.size)
    .where(
        or_(
            _INBOUND.c.status == "new",
            and_(
                _INBOUND.c.status == "processing",
                _INBOUND.c.claimed_at < bindparam("stale", type_=_INBOUND.c.claimed_at.type),
            ),
        )
    )
    .order_by(_INBOUND.c.id)
    .limit(bindparam("limit"))
)
_HOLD = (
    update(_INBOUND)
    .where(_INBOUND.c.id == bindparam("row_id"))
    .values(
        status="processing",
        claimed_by=bindparam("worker_id"),
        claimed_at=bindparam("now", type_=_INBOUND.c.claimed_at.type),
    )
)


class _RowFailed(Exception):
    """A row of an optimistic batch (no savepoints) failed: the whole transaction is rolled back."""


def _process_batch(
    settings: Settings, factory: sessionmaker[Session], *, limit: int, now: datetime, resolver: Any, worker_id: str,
    yield_to: Callable[[], bool] | None = None,
) -> int | None:
    """SQLite: take up to ``limit`` waiting rows and process them in ONE transaction until BATCH_SECONDS have
    passed or a row fails. Returns how many rows were dealt with (0: none waiting), None when the transaction
    itself failed (nothing of it was kept).

    No claim is needed first: every writing transaction begins IMMEDIATE (passerelle.db), so no other worker
    can take these rows before this transaction ends; rows it did not get to are still waiting afterwards.

    The batch first runs without savepoints (a SAVEPOINT and its RELEASE per row cost more than some posts'
    own statements). When a row fails, that whole transaction is rolled back, so nothing of it was written,
    and the batch runs again with each row in its own savepoint: the failing row then rolls back alone and
    the rows around it are archived as if processed one by one. Processing has no effect outside the
    database transaction (copies are outbox rows), so running a rolled-back row again repeats nothing.
    """
    try:
        return _run_batch(settings, factory, limit=limit, now=now, resolver=resolver, worker_id=worker_id,
                          isolate=False, yield_to=yield_to)
    except _RowFailed:
        log.info("a row of the worker's batch failed; the batch runs again with a savepoint per row")
    return _run_batch(settings, factory, limit=limit, now=now, resolver=resolver, worker_id=worker_id, isolate=True,
                      yield_to=yield_to)


def _run_batch(
    settings: Settings, factory: sessionmaker[Session], *, limit: int, now: datetime, resolver: Any, worker_id: str,
    isolate: bool, yield_to: Callable[[], bool] | None,
) -> int | None:
    """One batch transaction (see _process_batch); ``isolate``: each row in a savepoint, else a failing row
    raises _RowFailed once the transaction is rolled back. ``yield_to``: whether another writer waits (the
    batch then ends after BATCH_YIELD_SECONDS)."""
    started = time.monotonic()
    deadline = started + BATCH_SECONDS
    yield_after = started + BATCH_YIELD_SECONDS
    stale = now - timedelta(seconds=settings.worker.claim_timeout)
    done: list[tuple[int, str, Outcome]] = []
    failed: tuple[int, Exception] | None = None
    handled = 0
    try:
        with session_scope(factory) as session:
            waiting = session.execute(_WAITING, {"stale": stale, "limit": limit}).all()
            if not waiting:
                return 0
            ids = [row_id for row_id, _size in waiting]
            # The rows in one query, with their raw bytes unless that is a lot of memory (then the bytes of
            # each row are read when its turn comes).
            with_raw = sum(size or 0 for _row_id, size in waiting) <= BATCH_RAW_BYTES
            rows = {
                row.id: row for row in session.scalars(_LOAD_ROWS_WITH_RAW if with_raw else _LOAD_ROWS, {"ids": ids})
            }
            for row_id in ids:
                if handled:
                    clock = time.monotonic()
                    if clock > deadline or (yield_to is not None and clock > yield_after and yield_to()):
                        break
                inbound = rows[row_id]
                savepoint = session.begin_nested() if isolate else None
                try:
                    if not with_raw:
                        set_committed_value(inbound, "raw", session.scalar(_LOAD_RAW, {"row_id": row_id}))
                    outcome = process_message(session, settings, inbound, now=now, resolver=resolver)
                    _mark(session, inbound, outcome, now)
                    if savepoint is not None:
                        savepoint.commit()
                except Exception as exc:
                    if savepoint is None:
                        # Leaves session_scope, which rolls the whole transaction back.
                        raise _RowFailed() from exc
                    savepoint.rollback()
                    # Held by this worker when this transaction commits: the failure is recorded against it.
                    session.execute(_HOLD, {"row_id": row_id, "worker_id": worker_id, "now": now})
                    failed = (row_id, exc)
                    handled += 1
                    break
                handled += 1
                done.append((row_id, inbound.message_id_header, outcome))
                # The raw bytes of every row of the batch need not stay in memory until the commit.
                session.expire(inbound, ["raw"])
    except _RowFailed:
        raise
    except Exception:
        log.exception("the worker's batch transaction failed; the next row is processed on its own")
        return None
    for row_id, message_id, outcome in done:
        _log_outcome(row_id, message_id, outcome)
    if failed is not None:
        row_id, exc = failed
        log.error("inbound #%s: processing failed", row_id, exc_info=exc)
        _record_failure(settings, factory, row_id, exc, now=now, worker_id=worker_id)
    return handled


def _record_failure(
    settings: Settings, factory: sessionmaker[Session], row_id: int, exc: BaseException, *, now: datetime,
    worker_id: str,
) -> None:
    where = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    place = f" at {where[0].filename.rsplit('/', 1)[-1]}:{where[0].lineno}" if where else ""
    error = f"{type(exc).__name__}: {exc}"[:1500] + place
    try:
        with session_scope(factory) as session:
            row = session.execute(
                select(InboundMessage.attempts, InboundMessage.claimed_by).where(InboundMessage.id == row_id)
            ).first()
            if row is None or row.claimed_by != worker_id:
                return
            attempts = (row.attempts or 0) + 1
            shunt = attempts >= max(1, int(settings.worker.max_attempts))
            session.execute(
                update(InboundMessage)
                .where(InboundMessage.id == row_id)
                .values(
                    attempts=attempts,
                    status="shunted" if shunt else "new",
                    reason=(f"shunted after {attempts} failed attempts: " if shunt else f"attempt {attempts} failed: ")
                    + error,
                    claimed_by="",
                    claimed_at=None,
                    processed_at=now if shunt else None,
                )
                .execution_options(synchronize_session=False)
            )
        if shunt:
            log.error("inbound #%s shunted after %d attempts: %s", row_id, attempts, error)
    except Exception:
        # The database itself is failing: the row stays claimed and is taken again after claim_timeout.
        log.exception("inbound #%s: cannot record the failure", row_id)


def process_pending(
    settings: Settings,
    factory: sessionmaker[Session],
    *,
    now: datetime,
    limit: int = 100,
    resolver: Any = None,
    worker_id: str | None = None,
    gate: Callable[[], AbstractContextManager[Any]] | None = None,
    yield_to: Callable[[], bool] | None = None,
) -> int:
    """Process up to ``limit`` spool rows (new ones, and ones abandoned by a dead worker); returns how many
    were processed (whatever their outcome, failures included). ``gate``: a context manager factory entered
    around each transaction (the service's WriteGate.background: SMTP commits go first); ``yield_to``: whether
    such a commit is waiting (SQLite: a batch transaction then ends early, see BATCH_YIELD_SECONDS)."""
    worker_id = worker_id or worker_identity("worker")
    around = gate or nullcontext
    batched = _single_writer(factory)
    processed = 0
    while processed < limit:
        if batched:
            with around():
                handled = _process_batch(
                    settings, factory, limit=min(CLAIM_BATCH, limit - processed), now=now, resolver=resolver,
                    worker_id=worker_id, yield_to=yield_to,
                )
            if handled == 0:
                break
            if handled is not None:
                processed += handled
                continue
        # PostgreSQL (and SQLite when a batch transaction failed): claim, then one row per transaction.
        with around():
            count = 1 if batched else min(CLAIM_BATCH, limit - processed)
            ids = _claim(settings, factory, now=now, worker_id=worker_id, limit=count)
        if not ids:
            break
        for row_id in ids:
            with around():
                _process_claimed(settings, factory, row_id, now=now, resolver=resolver, worker_id=worker_id)
            processed += 1
    return processed


__all__ = ["process_message", "process_pending"]
