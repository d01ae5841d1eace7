"""Handlers: what is done once the rules decided. Each runs inside the worker's transaction, the same one
that marks the spool row, and returns an :class:`Outcome` (the spool row's final status and reason)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Outcome:
    # The spool row's status: done, held, duplicate, bounce, command, dropped, shunted.
    status: str
    reason: str
    # The archived message, for posts.
    message_pk: int | None = None
    topic_id: int | None = None
    recipients: int = 0


__all__ = ["Outcome"]
