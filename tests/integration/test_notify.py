"""Notifiers: the outbox writes one file per job; SMTP delivers to a real server (aiosmtpd) on loopback."""

from __future__ import annotations

import email
import os
import socket
import subprocess
import sys
import time

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message

from regionflow.errors import ConfigError
from regionflow.notify import OutboxNotifier, SmtpNotifier, build_message, open_notifier


def _message(job_id="job-abc"):
    return build_message(job_id=job_id, name="orders.csv", sender="rf@example.com", recipients=["a@example.com"],
                         link="http://127.0.0.1:8700/o/output/completed/orders.csv?expires=1&sig=x",
                         expires_in=3600, rows_in=3, rows_ok=2, rows_rejected=1, region="us-east-1")


def test_outbox_writes_one_eml_per_job_and_a_resend_is_not_delivered_again(tmp_path):
    box = OutboxNotifier(tmp_path / "outbox")
    assert box.send(_message()) is True
    assert box.send(_message()) is False
    assert box.send(_message("job-def")) is True
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == [".partial", "job-abc.eml", "job-def.eml"]
    assert not list((tmp_path / "outbox" / ".partial").iterdir())
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


def test_process_notifies_through_smtp_once_with_counts_and_a_signed_link(smtp_server, tmp_path):
    import subprocess

    from regionflow.workloads.batch.sample import generate
    from testenv import REGIONFLOW

    controller, handler = smtp_server
    data = generate(300, tmp_path / "data", invalid_ratio=0.1, seed=2)
    args = [REGIONFLOW, "process", str(data.orders), "--reference", str(data.financial), "--out",
            str(tmp_path / "out.csv"), "--state-dir", str(tmp_path / "state"), "--notifier",
            f"smtp://127.0.0.1:{controller.port}"]
    for _ in range(2):  # the rerun finds the finished job and sends nothing more
        result = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
    assert len(handler.messages) == 1
    body = handler.messages[0].get_payload()
    assert "Rows ok:       270" in body and "Rows rejected: 30" in body
    link = next(line for line in body.splitlines() if line.startswith("http"))
    assert "/o/output/completed/orders.csv?expires=" in link and "&sig=" in link
    from regionflow.storage.presign import verify_url

    key = bytes.fromhex((tmp_path / "state" / "signing.key").read_text())
    assert verify_url(link, key) == "output/completed/orders.csv"
    assert oct((tmp_path / "state" / "signing.key").stat().st_mode & 0o777) == "0o600"


def test_a_partial_message_is_swept_only_once_its_writer_is_gone(tmp_path):
    from regionflow.notify.outbox import STALE_AFTER_S

    partial = tmp_path / "outbox" / ".partial"
    partial.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    host = socket.gethostname()
    files = {
        "dead": partial / f"{dead}@{host}@abc.partial",
        "live": partial / f"{os.getpid()}@{host}@def.partial",
        "remote_fresh": partial / "123@other-host@ghi.partial",
        "remote_old": partial / "123@other-host@jkl.partial",
    }
    for path in files.values():
        path.write_bytes(b"Subject: half")
    old = time.time() - STALE_AFTER_S - 60
    os.utime(files["remote_old"], (old, old))
    box = OutboxNotifier(tmp_path / "outbox")
    assert sorted(p.name for p in partial.iterdir()) == sorted(files[k].name for k in ("live", "remote_fresh"))
    assert box.send(_message()) is True
    assert sorted(p.name for p in (tmp_path / "outbox").glob("*.eml")) == ["job-abc.eml"]


def test_a_writer_killed_mid_send_leaves_no_message_and_the_next_sender_delivers(tmp_path):
    from regionflow.crashpoints import CRASH_EXIT_CODE

    script = ("import sys; from regionflow.notify import OutboxNotifier, build_message;"
              "OutboxNotifier(sys.argv[1]).send(build_message(job_id='job-abc', name='o.csv', sender='a@b.c',"
              "recipients=['d@e.f'], link='http://x', expires_in=1, rows_in=1, rows_ok=1, rows_rejected=0,"
              "region='us-east-1'))")
    crashed = subprocess.run([sys.executable, "-c", script, str(tmp_path / "outbox")], timeout=60,
                             env={**os.environ, "REGIONFLOW_CRASH_AT": "outbox:partial_written"})
    assert crashed.returncode == CRASH_EXIT_CODE
    assert not list((tmp_path / "outbox").glob("*.eml"))
    assert len(list((tmp_path / "outbox" / ".partial").iterdir())) == 1
    assert OutboxNotifier(tmp_path / "outbox").send(_message()) is True
    assert [p.name for p in (tmp_path / "outbox").glob("*.eml")] == ["job-abc.eml"]
    assert not list((tmp_path / "outbox" / ".partial").iterdir())
