"""The fake's HTTP side: serving on 127.0.0.1, routing each request to its method, recording it, injected failures,
and what tests wait for and look at afterwards."""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from tests.support.fakebotapi.files import MediaFactory
from tests.support.fakebotapi.methods import BotMethods
from tests.support.fakebotapi.state import Chats
from tests.support.fakebotapi.updates import Changes, UpdateQueue
from tests.support.fakebotapi.users import UserActions
from tests.support.fakebotapi.wire import DEFAULT_DESCRIPTIONS, ApiError, Call, decode_params

T = TypeVar("T")
# A request's params, and its uploaded files' bytes, names and content types, by form field.
_Form = tuple[dict[str, Any], dict[str, bytes], dict[str, str], dict[str, str]]


class FakeBotApi(UserActions, BotMethods):
    """Fake Telegram Bot API server; see the package docstring."""

    def __init__(
        self, token: str | None = None, *, fail_parse_mode_once: bool = False, strict_private_chats: bool = False
    ) -> None:
        self._expected_token = token
        self.fail_parse_mode_once = fail_parse_mode_once
        self.strict_private_chats = strict_private_chats
        self.calls: list[Call] = []
        self.seen_tokens: list[str] = []
        self.unknown_methods: list[str] = []
        #: Exceptions raised by the fake itself (answered with 500): a bug in the fake or in a test.
        self.internal_errors: list[BaseException] = []
        self.callback_answers: dict[str, dict[str, Any]] = {}
        self.drafts: list[dict[str, Any]] = []
        self.blocked_by: set[int] = set()
        #: Seconds each call of a method takes before it is answered (to make concurrent calls overlap).
        self.latency: dict[str, float] = {}
        #: The most calls of each method that were being answered at the same time.
        self.max_in_flight: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}

        self._changes = Changes()
        self._updates = UpdateQueue(self._changes)
        self._chats = Chats()
        self._media = MediaFactory()
        self._commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.descriptions: dict[str, str] = {}
        self.short_descriptions: dict[str, str] = {}
        self._failures: dict[str, list[ApiError]] = {}
        self._port: int | None = None
        self._runner: web.AppRunner | None = None
        self._handlers = self._methods()
        self._canonical = {name.lower(): name for name in self._handlers}

    # -- server lifecycle

    async def start(self) -> FakeBotApi:
        """Bind 127.0.0.1 on a free port and start serving."""
        if self._runner is not None:
            raise RuntimeError("FakeBotApi is already running")
        self._updates.stopping = False
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(runner, sock).start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Stop serving. Pending long polls answer ``[]`` at once instead of holding the shutdown up."""
        self._updates.stopping = True
        self._changes.notify()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> FakeBotApi:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def port(self) -> int:
        """The port the fake listens on."""
        if self._port is None:
            raise RuntimeError("FakeBotApi is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """For ``ApplicationBuilder().base_url(...)`` and moodbot's ``telegram.base_url``."""
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def token(self) -> str | None:
        """The token given to the constructor, else the first token a request used (None before that)."""
        if self._expected_token is not None:
            return self._expected_token
        return self.seen_tokens[0] if self.seen_tokens else None

    # -- failure injection

    def fail_next(
        self,
        method: str,
        *,
        status: int = 429,
        retry_after: int = 1,
        times: int = 1,
        description: str | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        With status 429 the answer is "Too Many Requests: retry after N" with ``parameters.retry_after``
        (PTB raises ``RetryAfter``); other statuses answer ``description`` (or a default one: 400 →
        BadRequest, 403 → Forbidden, 409 → Conflict, 5xx → NetworkError in PTB).
        """

        def make() -> ApiError:
            if status == 429:
                text = description or f"Too Many Requests: retry after {retry_after}"
                return ApiError(429, text, {"retry_after": retry_after})
            return ApiError(status, description or DEFAULT_DESCRIPTIONS.get(status, "Error"))

        self._failures.setdefault(method.lower(), []).extend(make() for _ in range(times))

    # -- what tests look at

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Queued updates not yet confirmed by a getUpdates ``offset``."""
        return self._updates.pending

    def calls_of(self, method: str) -> list[Call]:
        """Recorded calls of ``method`` (case-insensitive), oldest first."""
        method = method.lower()
        return [call for call in self.calls if call.method.lower() == method]

    def sent_messages(self, chat_id: int | str | None = None, *, include_deleted: bool = False) -> list[dict[str, Any]]:
        """The bot's messages (copies, in send order) with their CURRENT text/caption/markup after edits."""
        return self._chats.bot_messages(chat_id, include_deleted=include_deleted)

    def sent_texts(self, chat_id: int | str | None = None) -> list[str]:
        """Current texts (or captions) of the bot's messages."""
        return [m.get("text", m.get("caption", "")) for m in self.sent_messages(chat_id)]

    async def wait_for(self, predicate: Callable[[FakeBotApi], T], timeout: float = 5.0) -> T:
        """Wait until ``predicate(self)`` is truthy and return its value.

        Re-checked whenever a call is recorded or answered or an update is queued (no polling). Raises
        ``TimeoutError`` with a summary of what the fake saw.
        """
        result = await self._changes.wait_until(lambda: predicate(self), timeout)
        if not result:
            raise TimeoutError(f"condition not met within {timeout}s\n{self.summary()}")
        return result

    async def wait_for_messages(
        self, chat_id: int | str | None = None, count: int = 1, timeout: float = 5.0
    ) -> list[dict[str, Any]]:
        """Wait until the bot has sent at least ``count`` messages (to ``chat_id``); returns all of them."""
        return await self.wait_for(
            lambda api: msgs if len(msgs := api.sent_messages(chat_id)) >= count else None, timeout
        )

    async def wait_for_call(self, method: str, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until ``method`` was called (and answered) at least ``count`` times; returns those calls."""

        def answered(api: FakeBotApi) -> list[Call] | None:
            calls = [c for c in api.calls_of(method) if c.status is not None]
            return calls if len(calls) >= count else None

        return await self.wait_for(answered, timeout)

    def summary(self, last: int = 40) -> str:
        """Human-readable digest of the recorded calls (repeats collapsed) and the fake's state."""
        pending = self._updates.pending
        lines = [f"{len(self.calls)} calls recorded; {len(pending)} updates not yet confirmed"]
        shown: list[str] = []
        previous, repeats = "", 0
        for call in self.calls:
            line = repr(call)
            if call.method == "getUpdates" and isinstance(call.result, list):
                line = f"{line}: update_ids {[u['update_id'] for u in call.result]}"
            if line == previous:
                repeats += 1
                continue
            if repeats:
                shown.append(f"    ... {repeats} more x the same")
            shown.append(f"  {line}")
            previous, repeats = line, 0
        if repeats:
            shown.append(f"    ... {repeats} more x the same")
        if len(shown) > last:
            shown = [f"  ... {len(shown) - last} earlier lines left out", *shown[-last:]]
        lines += shown
        deliveries: dict[int, int] = {}
        for call in self.calls_of("getUpdates"):
            for update in call.result if isinstance(call.result, list) else ():
                deliveries[update["update_id"]] = deliveries.get(update["update_id"], 0) + 1
        stuck = [u for u in pending if deliveries.get(u["update_id"], 0) >= 3]
        if stuck:
            lines.append(
                f"update {stuck[0]['update_id']} was delivered {deliveries[stuck[0]['update_id']]} times but never "
                f"confirmed: PTB probably failed to parse it (look for 'Error while parsing updates' in the log): "
                f"{json.dumps(stuck[0], ensure_ascii=False)[:500]}"
            )
        if self.unknown_methods:
            lines.append(f"unknown methods: {self.unknown_methods}")
        if self.internal_errors:
            lines.append(f"internal errors of the fake: {self.internal_errors!r}")
        return "\n".join(lines)

    # -- HTTP plumbing

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        match = re.fullmatch(r"/bot([^/]+)/([A-Za-z0-9_]+)/?", request.path)
        if match is None:
            return web.json_response(ApiError(404, "Not Found").payload(), status=404)
        token, raw_method = match.groups()
        raw, files, filenames, content_types = await _read_request(request)
        method = self._canonical.get(raw_method.lower(), raw_method)
        call = Call(
            method,
            decode_params(raw),
            files,
            time.monotonic(),
            filenames=filenames,
            content_types=content_types,
            token=token,
        )
        self.calls.append(call)
        if token not in self.seen_tokens:
            self.seen_tokens.append(token)
        self._in_flight[method] = self._in_flight.get(method, 0) + 1
        self.max_in_flight[method] = max(self.max_in_flight.get(method, 0), self._in_flight[method])
        try:
            if self.latency.get(method):
                await asyncio.sleep(self.latency[method])
            if self._expected_token is not None and token != self._expected_token:
                raise ApiError(401, "Unauthorized")
            failures = self._failures.get(method.lower())
            if failures:
                raise failures.pop(0)
            handler = self._handlers.get(method)
            if handler is None:
                self.unknown_methods.append(raw_method)
                raise ApiError(404, "Not Found: method not found")
            result = handler(call)
            if inspect.isawaitable(result):
                self._changes.notify()  # a long poll is now pending: wait_for sees it (status None)
                result = await result
            call.status, call.result = 200, result
        except ApiError as exc:
            call.status, call.description = exc.status, exc.description
            return web.json_response(exc.payload(), status=exc.status)
        except Exception as exc:  # a bug in the fake or a malformed test request: make it visible
            self.internal_errors.append(exc)
            call.status, call.description = 500, f"Internal Server Error: fake crashed: {exc!r}"
            return web.json_response(ApiError(500, call.description).payload(), status=500)
        finally:
            self._in_flight[method] -= 1
            self._changes.notify()
        return web.json_response({"ok": True, "result": result}, dumps=lambda o: json.dumps(o, ensure_ascii=False))


async def _read_request(request: web.Request) -> _Form:
    """``(params, uploaded bytes, their file names, their content types)`` of a query, JSON, form or multipart
    request."""
    raw: dict[str, Any] = dict(request.query)
    files: dict[str, bytes] = {}
    filenames: dict[str, str] = {}
    content_types: dict[str, str] = {}
    if request.body_exists:
        if request.content_type == "application/json":
            body = await request.json()
            if isinstance(body, dict):
                raw.update(body)
        else:  # application/x-www-form-urlencoded or multipart/form-data
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = value.file.read()
                    filenames[key] = value.filename
                    content_types[key] = value.content_type
                else:
                    raw[key] = value
    return raw, files, filenames, content_types
