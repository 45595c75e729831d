"""mlflowkit.auth_db (the script backup and restore run inside a stack for `up --auth` users), on local files."""

from __future__ import annotations

import io
import sqlite3
import sys
from types import SimpleNamespace

import pytest
from werkzeug.security import check_password_hash, generate_password_hash

from mlflowkit import auth_db


def make_database(path, *users: tuple[str, str, bool]) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT UNIQUE, password_hash TEXT, "
                   "is_admin BOOLEAN)")
        db.executemany("INSERT INTO users (username, password_hash, is_admin) VALUES (?, ?, ?)",
                       [(name, generate_password_hash(password), admin) for name, password, admin in users])


def password_of(path, username: str) -> str:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT password_hash FROM users WHERE username = ?", (username,)).fetchone()[0]


def run(mode: str, monkeypatch, stdin: bytes = b"") -> bytes:
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(buffer=io.BytesIO(stdin)))
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out, write_through=True))
    auth_db.main(mode)
    sys.stdout.flush()
    return out.getvalue()


def test_export_import_round_trip_keeps_users_and_gives_the_stacks_admin_its_password(tmp_path, monkeypatch):
    source = tmp_path / "source.db"
    make_database(source, ("admin", "old-admin-password", True), ("alice", "alice-pass", False))
    monkeypatch.setattr(auth_db, "DATABASE", str(source))
    exported = run("export", monkeypatch)
    assert exported.startswith(b"SQLite format 3")
    assert run("users", monkeypatch).strip() == b"2"

    target = tmp_path / "target.db"
    make_database(target, ("admin", "new-admin-password", True))  # what a new stack made at its first start
    monkeypatch.setattr(auth_db, "DATABASE", str(target))
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_AUTH_ADMIN_PASSWORD", "new-admin-password")
    assert run("import", monkeypatch, exported).strip() == b"2"
    assert check_password_hash(password_of(target, "alice"), "alice-pass")  # as backed up
    assert check_password_hash(password_of(target, "admin"), "new-admin-password")  # the stack's own .env
    assert not check_password_hash(password_of(target, "admin"), "old-admin-password")


def test_no_database_exports_nothing_and_counts_zero(tmp_path, monkeypatch):
    monkeypatch.setattr(auth_db, "DATABASE", str(tmp_path / "absent.db"))
    assert run("export", monkeypatch) == b""
    assert run("users", monkeypatch).strip() == b"0"


def test_an_unknown_mode_is_one_line(monkeypatch):
    with pytest.raises(SystemExit, match="unknown mode 'dump'"):
        auth_db.main("dump")
