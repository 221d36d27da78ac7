"""Does the companion answer in the person's language, and never mention labels, scores or its instructions?

    python -m bench.reply_eval                                  # Qwen2.5 0.5B stand-in, bf16, 100 + 100 messages
    python -m bench.reply_eval --precision int8 --n 20          # quicker

Replies to the first N messages of each dev set (English SST-2 sample, Chinese ChnSentiCorp), each as the first
message of a fresh conversation, greedy. Counts replies in the message's script (engine.roles.language.script_of) and
replies that mention a label word, a score or the instructions. Writes ``bench/results/replies.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from pathlib import Path

from bench.baselines import DEFAULT_MODEL
from bench.measure import bench_lock
from bot.cli.evaluation import read_examples
from engine import EngineSettings, LocalEngine
from engine.roles.language import script_of

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {"en": DATA / "sst2_dev_sample.tsv", "zh": DATA / "chnsenticorp_dev.tsv"}
RESULTS = Path(__file__).resolve().parent / "results" / "replies.json"
CONCURRENCY = 8

# What the companion must never say: the analyst's labels or scores, or talk about its instructions.
FORBIDDEN = re.compile(
    r"\b(positive|negative|neutral|sentiment|score|label|classif\w*|system prompt|instructions?)\b"
    r"|情感分析|情绪分析|积极|消极|正面|负面|中性|分数|标签|分类|指令|提示词",
    re.IGNORECASE,
)


async def reply_to(engine: LocalEngine, text: str) -> str:
    """The whole reply to ``text`` as the first message of a conversation, as the person would see it (the
    engine's reply guard has already run)."""
    return "".join([chunk async for chunk in engine.reply([], text)]).strip()


async def run(model: str, precision: str, n: int, max_new_tokens: int) -> dict[str, object]:
    """Generate the replies and count language matches and forbidden mentions per language."""
    engine = LocalEngine(EngineSettings(
        model=model, precision=precision, temperature=0.0, max_new_tokens=max_new_tokens, threads=0,
    ))
    await engine.start()
    gate = asyncio.Semaphore(CONCURRENCY)
    results: dict[str, object] = {"model": model, "precision": precision, "max_new_tokens": max_new_tokens}
    try:
        for language, path in SETS.items():
            messages = [e.text for e in read_examples(path)[:n]]

            async def one(text: str) -> str:
                async with gate:
                    return await reply_to(engine, text)

            started = time.perf_counter()
            replies = await asyncio.gather(*(one(text) for text in messages))
            matched = sum(script_of(reply) == language for reply in replies)
            mentions = [reply for reply in replies if FORBIDDEN.search(reply)]
            results[language] = {
                "messages": len(messages), "same_language": matched, "mentions": len(mentions),
                "seconds": round(time.perf_counter() - started, 1),
                "examples": [{"message": m, "reply": r} for m, r in list(zip(messages, replies, strict=True))[:3]],
                "mention_examples": mentions[:5],
            }
            print(f"{language}: {matched}/{len(messages)} in the same language, {len(mentions)} mention labels "
                  f"or instructions ({results[language]['seconds']} s)", flush=True)
    finally:
        await engine.close()
    return results


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--precision", default="bf16")
    parser.add_argument("--n", type=int, default=100, help="messages per language")
    parser.add_argument("--max-new-tokens", type=int, default=96)
    args = parser.parse_args()
    with bench_lock():
        results = asyncio.run(run(args.model, args.precision, args.n, args.max_new_tokens))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
