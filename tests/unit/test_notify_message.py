"""The job-done message: what a mail reader gets back from its bytes."""

from __future__ import annotations

import email
import email.policy

import pytest

from regionflow.notify.base import build_message

LINK = "http://127.0.0.1:8080/o/output/completed/x.csv?expires=1700000000&signature=" + "ab" * 32


def _parsed(name: str, recipients: list[str]) -> tuple[bytes, email.message.EmailMessage]:
    raw = bytes(build_message(job_id="job-1", name=name, sender="rf@example.com", recipients=recipients, link=LINK,
                              expires_in=3600, rows_in=10, rows_ok=8, rows_rejected=2, region="us-east-1"))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return raw, parsed


@pytest.mark.parametrize("name", ["orders.csv", "été 2026.csv"])
def test_the_message_reads_back_with_its_headers_body_and_link(name):
    raw, msg = _parsed(name, ["a@example.com", "b@example.com"])
    assert raw.isascii()  # fit for any mail system: non-ASCII travels encoded
    assert msg["Subject"] == f"regionflow: {name} processed (8 ok, 2 rejected)"
    assert msg["To"] == "a@example.com, b@example.com" and msg["From"] == "rf@example.com"
    assert msg["Message-ID"] == "<job-1@regionflow>" and msg["X-Regionflow-Job"] == "job-1"
    assert msg["X-Regionflow-Region"] == "us-east-1" and msg["Date"]
    body = msg.get_content()
    assert f"The file {name} has been processed" in body
    assert "Rows in:       10\nRows ok:       8\nRows rejected: 2\n" in body
    assert f"\n{LINK}\n" in body and "Job id: job-1" in body


def test_an_ascii_message_keeps_the_link_on_one_line_of_its_bytes():
    raw, msg = _parsed("orders.csv", ["a@example.com"])
    assert msg["Content-Transfer-Encoding"] == "7bit"
    assert LINK.encode() in raw
