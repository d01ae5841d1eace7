"""Thread placement: which topic a new message joins, incrementally, one message at a time.

Rules (DESIGN.md "Threading"), in order:

1. the message's own Message-ID is already known (a *ghost*: an earlier message referenced it before
   it arrived) -> that topic;
2. In-Reply-To, then References from last to first: the topic of the nearest known ancestor;
3. only when the message has no In-Reply-To and no References at all, and its subject looks like a
   reply (``Re:``, ``AW:``, ...): a topic with the same normalised subject active within the window
   (default 30 days) before the message's date;
4. otherwise a new topic.

Every referenced id that the index does not know is returned as a ghost, for the caller to register
under the chosen topic, so that later messages naming it (or the message itself, when it arrives
late) join the same topic. The lookups go through a :class:`ThreadIndex` (the database in the
gateway, :class:`MemoryThreadIndex` for imports and tests); nothing here touches a database.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from .subject import subject_key

if TYPE_CHECKING:
    from .parse import ParsedMessage

DEFAULT_SUBJECT_WINDOW = timedelta(days=30)


class ThreadIndex(Protocol):
    """What the threader needs to know about topics already placed."""

    def topic_for_ids(self, ids: list[str]) -> dict[str, Hashable]:
        """For each id (real message or ghost) already registered, its topic key; unknown ids absent."""
        ...

    def topic_for_subject(self, normalized_subject: str, since: datetime) -> Hashable | None:
        """A topic whose normalised subject equals this one (compare case-insensitively, e.g. with
        :func:`passerelle.mail.subject.subject_key`) with a message dated at or after ``since``; the
        most recently active one when several match; None when there is none."""
        ...


@dataclass(frozen=True)
class Placement:
    """Where a message goes. ``topic_key`` None means "start a new topic". ``parent_message_id`` is the
    nearest referenced id known to the index (it may be a ghost without a stored message: resolve it
    to a stored message or leave the parent empty). ``ghost_ids`` are the referenced ids the index did
    not know, to register under the chosen topic. ``reason`` says which rule decided, for logs:
    "known-id", "in-reply-to", "references", "subject" or "new"."""

    topic_key: Hashable | None
    parent_message_id: str | None
    ghost_ids: list[str] = field(default_factory=list)
    reason: str = "new"


def _ordered_unique(ids: Sequence[str], exclude: str) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for i in ids:
        if i and i != exclude and i not in seen:
            seen.add(i)
            out.append(i)
    return out


class Threader:
    """Decides placements against a :class:`ThreadIndex`. Stateless apart from its settings."""

    def __init__(
        self,
        index: ThreadIndex,
        *,
        subject_window: timedelta = DEFAULT_SUBJECT_WINDOW,
        subject_when_refs_unknown: bool = False,
    ) -> None:
        """``subject_when_refs_unknown`` also allows the subject fallback when every referenced id is
        unknown (a parent that never reached the list). Off by default: DESIGN.md keeps the subject
        fallback for messages without any reference header."""
        self.index = index
        self.subject_window = subject_window
        self.subject_when_refs_unknown = subject_when_refs_unknown

    def place(
        self,
        message_id: str,
        in_reply_to: Sequence[str],
        references: Sequence[str],
        normalized_subject: str,
        date: datetime,
        *,
        subject_is_reply: bool = False,
    ) -> Placement:
        """Place one message. ``subject_is_reply`` (from :func:`~passerelle.mail.subject.is_reply_subject`
        on the original subject) allows the subject fallback; without it no subject matching happens."""
        irt = _ordered_unique(in_reply_to, message_id)
        refs = _ordered_unique(references, message_id)
        # Nearest ancestor first: In-Reply-To names the parent; References runs oldest to newest.
        ancestors = _ordered_unique([*irt, *reversed(refs)], message_id)
        known = self.index.topic_for_ids([message_id, *ancestors]) if message_id or ancestors else {}
        ghosts = [i for i in ancestors if i not in known]
        parent = next((i for i in ancestors if i in known), None)

        if message_id in known:
            topic = known[message_id]
            same_topic_parent = next((i for i in ancestors if known.get(i) == topic), None)
            return Placement(topic, same_topic_parent, ghosts, "known-id")
        if parent is not None:
            reason = "in-reply-to" if parent in irt else "references"
            return Placement(known[parent], parent, ghosts, reason)
        no_references = not irt and not refs
        if (no_references or self.subject_when_refs_unknown) and subject_is_reply and normalized_subject.strip():
            topic = self.index.topic_for_subject(normalized_subject, date - self.subject_window)
            if topic is not None:
                return Placement(topic, None, ghosts, "subject")
        return Placement(None, None, ghosts, "new")

    def place_message(self, message: ParsedMessage, *, fallback_date: datetime) -> Placement:
        """:meth:`place` for a parsed message; ``fallback_date`` (the reception time) stands in for a
        missing or unreadable Date header."""
        return self.place(
            message.message_id,
            message.in_reply_to,
            message.references,
            message.normalized_subject,
            message.date or fallback_date,
            subject_is_reply=message.subject_is_reply,
        )


class MemoryThreadIndex:
    """An in-memory :class:`ThreadIndex` with the bookkeeping a caller does after each placement.

    Topic keys are integers from 1. Use :meth:`record` after :meth:`Threader.place`.
    """

    def __init__(self) -> None:
        self._topic_of: dict[str, int] = {}
        self._ghosts: set[str] = set()
        # subject key -> {topic: latest date}
        self._subjects: dict[str, dict[int, datetime]] = {}
        self._counter = itertools.count(1)

    def topic_for_ids(self, ids: list[str]) -> dict[str, Hashable]:
        return {i: self._topic_of[i] for i in ids if i in self._topic_of}

    def topic_for_subject(self, normalized_subject: str, since: datetime) -> Hashable | None:
        topics = self._subjects.get(subject_key(normalized_subject))
        if not topics:
            return None
        recent = [(date, topic) for topic, date in topics.items() if date >= since]
        return max(recent)[1] if recent else None

    def is_ghost(self, message_id: str) -> bool:
        return message_id in self._ghosts

    def new_topic(self) -> int:
        return next(self._counter)

    def record(self, placement: Placement, message_id: str, normalized_subject: str, date: datetime) -> int:
        """Register a placed message (and its ghosts); returns its topic key (a new one if needed)."""
        topic = placement.topic_key if placement.topic_key is not None else self.new_topic()
        assert isinstance(topic, int)
        self._topic_of[message_id] = topic
        self._ghosts.discard(message_id)
        for ghost in placement.ghost_ids:
            if ghost not in self._topic_of:
                self._topic_of[ghost] = topic
                self._ghosts.add(ghost)
        key = subject_key(normalized_subject)
        if key:
            by_topic = self._subjects.setdefault(key, {})
            if topic not in by_topic or by_topic[topic] < date:
                by_topic[topic] = date
        return topic

    def add(self, threader: Threader, message: ParsedMessage, *, fallback_date: datetime) -> tuple[int, Placement]:
        """Place and record a parsed message in one step; returns (topic key, placement)."""
        placement = threader.place_message(message, fallback_date=fallback_date)
        date = message.date or fallback_date
        return self.record(placement, message.message_id, message.normalized_subject, date), placement
