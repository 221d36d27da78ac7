"""Engine settings in one dataclass, with named precision presets."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"

# dtype each explicit precision loads the weights in (int8 loads bf16, then quantises the weights layer by layer).
PRECISION_DTYPES: dict[str, torch.dtype] = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.bfloat16}


def cpu_has_fast_bf16() -> bool:
    """True when this CPU runs bf16 matrix work natively (AVX-512 BF16 or AMX), so bf16 is faster than fp32."""
    capability = torch.backends.cpu.get_cpu_capability()  # "AVX512" on AVX-512 BF16 machines too: check cpuinfo
    if "AMX" in capability or "BF16" in capability:
        return True
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    """Turn ``auto`` into the concrete precision for this machine; leave explicit choices alone."""
    if precision != "auto":
        return precision
    return "bf16" if cpu_has_fast_bf16() else "fp32"


@dataclass(frozen=True)
class EngineSettings:
    """Everything the local engine needs to load and run its one model."""

    model: str = DEFAULT_MODEL
    precision: str = "auto"
    threads: int = 0  # 0 = all cores
    max_new_tokens: int = 256
    history_tokens: int = 1024
    temperature: float = 0.7  # 0 = greedy (deterministic)
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    queue_size: int = 64  # outstanding requests (classifications + replies) before callers are told "busy"
    max_active_replies: int = 8  # replies decoding at once; more wait in line inside the worker
    prompt_cache_mb: int = 256  # KV caches of recent conversations kept between turns (0 = off)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if self.threads < 0:
            raise ValueError("threads must be 0 (all cores) or a positive number")

    @property
    def torch_threads(self) -> int:
        """The intra-op thread count torch should use."""
        return self.threads or (os.cpu_count() or 1)

    @property
    def resolved_precision(self) -> str:
        """The concrete precision (``auto`` resolved for this machine)."""
        return resolve_precision(self.precision)

    @property
    def dtype(self) -> torch.dtype:
        """The torch dtype the weights are loaded in."""
        return PRECISION_DTYPES[self.resolved_precision]
