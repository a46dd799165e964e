"""The Notifier port and the job-done message."""

from __future__ import annotations

from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.text import MIMEText
from email.utils import formatdate
from typing import Protocol, cast, runtime_checkable


@runtime_checkable
class Notifier(Protocol):
    """Delivers a job-done message. Delivery is keyed by the message's Message-ID (the job id)."""

    channel: str

    def send(self, message: Message) -> bool:
        """Deliver message or raise; False when the channel already had this Message-ID (the job id is the
        dedupe key: the outbox keeps the first message, SMTP receivers dedupe on Message-ID)."""
        ...


def build_message(*, job_id: str, name: str, sender: str, recipients: list[str], link: str,
                  expires_in: int, rows_in: int, rows_ok: int, rows_rejected: int, region: str) -> Message:
    """The notification for one finished job; its Message-ID is derived from the job id.

    Built with the email package's compat32 classes: the default policy parses every header it is given
    through its header registry, ten times the cost of the whole message (a region sends one per file)."""
    body = (
        f"The file {name} has been processed by region {region}.\n\n"
        f"Rows in:       {rows_in}\n"
        f"Rows ok:       {rows_ok}\n"
        f"Rows rejected: {rows_rejected}\n\n"
        f"Download the output (link valid for {expires_in // 60} minutes):\n{link}\n\n"
        f"Job id: {job_id}\n"
    )
    # Plain 7bit keeps the link on one line (quoted-printable would fold it) when the text allows.
    if body.isascii():
        msg = MIMEText(body, "plain", "us-ascii")
    else:
        utf8 = Charset("utf-8")
        utf8.body_encoding = QP
        msg = MIMEText(body, "plain", utf8)  # type: ignore[arg-type]  # (typeshed: str; a Charset works)
    msg["Subject"] = _header(f"regionflow: {name} processed ({rows_ok} ok, {rows_rejected} rejected)")
    msg["From"] = _header(sender)
    msg["To"] = _header(", ".join(recipients))
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = f"<{job_id}@regionflow>"
    msg["X-Regionflow-Job"] = job_id
    msg["X-Regionflow-Region"] = region
    return msg


def _header(value: str) -> str:
    """value as a header: RFC 2047 encoded words when it is not ASCII (a file name may not be). A Header
    object, which compat32 folds itself (typeshed types header values as str)."""
    return value if value.isascii() else cast(str, Header(value, "utf-8"))
