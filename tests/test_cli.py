"""The `notifier` command's account commands, run as a user would, against the test database."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from pymongo import MongoClient

from notifier.passwords import verify_password


@pytest.fixture
def cli(mongo_url):
    database = f"cli_{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "MONGO_URL": mongo_url, "MONGO_DB": database, "SECRET_KEY": "cli-secret"}

    def run(*args, stdin: str = ""):
        return subprocess.run(
            [sys.executable, "-m", "notifier", *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
        )

    client = MongoClient(mongo_url)
    yield run, client[database]
    client.drop_database(database)
    client.close()


def test_createsuperuser_reads_password_from_stdin(cli):
    run, db = cli
    result = run("createsuperuser", "--username", "ops", stdin="long-enough-password\n")
    assert result.returncode == 0, result.stderr
    admin = db.admins.find_one({"username": "ops"})
    assert verify_password("long-enough-password", admin["password_hash"])
    again = run("createsuperuser", "--username", "ops", stdin="long-enough-password\n")
    assert again.returncode == 1 and "already exists" in again.stderr
    weak = run("createsuperuser", "--username", "weak", stdin="short\n")
    assert weak.returncode == 1 and "at least 12 characters" in weak.stderr
    common = run("createsuperuser", "--username", "weak", stdin="passwordpassword\n")
    assert common.returncode == 1 and "too common" in common.stderr


def test_create_client_prints_its_password_once(cli):
    run, db = cli
    result = run("create-client", "crm", "--name", "CRM")
    assert result.returncode == 0, result.stderr
    password = result.stdout.strip().splitlines()[-1]
    assert verify_password(password, db.clients.find_one({"login": "crm"})["password_hash"])
    assert run("create-client", "Bad Login").returncode == 1


def test_user_token_is_accepted_by_the_service(cli):
    run, _ = cli
    import jwt

    from notifier.keys import Keys
    from notifier.settings import Settings

    token = run("user-token", "alice").stdout.strip()
    keys = Keys.from_root("cli-secret", Settings.from_env({}))
    assert jwt.decode(token, keys.user_jwt, algorithms=["HS256"])["sub"] == "alice"
    several = run("user-token", "bob", "carol").stdout.split()
    assert [jwt.decode(t, keys.user_jwt, algorithms=["HS256"])["sub"] for t in several] == ["bob", "carol"]
