"""Config loading: defaults, the example file, env token, and one clear error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bot.config import DEFAULT_BASE_URL, ConfigError, load_config
from engine import settings

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_example_config_loads_with_documented_defaults() -> None:
    config = load_config(ROOT / "config.example.toml", environ={})
    assert config.engine.model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert config.engine.precision == "auto"
    assert config.engine.prepared_cache_dir == ""  # the default folder under $XDG_CACHE_HOME
    assert config.telegram.base_url == DEFAULT_BASE_URL
    assert config.telegram.allowed_user_ids == ()
    assert config.storage.path.endswith("moodbot.db")
    assert config.telegram.allowed_chat_ids == () and config.telegram.admin_user_ids == ()
    assert config.groups.log_all is False
    assert (config.limits.messages_per_minute, config.limits.burst) == (20, 10)


def test_every_key_in_the_example_is_commented() -> None:
    lines = (ROOT / "config.example.toml").read_text(encoding="utf-8").splitlines()
    for index, line in enumerate(lines):
        if "=" in line and not line.lstrip().startswith("#"):
            assert lines[index - 1].lstrip().startswith("#"), f"key without a comment above it: {line}"


def test_token_comes_from_env_and_never_shows_in_repr(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "[telegram]\nallowed_user_ids = [1, 2]\n"), environ={
        "MOODBOT_TELEGRAM_TOKEN": "123:SECRET"
    })
    assert config.require_token() == "123:SECRET"
    assert "SECRET" not in repr(config)
    assert config.telegram.allows(1) and not config.telegram.allows(3)


def test_missing_token_names_the_key_and_the_env_var() -> None:
    config = load_config(None, environ={})
    with pytest.raises(ConfigError, match=r"telegram\.token.*MOODBOT_TELEGRAM_TOKEN"):
        config.require_token()


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[engine]\nthreads = 'two'\n", "engine.threads"),
        ("[engine]\nprecision = 'fp8'\n", "engine.precision"),
        ("[engine]\nmax_new_tokens = 0\n", "engine.max_new_tokens"),
        ("[engine]\nmodle = 'x'\n", "engine.modle"),
        ("[telegram]\nallowed_user_ids = ['alice']\n", "telegram.allowed_user_ids"),
        ("[telegram]\nbase_url = 'ftp://x'\n", "telegram.base_url"),
        ("[storage]\npath = 3\n", "storage.path"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("[logging]\nlevel = 'LOUD'\n", "logging.level"),
        ("[engine]\ntemperature = true\n", "engine.temperature"),
        ("[telegram]\nallowed_chat_ids = ['-100123']\n", "telegram.allowed_chat_ids"),
        ("[telegram]\nadmin_user_ids = [true]\n", "telegram.admin_user_ids"),
        ("[telegram]\nadmin_user_ids = 42\n", "telegram.admin_user_ids"),
        ("[groups]\nlog_all = 1\n", "groups.log_all"),
        ("[groups]\nlog_everything = true\n", "groups.log_everything"),
        ("[limits]\nmessages_per_minute = -1\n", "limits.messages_per_minute"),
        ("[limits]\nmessages_per_minute = 1.5\n", "limits.messages_per_minute"),
        ("[limits]\nburst = 0\n", "limits.burst"),
    ],
)
def test_bad_values_give_one_line_naming_the_key(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    message = str(info.value)
    assert message.startswith(key + ":")
    assert "\n" not in message


def test_broken_toml_and_missing_file_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[engine\n"), environ={})
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml", environ={})


def test_allowlists_admins_groups_and_limits_load(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, (
        "[telegram]\nallowed_user_ids = [1]\nallowed_chat_ids = [-100500]\nadmin_user_ids = [9]\n"
        "[groups]\nlog_all = true\n[limits]\nmessages_per_minute = 0\nburst = 3\n"
    )), environ={})
    telegram = config.telegram
    assert telegram.allows(1, 77) and telegram.allows(5, -100500) and telegram.allows(9, 77)
    assert not telegram.allows(5, 77) and not telegram.allows(None, None)
    assert telegram.is_admin(9) and not telegram.is_admin(1) and not telegram.is_admin(None)
    assert config.groups.log_all is True
    assert (config.limits.messages_per_minute, config.limits.burst) == (0, 3)
    everyone = load_config(write(tmp_path, "[telegram]\nadmin_user_ids = [9]\n"), environ={}).telegram
    assert everyone.allows(5, 77), "admins alone restrict no one"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [("fpu avx2 avx512f avx512_vnni", "int8"), ("fpu avx2 avx_vnni", "int8"), ("fpu avx2 avx512f avx512_bf16", "bf16"),
     ("fpu avx2", "int8"), ("fpu sse4_2", "fp32")],
)
def test_auto_precision_follows_the_cpu(flags: str, expected: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    monkeypatch.setattr(settings, "_cpu_flags", lambda: flags)
    assert settings.resolve_precision("auto") == expected
    assert settings.resolve_precision("fp32") == "fp32"  # an explicit choice is never overridden
