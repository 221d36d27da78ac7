"""``python -m bot`` runs the moodbot CLI."""

from bot.cli import main

raise SystemExit(main())
