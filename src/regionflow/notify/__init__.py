"""Notifications: the Notifier port, an outbox directory of .eml files (default) and SMTP."""

from regionflow.notify.base import Notifier, build_message
from regionflow.notify.outbox import OutboxNotifier
from regionflow.notify.smtp import SmtpNotifier

__all__ = ["Notifier", "OutboxNotifier", "SmtpNotifier", "build_message", "open_notifier"]


def open_notifier(url: str) -> Notifier:
    """outbox:///path/to/dir or smtp://[user:password@]host:port[?starttls=1]."""
    from urllib.parse import parse_qs, unquote, urlsplit

    from regionflow.errors import ConfigError

    parts = urlsplit(url)
    if parts.scheme == "outbox":
        return OutboxNotifier(unquote(parts.path))
    if parts.scheme == "smtp":
        if not parts.hostname or not parts.port:
            raise ConfigError(f"notifier url {url!r}: smtp needs a host and a port")
        query = parse_qs(parts.query)
        return SmtpNotifier(
            parts.hostname,
            parts.port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            starttls=query.get("starttls", ["0"])[0] in ("1", "true", "yes"),
        )
    raise ConfigError(f"notifier url {url!r}: unsupported scheme (expected outbox:// or smtp://)")
