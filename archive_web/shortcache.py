"""Values every list page needs that may be a few seconds old: topic counts and the filter form's options.

Counting the topics of a 50,000-message archive scans the topics table (SQLite and PostgreSQL alike),
and the filter form lists every category, tag and organisation; both cost more than the rest of a topic
list. They are kept per app for ``TTL_SECONDS``. A write through this web app (any POST, PUT, PATCH or
DELETE: moderation creating a category, an organisation, a tag...) empties the caches at once; writes by
the gateway or another process (a new topic, a #tag command) show within ``TTL_SECONDS``. Nothing that
decides who may read what is kept here: visibility is always read from the database, and a count that
depends on the reader is kept per kind of reader.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from flask import Flask, current_app, request

T = TypeVar("T")

TTL_SECONDS = 10.0
MAX_ENTRIES = 512
EXTENSION = "passerelle.shortcache"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ShortCache:
    """A bounded mapping whose entries expire ``ttl`` seconds (monotonic clock) after they were computed."""

    def __init__(self, ttl: float = TTL_SECONDS, max_entries: int = MAX_ENTRIES) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[Hashable, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The value kept for ``key``, or ``compute()`` (kept for next time) when absent or expired."""
        now = time.monotonic()
        entry = self._entries.get(key)
        if entry is not None and entry[0] > now:
            return entry[1]  # type: ignore[no-any-return]
        value = compute()  # outside the lock: two requests may compute the same value, none waits
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {k: e for k, e in self._entries.items() if e[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[key] = (now + self.ttl, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries = {}


def cache() -> ShortCache:
    """The current app's cache."""
    return current_app.extensions[EXTENSION]  # type: ignore[no-any-return]


def init_app(app: Flask, ttl: float = TTL_SECONDS) -> None:
    app.extensions[EXTENSION] = ShortCache(ttl)

    @app.teardown_request
    def _forget_after_writes(_exc: BaseException | None) -> None:
        if request.method not in SAFE_METHODS:
            app.extensions[EXTENSION].clear()
