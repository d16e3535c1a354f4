"""Settings: defaults, parsing, one clear error naming the variable, and the documented example in sync."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from notifier.settings import Settings, SettingsError, example_file, markdown_table

REPO = Path(__file__).resolve().parent.parent


def test_defaults_work_locally():
    settings = Settings.from_env({})
    assert settings.http_port == 8004
    assert settings.amqp_url == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.mongo_url == "" and settings.embedded_db_dir == "./var/db"
    assert settings.pacing_batch == 100
    assert settings.user_jwt_algorithms == ("HS256",) and settings.user_id_claim == "sub"


def test_values_are_parsed():
    settings = Settings.from_env(
        {
            "HTTP_PORT": "9000",
            "SMTP_SSL": "yes",
            "USER_JWT_ALGORITHMS": "HS256, HS512",
            "RETRY_DELAYS": "1,2.5",
            "CONSUMERS_MAX": "8",
            "PUBLIC_URL": "https://n.example/",
        }
    )
    assert (settings.http_port, settings.smtp_ssl) == (9000, True)
    assert settings.user_jwt_algorithms == ("HS256", "HS512")
    assert settings.retry_delays == (1.0, 2.5)
    assert settings.public_url == "https://n.example"


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"HTTP_PORT": "eighty"}, "HTTP_PORT must be a whole number, got 'eighty'"),
        ({"HTTP_PORT": "70000"}, "HTTP_PORT must be <= 65535, got 70000"),
        ({"SMTP_SSL": "perhaps"}, "SMTP_SSL must be true or false, got 'perhaps'"),
        ({"MONGO_URL": "localhost:27017"}, "MONGO_URL must be a mongodb or mongodb+srv URL"),
        ({"USER_JWT_ALGORITHMS": "none"}, "USER_JWT_ALGORITHMS 'none' is not allowed"),
        ({"USER_JWT_ALGORITHMS": "RS256"}, "USER_JWT_PUBLIC_KEY is required for RS256"),
        ({"CONSUMERS_MIN": "5", "CONSUMERS_MAX": "2"}, "CONSUMERS_MIN must be <= CONSUMERS_MAX"),
        ({"CONSUMERS_START": "9"}, "CONSUMERS_START must be between"),
        ({"PACING_INTERVAL": "-1"}, "PACING_INTERVAL must be >= 0.01"),
        ({"USER_JWT_PUBLIC_KEY": "/no/such/key.pem"}, "USER_JWT_PUBLIC_KEY is neither a PEM key nor a readable file"),
    ],
)
def test_invalid_values_name_the_variable(environ, message):
    with pytest.raises(SettingsError) as error:
        Settings.from_env(environ)
    assert str(error.value).startswith(message)


def test_cli_stops_with_one_line_naming_the_variable():
    result = subprocess.run(
        [sys.executable, "-m", "notifier", "serve"],
        env={"HTTP_PORT": "x", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "notifier: configuration error: HTTP_PORT must be a whole number, got 'x'"
    ]


def test_every_setting_is_documented_in_config_example():
    documented = (REPO / "config" / "notifier.env.example").read_text()
    assert documented == example_file(), "regenerate with: python -m notifier.settings --write-docs"
    for option in dataclasses.fields(Settings):
        assert option.metadata["help"]


def test_readme_settings_table_is_current():
    readme = (REPO / "README.md").read_text()
    table = readme.split("<!-- settings:start -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert table == markdown_table(), "regenerate with: python -m notifier.settings --write-docs"
