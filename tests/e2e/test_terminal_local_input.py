"""What the operator types is checked before anything is stored or sent, and a terminal that is not
signed on never sends a financial message without working keys.

A mistyped card value used to be stored as a pending reversal of a message that could never be
encoded: every later command then died on that reversal, and the terminal was unusable for good.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from emulator.channel import Endpoint, RequestNotBuilt, run_operation
from emulator.journal import Journal
from emulator.messages import Profile
from emulator.settings import TerminalSettings
from emulator.terminal import Sale, SaveSignOn, Terminal
from host_stub.ledger import Ledger
from specs.cards import Card
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING
from tests.conftest import run_bounded, running_host
from tests.emulator.helpers import NOW, VISA
from tests.emulator.hosted import cli


@pytest.mark.parametrize(("args", "error"), [
    (("--expiry", "99"), "Invalid value for --expiry: card expiry is 2 characters, expecting 4 digits YYMM"),
    (("--expiry", "2913"), "card expiry is '2913', expecting 4 digits YYMM with a month 01-12"),
    (("--pan", "41111111x1111111"), "Invalid value for --pan: card number is 16 characters with a non-digit"),
    (("--pan", "4" * 20), "card number is 20 characters, expecting 12 to 19 digits"),
    (("--pin", "12"), "Invalid value for '--pin': PIN is 2 characters, expecting 4 to 12 digits"),
    (("--pin", "abcd"), "PIN is 4 characters, expecting 4 to 12 digits"),
])
def test_a_bad_card_value_is_a_usage_error_and_leaves_the_terminal_usable(
        args: tuple[str, ...], error: str, tmp_path: Path) -> None:
    ledger, journal = Ledger(":memory:"), tmp_path / "t.sqlite"

    async def day() -> tuple[str, dict[str, object] | None, dict[str, object] | None]:
        async with running_host("intl-bcd", ledger) as server:
            port = server.port or 0
            await cli(port, journal, "signon")
            _, out, err = await cli(port, journal, "sale", "1.00", *args, expect=2)
            assert out is None
            _, after, _ = await cli(port, journal, "sale", "2.00")
            _, status, _ = await cli(port, journal, "status")
            return err, after, status

    err, after, status = run_bounded(day())
    assert error in err and "Traceback" not in err
    assert after is not None and after["outcome"] == "approved"
    assert status is not None and status["pending_reversal_stans"] == [] and status["saf_queue_stans"] == []
    assert [r["amount_minor"] for r in ledger.authorizations(kind="sale")] == [200]


@pytest.mark.parametrize("amount", ["1e3", "NaN", " 5", "5,00"])
def test_an_amount_is_plain_decimal_text(amount: str, tmp_path: Path) -> None:
    async def run() -> str:
        _, _, err = await cli(1, tmp_path / "t.sqlite", "sale", amount, expect=2)
        return err

    assert f"{amount!r} is not a decimal amount, expecting e.g. 12.34" in run_bounded(run())


@pytest.mark.parametrize("dialect", ["intl-bcd", "cup"])
def test_a_terminal_never_signed_on_signs_on_before_its_first_sale_and_macs_it(dialect: str, tmp_path: Path) -> None:
    ledger, journal = Ledger(":memory:"), tmp_path / "t.sqlite"

    async def run() -> dict[str, object] | None:
        async with running_host(dialect, ledger) as server:
            _, out, _ = await cli(server.port or 0, journal, "sale", "4.00", dialect=dialect)
            return out

    out = run_bounded(run())
    assert out is not None and out["outcome"] == "approved"
    assert out["signed_on_again"] is True and out["signon_reason"] == "the terminal is not signed on"
    sent = [e for e in Journal(str(journal)).trace() if e["kind"] == "sent"]
    assert [e["message"]["t"] for e in sent] == ["0800", "0200"]
    assert "64" in sent[1]["message"], "the first sale goes out with its MAC"


def test_without_auto_sign_on_a_terminal_not_signed_on_refuses_locally(tmp_path: Path) -> None:
    ledger, journal = Ledger(":memory:"), tmp_path / "t.sqlite"

    async def run() -> tuple[dict[str, object] | None, dict[str, object] | None]:
        async with running_host("intl-bcd", ledger) as server:
            port = server.port or 0
            _, refused, _ = await cli(port, journal, "--set", "auto_signon_on_77=false", "sale", "4.00", expect=5)
            await cli(port, journal, "signon")
            await cli(port, journal, "signoff")
            _, again, _ = await cli(port, journal, "--set", "auto_signon_on_77=false", "sale", "4.00", expect=5)
            return refused, again

    refused, again = run_bounded(run())
    for out in (refused, again):
        assert out is not None and out["outcome"] == "refused"
        assert out["text"] == ("the terminal is not signed on: sign on first "
                               "(no financial message leaves without working keys)")
    assert ledger.authorizations(kind="sale") == []


def test_a_request_the_dialect_cannot_encode_stores_nothing_and_sends_nothing() -> None:
    """The shell builds every request of a batch before applying its durable actions: a message no
    earlier check caught (here a TID of the wrong length) leaves no pending reversal behind."""
    dialect = get_dialect("intl-bcd")
    received = bytearray()
    closed = asyncio.Event()

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.extend(await reader.read(4096))  # b"" once the terminal closes its link
        writer.close()
        closed.set()

    async def run() -> Journal:
        server = await asyncio.start_server(record, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        journal = Journal(":memory:")
        journal.apply(SaveSignOn(signed_on=True))
        terminal = Terminal(Profile(family="intl", tid="123"), journal.load(), response_timeout_seconds=0.3,
                            settings=TerminalSettings())
        try:
            with pytest.raises(RequestNotBuilt, match=r"sale: the request cannot be built, nothing of it was stored "
                                                      r"or sent: .*[Ff]ield 41"):
                await run_operation(Sale(now=NOW, amount_minor=100, card=VISA), terminal=terminal, journal=journal,
                                    endpoint=Endpoint(host="127.0.0.1", port=port),
                                    framing=DEFAULT_FRAMING["intl-bcd"], dialect=dialect)
            await closed.wait()
        finally:
            server.close()
            await server.wait_closed()
        return journal

    books = run_bounded(run()).load()
    assert books.reversals == [] and books.records == [] and bytes(received) == b""


def test_a_card_is_checked_when_made() -> None:
    with pytest.raises(ValueError, match="card expiry is 'abcd', expecting 4 digits YYMM"):
        Card(pan="4761739001010010", expiry="abcd")
    assert Card(pan="476173900101", expiry="3001").pan == "476173900101"


def test_an_empty_journal_says_so(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from emulator.cli import main

    journal = str(tmp_path / "t.sqlite")
    Journal(journal).close()
    text = CliRunner().invoke(main, ["--journal", journal, "journal"])
    assert (text.exit_code, text.output) == (0, "no transactions in the open batch (--all shows closed batches too)\n")
    lines = CliRunner().invoke(main, ["--journal", journal, "--json", "journal", "--all"])
    assert (lines.exit_code, lines.output) == (0, "")


def test_a_journal_that_cannot_be_written_mid_sale_is_reported_and_the_next_command_recovers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills up as the approval is committed: the command says so without a traceback
    (exit 1), the journal keeps what it had committed (the pending reversal stored before the 0200
    left), and the next command sends that reversal first, as after a power cut."""
    import sqlite3

    from click.testing import CliRunner, Result

    from emulator.cli import main
    from emulator.terminal import CommitApproval

    ledger, journal = Ledger(":memory:"), tmp_path / "t.sqlite"
    apply = Journal.apply

    def full_at_commit(self: Journal, action: object) -> None:
        if isinstance(action, CommitApproval):
            raise sqlite3.OperationalError("database or disk is full")
        apply(self, action)  # type: ignore[arg-type]

    async def day() -> tuple[object, dict[str, object] | None]:
        async with running_host("intl-bcd", ledger) as server:
            port = str(server.port)
            await cli(server.port or 0, journal, "signon")
            with monkeypatch.context() as patched:
                patched.setattr(Journal, "apply", full_at_commit)
                failed = await asyncio.to_thread(CliRunner().invoke, main, [
                    "--port", port, "--journal", str(journal), "--timeout", "0.5", "sale", "6.00"])
            _, next_sale, _ = await cli(server.port or 0, journal, "sale", "7.00")
            return failed, next_sale

    failed, next_sale = run_bounded(day())
    assert isinstance(failed, Result) and failed.exit_code == 1 and "Traceback" not in failed.output
    assert (f"--journal {journal}: could not be written (database or disk is full); it keeps its last committed "
            "state") in failed.output
    assert next_sale is not None and next_sale["outcome"] == "approved" and next_sale["reversal_sent"] is True
    statuses = {r["amount_minor"]: r["status"] for r in ledger.authorizations(kind="sale")}
    assert statuses == {600: "reversed", 700: "approved"}
