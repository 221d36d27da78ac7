"""The local backend: one model in this process, owned by one worker thread."""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import torch

from engine.adapters.file import load_adapter
from engine.errors import EngineBusy, EngineClosed
from engine.loading.memory import release_freed_memory
from engine.loading.model import LoadedModel, load_model
from engine.local.adapted_analyst import AdaptedAnalyst, adapted_analyst
from engine.local.analyst import Analyst
from engine.local.companion import ReplyStream, SamplingSettings, pinned_system_prefix, reply_prompt_ids
from engine.local.prompt_cache import PromptCache
from engine.local.worker import CallJob, ClassifyJob, InferenceWorker, ReplyJob
from engine.settings import EngineSettings
from engine.values import ChatTurn, ReplyLength, Sentiment

logger = logging.getLogger(__name__)
T = TypeVar("T")


class LocalEngine:
    """Loads the configured model once and serves classifications and streamed replies from it."""

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.sampling = SamplingSettings(
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            repetition_penalty=settings.repetition_penalty,
        )
        self._worker: InferenceWorker | None = None
        self._loaded: LoadedModel | None = None
        self._generator: torch.Generator | None = None
        self.prompt_cache = PromptCache(settings.prompt_cache_mb * 2**20)
        self._outstanding = 0
        self._closed = False

    @property
    def model_name(self) -> str:
        """The configured model string (hub id or path)."""
        return self.settings.model

    @property
    def queue_depth(self) -> int:
        """Classifications and replies submitted and not finished yet."""
        return self._outstanding

    @property
    def tokens_generated(self) -> int:
        """Reply tokens decoded by finished replies since start."""
        return self._worker.tokens_generated if self._worker is not None else 0

    @property
    def loaded(self) -> LoadedModel:
        """The loaded model (after :meth:`start`)."""
        if self._loaded is None:
            raise EngineClosed()
        return self._loaded

    async def start(self) -> None:
        """Start the worker thread and load the model on it (ModelLoadError on failure)."""
        if self._worker is not None:
            return
        self._worker = InferenceWorker(max_active_replies=self.settings.max_active_replies)
        self._worker.start()
        try:
            await self._call(self._load_on_worker)
        except BaseException:
            await self.close()
            raise

    def _load_on_worker(self) -> None:
        assert self._worker is not None
        # The adapter file is read first: a missing or broken one fails before the model's load time is spent.
        adapter = load_adapter(self.settings.analyst_adapter) if self.settings.analyst_adapter else None
        self._loaded = load_model(self.settings)
        if self.settings.seed is not None:
            self._generator = torch.Generator().manual_seed(self.settings.seed)
        analyst: Analyst | AdaptedAnalyst
        if adapter is not None:
            analyst = adapted_analyst(self._loaded, adapter, care_question=self.settings.care_question)
        else:
            analyst = Analyst(
                self._loaded.paths, self._loaded.tokenizer,
                calibrate=self.settings.calibrate, neutral_margin=self.settings.neutral_margin,
                care_question=self.settings.care_question,
            )
        self._worker.classify_batch = analyst.classify_batch
        if self.settings.prompt_cache_mb > 0:
            self.prompt_cache.pin(pinned_system_prefix(self._loaded.paths, self._loaded.tokenizer))
        release_freed_memory()  # the start-up passes (prefixes, calibration) left ~100 MB with glibc otherwise

    async def classify(self, text: str) -> Sentiment:
        """Sentiment of one message in its own isolated prompt (batched with others waiting at the same time)."""
        future = self._reserve()
        self._submit(ClassifyJob(text, future))
        return await future

    async def reply(
        self, history: Sequence[ChatTurn], message: str, *, length: ReplyLength = "normal"
    ) -> AsyncIterator[str]:
        """Stream the companion's reply (``length``: "normal" or "short") as text chunks; EngineBusy is raised before
        the first chunk."""
        self._check_capacity()
        loaded = self.loaded
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[str | BaseException | None] = asyncio.Queue()
        sampling = replace(self.sampling, max_new_tokens=self.settings.reply_token_limit(length))

        def make_stream() -> ReplyStream:
            prompt = reply_prompt_ids(loaded.tokenizer, history, message, self.settings.history_tokens, length)
            return ReplyStream(
                loaded.paths, loaded.tokenizer, prompt, sampling, loaded.stop_token_ids, self._generator,
                self.prompt_cache if self.settings.prompt_cache_mb > 0 else None,
            )

        job = ReplyJob(make_stream, chunks, loop)
        self._outstanding += 1
        try:
            self._submit(job)
            while (item := await chunks.get()) is not None:
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            job.cancelled.set()  # harmless when finished; stops decoding when the caller went away
            self._outstanding -= 1

    async def forget_conversations(self) -> None:
        """Empty the prompt cache of every conversation, not only one person's: its entries are token sequences
        that can't be told apart reliably by whose words they hold, and a missed one would keep deleted words in
        memory. The cost is one longer prefill for each other conversation's next reply."""
        if self._worker is None:
            self.prompt_cache.clear()
        else:
            await self._call(self.prompt_cache.clear)  # on the model thread, which alone reads and fills the cache

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the model thread (for tools and benchmarks that need the model directly)."""
        return await self._call(fn)

    async def close(self) -> None:
        """Let queued work finish, stop the worker thread and drop the model; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.stop()
            await asyncio.to_thread(worker.join)
        self._loaded = None

    def __del__(self) -> None:
        if self._worker is not None and not self._closed:
            warnings.warn("LocalEngine was never closed", ResourceWarning, stacklevel=1)

    # -- helpers ---------------------------------------------------------------------------------------------

    def _check_capacity(self) -> None:
        if self._closed or self._worker is None:
            raise EngineClosed()
        if self._outstanding >= self.settings.queue_size:
            raise EngineBusy()

    def _reserve(self) -> asyncio.Future[Any]:
        self._check_capacity()
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._outstanding += 1
        future.add_done_callback(self._release)
        return future

    def _release(self, _future: asyncio.Future[Any]) -> None:
        self._outstanding -= 1

    def _submit(self, job: object) -> None:
        if self._worker is None:
            raise EngineClosed()
        self._worker.submit(job)

    async def _call(self, fn: Callable[[], T]) -> T:
        if self._worker is None:
            raise EngineClosed()
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._worker.submit(CallJob(fn, future))
        return await future
