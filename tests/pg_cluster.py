"""A throwaway PostgreSQL cluster for tests and benchmarks: initdb + pg_ctl in a temp dir, trust auth over TCP.

PostgreSQL refuses to run as root (initdb and postgres both check the effective uid), and CI runs as root:
then the cluster belongs to an unprivileged user (``postgres`` when the distribution created it, else
``nobody``) and every server binary is run through ``runuser``. Clients connect over TCP on 127.0.0.1 with
trust authentication, so nobody needs a password or to read the socket directory.

Durability is switched off (fsync, full_page_writes, synchronous_commit): the data dies with the test run.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from sqlalchemy import Engine, inspect, text

from tests.smtp_sink import free_port

SUPERUSER = "postgres"
_SPEED_SETTINGS = {
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "off",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "shared_buffers": "128MB",
    "max_connections": "200",
    "log_min_messages": "warning",
    "log_min_duration_statement": "-1",
}


class PostgresNotAvailable(RuntimeError):
    """The PostgreSQL server binaries are missing: the message says what to install."""


DEFAULT_BIN_PATTERNS = ("/usr/lib/postgresql/*/bin/initdb", "/usr/pgsql-*/bin/initdb")


def find_bindir(*, path: str | None = None, patterns: Sequence[str] = DEFAULT_BIN_PATTERNS) -> Path:
    """The directory holding initdb, pg_ctl and postgres: PATH first, then /usr/lib/postgresql/<newest>/bin."""
    on_path = shutil.which("initdb", path=path)
    if on_path and shutil.which("pg_ctl", path=path):
        return Path(os.path.realpath(on_path)).parent

    def version(initdb: str) -> list[int]:
        name = Path(initdb).parent.parent.name.replace("pgsql-", "")
        return [int(x) if x.isdigit() else 0 for x in name.split(".")]

    found = [match for pattern in patterns for match in glob.glob(pattern)]
    candidates = sorted(found, key=version)
    if candidates:
        return Path(candidates[-1]).parent
    raise PostgresNotAvailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found on PATH nor in "
        f"{', '.join(p.rsplit('/', 1)[0] for p in patterns)}: install them (Debian/Ubuntu: apt-get install "
        "postgresql postgresql-contrib, the latter for the unaccent extension) or run the suite without "
        "PASSERELLE_TEST_DATABASE=postgresql."
    )


def _unprivileged_user() -> str | None:
    """None when we may run PostgreSQL ourselves, else the account to run it as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise PostgresNotAvailable(
        "running as root and neither a 'postgres' nor a 'nobody' account exists to run PostgreSQL as"
    )


