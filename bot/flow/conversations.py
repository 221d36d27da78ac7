"""The conversation flow, written once for Telegram and the terminal: persist → classify → reply → persist.

Knows storage and the engine, not Telegram: a front end hands ``answer`` a stored message and a ``ReplyOutput``,
and only carries text in and out. The incoming message is committed before any model work, marked as
owed a reply until the complete reply is stored with it (one transaction), so a crash never leaves half a reply in
history and a restart knows what is still to answer. Messages left without a mood (engine busy or down, over the
rate limit, a crash) are classified by the back-fill.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass

from bot.config import Config
from bot.flow.mood import MoodReport, mood_report
from bot.flow.turn import ReplyOutput, Turn, cancelling
from bot.i18n import DEFAULT_LANGUAGE, translate
from bot.views import texts
from engine import (
    ChatTurn,
    Engine,
    EngineBusy,
    EngineClosed,
    EngineError,
    ReplyLength,
    Sentiment,
    ServerUnavailable,
    has_crisis_phrase,
    script_of,
)
from storage import SentimentRecord, Store, StoredMessage

logger = logging.getLogger(__name__)

HISTORY_TURNS = 40  # upper bound fetched from storage; the engine trims further to its token budget
MAX_CLASSIFY_ATTEMPTS = 3  # failed classifications after which the back-fill leaves a message alone
BACKFILL_BATCH = 50  # messages read from storage at a time by the back-fill
# The engine can't take work right now (not the message's fault): the back-fill stops and tries again later.
ENGINE_UNAVAILABLE = (EngineBusy, EngineClosed, ServerUnavailable)


@dataclass(frozen=True)
class Incoming:
    """A text message as it arrived, with who sent it where."""

    chat_id: int
    chat_kind: str
    chat_title: str | None
    user_id: int
    first_name: str | None
    username: str | None
    text: str
    message_id: int | None
    thread_id: int | None = None  # the forum topic it was written in, where its reply belongs


class Conversations:
    """The conversation turn, the ``/mood`` report and the other steps, against the store and the engine."""

    def __init__(self, store: Store, engine: Engine, config: Config) -> None:
        self.store = store
        self.engine = engine
        self.config = config
        self.max_message_chars = config.telegram.max_message_chars
        self.care = config.care

    async def answer(self, message: StoredMessage, out: ReplyOutput, language: str = DEFAULT_LANGUAGE) -> Turn:
        """The turn for a stored message: classify it (unless its author turned mood analysis off), stream the
        companion's reply to ``out`` (short or normal, as they chose), store the reply whole, then send the help
        resources it calls for and a note when it was too long to read whole. The engine busy: the person is told
        so. The bot's own words are in ``language`` (the person's); the help resources in the language the message
        is written in. Afterwards the message owes no reply, whatever happened (unless cancelled: the process is
        going down, and the next start answers it)."""
        turn = Turn(message, truncated=self.is_truncated(message))
        try:
            person = await self.store.person_settings(message.user_id)
            started = time.perf_counter()
            if person.analyse_mood:
                turn.sentiment = await self._classify(message)
                if turn.sentiment is None:
                    await out.finish(translate(language, texts.BUSY_TEXT))  # over an unfinished reply, if any
                    return turn
                await out.heard(turn.sentiment)
            classified = time.perf_counter()
            turn.care_text = self.care_message(message, turn.sentiment)
            try:
                reply = await out.stream(self.reply(message, length=person.reply_length))
                text = reply or translate(language, texts.EMPTY_REPLY_FALLBACK)
            except EngineBusy:
                await out.finish(translate(language, texts.BUSY_TEXT))
                await self._offer_care(turn, out)
                return turn
            await self.save_reply(message, text, await out.finish(text))  # no reply owed from here on
            turn.reply = text
            await self._offer_care(turn, out)
            if turn.truncated:
                await out.send(translate(language, texts.LONG_MESSAGE_TEXT, limit=self.max_message_chars))
            logger.info(
                "chat %s: handled message %d (classify %.0f ms, reply %.0f ms, queue %d)%s",
                message.chat_id, message.id, (classified - started) * 1000, (time.perf_counter() - classified) * 1000,
                self.engine.queue_depth, f": {message.text!r}" if self.config.logging.include_text else "",
            )
            return turn
        finally:
            # Told "busy", or an error the person hears of: nothing left to answer late.
            if turn.reply is None and not cancelling():
                await self.settle(message)

    async def mood_report(
        self, *, chat_id: int, user_id: int | None, argument: str | None, asker_id: int | None = None,
        language: str = DEFAULT_LANGUAGE,
    ) -> MoodReport:
        """The ``/mood`` answer for ``argument`` (the period): ``user_id``'s in this chat (with their check-ins in
        their private chat), or (None) the whole chat's with a line per member; its days in the time zone of
        ``asker_id`` (default: ``user_id``), its words in ``language``."""
        asker = asker_id if asker_id is not None else user_id
        if asker is None:
            raise ValueError("a group's /mood needs the id of the person who asked")
        return await mood_report(
            self.store, self.config, chat_id=chat_id, user_id=user_id, asker_id=asker, argument=argument,
            language=language,
        )

    def care_message(self, message: StoredMessage, sentiment: Sentiment | None) -> str | None:
        """The help resources to send with the reply when ``message`` signals a crisis (and care is on), in the
        language it is written in. Without a sentiment (the person turned mood analysis off) only a message that
        says it in so many words counts: the phrase floor, which needs no model."""
        if not self.care.enabled:
            return None
        care = sentiment.care if sentiment is not None else float(has_crisis_phrase(message.text))
        if care < self.care.threshold:
            return None
        return self.care.message_zh if script_of(message.text) == "zh" else self.care.message

    async def _offer_care(self, turn: Turn, out: ReplyOutput) -> None:
        """Send the help resources after the answer when the message signalled a crisis, and log that we did (in
        the store too, with the analyst's probability, when the message was analysed)."""
        if turn.care_text is None:
            return
        await out.send(turn.care_text)
        if turn.sentiment is not None:
            await self.record_care(turn.message, turn.sentiment)
        else:
            logger.warning("care: help resources offered in chat %s (message %d, not analysed)",
                           turn.message.chat_id, turn.message.id)

    async def record_care(self, message: StoredMessage, sentiment: Sentiment) -> None:
        """Log that help resources were offered for ``message``."""
        await self.store.add_care_event(message.id, sentiment.care)
        logger.warning("care: help resources offered in chat %s (message %d)", message.chat_id, message.id)

    def view(self, message: StoredMessage) -> str:
        """What the model reads of a message: all of it, or its beginning when it is very long."""
        return message.text[: self.max_message_chars]

    def is_truncated(self, message: StoredMessage) -> bool:
        """True when the model reads only the beginning of ``message``."""
        return len(message.text) > self.max_message_chars

    async def record(self, incoming: Incoming, *, reply_owed: bool = False) -> StoredMessage:
        """Persist the message (and who/where) before anything else, in one transaction, ``reply_owed`` until its
        reply is stored; a re-delivered message is not duplicated."""
        return await self.store.record_arrival(
            chat_id=incoming.chat_id, chat_kind=incoming.chat_kind, chat_title=incoming.chat_title,
            user_id=incoming.user_id, first_name=incoming.first_name, username=incoming.username,
            text=incoming.text, telegram_message_id=incoming.message_id, reply_owed=reply_owed,
            thread_id=incoming.thread_id,
        )

    async def classify(self, message: StoredMessage) -> Sentiment | None:
        """Classify and store the sentiment; None when the engine is busy (the back-fill catches up later) or the
        author turned mood analysis off (then nothing is computed)."""
        if not (await self.store.person_settings(message.user_id)).analyse_mood:
            return None
        return await self._classify(message)

    async def _classify(self, message: StoredMessage) -> Sentiment | None:
        try:
            sentiment = await self.engine.classify(self.view(message))
        except EngineBusy:
            logger.warning("engine busy: message %d left for the back-fill", message.id)
            return None
        except EngineError as exc:  # e.g. a remote server down after its retries: same as busy, nothing lost
            logger.warning("engine error (%s): message %d left for the back-fill", exc, message.id)
            return None
        # Stored only if the text is still the one classified: an edit meanwhile brings its own classification.
        await self.store.add_sentiment(message.id, self._record(sentiment), text=message.text)
        return sentiment

    async def reply(self, message: StoredMessage, *, length: ReplyLength = "normal") -> AsyncIterator[str]:
        """Stream the companion's reply to ``message`` (as long as the person chose) using this user's history in
        this chat only."""
        turns = await self.store.history(
            chat_id=message.chat_id, user_id=message.user_id, before_id=message.id, limit=HISTORY_TURNS
        )
        history = [ChatTurn(turn.role, turn.text) for turn in turns]
        async for chunk in self.engine.reply(history, self.view(message), length=length):
            yield chunk

    async def save_reply(self, message: StoredMessage, text: str, telegram_message_id: int | None) -> int:
        """Store the complete reply, linked to the message it answers (which then owes no reply)."""
        return await self.store.add_reply(
            chat_id=message.chat_id, user_id=message.user_id, text=text, reply_to=message.id,
            telegram_message_id=telegram_message_id,
        )

    async def reset(self, *, chat_id: int, user_id: int) -> None:
        """Set this person's conversation in this chat aside, so replies start fresh; the mood log is kept."""
        await self.store.reset_context(chat_id=chat_id, user_id=user_id)

    async def forget(self, *, chat_id: int, user_id: int) -> int:
        """Delete everything stored about this person in this chat, and what the engine holds in memory of past
        conversations; returns how many messages went."""
        deleted = await self.store.forget(chat_id=chat_id, user_id=user_id)
        await self.engine.forget_conversations()
        return deleted

    async def purge_older_than(self, cutoff: float) -> int:
        """Retention: delete messages older than ``cutoff`` (unix seconds) and, when any went, what the engine
        holds in memory of past conversations; returns how many messages went."""
        deleted = await self.store.purge_older_than(cutoff)
        if deleted:
            await self.engine.forget_conversations()
        return deleted

    async def note_draft(self, message: StoredMessage, telegram_message_id: int) -> None:
        """Remember the Telegram message the reply to ``message`` is being streamed into."""
        await self.store.set_reply_draft(message.id, telegram_message_id)

    async def settle(self, message: StoredMessage) -> None:
        """``message`` owes no reply any more (the person was told "busy" or of an error, or it came past its chat's
        backlog)."""
        await self.store.settle_replies([message.id])

    async def backfill(self, *, skip: Collection[int] = (), deadline: float | None = None) -> int:
        """Classify stored messages that have no sentiment yet, oldest first, until none is left, the engine can't
        take work, or ``deadline`` (``time.monotonic()``) has passed; return how many were classified.

        Not messages waiting for their reply, nor ``skip`` (ids of messages being handled right now): answering
        them classifies them. A message whose classification fails for another reason than the engine being
        unavailable is tried again in later rounds, and left alone, with a warning, after ``MAX_CLASSIFY_ATTEMPTS``
        failures.
        """
        done = 0
        after_id = 0
        while batch := await self.store.unclassified_messages(
            limit=BACKFILL_BATCH, max_attempts=MAX_CLASSIFY_ATTEMPTS, after_id=after_id, skip_owed=True
        ):
            for message in batch:
                if deadline is not None and time.monotonic() >= deadline:
                    return done
                after_id = message.id
                if message.id in skip:
                    continue
                try:
                    sentiment = await self.engine.classify(self.view(message))
                except ENGINE_UNAVAILABLE as exc:
                    logger.info("back-fill paused, the engine can't take work (%s)", exc)
                    return done
                except Exception as exc:
                    await self._classify_failed(message, exc)
                    continue
                await self.store.add_sentiment(message.id, self._record(sentiment), text=message.text)
                done += 1
        return done

    async def _classify_failed(self, message: StoredMessage, exc: Exception) -> None:
        attempts = await self.store.record_classify_failure(message.id)
        if attempts >= MAX_CLASSIFY_ATTEMPTS:
            logger.warning(
                "back-fill: giving up on message %d after %d failed classifications (last: %r); it stays without a "
                "mood", message.id, attempts, exc,
            )
        else:
            logger.warning("back-fill: message %d could not be classified (%r); will try again", message.id, exc)

    def _record(self, sentiment: Sentiment) -> SentimentRecord:
        return SentimentRecord(
            label=sentiment.label, score=sentiment.score, probs=dict(sentiment.probs), model=self.engine.model_name,
            care=sentiment.care,
        )
