"""How often the remote backend (llama-cpp-python's server) and the local engine give the same label, per language.

Both classify the same messages with the same GGUF: the local engine reads the label tokens' logits in this
process; the remote one asks an OpenAI-compatible server started here on 127.0.0.1 for ONE token with its top
logprobs. Messages are the first N of SST-2 (English) and ChnSentiCorp (Chinese) dev samples (``text<TAB>label``,
label 1 = positive, 0 = negative)::

    python -m bench.backend_agreement --gguf ~/.cache/moodbot/models/SmolLM2-135M-Instruct.Q4_1.gguf --n 100

Both use the engine defaults (calibration on, the neutral margin). Prints, per language: label agreement; how often
the server's top-20 tokens held a label word at all (when none does, the remote verdict is a guess) and the
agreement on those messages; the mean |ΔP(positive)| and |Δscore| between the backends; how often both agree on
the care flag (care >= 0.5); and each backend's accuracy on the gold labels (a "neutral" answer counts as wrong).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import EngineSettings, LocalEngine, OpenAIEngine, Sentiment
from tests.support.openai_server import LlamaCppServer

DATA_DIR = Path(os.environ.get("MOODBOT_DEV_DATA", "data"))  # the dev sets (text<TAB>label files): set MOODBOT_DEV_DATA
DATASETS = {"en (SST-2)": "sst2_dev_sample.tsv", "zh (ChnSentiCorp)": "chnsenticorp_dev.tsv"}
GOLD = {"1": "positive", "0": "negative"}
CARE_AT = 0.5  # the bot's default care threshold


@dataclass(frozen=True)
class Example:
    """One labelled message."""

    text: str
    gold: str


def read_examples(path: Path, n: int) -> list[Example]:
    """The first ``n`` rows of a ``text<TAB>label`` file with a header line."""
    with path.open(encoding="utf-8", newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [Example(row["text"], GOLD.get(row["label"], row["label"])) for row in itertools.islice(rows, n)]


async def local_verdicts(gguf: Path, texts: Sequence[str], threads: int) -> list[Sentiment]:
    """The local engine's sentiments (fp32, all messages submitted at once so it batches them)."""
    engine = LocalEngine(EngineSettings(model=str(gguf), precision="fp32", threads=threads, queue_size=len(texts),
                                        care_question=True))
    await engine.start()
    try:
        return list(await asyncio.gather(*(engine.classify(t) for t in texts)))
    finally:
        await engine.close()


async def remote_verdicts(gguf: Path, texts: Sequence[str]) -> list[tuple[Sentiment, bool]]:
    """The server's sentiments, each with whether a label token was among its top logprobs at all."""
    with tempfile.TemporaryDirectory() as tmp, LlamaCppServer(gguf, log_path=Path(tmp) / "server.log") as server:
        print(f"llama-cpp-python server at {server.base_url} …", file=sys.stderr)
        settings = EngineSettings(backend="openai", base_url=server.base_url, model=str(gguf), request_timeout_s=300,
                                  care_question=True)
        engine = OpenAIEngine(settings)
        await engine.start()
        try:
            verdicts = []
            for text in texts:
                guesses = engine.unlabelled
                verdicts.append((await engine.classify(text), engine.unlabelled == guesses))
            return verdicts
        finally:
            await engine.close()


def compare(
    local: Sequence[Sentiment], remote: Sequence[tuple[Sentiment, bool]], gold: Sequence[str]
) -> dict[str, float]:
    """Agreement and accuracy figures for one language."""
    n = len(gold)
    pairs = [(a, b, seen) for a, (b, seen) in zip(local, remote, strict=True)]
    seen_pairs = [(a, b) for a, b, seen in pairs if seen]
    return {
        "n": n,
        "agreement_pct": 100 * sum(a.label == b.label for a, b, _ in pairs) / n,
        "label_seen_pct": 100 * len(seen_pairs) / n,
        "agreement_when_seen_pct": 100 * sum(a.label == b.label for a, b in seen_pairs) / max(1, len(seen_pairs)),
        "mean_abs_positive_gap": sum(abs(a.probs["positive"] - b.probs["positive"]) for a, b, _ in pairs) / n,
        "mean_abs_score_gap": sum(abs(a.score - b.score) for a, b, _ in pairs) / n,
        "care_flag_agreement_pct": 100 * sum((a.care >= CARE_AT) == (b.care >= CARE_AT) for a, b, _ in pairs) / n,
        "local_accuracy_pct": 100 * sum(s.label == g for s, g in zip(local, gold, strict=True)) / n,
        "remote_accuracy_pct": 100 * sum(b.label == g for (b, _), g in zip(remote, gold, strict=True)) / n,
    }


async def run(gguf: Path, n: int, threads: int, data_dir: Path) -> dict[str, dict[str, float]]:
    """Classify each dataset's first ``n`` messages with both backends; figures per language."""
    examples = {name: read_examples(data_dir / file, n) for name, file in DATASETS.items()}
    texts = [e.text for rows in examples.values() for e in rows]
    print(f"local engine on {gguf.name} (fp32, {threads} threads): {len(texts)} messages …", file=sys.stderr)
    local = await local_verdicts(gguf, texts, threads)
    remote = await remote_verdicts(gguf, texts)
    results, start = {}, 0
    for name, rows in examples.items():
        stop = start + len(rows)
        results[name] = compare(local[start:stop], remote[start:stop], [e.gold for e in rows])
        start = stop
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m bench.backend_agreement", description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, required=True, help="the GGUF both backends load")
    parser.add_argument("--n", type=int, default=200, help="messages per language (default 200)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the local engine (the server: 1)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR, help=f"where the .tsv files are ({DATA_DIR})")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args.gguf.expanduser(), args.n, args.threads, args.data_dir))
    print(f"{'language':<18} {'n':>4} {'agree':>7} {'label seen':>11} {'agree|seen':>11} {'|ΔP+|':>6} {'|Δscore|':>8} "
          f"{'care agree':>10} {'acc local':>10} {'acc remote':>11}")
    for name, r in results.items():
        print(
            f"{name:<18} {r['n']:>4} {r['agreement_pct']:>6.1f}% {r['label_seen_pct']:>10.1f}% "
            f"{r['agreement_when_seen_pct']:>10.1f}% {r['mean_abs_positive_gap']:>6.3f} "
            f"{r['mean_abs_score_gap']:>8.3f} "
            f"{r['care_flag_agreement_pct']:>9.1f}% {r['local_accuracy_pct']:>9.1f}% {r['remote_accuracy_pct']:>10.1f}%"
        )
    if args.json:
        payload: dict[str, Any] = {"gguf": str(args.gguf), "results": results}
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
