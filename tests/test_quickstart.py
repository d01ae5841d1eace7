"""The README's first command, as a new user runs it: `passerelle --config config/demo.toml serve --demo`.

Starts the real program in a fresh directory, sends a mail with smtplib, and checks the web archive and the
captured outgoing mail; then stops it with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.smtp_sink import free_port

ROOT = Path(__file__).resolve().parents[1]


def _get(url: str) -> str:
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback http only
        return response.read().decode()


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float, seen: list[str]) -> None:
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return
    raise AssertionError(f"serve did not print {needle!r} in {timeout}s; output:\n{''.join(seen)}")


@pytest.mark.slow
def test_demo_serves_mail_and_web(tmp_path: Path) -> None:
    smtp_port, web_port, relay_port = free_port(), free_port(), free_port()
    env = {
        **os.environ,
        "PASSERELLE_SMTP__PORT": str(smtp_port),
        "PASSERELLE_WEB__PORT": str(web_port),
        "PASSERELLE_RELAY__PORT": str(relay_port),
        "PASSERELLE_SITE__BASE_URL": f"http://127.0.0.1:{web_port}",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PASSERELLE_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "passerelle.cli", "--config", str(ROOT / "config" / "demo.toml"), "serve", "--demo"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen: list[str] = []
    try:
        _wait_for_line(proc, "Stop with Ctrl-C", 90, seen)
        home = _get(f"http://127.0.0.1:{web_port}/")
        assert "Forum du réseau transfrontalier" in home

        msg = EmailMessage()
        msg["From"] = "Camille Martin <camille.martin@eurometropole.example>"
        msg["To"] = "forum@forum.localhost"
        msg["Subject"] = "Covoiturage transfrontalier : assurance des conducteurs"
        msg["Message-ID"] = "<quickstart.1@eurometropole.example>"
        msg.set_content("Bonjour,\n\nQuelle assurance couvre un covoiturage entre Lille et Courtrai ?\n\nCamille")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.send_message(msg)

        sent = tmp_path / "var" / "sent-mail"
        deadline = time.monotonic() + 30
        copies: list[Path] = []
        while time.monotonic() < deadline:
            copies = [p for p in sent.glob("*.eml") if b"quickstart.1@eurometropole.example" in p.read_bytes()]
            if len(copies) >= 4:
                break
            time.sleep(0.2)
        assert len(copies) >= 4, f"expected copies to the instant subscribers, got {len(copies)}"
        assert all(b"List-Unsubscribe:" in p.read_bytes() for p in copies)

        deadline = time.monotonic() + 10
        while "Covoiturage transfrontalier" not in _get(f"http://127.0.0.1:{web_port}/topics"):
            assert time.monotonic() < deadline, "the new topic is not in the web archive's topic list"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("serve did not stop within 30 s of SIGTERM") from None
        if proc.stdout is not None:
            seen.extend(proc.stdout.readlines())
            proc.stdout.close()
    assert proc.returncode == 0, "".join(seen)
