"""Delivery channels: email, Telegram, webhooks and the in-app inbox."""
