"""moodbot's front ends and what they share. ``flow/``: the conversation turn and the ``/mood`` report, written once;
``telegram/``: the Telegram adapter (wiring, handlers, intake and ordering, streaming); ``views/``: pure texts,
the mood text, privacy and stats, charts and Telegram's length rules; ``cli/``: the ``moodbot`` command (run, chat,
classify, eval, doctor); ``config.py`` and ``logs.py``: configuration and redacted logging."""
