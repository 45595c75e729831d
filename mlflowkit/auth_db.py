"""The users and permissions of `mlflowkit up --auth`, seen from inside a stack: run there, never on the host.

MLflow's basic-auth app keeps them in a SQLite database on each MLflow server's auth-data volume
(``database_uri`` in stacks/images/mlflow/basic_auth.ini). Backup and restore reach it through a one-shot container
of the server's service (which mounts that volume), whether the server runs or not. Standard library, and
werkzeug (MLflow's own password hashing) for the admin.

Modes:
  export   a consistent copy (SQLite's online backup API) as bytes on stdout; nothing when there is no database
  import   a database from stdin, written page by page into the volume's file; prints its number of users.
           The stack's own admin (MLFLOW_AUTH_ADMIN_USERNAME/PASSWORD of its .env) keeps its .env password, so
           the kit, the healthcheck and whoever holds that .env still get in; every other user is as backed up.
  users    the number of users, on stdout (0: no database)

The kit hands this file over in the environment (``mlflowkit.backup.script_command``):
``python -c 'import os; exec(os.environ["MLFLOWKIT_SCRIPT"])' MODE``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import sys
import tempfile

DATABASE = "/var/lib/mlflow-auth/basic_auth.db"


def users(path: str) -> int:
    if not os.path.exists(path):
        return 0
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as db:
        return int(db.execute("SELECT count(*) FROM users").fetchone()[0])


def keep_admin(username: str | None, password: str | None) -> None:
    """The stack's admin, if the restored database has that user, gets the stack's password (MLflow makes the
    admin only when the user is missing, and never changes a password it finds)."""
    if not (username and password):
        return
    from werkzeug.security import generate_password_hash

    with sqlite3.connect(DATABASE, timeout=30) as db:
        db.execute("UPDATE users SET password_hash = ?, is_admin = 1 WHERE username = ?",
                   (generate_password_hash(password), username))


def main(mode: str) -> None:
    if mode == "users":
        print(users(DATABASE))
        return
    with tempfile.TemporaryDirectory() as scratch:
        copy = os.path.join(scratch, "auth.db")
        if mode == "export":
            if not os.path.exists(DATABASE):
                return
            with sqlite3.connect(f"file:{DATABASE}?mode=ro", uri=True, timeout=30) as live, \
                    sqlite3.connect(copy) as out:
                live.backup(out)
            with open(copy, "rb") as data:
                shutil.copyfileobj(data, sys.stdout.buffer)
        elif mode == "import":
            with open(copy, "wb") as data:
                shutil.copyfileobj(sys.stdin.buffer, data)
            with sqlite3.connect(copy) as snapshot, sqlite3.connect(DATABASE, timeout=30) as live:
                snapshot.backup(live)
            keep_admin(os.environ.get("MLFLOW_AUTH_ADMIN_USERNAME"), os.environ.get("MLFLOW_AUTH_ADMIN_PASSWORD"))
            print(users(DATABASE))
        else:
            sys.exit(f"auth_db: unknown mode {mode!r} (export, import, users)")


if __name__ == "__main__":
    main(sys.argv[1])
