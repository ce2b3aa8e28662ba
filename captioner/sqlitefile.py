"""One SQLite file in an output folder, as the batch manifest and the caption library use it:
WAL mode (readers never block the one writer), a busy timeout, rows by column name, and
``transaction()`` for changes that happen entirely or not at all (a ``kill -9`` mid-way leaves
the file as it was before the transaction)."""

from __future__ import annotations

import os
import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

BUSY_TIMEOUT_SEC = 30.0  # how long to wait for another process's write to finish


class SQLiteFile:
    """An open SQLite database; a context manager that closes it. Autocommit outside
    ``transaction()``."""

    def __init__(self, path: str | os.PathLike, *, synchronous: str = "NORMAL"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # the connection is used by one thread at a time (its owner), which need not be the
        # thread that opened it (the web app's request threads)
        self.db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_SEC, isolation_level=None, check_same_thread=False)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute(f"PRAGMA synchronous={synchronous}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic change (BEGIN IMMEDIATE ... COMMIT; rolled back on any exception)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")
