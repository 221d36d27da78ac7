"""moodbot's Telegram side: handlers, commands, rendering, access control, config and the CLI."""
