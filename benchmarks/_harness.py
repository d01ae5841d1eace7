"""What every benchmark shares: a throwaway database (SQLite file or a PostgreSQL cluster in a temp dir),
settings pointing at it, timing and percentiles, and a one-line-per-figure report."""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def common_arguments(parser: argparse.ArgumentParser, *, messages: int) -> None:
    parser.add_argument("--messages", type=int, default=messages, help=f"how many messages (default {messages})")
    parser.add_argument("--database", choices=("sqlite", "postgresql"), default="sqlite",
                        help="SQLite file in a temp dir (default) or a PostgreSQL cluster started in a temp dir")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (its path is printed)")


@dataclass
class Workspace:
    path: Path
    url: str


@contextmanager
def workspace(database: str, *, keep: bool = False, name: str = "bench") -> Iterator[Workspace]:
    """A temp dir and an empty database URL in it; everything is removed afterwards (unless ``keep``)."""
    path = Path(tempfile.mkdtemp(prefix=f"passerelle-{name}-"))
    cluster = None
    try:
        if database == "postgresql":
            from tests.pg_cluster import PostgresCluster

            cluster = PostgresCluster(path / "pg")
            cluster.start()
            url = cluster.url("bench")
        else:
            url = f"sqlite:///{path / 'passerelle.db'}"
        yield Workspace(path, url)
    finally:
        if cluster is not None:
            cluster.stop()
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def settings_for(ws: Workspace, **sections: dict[str, Any]) -> Any:
    from passerelle.config import load_settings

    return load_settings(environ={}, overrides=overrides_for(ws, **sections))


def overrides_for(ws: Workspace, **sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Settings overrides for a benchmark in ``ws`` (picklable: what child processes load their settings from)."""
    overrides: dict[str, dict[str, Any]] = {
        "paths": {"var_dir": str(ws.path / "var")},
        "database": {"url": ws.url},
        "site": {"base_url": "http://archive.bench"},
        "lists": {"domain": "forum.bench"},
        "dmarc": {"enabled": False},
        "smtp": {"port": 0},
        "web": {"port": 0},
    }
    for key, values in sections.items():
        overrides.setdefault(key, {}).update(values)
    return overrides


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Stopwatch:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def peak_rss_mb() -> float:
    """Peak resident set size of this process (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    return f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"


def report(title: str, rows: Sequence[tuple[str, str]], *, goal: str = "") -> None:
    print(f"== {title}  ({machine()})")
    width = max(len(k) for k, _ in rows) if rows else 0
    for key, value in rows:
        print(f"  {key.ljust(width)}  {value}")
    if goal:
        print(f"  goal: {goal}")
    sys.stdout.flush()
