"""Forum topics: a reply belongs in the topic the person wrote in, not in the forum's General topic."""

from __future__ import annotations

from telegram import Message


def thread_id(message: Message | None) -> int | None:
    """The forum topic ``message`` was sent in, for ``message_thread_id`` of whatever answers it; None outside
    topics. (In an ordinary group a reply chain also has a ``message_thread_id``, which Telegram refuses to send
    to, so only topic messages count, as in PTB's own ``Message.reply_*``.)"""
    if message is None or not message.is_topic_message:
        return None
    return message.message_thread_id
