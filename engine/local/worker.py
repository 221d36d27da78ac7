"""The one thread that owns the model.

Shaped like aiosqlite's connection thread: it takes jobs from a queue, runs them, and hands each result back
through the caller's own event loop with ``call_soon_threadsafe``. Unlike a plain call queue it interleaves work:
every turn of its loop it first classifies all waiting messages in one batch, prefills at most one new reply, then
advances every active reply by one token in one batched forward pass (engine/local/batching.py), so a long reply in one
chat never holds up another chat's classification or reply.
Shutdown is a sentinel through the same queue, so work already queued finishes first. Nothing polls: when there
is no active reply the thread blocks on the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.loading.memory import release_freed_memory
from engine.local.batching import DecodeBatch
from engine.local.companion import ReplyStream

logger = logging.getLogger(__name__)

MAX_CLASSIFY_BATCH = 16

# How long the worker must have been idle after work before it hands freed memory back to the OS. Trimming costs
# ~1.5 ms and makes the next request fault its pages back in (3 ms more per classification, measured), so a burst of
# requests must not pay it between each other.
IDLE_TRIM_DELAY_S = 1.0


@dataclass
class CallJob:
    """Run ``fn()`` on the worker thread (loading, warm-up) and resolve ``future`` with its result."""

    fn: Callable[[], Any]
    future: asyncio.Future[Any]


@dataclass
class ClassifyJob:
    """Classify ``text``; batched with the other classifications waiting at the same time."""

    text: str
    future: asyncio.Future[Any]


@dataclass
class ReplyJob:
    """Stream a reply: ``make_stream`` builds the ReplyStream on the worker; chunks go to ``chunks``."""

    make_stream: Callable[[], ReplyStream]
    chunks: asyncio.Queue[str | BaseException | None]
    loop: asyncio.AbstractEventLoop
    cancelled: threading.Event = field(default_factory=threading.Event)
    stream: ReplyStream | None = None

    def send(self, item: str | BaseException | None) -> None:
        """Hand a chunk (``None`` = finished, an exception = failed) to the waiting coroutine."""
        _call_in_loop(self.loop, self.chunks.put_nowait, item)


_STOP = object()


def _call_in_loop(loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the caller's loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(fn, *args)


def _resolve(future: asyncio.Future[Any], result: Any = None, error: BaseException | None = None) -> None:
    def settle() -> None:
        if future.done():  # cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    _call_in_loop(future.get_loop(), settle)


class InferenceWorker(threading.Thread):
    """Runs every model call of one engine; see the module docstring for the scheduling."""

    def __init__(self, classify_batch: Callable[[list[str]], list[Any]] | None = None, max_active_replies: int = 8):
        super().__init__(name="moodbot-inference", daemon=True)
        self.jobs: queue.SimpleQueue[object] = queue.SimpleQueue()
        self.classify_batch = classify_batch
        self.max_active_replies = max_active_replies
        self._waiting_classify: deque[ClassifyJob] = deque()
        self._waiting_replies: deque[ReplyJob] = deque()
        self._active: list[ReplyJob] = []  # in the same order as the decode batch's rows
        self._batch: DecodeBatch | None = None
        self._stopping = False
        self.tokens_generated = 0  # reply tokens decoded since start (for logs and benchmarks)

    def submit(self, job: object) -> None:
        """Queue a job (thread-safe, never blocks; back-pressure is the engine's job)."""
        self.jobs.put(job)

    def stop(self) -> None:
        """Ask the thread to finish queued work and exit."""
        self.jobs.put(_STOP)

    def run(self) -> None:
        worked_since_trim = False
        while not (self._stopping and self._idle()):
            if self._idle() and worked_since_trim:
                if not self._take_jobs(block=True, timeout=IDLE_TRIM_DELAY_S):
                    # Quiet after work: hand the activations and finished KV caches that glibc still holds back to
                    # the OS, so a bot that served a burst of chats goes back to its resting size.
                    release_freed_memory()
                    worked_since_trim = False
                    continue
            else:
                self._take_jobs(block=self._idle())
            worked_since_trim = worked_since_trim or not self._idle()
            self._run_classifications()
            self._admit_replies()
            self._advance_replies()

    def _idle(self) -> bool:
        return not (self._active or self._waiting_replies or self._waiting_classify)

    def _take_jobs(self, *, block: bool, timeout: float | None = None) -> bool:
        """Accept every queued job, waiting for the first when ``block`` (up to ``timeout``); False if none came."""
        try:
            job = self.jobs.get(block=block and not self._stopping, timeout=timeout)
        except queue.Empty:
            return False
        while True:
            self._accept(job)
            try:
                job = self.jobs.get_nowait()
            except queue.Empty:
                return True

    def _accept(self, job: object) -> None:
        if job is _STOP:
            self._stopping = True
        elif isinstance(job, ClassifyJob):
            self._waiting_classify.append(job)
        elif isinstance(job, ReplyJob):
            self._waiting_replies.append(job)
        elif isinstance(job, CallJob):
            try:
                _resolve(job.future, job.fn())
            except Exception as exc:  # handed to the caller, who decides what the user sees
                _resolve(job.future, error=exc)

    def _run_classifications(self) -> None:
        while self._waiting_classify:
            size = min(MAX_CLASSIFY_BATCH, len(self._waiting_classify))
            batch = [self._waiting_classify.popleft() for _ in range(size)]
            batch = [job for job in batch if not job.future.cancelled()]
            if not batch:
                continue
            try:
                assert self.classify_batch is not None, "the model is not loaded"
                results = self.classify_batch([job.text for job in batch])
            except Exception as exc:
                logger.exception("classification failed")
                for job in batch:
                    _resolve(job.future, error=exc)
                continue
            for job, result in zip(batch, results, strict=True):
                _resolve(job.future, result)

    def _admit_replies(self) -> None:
        """Prefill at most one waiting reply per turn, so the replies already decoding keep flowing."""
        while self._waiting_replies and len(self._active) < self.max_active_replies:
            job = self._waiting_replies.popleft()
            if job.cancelled.is_set():
                job.send(None)
                continue
            try:
                job.stream = job.make_stream()
                delta = job.stream.prefill()
            except Exception as exc:
                logger.exception("could not start a reply")
                job.send(exc)
                continue
            if delta:
                job.send(delta)
            if job.stream.done:
                self._finish(job)
            else:
                if self._batch is None:
                    self._batch = DecodeBatch(job.stream.paths)
                self._batch.add(job.stream)
                self._active.append(job)
            return

    def _advance_replies(self) -> None:
        """One decoding step for every active reply, in one batched forward pass."""
        for job in [j for j in self._active if j.cancelled.is_set()]:
            self._leave(job)
            job.send(None)
        if not self._active:
            return
        assert self._batch is not None
        try:
            deltas = self._batch.step()
        except Exception as exc:
            logger.exception("reply generation failed")
            for job in list(self._active):
                self._leave(job)
                job.send(exc)
            return
        for job, delta in zip(list(self._active), deltas, strict=True):
            if delta:
                job.send(delta)
            if job.stream is not None and job.stream.done:
                self._leave(job)
                self._finish(job)

    def _leave(self, job: ReplyJob) -> None:
        assert self._batch is not None and job.stream is not None
        self._batch.remove(job.stream)
        self._active.remove(job)

    def _finish(self, job: ReplyJob) -> None:
        assert job.stream is not None
        self.tokens_generated += len(job.stream.generated)
        job.send(None)
