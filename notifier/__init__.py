"""notifier: notifications fanned out over email, Telegram, webhooks and an in-app inbox."""

__version__ = "0.1.0"
