"""The words people read: greetings, help, answers to commands, refusals, apologies. Pure and synchronous.

Texts sent with ``parse_mode=HTML`` are named ``…_HTML``; ``bot.views.telegram_text.html_to_plain`` gives the same
words without markup for when Telegram can't parse them anyway. The ``/mood`` text lives in ``bot.views.mood``, the
``/privacy`` and ``/stats`` texts in ``bot.views.privacy``.
"""

from __future__ import annotations

HELP_HTML = (
    "<b>I'm Moodbot</b>, a friendly ear. Write to me about anything and I'll answer with care. "
    "I also keep a private mood log, so you can see how your days have been.\n\n"
    "/mood [7d|30d|90d|all] – how your mood moved (default: last 7 days); “Fix a mood” there corrects my guesses\n"
    "/reset – start our conversation fresh (your mood log stays)\n"
    "/forget – delete everything I stored about you in this chat\n"
    "/export – download everything I stored about you in this chat (a JSON file, sent to you privately)\n"
    "/privacy – what I keep, where, for how long, and how to delete it\n"
    "/help – this message"
)

START_TEXT = (
    "Hi {name}! 👋 I'm Moodbot. Tell me how you're doing, what's on your mind, big or small – I'm here to listen.\n\n"
    "Each message you send is stored in this bot's database with an estimate of its mood, so /mood can show "
    "how your days went; /forget deletes all of it. Type /help for everything I can do."
)

RESET_TEXT = "Fresh start 🌱 I've set our earlier conversation aside. Your mood log is kept (/mood)."
FORGET_TEXT = "Done. I deleted everything I had stored about you in this chat ({count} messages). 🧹"
FORGET_CONFIRM_TEXT = (
    "Delete everything I stored about you in this chat – your messages, my replies and their moods? "
    "This can't be undone. (/export first if you'd like a copy.)"
)
FORGET_YES_BUTTON = "Yes, delete everything"
FORGET_NO_BUTTON = "Cancel"
FORGET_CANCELLED_TEXT = "Nothing was deleted."
FORGET_NOT_YOURS_TEXT = "Only the person who asked can answer this. Send /forget yourself to delete your own data."
EXPORT_CAPTION = "Everything I stored about you in this chat: your messages, my replies and their moods."
EXPORT_GROUP_CAPTION = "Everything I stored about you in {chat}: your messages, my replies and their moods."
EXPORT_NOTHING_TEXT = "I have nothing stored about you in this chat – there's nothing to export. 🙂"
EXPORT_SENT_PRIVATELY_TEXT = "I've sent your export to you in our private chat. 📬"
EXPORT_OPEN_PRIVATE_CHAT_TEXT = (
    "I only send exports in a private chat, and I can't write to you there yet. Open a chat with me ({bot}), "
    "press Start, then send /export here again. 📬"
)
# /export: what the two labels of a message are, at the top of the file.
EXPORT_ABOUT = {
    "sentiment": "the mood the bot's language model estimated for the message",
    "your_label": (
        "the mood you set yourself with “Fix a mood” (under /mood); /mood counts it instead of the estimate. It stays "
        "when you edit the message (message_edited_since says whether you did after setting it)"
    ),
}

# "Fix a mood": the button under /mood, the list of someone's last messages with a face button each, the answers.
FIX_MOOD_BUTTON = "✏️ Fix a mood"
FIX_LIST_HEADER = (
    "✏️ Fix a mood – your last messages here, each with the mood I count for it. Tap a face to set it yourself; "
    "/mood then counts yours."
)
FIX_LIST_GROUP_HEADER = (
    "✏️ Fix a mood – your last messages in {chat}, each with the mood I count for it. Tap a face to set it "
    "yourself; /mood there then counts yours."
)
FIX_LIST_EMPTY_TEXT = "✏️ None of these messages is stored any more."
FIX_LIST_LINE = "{number}. “{preview}” – {mood}"
FIX_MOOD_YOURS = "{face} {label} (set by you)"
FIX_MOOD_MODELS = "{face} {label} (my guess)"
FIX_MOOD_NONE = "not rated yet"
FIX_NOTHING_TEXT = "You have no messages here to fix yet. 🙂"
FIX_LIST_NOT_YOURS_TEXT = "This button is for the person who asked for /mood. Send /mood yourself to fix your own."
FIX_NOT_YOURS_TEXT = "Only the person who wrote these messages can set their mood. Send /mood to fix your own."
FIX_GONE_TEXT = "That message isn't stored any more (deleted with /forget or by the automatic clean-up)."
FIX_SAVED_TEXT = "Saved: {face} {label}. /mood counts it from now on."
FIX_SENT_PRIVATELY_TEXT = "I've sent you the list in our private chat. 📬"
FIX_OPEN_PRIVATE_CHAT_TEXT = (
    "I only show your messages in a private chat, and I can't write to you there yet. Open a chat with me ({bot}), "
    "press Start, then tap “Fix a mood” again."
)

