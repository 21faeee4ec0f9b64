"""How both sides open their durable books: the terminal's journal and the host's ledger.

WAL for a file (readers never block the writer), ``synchronous=FULL`` always (a commit is on disk
before the byte that depends on it leaves the socket), the schema applied, and a file that is not a
database, or holds other books (the host's ledger given as a terminal journal), refused at once and
closed: nothing is added to it.

>>> db = open_books(":memory:", "CREATE TABLE IF NOT EXISTS t (x INTEGER);")
>>> db.execute("PRAGMA synchronous").fetchone()[0]
2
>>> tables_of("CREATE TABLE IF NOT EXISTS a (x); CREATE TABLE IF NOT EXISTS b (y);")
('a', 'b')
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable


class WrongBooks(sqlite3.DatabaseError):
    """The file is a database, but holds none of the tables of these books (someone else's books)."""


def tables_of(schema: str) -> tuple[str, ...]:
    """The tables a schema creates, in order."""
    return tuple(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", schema))


def open_books(path: str, schema: str, upgrade: Callable[[sqlite3.Connection], None] | None = None) -> sqlite3.Connection:
    """Connect (autocommit; transactions are explicit), set the pragmas, apply ``schema`` and then
    ``upgrade`` (columns added to an older file).

    Raises:
        WrongBooks: the file holds tables, none of them of ``schema`` (nothing was written to it).
        sqlite3.Error: the file cannot be opened, or is not a database (found only at the first
            statement, so the pragmas run inside the guard); the connection is closed first.
        OSError: the path cannot be used.
    """
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.row_factory = sqlite3.Row
        have = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        ours = tables_of(schema)
        if have and not have.intersection(ours):
            raise WrongBooks(f"it holds the tables {', '.join(sorted(have)[:6])} and none of "
                             f"{', '.join(ours[:3])}")
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
