"""Crash points (a)-(g) of docs/domain.md#crash-points with real child processes.

Each case: ``python -m emulator.cli ... --crash-at X`` dies there like a power cut (``os._exit``, exit
status 137, no cleanup), the next invocation recovers from the journal, and afterwards the
terminal's journal and the host's ledger agree: no approval lost, none counted twice (G1, G2, G7).
With ``save_reversal_before_send=false`` the PAX window at (b) is shown to exist: an approval the
host keeps and the terminal knows nothing about.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from emulator.journal import Journal
from emulator.terminal import Outcome, Sale, SignOn
from host_stub.ledger import Ledger
from host_stub.server import HostServer
from specs.cards import seeded_card
from tests.conftest import run_bounded, running_host
from tests.emulator.hosted import NOW, TID, Pos, assert_books_agree, cli, fault, host_open, terminal_open

DIALECTS = ["intl-bcd", "cup"]
CRASHED = 137


def crash_case(dialect_name: str, tmp_path: Path,
               body: Callable[[HostServer, Ledger, Path, Callable[[], Pos]], Awaitable[Any]]) -> Any:
    ledger = Ledger(":memory:")
    path = tmp_path / "terminal.sqlite"

    async def run() -> Any:
        async with running_host(dialect_name, ledger) as server:
            assert server.port
            port = server.port

            def pos() -> Pos:  # the in-process terminal on the same journal file, for the set-up
                return Pos(dialect_name, port, journal=Journal(str(path)))
            return await body(server, ledger, path, pos)

    return run_bounded(run(), 60.0)


def books_of(path: Path) -> Any:
    journal = Journal(str(path))
    try:
        return journal.load()
    finally:
        journal.close()


async def prepare(pos: Pos, dialect_name: str, sales: int = 0) -> None:
    """Sign on (and make ``sales`` approved sales) in-process, then let go of the journal file."""
    card = seeded_card(seed=int(TID), scheme="unionpay" if dialect_name == "cup" else "visa")
    assert (await pos(SignOn(now=NOW))).outcome is Outcome.APPROVED
    for n in range(sales):
        assert (await pos(Sale(now=NOW, amount_minor=(n + 1) * 100, card=card))).outcome is Outcome.APPROVED
    pos.journal.close()


# ------------------------------------------------------------------ (a)-(d): around one sale


@pytest.mark.parametrize("dialect_name", DIALECTS)
@pytest.mark.parametrize("point", ["a", "b", "c"])
def test_crash_around_the_request_leaves_a_reversal_that_the_next_invocation_sends_first(
        dialect_name: str, point: str, tmp_path: Path) -> None:
    async def body(server: HostServer, ledger: Ledger, path: Path, pos: Callable[[], Pos]) -> None:
        await prepare(pos(), dialect_name)
        _code, out, err = await cli(server.port or 0, path, "--crash-at", point, "sale", "10.00",
                                   dialect=dialect_name, expect=CRASHED)
        assert out is None and f"crashed at point {point}" in err
        books = books_of(path)
        [pending] = books.reversals
        assert books.records == [] and pending.reason == "98"
        posted = ledger.authorizations(kind="sale", stan=pending.stan)
        assert [r["status"] for r in posted] == ([] if point == "a" else ["approved"])
        _, out, _ = await cli(server.port or 0, path, "sale", "20.00", dialect=dialect_name)
        assert out is not None and out["outcome"] == "approved" and out["reversal_sent"] is True
        assert out["reversal_cleared"] is True
        assert [r["status"] for r in ledger.authorizations(kind="sale", stan=pending.stan)] == (
            [] if point == "a" else ["reversed"])
        assert_books_agree(books_of(path), ledger)
        assert [amount for _, _, amount in host_open(ledger)] == [2000]
    crash_case(dialect_name, tmp_path, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_the_pax_order_shows_the_orphan_approval_window_at_b(dialect_name: str, tmp_path: Path) -> None:
    """save_reversal_before_send=false: the request left, the process died before R was stored;
    after the restart nobody reverses the approval the host holds (G1 broken)."""
    async def body(server: HostServer, ledger: Ledger, path: Path, pos: Callable[[], Pos]) -> None:
        await prepare(pos(), dialect_name)
        flawed = ("--set", "save_reversal_before_send=false")
        await cli(server.port or 0, path, *flawed, "--crash-at", "b", "sale", "10.00", dialect=dialect_name,
                  expect=CRASHED)
        assert books_of(path).reversals == []  # nothing to reverse: the window
        _, out, _ = await cli(server.port or 0, path, *flawed, "sale", "20.00", dialect=dialect_name)
        assert out is not None and out["reversal_sent"] is False
        books = books_of(path)
        orphans = sorted(set(host_open(ledger)) - set(terminal_open(books)))
        assert [amount for _, _, amount in orphans] == [1000]  # the host keeps 10.00 the terminal never journalled
        assert books.open_batch_totals() != ledger.open_batch_totals(TID)
    crash_case(dialect_name, tmp_path, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_crash_after_commit_before_print_keeps_the_approval_on_both_sides(dialect_name: str, tmp_path: Path) -> None:
    async def body(server: HostServer, ledger: Ledger, path: Path, pos: Callable[[], Pos]) -> None:
        await prepare(pos(), dialect_name)
        await cli(server.port or 0, path, "--crash-at", "d", "sale", "10.00", dialect=dialect_name, expect=CRASHED)
        _, status, _ = await cli(server.port or 0, path, "status", dialect=dialect_name)
        assert status is not None and status["pending_reversals"] == [] and status["unprinted_receipts"] == ["000001"]
        assert_books_agree(books_of(path), ledger)
        requests_before = len(ledger.authorizations())
        # The approval was never printed: a new sale is refused until it is reprinted (a re-ring
        # would charge the customer twice), and nothing goes to the host.
        _, refused, _ = await cli(server.port or 0, path, "sale", "10.00", dialect=dialect_name, expect=5)
        assert refused is not None and refused["outcome"] == "refused"
        assert "invoice 000001" in refused["text"] and "reprint" in refused["text"]
        assert len(ledger.authorizations()) == requests_before
        _, reprint, _ = await cli(server.port or 0, path, "reprint", dialect=dialect_name)
        assert reprint is not None and (reprint["outcome"], reprint["invoice"], reprint["printed"]) == (
            "approved", "000001", True)
        assert reprint["rrn"] == refused["text"].split("RRN ")[1].split()[0]  # the same approval, reprinted
        _, out, _ = await cli(server.port or 0, path, "sale", "20.00", dialect=dialect_name)
        assert out is not None and out["outcome"] == "approved" and out["reversal_sent"] is False
        assert_books_agree(books_of(path), ledger)
        assert [amount for _, _, amount in host_open(ledger)] == [1000, 2000]
    crash_case(dialect_name, tmp_path, body)


@pytest.mark.parametrize("dialect_name", ["intl-bcd"])
def test_a_pending_receipt_can_be_dismissed_by_a_supervisor(dialect_name: str, tmp_path: Path) -> None:
    async def body(server: HostServer, ledger: Ledger, path: Path, pos: Callable[[], Pos]) -> None:
        await prepare(pos(), dialect_name)
        await cli(server.port or 0, path, "--crash-at", "d", "sale", "10.00", dialect=dialect_name, expect=CRASHED)
        _, dismissed, _ = await cli(server.port or 0, path, "dismiss-receipt", dialect=dialect_name)
        assert dismissed is not None and dismissed["invoices"] == ["000001"]
        _, status, _ = await cli(server.port or 0, path, "status", dialect=dialect_name)
        assert status is not None and status["unprinted_receipts"] == [] and status["receipt_pending"] == []
        _, out, _ = await cli(server.port or 0, path, "sale", "20.00", dialect=dialect_name)
        assert out is not None and out["outcome"] == "approved"
    crash_case(dialect_name, tmp_path, body)


# ------------------------------------------------------------------ (e)-(g): inside settlement


@pytest.mark.parametrize("dialect_name", DIALECTS)
@pytest.mark.parametrize("point", ["e", "f", "g"])
def test_crash_inside_settlement_blocks_sales_and_the_next_settle_finishes_it(
        dialect_name: str, point: str, tmp_path: Path) -> None:
    async def body(server: HostServer, ledger: Ledger, path: Path, pos: Callable[[], Pos]) -> None:
        sales = 9 if dialect_name == "cup" else 2  # (f) needs two upload messages (CUP: 8 records each)
        await prepare(pos(), dialect_name, sales=sales)
        fault(server, {"kind": "settlement", "nth": 1}, {"type": "totals_delta", "debit_count": 1})
        await cli(server.port or 0, path, "--crash-at", point, "settle", dialect=dialect_name, expect=CRASHED)
        books = books_of(path)
        assert books.settlement is not None and len(books.records) == sales
        assert books.settlement.stage.value == ("host_closed" if point == "g" else "uploading")
        _, refused, _ = await cli(server.port or 0, path, "sale", "1.00", dialect=dialect_name, expect=5)
        assert refused is not None and refused["outcome"] == "refused" and "settlement" in refused["text"]
        requests_before = len(ledger.authorizations())
        _, out, _ = await cli(server.port or 0, path, "settle", dialect=dialect_name)
        assert out is not None and out["batch_closed"] is True and out["resumed"] in ("uploading", "host_closed")
        if point == "g":  # the host had closed the batch: only the local close was left, no traffic
            assert len(ledger.authorizations()) == requests_before
        uploads = ledger.uploads()
        assert sorted(u["original_stan"] for u in uploads) == sorted({u["original_stan"] for u in uploads})
        assert len(uploads) == sales  # every record uploaded exactly once, across the crash
        books = books_of(path)
        assert books.batch == 2 and books.records == [] and books.settlement is None
        assert host_open(ledger) == [] and ledger.settlements()[-1]["status"] == "closed"
        _, after, _ = await cli(server.port or 0, path, "sale", "1.00", dialect=dialect_name)
        assert after is not None and after["outcome"] == "approved"
    crash_case(dialect_name, tmp_path, body)