# Said only after the message is committed to the database (see bot.flow and new_message_saved).
EMPTY_REPLY_FALLBACK = "I'm here with you. Tell me a little more?"  # the model said nothing
BUSY_TEXT = "I'm talking with a lot of people right now 😅 Your message is saved – please try again in a moment."
FAILED_SAVED_TEXT = "Sorry, something went wrong on my side. Your message is saved; please try again in a moment."
FAILED_TEXT = "Sorry, something went wrong on my side. Please try again in a moment."
LONG_MESSAGE_TEXT = (
    "That was a long message! It's saved in full, but I could only read its first {limit} characters for my answer "
    "and your mood log. 📜"
)
REFUSAL_TEXT = (
    "Sorry, this Moodbot is private and only talks with the people its owner has allowed. 🙏 "
    "If you know the owner, they can let you in with your user id: {user_id}"
)
POSTED_AS_CHAT_TEXT = (
    "I keep a personal mood log for each person, and a message sent as a channel or as an anonymous admin "
    "doesn't tell me who wrote it – so I don't keep or answer it. Please write to me as yourself (pick your own "
    "account under “Send as”, or turn off “Remain anonymous”). 🙏"
)
ADMIN_ONLY_TEXT = "Sorry, /stats is only for the people who run this bot. 🙏"
SLOW_DOWN_TEXT = (
    "Slow down a little, please 🙂 I can answer again in {seconds} s. "
    "Everything you write meanwhile is still saved in your mood log."
)
BACKLOG_TEXT = (
    "That's a lot of messages at once! 🙂 Everything is saved in your mood log, but I'll only answer what I already "
    "have; give me a moment to catch up."
)

NON_TEXT_REPLIES = {
    "sticker": "Nice sticker! 😄 I can only read text, though – tell me in words how you're feeling?",
    "photo": "Thanks for sharing a picture! I can't see images yet – would you tell me about it in words?",
    "voice": "I can't listen to voice messages yet 🙉 Could you write it down for me?",
    "audio": "I can't listen to audio yet 🎧 Could you tell me in a few words?",
    "video": "I can't watch videos yet 🎬 Would you tell me about it in words?",
    "video_note": "I can't watch video notes yet – could you write me instead?",
    "animation": "Ha, a GIF! 😄 I only understand text, though – what's on your mind?",
    "document": "I can't open files, sorry 📄 Tell me in a message what's up?",
    "location": "Thanks for the location! I only read text, though – how are you doing?",
    "contact": "I can only read text messages – how are you doing today?",
    "poll": "I can't vote in polls 🙂 but I'd love to hear how you're doing.",
}
DEFAULT_NON_TEXT_REPLY = "I can only read text messages for now – tell me in words how you're doing? 🙂"


def refusal_text(user_id: int) -> str:
    """The polite no for someone outside the allowlists, with their user id for the owner to add."""
    return REFUSAL_TEXT.format(user_id=user_id)


def failed_text(saved: bool) -> str:
    """The apology after an error; it says the message is saved only when the store holds it (``saved``)."""
    return FAILED_SAVED_TEXT if saved else FAILED_TEXT


def export_group_caption(chat_title: str | None) -> str:
    """The caption of an export asked for in a group and delivered privately: it names the group."""
    return EXPORT_GROUP_CAPTION.format(chat=f"“{chat_title}”" if chat_title else "that group")


def export_open_private_chat_text(bot_username: str | None) -> str:
    """The group notice when an export can't be delivered privately: open a private chat with the bot first."""
    return EXPORT_OPEN_PRIVATE_CHAT_TEXT.format(bot=f"@{bot_username}" if bot_username else "tap my name")


def export_filename(chat_id: int, user_id: int) -> str:
    """The file name of an ``/export`` download."""
    return f"moodbot-export-{chat_id}-{user_id}.json"


def fix_open_private_chat_text(bot_username: str | None) -> str:
    """The alert when a "Fix a mood" list can't be sent privately: open a private chat with the bot first."""
    return FIX_OPEN_PRIVATE_CHAT_TEXT.format(bot=f"@{bot_username}" if bot_username else "tap my name")
