"""Notification text templates: `{{ name }}` placeholders filled per recipient.

Built on string.Template (no code runs from a template). Anything that is not a well-formed
`{{ identifier }}` stays literal text, so prices like "$5" or JSON braces need no escaping.
"""

from __future__ import annotations

import string
from collections.abc import Mapping

# Filled by the service for every recipient; a notification's own `variables` add to these.
RECIPIENT_VARIABLES = ("name", "user_id", "email", "unsubscribe_url")


# `{{ name }}` only: no `$`-style braced, escaped or invalid forms.
PLACEHOLDER = r"""
        \{\{\s*(?:
          (?P<named>[A-Za-z_][A-Za-z0-9_]*)\s*\}\}
        | (?P<braced>(?!))
        | (?P<escaped>(?!))
        | (?P<invalid>(?!))
        )
    """


class NotificationTemplate(string.Template):
    delimiter = "{{"
    # string.Template compiles a str pattern when the subclass is made; typeshed knows only the compiled one.
    pattern = PLACEHOLDER  # type: ignore[assignment]


def unknown_variables(text: str, variables: Mapping[str, str]) -> list[str]:
    """Placeholders in `text` that neither the recipient nor `variables` would fill."""
    known = set(RECIPIENT_VARIABLES) | set(variables)
    return sorted(set(NotificationTemplate(text).get_identifiers()) - known)


def recipient_values(user_id: str, user: dict | None, notification: dict, unsubscribe_url: str = "") -> dict:
    """What a notification's placeholders are filled with for one recipient (RECIPIENT_VARIABLES and the
    notification's own `variables`)."""
    user = user or {}
    values = dict(notification.get("variables") or {})
    values.update(
        name=user.get("display_name") or user_id,
        user_id=user_id,
        email=user.get("email") or "",
        unsubscribe_url=unsubscribe_url,
    )
    return values


def render(text: str, values: Mapping[str, str]) -> str:
    return NotificationTemplate(text).safe_substitute(values)
