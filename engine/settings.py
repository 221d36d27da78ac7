"""Engine settings in one dataclass, with named precision presets. Importing this never imports torch (the remote
backend and the bot's configuration need none)."""

from __future__ import annotations

import functools
import ipaddress
import os
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from engine.values import ReplyLength

Precision = Literal["auto", "fp32", "bf16", "int8"]
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "int8")
# What ``moodbot tune`` may compute in (the first is its default; bf16 is faster only with native bf16 products).
TRAINING_PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
Backend = Literal["local", "openai"]
BACKENDS: tuple[str, ...] = ("local", "openai")
DEFAULT_BASE_URL = "http://127.0.0.1:8000/v1"  # vLLM's default; llama.cpp server: :8080/v1, Ollama: :11434/v1

DEFAULT_MODEL = "Qwen/Qwen2.5-0.5B-Instruct"
# The most tokens a "short" reply may take (when ``max_new_tokens`` is not smaller): the prompt asks for one or two
# sentences, which take 30-60 tokens in English or Chinese; this only stops a model that ignores it.
SHORT_REPLY_MAX_NEW_TOKENS = 96


@functools.cache  # read once: ``auto`` is resolved several times while loading
def _cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="ignore") as cpuinfo:
            return cpuinfo.read()
    except OSError:
        return ""


def cpu_has_fast_bf16() -> bool:
    """True when this CPU runs bf16 matrix work natively (AVX-512 BF16 or AMX), so bf16 is faster than fp32."""
    import torch  # here, not at the top: only resolving ``auto`` for the local backend asks torch

    capability = torch.backends.cpu.get_cpu_capability()  # "AVX512" on AVX-512 BF16 machines too: check cpuinfo
    if "AMX" in capability or "BF16" in capability:
        return True
    flags = _cpu_flags()
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_int8_dot_products() -> bool:
    """True when this CPU has int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI or AMX-INT8)."""
    flags = _cpu_flags()
    return any(flag in flags for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))


def is_loopback_url(url: str) -> bool:
    """True when ``url``'s host is this machine: localhost, 127.0.0.0/8 or ::1 (traffic never leaves it)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name other than localhost: it may resolve anywhere
        return False


def key_travels_safely(base_url: str) -> bool:
    """True when an API key sent to ``base_url`` is encrypted (https) or never leaves this machine (loopback)."""
    return urlsplit(base_url).scheme == "https" or is_loopback_url(base_url)


def resolve_precision(precision: str) -> str:
    """Turn ``auto`` into the concrete precision for this machine; leave explicit choices alone.

    int8 where the CPU has int8 dot products: measured on a 2-core AVX-512 VNNI server it classifies about as fast
    as bf16, decodes a single chat 1.8-2.4x faster, takes half the memory, and stays within a point of fp32's
    accuracy (bench/RESULTS.md). Else bf16 where it is native, else int8 on AVX2, else fp32.
    """
    if precision != "auto":
        return precision
    if cpu_has_int8_dot_products():
        return "int8"
    if cpu_has_fast_bf16():
        return "bf16"
    # AVX2 without int8 dot products still runs oneDNN's int8 kernels (7-bit activations, engine/kernels/int8.py):
    # on a 2-core AVX2 EPYC it classified 2.3x faster than fp32 (p50 154 vs 353 ms) in a third of the memory, within
    # a point of fp32's accuracy (SST-2 sample 83.5% vs 84.0%; bench/RESULTS.md).
    return "int8" if "avx2" in _cpu_flags() else "fp32"


@dataclass(frozen=True)
class EngineSettings:
    """Everything an engine needs: the local model and how to run it, or the remote server to ask."""

    model: str = DEFAULT_MODEL  # for "openai": the model name the server knows
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
    # Where prepared int8 weights are cached, so a later start reads them in seconds instead of preparing them again
    # (engine/loading/prepared_files.py): "" = $XDG_CACHE_HOME/moodbot/prepared (~/.cache/...), "off" = no cache.
    prepared_cache_dir: str = ""
    calibrate: bool = True  # remove the model's lean on content-free input (measured per script at start-up)
    # |score| below this is labelled neutral; fitted on three-way chat-like messages (bench/neutral_zero_shot.py)
    neutral_margin: float = 0.42
    # Also ask the model the care (crisis) question about every message. Explicit crisis phrases count either way.
    # Off by default: on Qwen2.5 0.5B the model's answer never reached the 0.9 threshold, so it changed nothing
    # while costing a third of each classification (README, Care).
    care_question: bool = False
    # A trained analyst adapter (a file from `moodbot tune`): the analyst then labels positive/neutral/negative with
    # it (calibrate and neutral_margin no longer apply). Empty: the base model's prompt. Local backend only.
    analyst_adapter: str = ""
    backend: str = "local"  # "local" (the model in this process) or "openai" (an OpenAI-compatible server)
    # backend = "openai" only:
    base_url: str = DEFAULT_BASE_URL  # up to and including /v1
    api_key: str = field(default="", repr=False)  # sent as a Bearer token when set; never logged
    # The most one request may spend waiting for the server, start to last byte (a streamed reply's whole stream,
    # not the time moodbot spends showing its chunks); also the connect timeout.
    request_timeout_s: float = 60.0
    max_retries: int = 2  # more tries after a connection error, 429 or 5xx (never once reply text was sent)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {self.precision!r}")
        if not 0 <= self.neutral_margin < 1:
            raise ValueError("neutral_margin must be in [0, 1)")
        if self.threads < 0:
            raise ValueError("threads must be 0 (all cores) or a positive number")
        if self.request_timeout_s <= 0:
            raise ValueError("request_timeout_s must be more than 0")
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if self.backend == "openai" and self.analyst_adapter:
            raise ValueError(
                'analyst_adapter: an adapter runs only in the local model (backend = "local"), not with '
                'backend = "openai": leave analyst_adapter empty or use the local backend'
            )
        # Plain http to another machine would hand the key to anyone on the path (and to whoever can redirect the
        # name): refuse it here, before any request is sent.
        if self.backend == "openai" and self.api_key and not key_travels_safely(self.base_url):
            raise ValueError(
                f"base_url: an API key is sent only over https:// or to this machine, not over plain http to "
                f"{urlsplit(self.base_url).hostname or self.base_url!r}; use https://, a loopback address "
                "(127.0.0.1, ::1, localhost) or no API key"
            )

    def reply_token_limit(self, length: ReplyLength = "normal") -> int:
        """The most tokens a reply of ``length`` may take: ``max_new_tokens``, capped for a short one."""
        if length == "short":
            return min(self.max_new_tokens, SHORT_REPLY_MAX_NEW_TOKENS)
        return self.max_new_tokens

    @property
    def torch_threads(self) -> int:
        """The intra-op thread count torch should use."""
        return self.threads or (os.cpu_count() or 1)

    @property
    def resolved_precision(self) -> str:
        """The concrete precision (``auto`` resolved for this machine)."""
        return resolve_precision(self.precision)
