"""Peak memory of the whole stack: `passerelle serve` (SMTP gateway, worker, delivery, scheduler, web archive
in one process) holding an archive, while mail comes in, copies go out and readers browse.

    python benchmarks/memory.py                       # 20k archived messages, then 500 posts by SMTP
    python benchmarks/memory.py --archive 100000 --messages 2000

The real command runs as a child process on a SQLite database bulk-loaded beforehand (50 of its members
take mail instantly); a relay process stands in for the MTA; two SMTP clients post and two HTTP clients read
thread pages, topic lists and searches at the same time. Memory is read from /proc: VmHWM (the kernel's
peak resident set size) of the serve process when the load is over. Goal: < 300 MB (Mailman 3: 1.1 GB over
14 processes).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import random
import signal
import smtplib
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _data import bulk_load
from _harness import ROOT, common_arguments, report, workspace
from fanout import _relay
from ingest_smtp import make_messages

INSTANT = 50


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in kB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0])
    return out


def _reader(port: int, stop: threading.Event, paths: list[str], counts: list[int]) -> None:
    rng = random.Random(port)
    while not stop.is_set():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            conn.request("GET", rng.choice(paths))
            conn.getresponse().read()
            counts[0] += 1
        except (OSError, http.client.HTTPException):
            time.sleep(0.2)
        finally:
            conn.close()


def _poster(port: int, messages: list[tuple[str, bytes]], recipient: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as smtp:
        for sender, raw in messages:
            smtp.sendmail(sender, [recipient], raw)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common_arguments(parser, messages=500)
    parser.add_argument("--archive", type=int, default=20_000, help="messages already archived (default 20000)")
    args = parser.parse_args(argv)
    if args.database != "sqlite":
        parser.error("memory.py measures the embedded setup (SQLite, one process)")

    from alembic import command
    from sqlalchemy import func, select

    from passerelle.db import alembic_config, create_schema, make_engine
    from passerelle.models import InboundMessage, OutboxMessage, Topic
    from tests.smtp_sink import free_port

    ctx = multiprocessing.get_context("spawn")
    relay_port, smtp_port, web_port = free_port(), free_port(), free_port()
    ready, counter, sample = ctx.Event(), ctx.Value("q", 0), ctx.Array("c", 8001)
    relay = ctx.Process(target=_relay, args=(relay_port, ready, counter, sample), daemon=True)
    relay.start()
    ready.wait(30)
    proc = None
    try:
        with workspace("sqlite", keep=args.keep, name="memory") as ws:
            engine = make_engine(ws.url)
            create_schema(engine)
            # The schema is the models' own: mark it current so that serve's migrate step has nothing to do.
            command.stamp(alembic_config(ws.url), "head")
            ids, _gen = bulk_load(engine, args.archive, instant=INSTANT, quiet=True)
            with engine.connect() as conn:
                topic_ids = conn.execute(select(Topic.id).order_by(Topic.id.desc()).limit(300)).scalars().all()
            engine.dispose()
            config = ws.path / "site.toml"
            config.write_text(
                f'[paths]\nvar_dir = "{ws.path / "var"}"\n'
                f'[database]\nurl = "{ws.url}"\n'
                '[site]\nbase_url = "http://archive.bench"\n'
                '[lists]\ndomain = "forum.bench"\ndefault_list = "forum"\n'
                f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n'
                f'[relay]\nhost = "127.0.0.1"\nport = {relay_port}\n'
                f'[web]\nhost = "127.0.0.1"\nport = {web_port}\n'
                '[dmarc]\nenabled = false\n'
            )
            env = {k: v for k, v in os.environ.items() if not k.startswith("PASSERELLE_")}
            proc = subprocess.Popen(
                [sys.executable, "-m", "passerelle.cli", "--config", str(config), "serve"],
                cwd=str(ws.path), env={**env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True,
            )
            assert proc.stdout is not None
            deadline = time.monotonic() + 120
            for line in proc.stdout:
                if "Stop with Ctrl-C" in line:
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("serve did not start")
            else:
                raise RuntimeError("serve exited before it was ready")
            threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
            time.sleep(2)
            idle = _status(proc.pid)

            messages = make_messages(args.messages, domain="forum.bench", author_format="member{}@example.org")
            paths = ["/", "/topics", "/topics?page=3", "/search?q=transport", "/search?q=Grenze+Steuer",
                     *(f"/t/{t}" for t in topic_ids)]
            stop, counts = threading.Event(), [0]
            readers = [threading.Thread(target=_reader, args=(web_port, stop, paths, counts)) for _ in range(2)]
            posters = [threading.Thread(target=_poster, args=(smtp_port, messages[i::2], "forum@forum.bench"))
                       for i in range(2)]
            peak_rss = idle["VmRSS"]
            started = time.monotonic()
            for t in readers + posters:
                t.start()
            engine = make_engine(ws.url, sqlite_immediate=False)
            while True:
                peak_rss = max(peak_rss, _status(proc.pid)["VmRSS"])
                with engine.connect() as conn:
                    done = conn.scalar(select(func.count()).select_from(InboundMessage)
                                       .where(InboundMessage.status.not_in(("new", "processing"))))
                    sent = conn.scalar(select(func.count()).select_from(OutboxMessage)
                                       .where(OutboxMessage.status == "sent"))
                    queued = conn.scalar(select(func.count()).select_from(OutboxMessage))
                # Authors are among the instant subscribers and get no copy of their own posts.
                if done >= args.messages and sent >= queued >= args.messages * (INSTANT - 1):
                    break
                if time.monotonic() - started > 3600:
                    raise RuntimeError(f"load not finished after an hour: {done} processed, {sent} sent")
                time.sleep(0.25)
            elapsed = time.monotonic() - started
            stop.set()
            for t in readers + posters:
                t.join()
            engine.dispose()
            final = _status(proc.pid)
            proc.send_signal(signal.SIGINT)
            proc.wait(60)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
        relay.terminate()
        relay.join()
    peak_mb = final["VmHWM"] / 1024
    rows = [
        ("stack", f"`passerelle serve` (SMTP, worker, delivery, scheduler, web) on SQLite, {ids['messages']:,}"
                  " messages archived"),
        ("load", f"{args.messages} posts by SMTP, {sent} personalised copies relayed ({counter.value} received"
                 f" by the relay), {counts[0]} pages read, in {elapsed:.0f}s"),
        ("RSS idle", f"{idle['VmRSS'] / 1024:.0f} MB after start"),
        ("RSS peak", f"{peak_mb:.0f} MB (VmHWM; sampled max {peak_rss / 1024:.0f} MB), {final['VmRSS'] / 1024:.0f} MB"
                     " at the end"),
        ("verdict", f"{'OK' if peak_mb < 300 else 'MISSES'}: the goal is under 300 MB"),
    ]
    report("memory of the whole stack", rows, goal="< 300 MB (Mailman 3: 1.1 GB over 14 processes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
