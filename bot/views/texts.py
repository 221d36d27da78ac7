"""The words people read: greetings, help, answers to commands, refusals, apologies. Pure and synchronous.

Every text is an English gettext msgid marked with ``_()`` and translated where it is sent, in the reader's language
(``bot.i18n.translate``). Texts sent with ``parse_mode=HTML`` are named ``…_HTML``;
``bot.views.telegram_text.html_to_plain`` gives the same words without markup for when Telegram can't parse them
anyway. The ``/mood`` text lives in ``bot.views.mood``, the ``/privacy`` and ``/stats`` texts in
``bot.views.privacy``, the bot's profile and command menu in ``bot.views.about``.
"""

from __future__ import annotations

from bot.i18n import DEFAULT_LANGUAGE, _, ngettext_for, translate

HELP_HTML = _(
    "<b>I'm Moodbot</b>, a friendly ear. Write to me about anything and I'll answer with care. "
    "I also keep a private mood log, so you can see how your days have been.\n\n"
    "/mood [7d|30d|90d|all] – how your mood moved (default: last 7 days); “Fix a mood” there corrects my guesses\n"
    "/reset – start our conversation fresh (your mood log stays)\n"
    "/forget – delete everything I stored about you in this chat\n"
    "/export – download everything I stored about you in this chat (a JSON file, sent to you privately)\n"
    "/privacy – what I keep, where, for how long, and how to delete it\n"
    "/help – this message"
)

START_TEXT = _(
    "Hi {name}! 👋 I'm Moodbot. Tell me how you're doing, what's on your mind, big or small – I'm here to listen.\n\n"
    "Each message you send is stored in this bot's database with an estimate of its mood, so /mood can show "
    "how your days went; /forget deletes all of it. Type /help for everything I can do."
)

RESET_TEXT = _("Fresh start 🌱 I've set our earlier conversation aside. Your mood log is kept (/mood).")
FORGET_CONFIRM_TEXT = _(
    "Delete everything I stored about you in this chat – your messages, my replies and their moods? "
    "This can't be undone. (/export first if you'd like a copy.)"
)
FORGET_YES_BUTTON = _("Yes, delete everything")
FORGET_NO_BUTTON = _("Cancel")
FORGET_CANCELLED_TEXT = _("Nothing was deleted.")
FORGET_NOT_YOURS_TEXT = _("Only the person who asked can answer this. Send /forget yourself to delete your own data.")
EXPORT_CAPTION = _("Everything I stored about you in this chat: your messages, my replies and their moods.")
EXPORT_GROUP_CAPTION = _("Everything I stored about you in {chat}: your messages, my replies and their moods.")
EXPORT_NOTHING_TEXT = _("I have nothing stored about you in this chat – there's nothing to export. 🙂")
EXPORT_SENT_PRIVATELY_TEXT = _("I've sent your export to you in our private chat. 📬")
EXPORT_OPEN_PRIVATE_CHAT_TEXT = _(
    "I only send exports in a private chat, and I can't write to you there yet. Open a chat with me ({bot}), "
    "press Start, then send /export here again. 📬"
)
# /export: what the two labels of a message are, at the top of the file.
EXPORT_ABOUT = {
    "sentiment": _("the mood the bot's language model estimated for the message"),
    "your_label": _(
        "the mood you set yourself with “Fix a mood” (under /mood); /mood counts it instead of the estimate. It stays "
        "when you edit the message (message_edited_since says whether you did after setting it)"
    ),
}

# "Fix a mood": the button under /mood, the list of someone's last messages with a face button each, the answers.
FIX_MOOD_BUTTON = _("✏️ Fix a mood")
FIX_LIST_HEADER = _(
    "✏️ Fix a mood – your last messages here, each with the mood I count for it. Tap a face to set it yourself; "
    "/mood then counts yours."
)
FIX_LIST_GROUP_HEADER = _(
    "✏️ Fix a mood – your last messages in {chat}, each with the mood I count for it. Tap a face to set it "
    "yourself; /mood there then counts yours."
)
FIX_LIST_EMPTY_TEXT = _("✏️ None of these messages is stored any more.")
FIX_LIST_LINE = _("{number}. “{preview}” – {mood}")
FIX_MOOD_YOURS = _("{face} {label} (set by you)")
FIX_MOOD_MODELS = _("{face} {label} (my guess)")
FIX_MOOD_NONE = _("not rated yet")
FIX_NOTHING_TEXT = _("You have no messages here to fix yet. 🙂")
FIX_LIST_NOT_YOURS_TEXT = _("This button is for the person who asked for /mood. Send /mood yourself to fix your own.")
FIX_NOT_YOURS_TEXT = _("Only the person who wrote these messages can set their mood. Send /mood to fix your own.")
FIX_GONE_TEXT = _("That message isn't stored any more (deleted with /forget or by the automatic clean-up).")
FIX_SAVED_TEXT = _("Saved: {face} {label}. /mood counts it from now on.")
FIX_SENT_PRIVATELY_TEXT = _("I've sent you the list in our private chat. 📬")
FIX_OPEN_PRIVATE_CHAT_TEXT = _(
    "I only show your messages in a private chat, and I can't write to you there yet. Open a chat with me ({bot}), "
    "press Start, then tap “Fix a mood” again."
)

