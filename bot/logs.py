"""Logging set-up: one format, quiet HTTP client, and every secret scrubbed from every line written.

The Telegram token is part of every Bot API URL and PTB puts it in ``InvalidToken``'s message; the webhook secret and
the remote backend's API key travel in headers. :func:`redact` is the one place that hides them: the log handler's
formatter runs it over each finished line (message, arguments and traceback alike), and the CLI over what it prints.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from types import TracebackType
from urllib.parse import quote

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REDACTED = "[REDACTED]"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every non-empty secret, as written or URL-encoded, replaced by ``[REDACTED]``."""
    forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""))}
    for form in sorted(forms, key=len, reverse=True):  # a secret inside a longer one must not leave the rest behind
        text = text.replace(form, REDACTED)
    return text


class RedactingFormatter(logging.Formatter):
    """The usual format, then the secrets replaced in the whole line: message, arguments, traceback and stack."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.secrets = tuple(secret for secret in secrets if secret)

    def formatException(self, ei: ExcInfo) -> str:
        """The traceback, redacted before ``format`` caches it on the record as ``exc_text``."""
        return redact(super().formatException(ei), self.secrets)

    def format(self, record: logging.LogRecord) -> str:
        """The finished line with no secret in it."""
        return redact(super().format(record), self.secrets)


def configure_logging(level: str = "INFO", secrets: Iterable[str] = ()) -> None:
    """Set up the root logger once for the CLI: one stderr handler whose every line has ``secrets`` redacted."""
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(LOG_FORMAT, secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # libraries' warnings become log lines too, so they pass the same redaction
    # httpx logs every request URL at INFO, and Bot API URLs contain the token (redacted anyway: this keeps it quiet).
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
