"""The embedded SecantusDB server used when MONGO_URL is unset."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure, ServerSelectionTimeoutError

from notifier.embedded import EmbeddedMongo, setup_certificate, write_private
from notifier.procs import free_port, wait_for_port


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


def test_it_runs_standalone_and_keeps_no_oplog(tmp_path):
    """A replica-set member's oplog, pruned once it holds 100,000 entries, held the whole server for 30 s
    at a time in a benchmark; notifier needs neither it nor anything that depends on it."""
    server = EmbeddedMongo(str(tmp_path / "db"))
    url = server.start()
    try:
        with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            client.t.c.insert_many([{"n": i} for i in range(50)])
            client.t.c.update_many({}, {"$inc": {"n": 1}})
            hello = client.admin.command("hello")
            assert "setName" not in hello and hello["isWritablePrimary"] is True
            assert client.local.oplog.rs.estimated_document_count() == 0
    finally:
        server.stop()


def test_a_client_without_the_generated_credentials_is_refused(tmp_path):
    server = EmbeddedMongo(str(tmp_path / "db"))
    url = server.start()
    try:
        address = f"127.0.0.1:{server.port}/?directConnection=true"
        with MongoClient(f"mongodb://{address}", serverSelectionTimeoutMS=5000) as anonymous:
            with pytest.raises(OperationFailure) as refused:
                anonymous.notifier.admins.find_one()
            assert refused.value.code == 13  # Unauthorized
        with MongoClient(
            f"mongodb://notifier:guessed@{address}&authSource=admin", serverSelectionTimeoutMS=5000
        ) as guesser:
            with pytest.raises(OperationFailure) as failed:
                guesser.notifier.admins.find_one()
            assert failed.value.code == 18  # AuthenticationFailed
        with MongoClient(url, serverSelectionTimeoutMS=5000) as service:
            assert service.notifier.admins.find_one() is None
    finally:
        server.stop()


def test_the_data_dir_and_the_credentials_are_private_and_the_address_file_holds_no_secret(tmp_path):
    server = EmbeddedMongo(str(tmp_path / "db"))
    url = server.start()
    try:
        password = unquote(urlsplit(url).password)
        assert len(password) >= 32
        assert stat.S_IMODE(os.stat(tmp_path / "db").st_mode) == 0o700
        assert stat.S_IMODE(os.stat(server.credentials_file).st_mode) == 0o600
        assert server.credentials_file.parent == server.data_dir
        assert password not in server.url_file.read_text()
        assert not list(server.data_dir.glob("*.pem")), "the one-time setup certificate was left behind"
    finally:
        server.stop()


def test_it_listens_on_loopback_only(tmp_path):
    server = EmbeddedMongo(str(tmp_path / "db"))
    server.start()
    try:
        listening = []
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port = local.split(":")
                if state == "0A" and int(port, 16) == server.port:  # 0A: LISTEN
                    listening.append(address)
        assert listening == ["0100007F"]  # 127.0.0.1, and nothing on any other address
    finally:
        server.stop()


def test_a_data_dir_from_before_credentials_gets_them_and_keeps_its_data(tmp_path):
    data_dir = tmp_path / "db"
    port = free_port()
    old = subprocess.Popen(
        [
            shutil.which("secantusd-py", path=os.path.dirname(sys.executable)),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(data_dir),
            "--log-level",
            "WARNING",
        ]
    )
    try:
        assert wait_for_port("127.0.0.1", port, 60)
        with MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=5000) as client:
            client.notifier.admins.insert_one({"username": "kept"})
    finally:
        old.terminate()
        old.wait(30)
    server = EmbeddedMongo(str(data_dir), port)
    url = server.start()
    try:
        with MongoClient(url, serverSelectionTimeoutMS=5000) as client:
            assert client.notifier.admins.find_one()["username"] == "kept"
        with MongoClient(
            f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=5000
        ) as anonymous:
            with pytest.raises(OperationFailure):
                anonymous.notifier.admins.find_one()
    finally:
        server.stop()


def test_while_the_account_is_made_only_the_holder_of_the_setup_certificate_gets_in(tmp_path):
    server = EmbeddedMongo(str(tmp_path / "db"))
    server.make_data_dir()
    server.setup_file = server.data_dir / "setup.pem"
    write_private(server.setup_file, setup_certificate())
    server._spawn(60)  # the one start without --auth, as _create_account makes it
    try:
        address = f"mongodb://127.0.0.1:{server.port}/?directConnection=true"
        for options in ({}, {"tls": True, "tlsAllowInvalidCertificates": True}):  # plain; TLS without a certificate
            with MongoClient(address, serverSelectionTimeoutMS=1500, **options) as intruder:
                with pytest.raises(ServerSelectionTimeoutError):
                    intruder.admin.command("createUser", "intruder", pwd="intruder-password", roles=["root"])
        setup = str(server.setup_file)
        with MongoClient(
            address, tls=True, tlsCAFile=setup, tlsCertificateKeyFile=setup, serverSelectionTimeoutMS=5000
        ) as holder:
            assert holder.admin.command("ping")["ok"] == 1
    finally:
        server.stop()
