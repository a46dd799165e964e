"""SMTP notifier."""

from __future__ import annotations

import smtplib
from email.message import Message


class SmtpNotifier:
    channel = "smtp"

    def __init__(self, host: str, port: int, *, username: str | None = None, password: str | None = None,
                 starttls: bool = False, timeout: float = 10.0):
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls, self.timeout = starttls, timeout

    def send(self, message: Message) -> bool:
        """Deliver through the SMTP server (True); raises smtplib/OSError errors to the caller, who retries.
        Receivers dedupe on the Message-ID, which is derived from the job id."""
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            if self.starttls:
                smtp.starttls()
            if self.username:
                smtp.login(self.username, self.password or "")
            smtp.send_message(message)
        return True