# Said only after the message is committed to the database (see bot.flow and new_message_saved).
EMPTY_REPLY_FALLBACK = _("I'm here with you. Tell me a little more?")  # the model said nothing
BUSY_TEXT = _("I'm talking with a lot of people right now 😅 Your message is saved – please try again in a moment.")
FAILED_SAVED_TEXT = _("Sorry, something went wrong on my side. Your message is saved; please try again in a moment.")
FAILED_TEXT = _("Sorry, something went wrong on my side. Please try again in a moment.")
LONG_MESSAGE_TEXT = _(
    "That was a long message! It's saved in full, but I could only read its first {limit} characters for my answer "
    "and your mood log. 📜"
)
REFUSAL_TEXT = _(
    "Sorry, this Moodbot is private and only talks with the people its owner has allowed. 🙏 "
    "If you know the owner, they can let you in with your user id: {user_id}"
)
POSTED_AS_CHAT_TEXT = _(
    "I keep a personal mood log for each person, and a message sent as a channel or as an anonymous admin "
    "doesn't tell me who wrote it – so I don't keep or answer it. Please write to me as yourself (pick your own "
    "account under “Send as”, or turn off “Remain anonymous”). 🙏"
)
ADMIN_ONLY_TEXT = _("Sorry, /stats is only for the people who run this bot. 🙏")
SLOW_DOWN_TEXT = _(
    "Slow down a little, please 🙂 I can answer again in {seconds} s. "
    "Everything you write meanwhile is still saved in your mood log."
)
BACKLOG_TEXT = _(
    "That's a lot of messages at once! 🙂 Everything is saved in your mood log, but I'll only answer what I already "
    "have; give me a moment to catch up."
)

NON_TEXT_REPLIES = {
    "sticker": _("Nice sticker! 😄 I can only read text, though – tell me in words how you're feeling?"),
    "photo": _("Thanks for sharing a picture! I can't see images yet – would you tell me about it in words?"),
    "voice": _("I can't listen to voice messages yet 🙉 Could you write it down for me?"),
    "audio": _("I can't listen to audio yet 🎧 Could you tell me in a few words?"),
    "video": _("I can't watch videos yet 🎬 Would you tell me about it in words?"),
    "video_note": _("I can't watch video notes yet – could you write me instead?"),
    "animation": _("Ha, a GIF! 😄 I only understand text, though – what's on your mind?"),
    "document": _("I can't open files, sorry 📄 Tell me in a message what's up?"),
    "location": _("Thanks for the location! I only read text, though – how are you doing?"),
    "contact": _("I can only read text messages – how are you doing today?"),
    "poll": _("I can't vote in polls 🙂 but I'd love to hear how you're doing."),
}
DEFAULT_NON_TEXT_REPLY = _("I can only read text messages for now – tell me in words how you're doing? 🙂")

# Filled into the texts above.
THERE = _("there")  # "Hi there!" for someone without a first name
QUOTED_TITLE = _("“{title}”")  # a group's title
THAT_GROUP = _("that group")  # a group without a title
TAP_MY_NAME = _("tap my name")  # instead of the bot's @username when it has none


def forget_text(count: int, language: str = DEFAULT_LANGUAGE) -> str:
    """The answer after /forget's Yes: how many messages went."""
    return ngettext_for(
        language,
        "Done. I deleted everything I had stored about you in this chat ({count} message). 🧹",
        "Done. I deleted everything I had stored about you in this chat ({count} messages). 🧹",
        count,
    )


def refusal_text(user_id: int, language: str = DEFAULT_LANGUAGE) -> str:
    """The polite no for someone outside the allowlists, with their user id for the owner to add."""
    return translate(language, REFUSAL_TEXT, user_id=user_id)


def failed_text(saved: bool, language: str = DEFAULT_LANGUAGE) -> str:
    """The apology after an error; it says the message is saved only when the store holds it (``saved``)."""
    return translate(language, FAILED_SAVED_TEXT if saved else FAILED_TEXT)


def export_about(language: str = DEFAULT_LANGUAGE) -> dict[str, str]:
    """What the two labels of an exported message mean, for the top of the file."""
    return {key: translate(language, text) for key, text in EXPORT_ABOUT.items()}


def export_group_caption(chat_title: str | None, language: str = DEFAULT_LANGUAGE) -> str:
    """The caption of an export asked for in a group and delivered privately: it names the group."""
    return translate(language, EXPORT_GROUP_CAPTION, chat=quoted_title(chat_title, language))


def export_open_private_chat_text(bot_username: str | None, language: str = DEFAULT_LANGUAGE) -> str:
    """The group notice when an export can't be delivered privately: open a private chat with the bot first."""
    return translate(language, EXPORT_OPEN_PRIVATE_CHAT_TEXT, bot=bot_handle(bot_username, language))


def export_filename(chat_id: int, user_id: int) -> str:
    """The file name of an ``/export`` download."""
    return f"moodbot-export-{chat_id}-{user_id}.json"


def fix_open_private_chat_text(bot_username: str | None, language: str = DEFAULT_LANGUAGE) -> str:
    """The alert when a "Fix a mood" list can't be sent privately: open a private chat with the bot first."""
    return translate(language, FIX_OPEN_PRIVATE_CHAT_TEXT, bot=bot_handle(bot_username, language))


def non_text_reply(kind: str | None, language: str = DEFAULT_LANGUAGE) -> str:
    """The friendly note for a sticker, photo, voice message … (``kind``: the Message attribute that holds it)."""
    return translate(language, NON_TEXT_REPLIES.get(kind or "", DEFAULT_NON_TEXT_REPLY))


def quoted_title(chat_title: str | None, language: str = DEFAULT_LANGUAGE) -> str:
    """A group's title in quotes, or words for it when it has none."""
    if chat_title:
        return translate(language, QUOTED_TITLE, title=chat_title)
    return translate(language, THAT_GROUP)


def bot_handle(bot_username: str | None, language: str = DEFAULT_LANGUAGE) -> str:
    """How to find the bot: its @username, or words saying to tap its name."""
    return f"@{bot_username}" if bot_username else translate(language, TAP_MY_NAME)
