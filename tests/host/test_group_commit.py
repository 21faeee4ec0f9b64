"""Group commit: one fsync for the requests decided in one turn of the event loop, and still no answer
before the commit that holds its writes (``synchronous=FULL`` stays)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from host_stub.ledger import Ledger
from tests.conftest import run_bounded
from tests.host.conftest import running
from tests.host.helpers import TID, make_terminal


def _row(n: int) -> dict[str, Any]:
    return dict(received_at="2026-11-23T09:30:15", business_date="2026-11-23", mti="0200", kind="sale", tid=TID,
                mid="123456789012345", stan=f"{n:06d}", rc="00", status="approved")


def _committed_stans(path: Path) -> list[str]:
    other = sqlite3.connect(str(path))
    try:
        return [r[0] for r in other.execute("SELECT stan FROM authorizations ORDER BY id")]
    finally:
        other.close()


def test_request_transactions_are_savepoints_of_one_group_committed_together(tmp_path: Path) -> None:
    path = tmp_path / "host.sqlite"
    ledger = Ledger(str(path))
    assert ledger._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    ledger.group_commits = True
    with ledger.request_transaction():
        ledger.insert_authorization(_row(1))
    with pytest.raises(RuntimeError), ledger.request_transaction():
        ledger.insert_authorization(_row(2))
        raise RuntimeError("a bug in the core")
    with ledger.request_transaction():
        ledger.insert_authorization(_row(3))
    assert ledger.pending_commit and _committed_stans(path) == []  # nothing on disk yet
    assert [r["stan"] for r in ledger.authorizations()] == ["000001", "000003"]  # the failed one rolled back alone
    ledger.commit_pending()
    assert not ledger.pending_commit and _committed_stans(path) == ["000001", "000003"]
    with ledger.request_transaction():
        ledger.insert_authorization(_row(4))
    ledger.set_status(1, "reversed")  # any other transaction commits the open group first
    assert _committed_stans(path) == ["000001", "000003", "000004"]
    with ledger.request_transaction():
        ledger.insert_authorization(_row(5))
    ledger.close()  # closing commits too
    assert _committed_stans(path) == ["000001", "000003", "000004", "000005"]


def test_without_group_commits_a_request_transaction_commits_at_its_end(tmp_path: Path) -> None:
    path = tmp_path / "host.sqlite"
    ledger = Ledger(str(path))
    with ledger.request_transaction():
        ledger.insert_authorization(_row(1))
    assert not ledger.pending_commit and _committed_stans(path) == ["000001"]
    ledger.close()


def test_every_answer_leaves_after_its_writes_are_on_disk(tmp_path: Path) -> None:
    """Concurrent terminals: each answer is read back from a second connection (which sees committed
    data only) the moment it arrives; the server committed fewer times than it answered."""
    path = tmp_path / "host.sqlite"
    terminals = [make_terminal("intl-bcd", tid=f"2000000{i}") for i in range(6)]

    async def scenario() -> None:
        async with running("intl-bcd", ledger_path=str(path)) as h:
            ledger = h.runtime.ledger
            commits = 0
            original = ledger.commit_pending

            def counting() -> None:
                nonlocal commits
                commits += ledger.pending_commit
                original()

            ledger.commit_pending = counting  # type: ignore[method-assign]
            clients = [await h.connect() for _ in terminals]
            try:
                async def one(client: Any, terminal: Any, n: int) -> None:
                    for _ in range(n):
                        request = terminal.financial("sale", 100)
                        answer = await client.exchange(request)
                        assert answer is not None and answer["39"] == "00"
                        other = sqlite3.connect(str(path))
                        try:
                            row = other.execute("SELECT status FROM authorizations WHERE tid = ? AND stan = ?",
                                                (terminal.tid, request["11"])).fetchone()
                        finally:
                            other.close()
                        assert row == ("approved",), "answered before its posting was committed"

                await asyncio.gather(*(one(c, t, 5) for c, t in zip(clients, terminals)))
            finally:
                for client in clients:
                    await client.close()
            assert 0 < commits < 30  # 30 answers

    run_bounded(scenario(), 30.0)
