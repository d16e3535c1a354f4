"""{{ placeholder }} templates."""

from notifier.rendering import render, unknown_variables


def test_fills_known_placeholders_and_leaves_other_text_alone():
    text = 'Hi {{ name }}, {{order}} costs $5 {"json": true} {{ later'
    assert render(text, {"name": "Ann", "order": "A-1"}) == 'Hi Ann, A-1 costs $5 {"json": true} {{ later'


def test_unknown_placeholders_are_reported():
    assert unknown_variables("{{ name }} {{ order }} {{ x }}", {"order": "1"}) == ["x"]
    assert unknown_variables("{{ unsubscribe_url }} {{ email }} {{ user_id }}", {}) == []
