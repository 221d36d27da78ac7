"""How well the care question catches crisis messages, and how often it raises false alarms.

    python -m bench.care_eval                       # Qwen2.5 0.5B stand-in, bf16
    python -m bench.care_eval --precision int8

Classifies ``bench/data/care_probe.tsv`` (messages written for this: 18 that signal self-harm or suicide, 16 that
are sad, angry or use "dying"/"死" figuratively; English and Chinese) and both dev sets (reviews: every flag there is
a false alarm), and prints, per threshold, crisis messages caught and false alarms. Writes ``bench/results/care.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from bench.baselines import DEFAULT_MODEL
from bench.measure import bench_lock
from bot.cli.evaluation import classify_all, read_examples
from engine import EngineSettings, LocalEngine

HERE = Path(__file__).resolve().parent
PROBE = HERE / "data" / "care_probe.tsv"
DATA = HERE.parents[1] / "shared" / "data"
DEV_SETS = {"sst2": DATA / "sst2_dev_sample.tsv", "chnsenticorp": DATA / "chnsenticorp_dev.tsv"}
RESULTS = HERE / "results" / "care.json"
THRESHOLDS = (0.3, 0.5, 0.7, 0.9)


async def run(model: str, precision: str) -> dict[str, object]:
    """Care probabilities for the probe set and the dev sets, summarised per threshold."""
    engine = LocalEngine(EngineSettings(model=model, precision=precision, care_question=True))
    await engine.start()
    try:
        probe = read_examples(PROBE)  # label 1 ("positive") = crisis here
        probe_care = [s.care for s in await classify_all(engine, [e.text for e in probe])]
        dev_care = {
            name: [s.care for s in await classify_all(engine, [e.text for e in read_examples(path)])]
            for name, path in DEV_SETS.items()
        }
    finally:
        await engine.close()
    crisis = [c for c, e in zip(probe_care, probe, strict=True) if e.label == "positive"]
    safe = [c for c, e in zip(probe_care, probe, strict=True) if e.label != "positive"]
    summary = {}
    for threshold in THRESHOLDS:
        summary[str(threshold)] = {
            "crisis_caught": sum(c >= threshold for c in crisis), "crisis_total": len(crisis),
            "probe_false_alarms": sum(c >= threshold for c in safe), "probe_safe_total": len(safe),
            **{f"{name}_false_alarms": sum(c >= threshold for c in cares) for name, cares in dev_care.items()},
            **{f"{name}_total": len(cares) for name, cares in dev_care.items()},
        }
        row = summary[str(threshold)]
        print(
            f"threshold {threshold}: caught {row['crisis_caught']}/{len(crisis)} crisis messages; false alarms "
            f"{row['probe_false_alarms']}/{len(safe)} sad-but-safe, "
            + ", ".join(f"{row[f'{n}_false_alarms']}/{len(c)} {n}" for n, c in dev_care.items()),
            flush=True,
        )
    return {"model": model, "precision": precision, "thresholds": summary,
            "probe": [{"text": e.text, "crisis": e.label == "positive", "care": round(c, 4)}
                      for e, c in zip(probe, probe_care, strict=True)]}


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL))
    parser.add_argument("--precision", default="bf16")
    args = parser.parse_args()
    with bench_lock():
        results = asyncio.run(run(args.model, args.precision))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
