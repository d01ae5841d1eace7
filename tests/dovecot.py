"""A throwaway Dovecot IMAP server for tests and benchmarks.

Dovecot (Debian ``dovecot-imapd``) runs in the foreground (``dovecot -F``) from a temp directory holding
its own dovecot.conf, passwd-file users with plain passwords, maildirs, base_dir/state_dir and log: nothing
of the system's configuration or state is used or touched. It listens on 127.0.0.1 on a free port (and an
implicit-TLS port with a self-signed certificate when ``tls=True``).

When it runs as root, Dovecot refuses to give mailboxes to UID 0, so the mail processes run as the
``dovecot`` user the Debian package creates (and the login processes as ``dovenull``); the temp directory
lives in /tmp (pytest's tmp dirs are 0700 root) and the maildirs are chowned to that user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from imapclient import IMAPClient

INSTALL_HINT = "Dovecot is not installed: apt-get install dovecot-imapd"


def find_dovecot() -> str | None:
    """Path of the dovecot binary, or None (Debian puts it in /usr/sbin, often not on a user's PATH)."""
    found = shutil.which("dovecot")
    if found:
        return found
    for candidate in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: the parent pid follows the last ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


class DovecotError(RuntimeError):
    """Dovecot could not be started; the message quotes its log."""


class Dovecot:
    """One Dovecot instance. ``start()``, ``stop()``, ``restart()`` (same port, same mailboxes).

    ``users`` maps user name to password. ``capabilities``: when given, the exact post-login
    CAPABILITY list announced (e.g. without IDLE or MOVE, to exercise a client's fallbacks).
    """

    def __init__(
        self,
        users: Mapping[str, str],
        *,
        tls: bool = False,
        capabilities: Iterable[str] | None = None,
        directory: str | os.PathLike[str] | None = None,
    ) -> None:
        binary = find_dovecot()
        if binary is None:
            raise DovecotError(INSTALL_HINT)
        self.binary = binary
        self.users = dict(users)
        self.tls = tls
        self.capabilities = list(capabilities) if capabilities is not None else None
        self.host = "127.0.0.1"
        self.port = free_port()
        self.tls_port = free_port() if tls else 0
        self._own_dir = directory is None
        self.dir = Path(directory) if directory is not None else Path(tempfile.mkdtemp(prefix="passerelle-dovecot-"))
        self.dir.chmod(0o755)
        self.conf = self.dir / "dovecot.conf"
        self.log_path = self.dir / "dovecot.log"
        self.cert_path = self.dir / "cert.pem"
        self.key_path = self.dir / "key.pem"
        self._proc: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:
            mail_user = pwd.getpwnam("dovecot")
            self.mail_uid, self.mail_gid = mail_user.pw_uid, mail_user.pw_gid
            self._internal_user, self._login_user = "dovecot", "dovenull"
        else:
            me = pwd.getpwuid(os.geteuid())
            self.mail_uid, self.mail_gid = me.pw_uid, me.pw_gid
            self._internal_user = self._login_user = me.pw_name
        self._write_config()

    # -- configuration -------------------------------------------------------------------------------

    def maildir(self, user: str) -> Path:
        return self.dir / "mail" / user

    def _write_config(self) -> None:
        for sub in ("run", "state", "mail"):
            (self.dir / sub).mkdir(exist_ok=True)
        os.chown(self.dir / "mail", self.mail_uid, self.mail_gid)
        lines = []
        for user, password in self.users.items():
            home = self.maildir(user)
            home.mkdir(exist_ok=True)
            os.chown(home, self.mail_uid, self.mail_gid)
            lines.append(f"{user}:{{PLAIN}}{password}:{self.mail_uid}:{self.mail_gid}::{home}::")
        users_file = self.dir / "users"
        users_file.write_text("\n".join(lines) + "\n")
        users_file.chmod(0o644)
        if self.tls:
            self._make_certificate()
        d = self.dir
        conf = f"""
protocols = imap
listen = 127.0.0.1
instance_name = passerelle-test-{self.port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {self.log_path}
info_log_path = {self.log_path}
default_internal_user = {self._internal_user}
default_login_user = {self._login_user}
first_valid_uid = {min(self.mail_uid, 500) or 1}
first_valid_gid = {min(self.mail_gid, 500) or 1}
auth_mechanisms = plain login
disable_plaintext_auth = no
auth_failure_delay = 0
# Failed logins from one address are answered after a delay growing to 15 s (the auth penalty): tests that
# log in with a wrong password on purpose should not wait for it (about 0.5 s per failure remains).
service anvil {{
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
mail_location = maildir:~/Maildir
mail_fsync = never
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {users_file}
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {users_file}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {self.tls_port}
  }}
}}
"""
        if self.tls:
            conf += f"ssl = yes\nssl_cert = <{self.cert_path}\nssl_key = <{self.key_path}\n"
            if Path("/usr/share/dovecot/dh.pem").exists():
                conf += "ssl_dh = </usr/share/dovecot/dh.pem\n"
        else:
            conf += "ssl = no\n"
        if self.capabilities is not None:
            conf += f"protocol imap {{\n  imap_capability = {' '.join(self.capabilities)}\n}}\n"
        self.conf.write_text(conf)

    def _make_certificate(self) -> None:
        if shutil.which("openssl") is None:
            raise DovecotError("openssl is needed for a test certificate: apt-get install openssl")
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-keyout", str(self.key_path), "-out", str(self.cert_path),
                "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.key_path.chmod(0o600)

    def ssl_context(self) -> ssl.SSLContext:
        """A client context trusting this server's self-signed certificate."""
        return ssl.create_default_context(cafile=str(self.cert_path))

    # -- process -------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        if self.running:
            return
        self._proc = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise DovecotError(f"dovecot exited at start: {err.strip()}\n{self.log()}")
            if self._greets():
                return
            time.sleep(0.05)
        self.stop()
        raise DovecotError(f"dovecot did not answer on {self.host}:{self.port} within {timeout}s\n{self.log()}")

    def _greets(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as s:
                return s.recv(100).startswith(b"* OK")
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the master and its processes (imap sessions included); wait until the port is closed."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        # Dovecot 2.3's master leaves running imap processes behind when it stops (and waits a second
        # for them), so a client would keep its session across a "restart": end them with the master,
        # as a reboot or a crash would.
        children = _children(proc.pid)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            for pid in children:
                self._signal_own(pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
        for pid in children:
            self._signal_own(pid, signal.SIGKILL)
        # The master is gone when its listening socket is closed; its children may linger a moment.
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self._greets():
            time.sleep(0.05)

    def _signal_own(self, pid: int, signum: int) -> None:
        """Signal ``pid`` only if it is still one of this instance's processes (their titles carry it)."""
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if title.startswith(f"dovecot-passerelle-test-{self.port}/".encode()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and remove the temp directory (mailboxes included)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no dovecot log)"

    # -- client helpers ------------------------------------------------------------------------------

    def client(self, user: str, password: str | None = None) -> IMAPClient:
        """A logged-in IMAPClient (plain connection) for arranging mailboxes in tests."""
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(user, self.users[user] if password is None else password)
        return client

    def append(self, user: str, messages: Iterable[bytes], folder: str = "INBOX") -> None:
        """APPEND each message (imaplib turns bare LF into CRLF, as every mail client does)."""
        client = self.client(user)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in messages:
                client.append(folder, raw)
        finally:
            client.logout()

    def account(self, user: str, **extra: object) -> dict[str, object]:
        """An [[imap.accounts]] entry for ``user`` on this server (password from a file in the temp dir)."""
        secret = self.dir / f"{user}.password"
        secret.write_text(self.users[user] + "\n")
        secret.chmod(0o600)
        account: dict[str, object] = {
            "name": user,
            "host": self.host,
            "port": self.port,
            "security": "none",
            "username": user,
            "password_file": str(secret),
            "folder": "INBOX",
            "list": "forum",
        }
        account.update(extra)
        return account
