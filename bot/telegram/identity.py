"""Who sent an update: the one answer every handler, the access check and the rate limit use.

Telegram lets people post in a group *as a chat*: as a channel they run, as the group itself when they are an
anonymous admin, and a linked channel's posts arrive as automatic forwards. Such a message carries a placeholder
in ``from`` (136817688 for posts on behalf of a channel, 1087968824 for anonymous admins, 777000 for automatic
forwards), names the chat in ``sender_chat``, and says nowhere which person wrote it. Taken at its ``from``,
everyone posting as any channel would be one "user": one history, one /export, one /forget, one rate limit.

moodbot does not keep or answer such posts at all; it says politely why and how to write as oneself. Keeping a
history per sender chat instead (its id as the identity) was weighed and rejected, because moodbot keeps a
*personal* history and mood log and its privacy tools need a person:

* A sender chat is not a person. Several admins may post as one channel, and every anonymous admin of a group
  posts as the group itself, so a history per sender chat still puts one person's words into another person's
  prompt, /export and /forget.
* /export asked in a group is delivered in a private chat, and a channel or an anonymous admin has none.
  /forget's Yes button reports who really pressed it, which is never the sender chat, so its rows could not be
  deleted by anyone who can show they own them.
* The person loses nothing: choosing their own account under "Send as", or turning off "Remain anonymous", is
  one tap, and the refusal says so.

Button presses always come from the real person who pressed, so they have a person even in such a chat.
"""

from __future__ import annotations

from dataclasses import dataclass

from telegram import Chat, Update

# Telegram's placeholder senders: never a person, whatever else the update says.
CHANNEL_BOT_ID = 136817688  # "Channel_Bot": a message sent on behalf of a channel
ANONYMOUS_ADMIN_ID = 1087968824  # "GroupAnonymousBot": an anonymous group admin
TELEGRAM_SERVICE_ID = 777000  # "Telegram": automatic forwards from a linked channel, service notices
PLACEHOLDER_USER_IDS = frozenset({CHANNEL_BOT_ID, ANONYMOUS_ADMIN_ID, TELEGRAM_SERVICE_ID})


@dataclass(frozen=True)
class Person:
    """The real person behind an update: their Telegram user id and names."""

    id: int
    first_name: str | None
    username: str | None

    @property
    def display_name(self) -> str:
        """Their first name, else @username, else their id."""
        return self.first_name or (f"@{self.username}" if self.username else str(self.id))


class NoPerson(LookupError):
    """Raised by :func:`person` for an update that no person sent (the access check lets none through)."""


def person_of(update: Update) -> Person | None:
    """The person who sent ``update``: the presser of a button, else the message's author; None when it was
    posted on behalf of a chat (a channel, an anonymous admin, an automatic forward) or has no sender."""
    sender = update.effective_sender  # for messages: sender_chat when there is one, else from
    if sender is None or isinstance(sender, Chat) or sender.id in PLACEHOLDER_USER_IDS:
        return None
    message = update.effective_message
    if update.callback_query is None and message is not None and message.is_automatic_forward:
        return None
    return Person(sender.id, sender.first_name, sender.username)


def person(update: Update) -> Person:
    """:func:`person_of` for handlers behind the access check, which only lets updates with a person through."""
    found = person_of(update)
    if found is None:
        raise NoPerson("this update was not sent by a person")
    return found


def sender_key(update: Update) -> int | None:
    """A stable id for whoever sent ``update`` (a person's user id, or the id of the chat it was posted as), so
    each gets at most one refusal; None when there is no sender at all."""
    sender = update.effective_sender
    return sender.id if sender is not None else None
