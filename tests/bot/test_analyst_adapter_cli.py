"""A trained analyst adapter from the bot's side: the config key, ``--adapter`` on ``eval`` and ``classify``, and
``moodbot doctor``'s line, on the tiny model."""

from __future__ import annotations

import io
import json
from dataclasses import replace
from pathlib import Path

import pytest

from bot.cli import main, with_adapter
from bot.cli.doctor import check_adapter, doctor
from bot.config import ConfigError, config_from_dict, load_config
from engine.adapters.file import load_adapter
from tests.support.adapters import MIXED, plain_model, random_adapter

THREE_WAY = (
    "text\tlabel\nwhat a good day\t1\na bad film\t0\nthe bus comes at nine\t2\n这家酒店很好\t1\n"
    "I feel sad and lonely\t0\nit is a normal day\t2\n"
)


@pytest.fixture(scope="module")
def adapter_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("adapter") / "analyst.safetensors"
    random_adapter(tiny_model_dir, plain_model(tiny_model_dir), MIXED).save(path)
    return path


@pytest.fixture(scope="module")
def foreign_adapter_file(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An adapter trained on other weights."""
    path = tmp_path_factory.mktemp("adapter") / "foreign.safetensors"
    random_adapter(tiny_model_dir, plain_model(tiny_model_dir), MIXED, base_fingerprint="0123456789abcdef").save(path)
    return path


def write_config(tmp_path: Path, model: Path, extra: str = "") -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[engine]\nmodel = "{model}"\nprecision = "fp32"\nthreads = 1\n{extra}', encoding="utf-8")
    return path


def test_the_config_key_and_its_refusal_with_a_remote_backend() -> None:
    assert config_from_dict({"engine": {"analyst_adapter": "a.safetensors"}}).engine.analyst_adapter == "a.safetensors"
    assert config_from_dict({}).engine.analyst_adapter == ""
    remote = {"backend": "openai", "analyst_adapter": "a.safetensors"}
    with pytest.raises(ConfigError, match=r'^engine\.analyst_adapter: an adapter runs only in the local model'):
        config_from_dict({"engine": remote})
    openai = config_from_dict({"engine": {"backend": "openai"}})
    with pytest.raises(ConfigError, match=r"^engine\.analyst_adapter: "):
        with_adapter(openai, Path("a.safetensors"))


def test_adapter_flag_with_a_remote_backend_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[engine]\nbackend = "openai"\n', encoding="utf-8")
    assert main(["-c", str(config), "classify", "--adapter", "a.safetensors", "hello"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("moodbot: error: engine.analyst_adapter: ") and err.count("\n") == 1


def test_eval_with_an_adapter_scores_three_labels(
    tmp_path: Path, tiny_model_dir: Path, adapter_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "three-way.tsv"
    data.write_text(THREE_WAY, encoding="utf-8")
    out = tmp_path / "report.json"
    config = write_config(tmp_path, tiny_model_dir)
    args = ["-c", str(config), "eval", "--data", str(data), "--adapter", str(adapter_file), "--json", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"with analyst adapter {adapter_file}" in printed and "labels: positive, negative, neutral" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["labels"] == ["positive", "negative", "neutral"] and report["adapter"] == str(adapter_file)
    assert sum(sum(row.values()) for row in report["clean"]["confusion"].values()) == 6
    # Every prediction is one of the three labels the adapter reads (none fell outside the confusion matrix).
    assert all(set(row) == {"positive", "negative", "neutral"} for row in report["clean"]["confusion"].values())


def test_classify_with_an_adapter_and_the_refusal_of_a_foreign_one(
    tmp_path: Path, tiny_model_dir: Path, adapter_file: Path, foreign_adapter_file: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_config(tmp_path, tiny_model_dir)
    assert main(["-c", str(config), "classify", "--adapter", str(adapter_file), "I love this"]) == 0
    label, score = capsys.readouterr().out.split()
    assert label in {"positive", "neutral", "negative"} and -1 <= float(score) <= 1
    assert main(["-c", str(config), "classify", "--adapter", str(foreign_adapter_file), "I love this"]) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the loading progress bars
    assert last.startswith("moodbot: error: the analyst adapter was trained on") and "moodbot tune" in last
    # The same from the config file, without the flag.
    configured = write_config(tmp_path, tiny_model_dir, f'analyst_adapter = "{foreign_adapter_file}"\n')
    assert main(["-c", str(configured), "classify", "I love this"]) == 2
    assert "the analyst adapter was trained on" in capsys.readouterr().err


async def test_doctor_line_for_the_adapter(
    tmp_path: Path, tiny_model_dir: Path, adapter_file: Path, foreign_adapter_file: Path
) -> None:
    assert await check_adapter(load_config(write_config(tmp_path, tiny_model_dir), environ={})) is None
    good = load_config(write_config(tmp_path, tiny_model_dir, f'analyst_adapter = "{adapter_file}"\n'), environ={})
    ok = await check_adapter(good)
    assert ok is not None and ok.ok and "labels positive/neutral/negative, rank 4 on 2 layers" in ok.line()
    assert "label offsets none" in ok.line()  # a test adapter written without any
    shifted = tmp_path / "shifted.safetensors"
    replace(load_adapter(adapter_file), label_offsets={"neutral": -1.5, "negative": 0.0}).save(shifted)
    shown = await check_adapter(load_config(write_config(tmp_path, tiny_model_dir,
                                                         f'analyst_adapter = "{shifted}"\n'), environ={}))
    assert shown is not None and shown.ok and shown.line().endswith("label offsets neutral -1.5")
    foreign = load_config(
        write_config(tmp_path, tiny_model_dir, f'analyst_adapter = "{foreign_adapter_file}"\n'), environ={})
    failed = await check_adapter(foreign)
    assert failed is not None and not failed.ok and failed.line().startswith("FAIL adapter: the analyst adapter was")


def test_doctor_prints_the_adapter_before_the_model(tmp_path: Path, tiny_model_dir: Path, adapter_file: Path,
                                                    foreign_adapter_file: Path) -> None:
    for adapter, expected in ((adapter_file, "ok  adapter"), (foreign_adapter_file, "FAIL adapter")):
        out = io.StringIO()
        config = write_config(tmp_path, tiny_model_dir, f'analyst_adapter = "{adapter}"\n')
        assert doctor(config, out, environ={}) == 1  # no token here: that line fails either way
        lines = out.getvalue().splitlines()
        names = [line.split(":")[0] for line in lines]
        assert names[-2:] == [expected, "ok  model"], lines
        # The model line is about the model alone when the adapter did not fit, and with the adapter when it did.
        assert ("with the analyst adapter" in lines[-1]) == (adapter == adapter_file)
