"""Webhook mode: its config keys, and ``moodbot run`` as a real process taking updates by POST, secret checked."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from bot.config import WEBHOOK_SECRET_ENV_VAR, ConfigError, config_from_dict, load_config
from bot.telegram.webhook import url_path
from tests.support.fakebotapi import TEST_TOKEN, FakeBotApi

ROOT = Path(__file__).resolve().parents[2]
SECRET = "s3cret-Webhook_token-0123456789"
PUBLIC_URL = "https://moodbot.example.org/telegram/hook"


def load(tmp_path: Path, telegram: str, environ: dict[str, str] | None = None):
    path = tmp_path / "config.toml"
    path.write_text(f"[telegram]\n{telegram}\n", encoding="utf-8")
    return load_config(path, environ=environ or {})


# -- config ------------------------------------------------------------------------------------------------------


def test_polling_is_the_default() -> None:
    telegram = config_from_dict({}).telegram
    assert (telegram.mode, telegram.webhook_listen, telegram.webhook_port) == ("polling", "127.0.0.1", 8443)


def test_webhook_keys_load(tmp_path: Path) -> None:
    config = load(
        tmp_path,
        f'mode = "webhook"\nwebhook_url = "{PUBLIC_URL}"\nwebhook_listen = "0.0.0.0"\nwebhook_port = 9000\n'
        f'webhook_secret = "{SECRET}"',
    )
    telegram = config.telegram
    assert (telegram.mode, telegram.webhook_url, telegram.webhook_listen) == ("webhook", PUBLIC_URL, "0.0.0.0")
    assert (telegram.webhook_port, telegram.webhook_secret) == (9000, SECRET)
    assert SECRET not in repr(config)


def test_secret_may_come_from_the_environment(tmp_path: Path) -> None:
    config = load(tmp_path, f'mode = "webhook"\nwebhook_url = "{PUBLIC_URL}"', {WEBHOOK_SECRET_ENV_VAR: SECRET})
    assert config.telegram.webhook_secret == SECRET


@pytest.mark.parametrize(
    ("telegram", "message"),
    [
        ('mode = "hook"', "telegram.mode: must be one of polling, webhook, got 'hook'"),
        ('webhook_url = "http://bot.example.org/hook"', "telegram.webhook_url: must be a public https:// URL"),
        ('webhook_url = "https://"', "telegram.webhook_url: must be a public https:// URL"),
        ("webhook_port = 0", "telegram.webhook_port: must be between 1 and 65535, got 0"),
        ("webhook_port = 65536", "telegram.webhook_port: must be between 1 and 65535, got 65536"),
        ('webhook_port = "8443"', "telegram.webhook_port: expected an int, got '8443'"),
        ('webhook_listen = " "', "telegram.webhook_listen: must not be empty"),
        ('mode = "webhook"', 'telegram.webhook_url: required when telegram.mode = "webhook"'),
        (f'mode = "webhook"\nwebhook_url = "{PUBLIC_URL}"', 'telegram.webhook_secret: required when telegram.mode'),
    ],
)
def test_bad_webhook_keys_are_named(tmp_path: Path, telegram: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, telegram)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize("secret", ["has spaces in it", "semi;colon", "x" * 257])
def test_a_bad_secret_is_refused_without_echoing_it(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, f'webhook_secret = "{secret}"')
    assert str(info.value).startswith("telegram.webhook_secret: must be 1 to 256 characters")
    assert secret not in str(info.value)
    with pytest.raises(ConfigError) as from_env:
        load(tmp_path, "", {WEBHOOK_SECRET_ENV_VAR: secret})
    assert str(from_env.value).startswith(f"${WEBHOOK_SECRET_ENV_VAR}: must be") and secret not in str(from_env.value)


@pytest.mark.parametrize(
    ("url", "path"),
    [(PUBLIC_URL, "telegram/hook"), ("https://bot.example.org/hook/", "hook"), ("https://bot.example.org", "")],
)
def test_the_local_path_is_the_public_one(url: str, path: str) -> None:
    assert url_path(url) == path


# -- a real process ----------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def read_until(stream: asyncio.StreamReader, marker: str, seen: list[str]) -> None:
    """Collect output lines into ``seen`` until one contains ``marker``."""
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"the bot exited before {marker!r}:\n{''.join(seen)}")
        seen.append(line)
        if marker in line:
            return


async def test_webhook_takes_only_updates_with_the_secret(tiny_model_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    database = tmp_path / "webhook.db"
    async with FakeBotApi(token=TEST_TOKEN) as api:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[telegram]\nbase_url = "{api.base_url}"\nmode = "webhook"\nwebhook_url = "{PUBLIC_URL}"\n'
            f"webhook_port = {port}\n"
            f'[engine]\nmodel = "{tiny_model_dir}"\nprecision = "fp32"\nthreads = 1\nmax_new_tokens = 6\n'
            f'[storage]\npath = "{database}"\n',
            encoding="utf-8",
        )
        env = {
            **os.environ, "MOODBOT_TELEGRAM_TOKEN": TEST_TOKEN, WEBHOOK_SECRET_ENV_VAR: SECRET,
            "PYTHONPATH": str(ROOT),
        }
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "--config", str(config), "run",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )
        assert process.stdout is not None
        seen: list[str] = []
        try:
            # PTB logs this once the webhook is registered and its server listens.
            await asyncio.wait_for(read_until(process.stdout, "Application started", seen), timeout=90)
            [set_webhook] = api.calls_of("setWebhook")
            assert set_webhook.params["url"] == PUBLIC_URL and set_webhook.params["secret_token"] == SECRET
            assert not api.calls_of("getUpdates"), "webhook mode never polls"

            def update_from(user_id: int, text: str) -> dict:
                user = api.user(user_id, f"User{user_id}")
                api.send_text(api.private_chat(user), user, text)
                return api.pending_updates[-1]  # the fake queues it; here it travels by POST instead

            url = f"http://127.0.0.1:{port}/telegram/hook"
            async with aiohttp.ClientSession() as http:
                async with http.post(url, json=update_from(43, "/start")) as response:
                    assert response.status == 403
                wrong = {"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"}
                async with http.post(url, json=update_from(44, "/start"), headers=wrong) as response:
                    assert response.status == 403
                right = {"X-Telegram-Bot-Api-Secret-Token": SECRET}
                async with http.post(url, json=update_from(42, "/start"), headers=right) as response:
                    assert response.status == 200
                await api.wait_for_messages(42, count=2, timeout=30)  # the greeting, and the check-in offer
                async with http.post(url, json=update_from(42, "hello by webhook"), headers=right) as response:
                    assert response.status == 200
                await api.wait_for(
                    lambda a: len(t := a.sent_texts(42)) == 3 and not t[-1].endswith(" …")
                    and a.calls_of("sendMessageDraft"),
                    timeout=60,
                )
        finally:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
            rest, _ = await asyncio.wait_for(process.communicate(), timeout=60)
        log = "".join(seen) + rest.decode()
        assert process.returncode == 0, log
        assert api.sent_texts(43) == [] and api.sent_texts(44) == [], "a request without the secret did no work"
        assert SECRET not in log and TEST_TOKEN not in log
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT user_id, role FROM messages ORDER BY id").fetchall()
    assert rows == [(42, "user"), (42, "assistant")]
