"""Secrets never reach a log line or the terminal: the token, the webhook secret and the remote backend's API key are
redacted from every formatted line (tracebacks included) and from what the CLI prints."""

from __future__ import annotations

import io
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from telegram.error import InvalidToken

from bot import cli
from bot.cli import classify
from bot.logs import REDACTED, configure_logging, redact

TOKEN = "123456789:AAH-secret_part-of-the-token"
WEBHOOK_SECRET = "webhook-secret-3f9c"
API_KEY = "sk-remote-api-key-77"


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    """configure_logging replaces the root logger's handlers and captures warnings; undo both afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    logging.captureWarnings(False)
    root.handlers[:] = handlers
    root.setLevel(level)


def test_redact_hides_every_secret_as_written_and_url_encoded() -> None:
    text = f"POST /bot{TOKEN}/getMe; encoded {quote(TOKEN, safe='')}; key {API_KEY}; empty secrets are ignored"
    assert redact(text, [TOKEN, "", API_KEY]) == (
        f"POST /bot{REDACTED}/getMe; encoded {REDACTED}; key {REDACTED}; empty secrets are ignored"
    )


def test_a_logged_traceback_has_no_secret_in_it(restore_root_logger: None) -> None:
    configure_logging("INFO", secrets=[TOKEN, WEBHOOK_SECRET, API_KEY])
    stream = io.StringIO()
    [handler] = logging.getLogger().handlers
    handler.setStream(stream)
    try:
        try:
            raise ConnectionError(f"Authorization: Bearer {API_KEY}; secret_token={WEBHOOK_SECRET}")
        except ConnectionError as cause:
            raise InvalidToken(f"The token `{TOKEN}` was rejected by the server.") from cause
    except InvalidToken:
        logging.getLogger("telegram.ext.Application").exception("while calling %s", f"/bot{TOKEN}/getMe")
    written = stream.getvalue()
    assert "Traceback" in written and "InvalidToken" in written and "ConnectionError" in written
    for secret in (TOKEN, TOKEN.split(":")[1], WEBHOOK_SECRET, API_KEY):
        assert secret not in written
    assert written.count(REDACTED) == 4  # the message, the traceback's two exceptions (token; key and secret)


def test_a_librarys_warning_is_redacted_too(restore_root_logger: None) -> None:
    logging.captureWarnings(False)  # an earlier in-process main() may have left it on, bound to pytest's hook
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        configure_logging("INFO", secrets=[TOKEN])
        stream = io.StringIO()
        logging.getLogger().handlers[0].setStream(stream)
        try:
            warnings.warn(f"could not reach https://api.telegram.org/bot{TOKEN}/getMe", UserWarning, stacklevel=1)
        finally:
            logging.captureWarnings(False)
    written = stream.getvalue()
    assert f"bot{REDACTED}/getMe" in written and TOKEN not in written


def test_an_unexpected_error_is_logged_redacted_not_printed_raw(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[telegram]\ntoken = "{TOKEN}"\n', encoding="utf-8")

    async def broken(*_args: object) -> None:
        raise RuntimeError(f"a bug that quotes the token {TOKEN}")

    monkeypatch.setattr(classify, "classify_text", broken)
    assert cli.main(["--config", str(config), "classify", "hello"]) == 1
    captured = capsys.readouterr()
    assert "moodbot stopped on an unexpected error" in captured.err and "Traceback" in captured.err
    assert f"the token {REDACTED}" in captured.err
    assert TOKEN not in captured.err + captured.out


def test_an_error_line_is_redacted_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], restore_root_logger: None
) -> None:
    config = tmp_path / "config.toml"
    config.write_text(
        f'[telegram]\ntoken = "{TOKEN}"\n[storage]\npath = "{tmp_path}/{TOKEN}/moodbot.db"\n', encoding="utf-8"
    )
    (tmp_path / TOKEN).write_text("a file where the database folder should be", encoding="utf-8")
    assert cli.main(["--config", str(config), "chat"]) == 2  # opens the database first: "Not a directory"
    err = capsys.readouterr().err
    assert err.startswith("moodbot: error: ") and REDACTED in err and TOKEN not in err