class PostgresCluster:
    """``start()`` a fresh cluster under ``base_dir``, get ``url(dbname)`` (created on demand), ``stop()``."""

    def __init__(self, base_dir: Path | str, *, port: int | None = None) -> None:
        self.base_dir = Path(base_dir)
        self.port = port
        self.bindir: Path | None = None
        self.run_as = _unprivileged_user()
        self._owned_dir: Path | None = None
        self.root: Path | None = None
        self._databases: set[str] = set()

    # -- paths -----------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "sock"

    @property
    def log_file(self) -> Path:
        assert self.root is not None, "cluster not started"
        return self.root / "postgres.log"

    def _cmd(self, *args: str) -> list[str]:
        assert self.bindir is not None
        argv = [str(self.bindir / args[0]), *args[1:]]
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--", *argv]
        return argv

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, cwd=str(self.root), check=False
        )
        if result.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}\n{log}"
            )
        return result

    # -- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> None:
        self.bindir = find_bindir()
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            # pytest's temp dirs are private to root (0700 all the way up): the postgres account could not
            # even traverse them. Its cluster lives in its own private dir under the system temp dir instead.
            self._owned_dir = Path(tempfile.mkdtemp(prefix="passerelle-pg-"))
            self.root = self._owned_dir
            account = pwd.getpwnam(self.run_as)
            os.chown(self.root, account.pw_uid, account.pw_gid)
            (self.base_dir / "cluster-location").write_text(str(self.root) + "\n")
        else:
            self.root = self.base_dir
        self._run_as_owner_mkdir(self.socket_dir)
        self._run(
            "initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8",
            "--locale=C.UTF-8" if _has_c_utf8() else "--no-locale", "--no-sync", "--no-instructions",
        )
        last_error: Exception | None = None
        for _attempt in range(5):
            port = self.port or free_port()
            options = " ".join(
                [f"-p {port}", "-c listen_addresses=127.0.0.1", f"-k {self.socket_dir}"]
                + [f"-c {k}={v}" for k, v in _SPEED_SETTINGS.items()]
            )
            try:
                self._run("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data_dir), "-l", str(self.log_file),
                          "-o", options)
            except RuntimeError as exc:  # most likely someone took the port between free_port() and bind
                last_error = exc
                continue
            self.port = port
            break
        else:
            raise RuntimeError(f"PostgreSQL did not start: {last_error}")
        self._wait_ready()

    def _run_as_owner_mkdir(self, path: Path) -> None:
        path.mkdir(mode=0o700, exist_ok=True)
        if self.run_as:
            account = pwd.getpwnam(self.run_as)
            os.chown(path, account.pw_uid, account.pw_gid)

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self._dsn("postgres"), connect_timeout=5):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.root is None:
            return
        if self.data_dir.exists() and (self.data_dir / "postmaster.pid").exists():
            # immediate: the data is thrown away anyway, and a test leaking a connection must not block us.
            subprocess.run(self._cmd("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"),
                           capture_output=True, timeout=60, check=False)
        if self._owned_dir is not None:
            shutil.rmtree(self._owned_dir, ignore_errors=True)
            self._owned_dir = None
        self.root = None

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases -------------------------------------------------------------------------------------
    def _dsn(self, dbname: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={dbname}"

    def create_database(self, dbname: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
            if not exists:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(
                    sql.Identifier(dbname)))
        self._databases.add(dbname)

    def drop_database(self, dbname: str) -> None:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        self._databases.discard(dbname)

    def url(self, dbname: str = "passerelle") -> str:
        """A SQLAlchemy URL for ``dbname`` in this cluster; the database is created if missing."""
        if self.port is None or self.root is None:
            raise RuntimeError("PostgresCluster.url() called before start()")
        if dbname not in self._databases:
            self.create_database(dbname)
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(line.strip().lower() in ("c.utf8", "c.utf-8") for line in out.splitlines())


def reset_database(engine: Engine) -> None:
    """Give ``engine``'s database a clean, complete schema, fast.

    The first time (or whenever a table is missing, e.g. after a test dropped some) the public schema is
    rebuilt with create_schema; otherwise every table, search index included, is emptied with TRUNCATE
    ... RESTART IDENTITY CASCADE, which takes milliseconds where drop/create takes a second.
    """
    from passerelle import models
    from passerelle.db import create_schema
    from passerelle.search import SQLITE_TABLE as SEARCH_TABLE

    expected = {t.name for t in models.Base.metadata.sorted_tables} | {SEARCH_TABLE}
    present = set(inspect(engine).get_table_names())
    if not expected <= present:
        with engine.begin() as conn:
            _terminate_others(conn)
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        create_schema(engine)
        return
    tables = ", ".join(f'"{name}"' for name in sorted(present))
    for attempt in range(2):
        try:
            with engine.begin() as conn:
                # A test that leaked an open transaction would make TRUNCATE wait forever.
                conn.execute(text("SET LOCAL lock_timeout = '2s'"))
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
            return
        except Exception:
            if attempt:
                raise
            with engine.begin() as conn:
                _terminate_others(conn)


def _terminate_others(conn: object) -> None:
    conn.execute(  # type: ignore[attr-defined]
        text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    )


def fresh_database(url: str, dbname: str) -> str:
    """Drop and create ``dbname`` on the server of ``url`` (a cluster's URL), and return its URL."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    dsn = f"host={parsed.host} port={parsed.port} user={parsed.username} dbname=postgres"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(dbname)))
        conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8'").format(sql.Identifier(dbname)))
    return parsed.set(database=dbname).render_as_string(hide_password=False)
