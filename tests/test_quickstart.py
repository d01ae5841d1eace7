"""The README's first command, as a new user runs it: `passerelle --config config/demo.toml serve --demo`.

Starts the real program in a fresh directory, sends a mail with smtplib, and checks the web archive and the
captured outgoing mail; then stops it with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import smtplib
import socket
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
        # No PASSERELLE_SITE__BASE_URL: links in mail follow the web port by themselves.
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
        # The demo's published sheets, listed for a visitor who is not signed in.
        listing = _get(f"http://127.0.0.1:{web_port}/sheets")
        assert "Hospital de la Cerdanya" in listing and "frontaliers franco-belges" in listing

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
        for copy in copies:
            data = copy.read_bytes()
            assert f"List-Archive: <http://127.0.0.1:{web_port}/>".encode() in data
            assert b":8080" not in data
            # "Reply" in any mail client answers in the forum.
            assert b"\r\nReply-To: forum@forum.localhost\r\n" in data

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
    log = "".join(seen)
    # The log is for people: the banner comes after the start-up lines, no SMTP dialogue, no request lines.
    banner = log.index("Passerelle is running")
    assert log.index("demo forum loaded") < banner
    assert f"  web archive    http://127.0.0.1:{web_port}/" in log
    assert " mail.log: " not in log and " werkzeug: " not in log and " apscheduler." not in log
    assert "spooled inbound #" in log[banner:]  # the mail sent above: operators' lines stay


@pytest.mark.slow
@pytest.mark.parametrize("busy", ["web", "smtp", "relay"])
def test_serve_stops_at_once_when_a_port_is_taken(tmp_path: Path, busy: str) -> None:
    ports = {"web": free_port(), "smtp": free_port(), "relay": free_port()}
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           **{f"PASSERELLE_{name.upper()}__PORT": str(port) for name, port in ports.items()}}
    env.pop("PASSERELLE_CONFIG", None)
    with socket.create_server(("127.0.0.1", ports[busy])):
        proc = subprocess.run(
            [sys.executable, "-m", "passerelle.cli", "--config", str(ROOT / "config" / "demo.toml"), "serve", "--demo"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"cannot listen on 127.0.0.1:{ports[busy]}" in proc.stderr
    assert "already in use" in proc.stderr
    assert f"PASSERELLE_{busy.upper()}__PORT=" in proc.stderr
    if busy != "relay":
        assert f"./run demo --{busy}-port " in proc.stderr and f"passerelle serve --{busy}-port " in proc.stderr
    # Nothing started: no database, no demo loaded, no mail captured.
    assert not (tmp_path / "var").exists(), sorted(p.name for p in tmp_path.rglob("*"))
    assert "Passerelle is running" not in proc.stdout


def test_serve_port_options_move_the_links_in_mail() -> None:
    # `./run demo --web-port N` (extra arguments go to `serve`): the archive and every link in mail move.
    from passerelle.cli import build_parser, check_ports
    from passerelle.config import load_settings

    args = build_parser().parse_args(["serve", "--demo", "--web-port", "18181", "--smtp-port", "12525", "-v"])
    assert (args.web_port, args.smtp_port, args.verbose) == (18181, 12525, True)
    settings = load_settings(ROOT / "config" / "demo.toml", environ={}).with_overrides(
        {"web": {"port": args.web_port}, "smtp": {"port": args.smtp_port}}
    )
    assert settings.site.base_url == "http://127.0.0.1:18181"
    # Two settings naming the same port are caught before anything starts.
    port = free_port()
    clash = settings.with_overrides({"web": {"port": port}, "smtp": {"port": port}, "relay": {"port": free_port()}})
    [problem] = check_ports(clash)
    assert f"127.0.0.1:{port} (SMTP gateway)" in problem and "PASSERELLE_SMTP__PORT=" in problem
