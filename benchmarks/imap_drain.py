"""How fast does ImapFetcher drain a mailbox into the spool?

Starts a throwaway Dovecot (tests/dovecot.py), APPENDs N real list messages to one mailbox (the r-help
2019 pipermail archive, then the fedora-devel January 2010 archive, from ../shared/corpus), then times one
``ImapFetcher.run_once()`` into a fresh SQLite spool (WAL), which fetches, spools, commits the UID cursor
and flags every message \\Seen. Prints messages/s, MB/s and peak memory.

    .venv/bin/python benchmarks/imap_drain.py [--messages 5000] [--batch-size 50] [--processed-folder Done]
"""

from __future__ import annotations

import argparse
import gzip
import mailbox
import resource
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.imap import ImapFetcher  # noqa: E402
from passerelle.config import load_settings  # noqa: E402
from passerelle.db import create_schema, make_engine, make_session_factory, session_scope  # noqa: E402
from passerelle.models import InboundMessage  # noqa: E402
from tests import corpus_dir  # noqa: E402
from tests.dovecot import INSTALL_HINT, Dovecot, find_dovecot  # noqa: E402


def corpus_messages(count: int, workdir: Path) -> list[bytes]:
    corpus = corpus_dir()
    fedora = workdir / "fedora.mbox"
    fedora.write_bytes(gzip.decompress(next((corpus / "jwzthreading-fedora-devel").rglob("2010-January.txt.gz"))
                                       .read_bytes()))
    found: list[bytes] = []
    for path in (corpus / "r-help-pipermail" / "r-help-2019.mbox", fedora):
        box = mailbox.mbox(path, create=False)
        try:
            for key in box.iterkeys():
                found.append(box.get_bytes(key))
                if len(found) == count:
                    return found
        finally:
            box.close()
    # Fewer real messages than asked: cycle through them again (same bytes, new UIDs).
    return [found[i % len(found)] for i in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--processed-folder", default="", help="move processed mail there instead of flagging \\Seen")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also measure the Python heap peak (tracemalloc slows the drain about 3x)")
    args = parser.parse_args()
    if find_dovecot() is None:
        print(INSTALL_HINT, file=sys.stderr)
        return 1

    with tempfile.TemporaryDirectory(prefix="passerelle-bench-") as tmp, Dovecot({"forum": "bench"}) as server:
        work = Path(tmp)
        messages = corpus_messages(args.messages, work)
        total_bytes = sum(len(m) for m in messages)
        started = time.perf_counter()
        client = server.client("forum")
        for start in range(0, len(messages), 200):
            client.multiappend("INBOX", messages[start : start + 200])
        client.logout()
        print(f"mailbox: {len(messages)} messages, {total_bytes / 1e6:.1f} MB appended in "
              f"{time.perf_counter() - started:.1f}s (Dovecot {server.binary})")

        settings = load_settings(environ={}, overrides={
            "paths": {"var_dir": str(work / "var")},
            "database": {"url": f"sqlite:///{work / 'spool.db'}"},
            "lists": {"domain": "forum.test"},
        })
        engine = make_engine(settings.database.url)
        create_schema(engine)
        factory = make_session_factory(engine)
        account = server.account("forum", batch_size=args.batch_size, processed_folder=args.processed_folder)
        fetcher = ImapFetcher(settings, factory, account, clock=lambda: datetime.now(UTC))

        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if args.tracemalloc:
            tracemalloc.start()
        started = time.perf_counter()
        spooled = fetcher.run_once()
        elapsed = time.perf_counter() - started
        peak = tracemalloc.get_traced_memory()[1] if args.tracemalloc else 0
        tracemalloc.stop()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        with session_scope(factory) as session:
            rows = session.query(InboundMessage).count()
        engine.dispose()
        assert spooled == rows == len(messages), (spooled, rows, len(messages))
        print(f"drained: {spooled} messages in {elapsed:.2f}s = {spooled / elapsed:.0f} messages/s, "
              f"{total_bytes / 1e6 / elapsed:.1f} MB/s (batch_size={args.batch_size}, "
              f"{'move to ' + args.processed_folder if args.processed_folder else 'flag Seen'})")
        print(f"memory: process max RSS {rss:.0f} MB ({rss_before:.0f} MB before the drain, which holds the "
              f"{total_bytes / 1e6:.0f} MB of test messages)"
              + (f"; Python heap peak during the drain {peak / 1e6:.1f} MB (tracemalloc)" if args.tracemalloc else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
