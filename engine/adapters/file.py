"""The analyst adapter file: one small safetensors file of low-rank (LoRA) matrices plus metadata.

Tensors, for each adapted layer ``i`` and projection ``p`` (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj,
down_proj): ``layers.{i}.{p}.lora_A`` (rank, in_features) and ``layers.{i}.{p}.lora_B`` (out_features, rank), float32.
The projection then computes ``base(x) + scaling * (x @ A.T) @ B.T``, the convention peft uses.

The metadata ties the adapter to what it was trained with: the base model (its name and the fingerprint of its
weights, engine.loading.fingerprint), the analyst prompt's version, the labels in readout order and the word whose
first token stands for each, and the offsets fitted on the dev split after training that are added to the labels'
logits (engine.tuning.calibration; a file without them adds none). An adapter is only valid on the model and prompt
it was trained for, so loading it anywhere else is refused (:func:`check_base`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from engine.errors import EngineError

FORMAT = "moodbot-analyst-adapter"
FORMAT_VERSION = 1
PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_TENSOR_NAME = re.compile(r"^layers\.(\d+)\.(\w+)\.lora_([AB])$")


def offsets_text(label_offsets: Mapping[str, float]) -> str:
    """The label offsets that move anything, as people read them ("neutral -0.8, negative -0.5"), or "none"."""
    return ", ".join(f"{label} {offset:+.1f}" for label, offset in label_offsets.items() if offset) or "none"


class AdapterError(EngineError):
    """An adapter file that cannot be used here (unreadable, another format, or made for another model/prompt)."""


@dataclass(frozen=True)
class LoraPair:
    """One projection's low-rank update: ``delta(x) = scaling * (x @ a.T) @ b.T``."""

    a: torch.Tensor  # (rank, in_features)
    b: torch.Tensor  # (out_features, rank)


@dataclass
class AnalystAdapter:
    """A trained analyst adapter: its matrices and what it was trained for."""

    base_model: str  # the base model's name as configured when it was trained (for messages)
    base_fingerprint: str  # engine.loading.fingerprint of the base model's weights
    prompt_version: int  # engine.roles.prompts.ADAPTED_ANALYST_PROMPT_VERSION it was trained with
    labels: tuple[str, ...]  # readout order
    label_words: dict[str, str]  # label -> the word whose first token's logit stands for it
    scaling: float
    pairs: dict[tuple[int, str], LoraPair]  # (layer index, projection) -> matrices
    recipe: dict[str, object] = field(default_factory=dict)  # how it was trained (data, steps, time), for people
    # Added to each label's logit before the verdict (engine.tuning.calibration); a label not named adds 0.
    label_offsets: dict[str, float] = field(default_factory=dict)

    def offsets(self) -> list[float]:
        """The label offsets in ``labels`` order."""
        return [float(self.label_offsets.get(label, 0.0)) for label in self.labels]

    def offsets_text(self) -> str:
        """The offsets that move anything, in ``labels`` order, as people read them; "none" without any."""
        return offsets_text(dict(zip(self.labels, self.offsets(), strict=True)))

    @property
    def layers(self) -> list[int]:
        """The adapted layer indices, ascending."""
        return sorted({layer for layer, _ in self.pairs})

    @property
    def rank(self) -> int:
        """The largest rank among its pairs."""
        return max(pair.a.shape[0] for pair in self.pairs.values())

    def size_bytes(self) -> int:
        """Bytes its matrices take."""
        return sum(p.a.numel() * p.a.element_size() + p.b.numel() * p.b.element_size() for p in self.pairs.values())

    def save(self, path: Path | str) -> None:
        """Write the adapter as one safetensors file (float32 matrices, metadata as strings)."""
        tensors = {}
        for (layer, projection), pair in sorted(self.pairs.items()):
            tensors[f"layers.{layer}.{projection}.lora_A"] = pair.a.detach().float().contiguous()
            tensors[f"layers.{layer}.{projection}.lora_B"] = pair.b.detach().float().contiguous()
        metadata = {
            "format": FORMAT,
            "format_version": str(FORMAT_VERSION),
            "base_model": self.base_model,
            "base_fingerprint": self.base_fingerprint,
            "prompt_version": str(self.prompt_version),
            "labels": json.dumps(list(self.labels)),
            "label_words": json.dumps(self.label_words, ensure_ascii=False),
            "scaling": repr(float(self.scaling)),
            "recipe": json.dumps(self.recipe, ensure_ascii=False),
            "label_offsets": json.dumps(self.label_offsets),
        }
        save_file(tensors, str(path), metadata=metadata)


