"""End-to-end: the real Application, the real SmolLM2-135M-Instruct GGUF, a fake Bot API server, real SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from engine import LocalEngine
from tests.support.e2e import e2e_config, rows, running_bot
from tests.support.fakebotapi import FakeBotApi

pytestmark = [pytest.mark.real_model, pytest.mark.asyncio(loop_scope="module")]

REPLY_TIMEOUT = 120.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def smol_engine(smollm2_gguf: Path):
    """One loaded SmolLM2 shared by the tests of this module (the app doesn't own it)."""
    from engine import EngineSettings

    engine = LocalEngine(
        EngineSettings(model=str(smollm2_gguf), precision="fp32", threads=2, temperature=0.0, max_new_tokens=40)
    )
    await engine.start()
    yield engine
    await engine.close()


@pytest_asyncio.fixture(loop_scope="module")
async def api():
    async with FakeBotApi() as fake:
        yield fake



async def wait_for_last_text(api: FakeBotApi, chat: dict, needle: str) -> str:
    """Wait until the bot's latest message in ``chat`` contains ``needle``; return it."""

    def latest(fake: FakeBotApi) -> str | None:
        texts = fake.sent_texts(chat["id"])
        return texts[-1] if texts and needle in texts[-1] else None

    return await api.wait_for(latest, timeout=REPLY_TIMEOUT)


async def say(api: FakeBotApi, chat: dict, user: dict, text: str) -> str:
    """Send ``text`` and return the text of the next bot message in that chat, once the bot is done with it."""
    before = len(api.sent_messages(chat["id"]))
    api.send_text(chat, user, text)
    messages = await api.wait_for_messages(chat["id"], count=before + 1, timeout=REPLY_TIMEOUT)
    # The chat's updates run one after another, so a /help answer means the turn before it is complete.
    api.send_command(chat, user, "/help")
    await api.wait_for_messages(chat["id"], count=before + 2, timeout=REPLY_TIMEOUT)
    return api.sent_messages(chat["id"])[before]["text"] if messages else ""


async def test_message_gets_a_reply_and_everything_lands_in_sqlite(api, smol_engine, tmp_path: Path) -> None:
    database = tmp_path / "moodbot.db"
    alice = api.user(1001, "Alice")
    chat = api.private_chat(alice)
    async with running_bot(e2e_config(api, database, Path(smol_engine.model_name)), engine=smol_engine):
        reply = await say(api, chat, alice, "I finally passed my driving test today, I'm so happy!")
        assert reply.strip() and not reply.endswith("…")
        assert "sentiment" not in reply.lower()
        assert api.calls_of("sendChatAction"), "a typing indicator was shown while generating"
        assert {c["command"] for c in api.commands()} >= {"mood", "reset", "forget", "help", "start"}

    stored = rows(database, "SELECT role, text FROM messages ORDER BY id")
    assert stored == [("user", "I finally passed my driving test today, I'm so happy!"), ("assistant", reply)]
    [(label, score, model)] = rows(database, "SELECT label, score, model FROM sentiments")
    assert label in ("positive", "neutral", "negative") and -1 <= score <= 1
    assert model == smol_engine.model_name
    [(reply_to,)] = rows(database, "SELECT reply_to FROM messages WHERE role = 'assistant'")
    assert reply_to == rows(database, "SELECT id FROM messages WHERE role = 'user'")[0][0]


async def test_mood_history_survive_a_restart_and_forget_deletes(api, smol_engine, tmp_path: Path) -> None:
    database = tmp_path / "moodbot.db"
    config = e2e_config(api, database, Path(smol_engine.model_name))
    bob, carol = api.user(2002, "Bob"), api.user(3003, "Carol")
    bob_chat, carol_chat = api.private_chat(bob), api.private_chat(carol)

    async with running_bot(config, engine=smol_engine):
        await say(api, bob_chat, bob, "Work was awful today, my boss yelled at me.")
        await say(api, carol_chat, carol, "Lovely walk in the park this morning.")
        api.send_command(bob_chat, bob, "/mood")
        mood_text = await wait_for_last_text(api, bob_chat, "Messages: 1")
        assert "last 7 days" in mood_text

    # A new Application on the same database: history and the mood log are still there.
    async with running_bot(config, engine=smol_engine):
        await say(api, bob_chat, bob, "Still thinking about it.")
        api.send_command(bob_chat, bob, "/mood")
        await wait_for_last_text(api, bob_chat, "Messages: 2")
        assert len(rows(database, "SELECT id FROM messages WHERE user_id = 2002")) == 4  # 2 messages + 2 replies

        api.send_command(bob_chat, bob, "/forget")
        await wait_for_last_text(api, bob_chat, "can't be undone")
        assert len(rows(database, "SELECT id FROM messages WHERE user_id = 2002")) == 4, "nothing deleted yet"
        confirm = api.sent_messages(bob_chat["id"])[-1]
        api.press_button(bob_chat, bob, confirm["message_id"], f"forget:yes:{bob['id']}")
        await wait_for_last_text(api, bob_chat, "deleted everything")

    assert rows(database, "SELECT COUNT(*) FROM messages WHERE user_id = 2002") == [(0,)]
    assert rows(database, "SELECT COUNT(*) FROM sentiments s JOIN messages m ON m.id = s.message_id "
                          "WHERE m.user_id = 2002") == [(0,)]
    assert rows(database, "SELECT COUNT(*) FROM messages WHERE user_id = 3003") == [(2,)], "Carol's rows stay"


async def test_non_text_and_strangers_get_friendly_answers(api, smol_engine, tmp_path: Path) -> None:
    database = tmp_path / "moodbot.db"
    config = e2e_config(api, database, Path(smol_engine.model_name), allowed_user_ids=(4004,))
    dave, eve = api.user(4004, "Dave"), api.user(5005, "Eve")
    dave_chat, eve_chat = api.private_chat(dave), api.private_chat(eve)
    async with running_bot(config, engine=smol_engine):
        api.send_sticker(dave_chat, dave)
        api.send_voice(dave_chat, dave)
        api.send_photo(dave_chat, dave)
        texts = [m["text"] for m in await api.wait_for_messages(dave_chat["id"], count=3, timeout=REPLY_TIMEOUT)]
        assert "sticker" in texts[0] and "voice" in texts[1] and "picture" in texts[2]

        api.send_text(eve_chat, eve, "hello?")
        api.send_text(eve_chat, eve, "anyone?")
        [refusal] = await api.wait_for_messages(eve_chat["id"], count=1, timeout=REPLY_TIMEOUT)
        assert "private" in refusal["text"]
        api.send_command(dave_chat, dave, "/help")
        await api.wait_for_messages(dave_chat["id"], count=4, timeout=REPLY_TIMEOUT)
    assert len(api.sent_messages(eve_chat["id"])) == 1, "one polite refusal, not one per message"
    assert rows(database, "SELECT COUNT(*) FROM messages WHERE user_id = 5005") == [(0,)], "no work for strangers"
