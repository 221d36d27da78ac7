"""Where a configured model's files are: a .gguf file, a model folder, or a hub repo (downloaded into the hub cache).

Kept free of torch: ``moodbot doctor`` resolves the source to look for prepared weights without loading anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelLoadError

# Only what inference needs: skips other frameworks' weights and training leftovers in a hub repo.
HUB_ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.tiktoken", "*.jinja"]


@dataclass(frozen=True)
class ModelSource:
    """Where weights come from: a folder, plus the GGUF file name inside it when loading GGUF."""

    directory: str
    gguf_file: str | None = None

    @property
    def weights(self) -> Path:
        """The GGUF file, or the folder of the checkpoint's files."""
        return Path(self.directory) / self.gguf_file if self.gguf_file else Path(self.directory)


def resolve_source(spec: str, *, download: bool = True) -> ModelSource:
    """Turn a configured model string into a local source, downloading a hub repo (with progress) if needed; with
    ``download=False`` a hub repo must already be in the local cache (else ModelLoadError)."""
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ModelLoadError(f"model file not found: {path}")
        return ModelSource(str(path.parent), path.name)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").exists() and len(ggufs) == 1:
            return ModelSource(str(path), ggufs[0].name)
        if not (path / "config.json").exists():
            raise ModelLoadError(f"{path} is a folder but holds no config.json (nor exactly one .gguf file)")
        return ModelSource(str(path))
    if spec.startswith((".", "/", "~")) or os.sep in spec.strip("/").replace("/", "", 1):
        raise ModelLoadError(f"model path not found: {spec}")
    return ModelSource(download_from_hub(spec, local_only=not download))


def download_from_hub(repo_id: str, *, local_only: bool = False) -> str:
    """Download (or find in the local cache) a hub repo and return its folder; tqdm shows progress. With
    ``local_only`` nothing is downloaded: a repo missing from the cache raises ModelLoadError."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return snapshot_download(repo_id, allow_patterns=HUB_ALLOW_PATTERNS, local_files_only=local_only)
    except GatedRepoError as exc:
        raise ModelLoadError(f"{repo_id} is gated on the hub: log in with `hf auth login` first") from exc
    except RepositoryNotFoundError as exc:
        raise ModelLoadError(
            f"{repo_id!r} is neither a local path nor a model on the Hugging Face hub (check engine.model)"
        ) from exc
    except LocalEntryNotFoundError as exc:
        raise ModelLoadError(
            f"cannot download {repo_id!r}: the hub is unreachable and the model is not in the local cache "
            "(set engine.model to a local folder or .gguf file)"
        ) from exc
    except (HfHubHTTPError, OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot download {repo_id!r}: {exc}") from exc