def load_adapter(path: Path | str) -> AnalystAdapter:
    """Read an adapter file; AdapterError (one line) when it is missing, unreadable or not an analyst adapter."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise AdapterError(f"analyst adapter not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise AdapterError(f"{path} is not a moodbot analyst adapter")
            if metadata.get("format_version") != str(FORMAT_VERSION):
                raise AdapterError(
                    f"{path} is an adapter of format version {metadata.get('format_version')}, this moodbot reads "
                    f"version {FORMAT_VERSION}: train it again with `moodbot tune`"
                )
            halves: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
            for name in handle.keys():  # noqa: SIM118 (a safe_open handle is not a dict)
                match = _TENSOR_NAME.match(name)
                if match is None or match.group(2) not in PROJECTIONS:
                    raise AdapterError(f"{path}: unexpected tensor {name!r}")
                key = (int(match.group(1)), match.group(2))
                halves.setdefault(key, {})[match.group(3)] = handle.get_tensor(name).float()
            adapter = AnalystAdapter(
                base_model=metadata["base_model"],
                base_fingerprint=metadata["base_fingerprint"],
                prompt_version=int(metadata["prompt_version"]),
                labels=tuple(json.loads(metadata["labels"])),
                label_words=dict(json.loads(metadata["label_words"])),
                scaling=float(metadata["scaling"]),
                pairs={},
                recipe=dict(json.loads(metadata.get("recipe", "{}"))),
                label_offsets={str(k): float(v) for k, v in json.loads(metadata.get("label_offsets", "{}")).items()},
            )
    except AdapterError:
        raise
    except Exception as exc:  # bad metadata (KeyError, ValueError) or safetensors' own SafetensorError
        raise AdapterError(f"cannot read analyst adapter {path}: {exc}") from exc
    for key, parts in halves.items():
        if set(parts) != {"A", "B"}:
            raise AdapterError(f"{path}: layer {key[0]} {key[1]} lacks lora_{'B' if 'A' in parts else 'A'}")
        a, b = parts["A"], parts["B"]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            shapes = f"{tuple(a.shape)}, {tuple(b.shape)}"
            raise AdapterError(f"{path}: layer {key[0]} {key[1]} has mismatched shapes {shapes}")
        adapter.pairs[key] = LoraPair(a, b)
    if not adapter.pairs:
        raise AdapterError(f"{path} holds no adapter matrices")
    if set(adapter.labels) - set(adapter.label_words) or len(set(adapter.labels)) != len(adapter.labels):
        raise AdapterError(f"{path}: labels and label words do not match")
    if set(adapter.label_offsets) - set(adapter.labels) or not all(map(math.isfinite, adapter.offsets())):
        raise AdapterError(f"{path}: label offsets must be finite numbers for its labels")
    return adapter


def check_base(adapter: AnalystAdapter, *, model_name: str, model_fingerprint: str, prompt_version: int) -> None:
    """Refuse (AdapterError, one line) an adapter trained on another base model or for another analyst prompt."""
    if adapter.base_fingerprint != model_fingerprint:
        raise AdapterError(
            f"the analyst adapter was trained on {adapter.base_model} (weights {adapter.base_fingerprint}), not on "
            f"this model {model_name} (weights {model_fingerprint}): train one for this model with `moodbot tune`"
        )
    if adapter.prompt_version != prompt_version:
        raise AdapterError(
            f"the analyst adapter was trained for analyst prompt version {adapter.prompt_version}, this moodbot uses "
            f"version {prompt_version}: train it again with `moodbot tune`"
        )
