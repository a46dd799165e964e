"""The Notifier port and the job-done message."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate
from typing import Protocol, runtime_checkable


@runtime_checkable
class Notifier(Protocol):
    """Delivers a job-done message. Delivery is keyed by the message's Message-ID (the job id)."""

    channel: str

    def send(self, message: EmailMessage) -> bool:
        """Deliver message or raise; False when the channel already had this Message-ID (the job id is the
        dedupe key: the outbox keeps the first message, SMTP receivers dedupe on Message-ID)."""
        ...


def build_message(*, job_id: str, name: str, sender: str, recipients: list[str], link: str,
                  expires_in: int, rows_in: int, rows_ok: int, rows_rejected: int, region: str) -> EmailMessage:
    """The notification for one finished job; its Message-ID is derived from the job id."""
    msg = EmailMessage()
    msg["Subject"] = f"regionflow: {name} processed ({rows_ok} ok, {rows_rejected} rejected)"
    msg["From"] = sender
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{job_id}@regionflow>"
    msg["X-Regionflow-Job"] = job_id
    msg["X-Regionflow-Region"] = region
    body = (
        f"The file {name} has been processed by region {region}.\n\n"
        f"Rows in:       {rows_in}\n"
        f"Rows ok:       {rows_ok}\n"
        f"Rows rejected: {rows_rejected}\n\n"
        f"Download the output (link valid for {expires_in // 60} minutes):\n{link}\n\n"
        f"Job id: {job_id}\n"
    )
    # Plain 7bit keeps the link on one line (quoted-printable would fold it) when the text allows.
    msg.set_content(body, cte="7bit" if body.isascii() else "quoted-printable")
    return msg
