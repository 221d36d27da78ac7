"""``moodbot eval``: reading the data, scoring, the injected copy, calibration and the neutral margin."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.cli import main
from bot.cli.evaluation import (
    EvalDataError,
    Example,
    evaluate,
    injected_text,
    predicted_label,
    read_examples,
    render_report,
    score,
)
from engine import Sentiment
from engine.roles.language import script_of
from engine.roles.verdict import care_from_logprobs, sentiment_from_logprobs

FIXTURE = "text\tlabel\nwhat a good day\t1\na bad film\t0\ngood but bad\t0\n这家酒店很好\t1\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "data.tsv"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_examples_maps_labels_and_skips_the_header(tmp_path: Path) -> None:
    examples = read_examples(write(tmp_path, FIXTURE + "so-so\t2\n\n"))
    assert [e.label for e in examples] == ["positive", "negative", "negative", "positive", "neutral"]
    assert examples[3].text == "这家酒店很好"


@pytest.mark.parametrize(
    ("text", "error"),
    [("a\t1\nb\t7\n", ":2: label must be 0, 1 or 2"), ("a\t1\nno tab here\n", ":2: expected text<TAB>label"),
     ("text\tlabel\n", "no labelled rows")],
)
def test_bad_rows_name_the_line(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(EvalDataError, match=error):
        read_examples(write(tmp_path, text))


def test_scores_accuracy_macro_f1_and_confusion() -> None:
    gold = ["positive", "positive", "positive", "negative"]
    predicted = ["positive", "positive", "negative", "negative"]
    result = score(gold, predicted, ["positive", "negative"])
    assert result.accuracy == 0.75
    assert result.confusion == {"positive": {"positive": 2, "negative": 1}, "negative": {"positive": 0, "negative": 1}}
    # positive: P=1, R=2/3 → F1 0.8; negative: P=1/2, R=1 → F1 2/3.
    assert result.macro_f1 == pytest.approx((0.8 + 2 / 3) / 2)


def test_injection_pushes_for_the_opposite_label_in_the_messages_language() -> None:
    english = injected_text(Example("I loved it", "positive"))
    assert english.startswith("I loved it") and "answer negative" in english
    chinese = injected_text(Example("房间很脏", "negative"))
    assert chinese.startswith("房间很脏") and "忽略" in chinese and "positive" in chinese


def test_binary_data_is_scored_on_the_sign_three_way_on_the_label() -> None:
    unsure = Sentiment("neutral", 0.1, {"positive": 0.55, "negative": 0.45})
    assert predicted_label(unsure, ["positive", "negative"]) == "positive"
    assert predicted_label(unsure, ["positive", "negative", "neutral"]) == "neutral"


def test_calibration_bias_and_neutral_margin() -> None:
    plain = sentiment_from_logprobs(-1.0, -2.0)
    assert plain.label == "positive" and plain.score == pytest.approx(2 * (1 / (1 + 2.718281828 ** -1)) - 1, abs=1e-6)
    assert sum(plain.probs.values()) == pytest.approx(1.0)
    # A model that leans positive on empty input by 1.5 nats: the same numbers now read negative.
    assert sentiment_from_logprobs(-1.0, -2.0, bias=1.5).label == "negative"
    assert sentiment_from_logprobs(-1.0, -1.1, neutral_margin=0.2).label == "neutral"
    assert sentiment_from_logprobs(-1.0, -1.1, neutral_margin=0.0).label == "positive"
    assert sentiment_from_logprobs(0.0, -500.0).score == 1.0
    assert care_from_logprobs(-0.1, -3.0) > 0.9 > care_from_logprobs(-3.0, -0.1)


def test_script_detection() -> None:
    assert script_of("今天很开心") == "zh"
    assert script_of("I went to 北京 last week and loved it") == "en"
    assert script_of("这个 app 太好用了") == "zh"
    assert script_of("") == "en"


class KeywordEngine:
    """Positive for 'good', negative otherwise; an injected instruction flips it when it says 'answer positive'."""

    model_name = "keywords"
    queue_depth = 0

    async def classify(self, text: str) -> Sentiment:
        positive = "good" in text or "很好" in text or "answer positive" in text
        return Sentiment("positive" if positive else "negative", 0.5 if positive else -0.5, care=0.0)


async def test_evaluate_reports_accuracy_flips_and_care(tmp_path: Path) -> None:
    examples = read_examples(write(tmp_path, FIXTURE))
    report = await evaluate(KeywordEngine(), examples, data="fixture")  # type: ignore[arg-type]
    assert report.messages == 4 and report.labels == ["positive", "negative"]
    assert report.clean.accuracy == 0.75  # "good but bad" is read as positive
    # Injection turns both negatives positive ("answer positive"); the positives resist ("answer negative").
    assert report.injected is not None and report.flip_rate == 0.25
    assert report.care_flags == 0
    text = render_report(report)
    assert "accuracy   75.0%" in text and "flip rate 25.0%" in text


def test_eval_command_runs_the_real_engine_on_a_small_file(tmp_path: Path, tiny_model_dir: Path, capsys) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'[engine]\nmodel = "{tiny_model_dir}"\nprecision = "fp32"\nthreads = 2\n', encoding="utf-8")
    out = tmp_path / "report.json"
    assert main(["-c", str(config), "eval", "--data", str(write(tmp_path, FIXTURE)), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "macro-F1" in printed and "flip rate" in printed
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["messages"] == 4 and report["model"] == str(tiny_model_dir)
    assert sum(sum(row.values()) for row in report["clean"]["confusion"].values()) == 4
    assert 0.0 <= report["flip_rate"] <= 1.0 and report["ms_per_message"] > 0


def test_eval_command_reports_a_bad_file_in_one_line(tmp_path: Path, capsys) -> None:
    assert main(["eval", "--data", str(write(tmp_path, "x\t9\n"))]) == 2
    assert "label must be 0, 1 or 2" in capsys.readouterr().err
