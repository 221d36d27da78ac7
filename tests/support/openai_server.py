"""OpenAI-compatible servers for tests: llama-cpp-python's real server on a GGUF file, and a scripted fake.

    with LlamaCppServer(gguf_path) as server:
        settings = EngineSettings(backend="openai", base_url=server.base_url, model="smollm2")

The server renders prompts with the chat template stored in the GGUF (as the local engine does) and runs with
``--interrupt_requests False`` so a classification never cuts off a reply that is still streaming. One thread by
default: on a busy 2-core machine llama.cpp's threads wait on each other, and one request took 10 s with two threads
where it took 1 s with one.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from aiohttp import web

from engine.roles.prompts import CARE_QUESTION

STARTUP_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaCppServer:
    """Starts ``python -m llama_cpp.server`` on ``gguf`` and stops it again (a context manager)."""

    def __init__(self, gguf: Path, *, log_path: Path, n_ctx: int = 2048, threads: int = 1) -> None:
        self.gguf = gguf
        self.log_path = log_path
        self.n_ctx = n_ctx
        self.threads = threads
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI API root, with /v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        """Launch the server and wait until it lists its model."""
        command = [
            sys.executable, "-m", "llama_cpp.server", "--model", str(self.gguf), "--host", "127.0.0.1",
            "--port", str(self.port), "--n_ctx", str(self.n_ctx), "--n_threads", str(self.threads),
            "--n_threads_batch", str(self.threads), "--interrupt_requests", "False",
        ]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        self._wait_until_ready()

    def stop(self) -> None:
        """Terminate the server (kill it if it does not stop within 10 s)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's output, for failure messages."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def __enter__(self) -> LlamaCppServer:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _wait_until_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {STARTUP_TIMEOUT_S:g} s:\n{self.log_tail()}")


class FakeOpenAIServer:
    """A scripted OpenAI-compatible server on 127.0.0.1 for error paths (aiohttp): failures, no logprobs, gates.

    A sentiment request is answered "Sentiment:" then the label, a care request (the care question last) yes or no,
    each token with ``top_logprobs`` from ``label_top`` / ``care_top``.

    ``failures`` are statuses answered, in order, to the next chat requests before they succeed; ``logprobs=False``
    answers like a server that ignores the parameter; ``gate`` (when set) holds every chat request until it is set;
    ``break_after`` drops the connection after that many streamed chunks. ``answers`` are handlers that answer the
    next chat requests in order instead (a broken or hostile server); ``model_list`` is what /models lists.
    """

    def __init__(self) -> None:
        self.failures: list[int] = []
        self.logprobs = True
        # The top tokens where the label comes (after a written "Sentiment:"), and at the care answer.
        self.label_top: list[tuple[str, float]] = [(" positive", -0.2), (" negative", -2.0), (" neutral", -3.0)]
        self.care_top: list[tuple[str, float]] = [("no", -0.05), ("yes", -3.0), ("Sent", -4.0)]
        self.chunks: list[str] = ["I hear", " you.", " Tell me more?"]
        self.break_after: int | None = None
        self.answers: list[Callable[[web.Request], Awaitable[web.StreamResponse]]] = []
        self.model_list: Any = [{"id": "fake-model", "object": "model"}]
        self.gate: asyncio.Event | None = None
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []  # (path, JSON body, headers)
        self.port = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        """The OpenAI API root, with /v1."""
        return f"http://127.0.0.1:{self.port}/v1"

    async def __aenter__(self) -> FakeOpenAIServer:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.5)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self.gate is not None:
            self.gate.set()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of the chat-completion requests received so far."""
        return [body for path, body, _ in self.requests if path.endswith("/chat/completions")]

    async def _models(self, request: web.Request) -> web.Response:
        self.requests.append((request.path, {}, dict(request.headers)))
        return web.json_response({"object": "list", "data": self.model_list})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append((request.path, body, dict(request.headers)))
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            status = self.failures.pop(0)
            return web.json_response({"error": {"message": f"scripted {status}"}}, status=status)
        if self.answers:
            return await self.answers.pop(0)(request)
        if body.get("stream"):
            return await self._stream(request)
        is_care = body["messages"][-1]["content"] == CARE_QUESTION
        steps = [self.care_top] if is_care else [[("Sent", -0.1)], [("iment", -0.01)], [(":", -0.01)], self.label_top]
        steps = steps[: body.get("max_tokens") or len(steps)]
        content = [
            {"token": top[0][0], "logprob": top[0][1], "bytes": None,
             "top_logprobs": [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]}
            for top in steps
        ]
        logprobs = {"content": content} if self.logprobs and body.get("logprobs") else None
        text = "".join(entry["token"] for entry in content)
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": logprobs,
                  "finish_reason": "stop"}
        return web.json_response({"object": "chat.completion", "model": body.get("model"), "choices": [choice]})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for index, text in enumerate(self.chunks):
            if index == self.break_after:
                assert request.transport is not None
                request.transport.close()  # the connection drops mid-reply
                return response
            chunk = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": text}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b": keep-alive comment\n\ndata: [DONE]\n\n")
        await response.write_eof()
        return response
