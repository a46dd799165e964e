"""Notifiers: the outbox writes one file per job; SMTP delivers to a real server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import socket

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from regionflow.errors import ConfigError
from regionflow.notify import OutboxNotifier, SmtpNotifier, build_message, open_notifier


def _message(job_id="job-abc"):
    return build_message(job_id=job_id, name="orders.csv", sender="rf@example.com", recipients=["a@example.com"],
                         link="http://127.0.0.1:8700/o/output/completed/orders.csv?expires=1&sig=x",
                         expires_in=3600, rows_in=3, rows_ok=2, rows_rejected=1, region="us-east-1")


def test_outbox_writes_one_eml_per_job_and_a_resend_replaces_it(tmp_path):
    box = OutboxNotifier(tmp_path / "outbox")
    box.send(_message())
    box.send(_message())
    box.send(_message("job-def"))
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == ["job-abc.eml", "job-def.eml"]
    parsed = email.message_from_bytes((tmp_path / "outbox" / "job-abc.eml").read_bytes())
    assert parsed["Message-ID"] == "<job-abc@regionflow>"
    assert "Rows ok:       2" in parsed.get_payload()


class _Collect(Message):
    def __init__(self):
        super().__init__()
        self.messages = []

    def handle_message(self, message):
        self.messages.append(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_server():
    handler = _Collect()
    controller = Controller(handler, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def test_smtp_delivers_to_a_real_server(smtp_server):
    controller, handler = smtp_server
    notifier = open_notifier(f"smtp://127.0.0.1:{controller.port}")
    assert isinstance(notifier, SmtpNotifier)
    notifier.send(_message())
    assert len(handler.messages) == 1
    got = handler.messages[0]
    assert got["Message-ID"] == "<job-abc@regionflow>"
    assert got["To"] == "a@example.com"
    assert "orders.csv" in got["Subject"]


def test_smtp_unreachable_raises(tmp_path):
    with pytest.raises(OSError):
        SmtpNotifier("127.0.0.1", _free_port(), timeout=2).send(_message())


@pytest.mark.parametrize("url", ["ftp://x", "smtp://hostonly", "mailto:a@b"])
def test_bad_notifier_urls_are_refused(url):
    with pytest.raises(ConfigError):
        open_notifier(url)
