"""The embedded SecantusDB server used when MONGO_URL is unset."""

from __future__ import annotations

from pymongo import MongoClient

from notifier.embedded import EmbeddedMongo


def test_starts_keeps_data_across_restarts_and_is_found_by_other_commands(tmp_path):
    server = EmbeddedMongo(str(tmp_path / "db"))
    url = server.start()
    try:
        assert EmbeddedMongo(str(tmp_path / "db")).running_url() == url
        with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            client.t.c.insert_one({"kept": True})
    finally:
        server.stop()
    assert EmbeddedMongo(str(tmp_path / "db")).running_url() is None
    again = EmbeddedMongo(str(tmp_path / "db"))
    url = again.start()
    try:
        with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            assert client.t.c.find_one({})["kept"] is True
    finally:
        again.stop()
