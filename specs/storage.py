"""How both sides open their durable books: the terminal's journal and the host's ledger.

WAL for a file (readers never block the writer), ``synchronous=FULL`` always (a commit is on disk
before the byte that depends on it leaves the socket), the schema applied, and a file that is not a
database refused at once and closed.

>>> db = open_books(":memory:", "CREATE TABLE IF NOT EXISTS t (x INTEGER);")
>>> db.execute("PRAGMA synchronous").fetchone()[0]
2
"""

from __future__ import annotations

import sqlite3
from typing import Callable


def open_books(path: str, schema: str, upgrade: Callable[[sqlite3.Connection], None] | None = None) -> sqlite3.Connection:
    """Connect (autocommit; transactions are explicit), set the pragmas, apply ``schema`` and then
    ``upgrade`` (columns added to an older file).

    Raises:
        sqlite3.Error: the file cannot be opened, or is not a database (found only at the first
            statement, so the pragmas run inside the guard); the connection is closed first.
        OSError: the path cannot be used.
    """
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        if path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(schema)
        if upgrade is not None:
            upgrade(db)
    except BaseException:
        db.close()
        raise
    return db
