"""Accuracy against training time, from the curves ``moodbot tune`` keeps in its adapters.

Each adapter file records its dev-split accuracy (mean over its data files) at every evaluation, with the minutes
spent so far (loading and preparing included). This prints them side by side and, with ``--png``, draws them::

    python -m bench.tune_curve quick.safetensors default.safetensors --png docs/tune_curve.png
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from engine.adapters.file import load_adapter


def curves(paths: Sequence[Path]) -> dict[str, list[tuple[float, float]]]:
    """(minutes, dev accuracy) points per adapter, named by file stem."""
    found: dict[str, list[tuple[float, float]]] = {}
    for path in paths:
        history = load_adapter(path).recipe.get("history")
        if not isinstance(history, list) or not history:
            raise SystemExit(f"{path}: no training curve recorded")
        found[path.stem] = [(float(point["minutes"]), float(point["mean"])) for point in history]
    return found


def draw(found: dict[str, list[tuple[float, float]]], out: Path) -> None:
    """A small line chart of the curves (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 3.2), dpi=110)
    for name, points in found.items():
        axes.plot([m for m, _ in points], [100 * a for _, a in points], marker="o", markersize=3, label=name)
    axes.set_xlabel("minutes of `moodbot tune` on a 2-core CPU (preparing included)")
    axes.set_ylabel("dev accuracy, %")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)


def main(argv: Sequence[str] | None = None) -> int:
    """Print every adapter's curve; draw them with ``--png``."""
    parser = argparse.ArgumentParser(prog="python -m bench.tune_curve", description=__doc__.splitlines()[0])
    parser.add_argument("adapters", type=Path, nargs="+")
    parser.add_argument("--png", type=Path, help="also draw the curves into this PNG")
    args = parser.parse_args(argv)
    found = curves(args.adapters)
    for name, points in found.items():
        print(f"{name}: " + ", ".join(f"{minutes:.0f} min {accuracy:.1%}" for minutes, accuracy in points))
    if args.png:
        draw(found, args.png)
        print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
