"""End to end over real TCP on port 0: sign-on, three sales, settlement — balanced and unbalanced."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from emulator.channel import Endpoint, run_operation
from emulator.hostproc import start_host
from emulator.journal import Journal
from emulator.messages import Profile
from emulator.terminal import Outcome, Result, Sale, SaveSignOn, Settle, SignOn, Terminal
from host_stub.ledger import Ledger
from specs.cards import seeded_card
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING
from tests.conftest import run_bounded, running_host

NOW = datetime(2026, 11, 22, 9, 30, 15)


async def _operate(dialect_name: str, port: int, journal: Journal, operation: object, timeout: float = 0.5) -> Result:
    dialect = get_dialect(dialect_name)
    terminal = Terminal(Profile(family=dialect.family), journal.load(), response_timeout_seconds=timeout)
    return await run_operation(operation, terminal=terminal, journal=journal,  # type: ignore[arg-type]
                               endpoint=Endpoint(host="127.0.0.1", port=port, connect_timeout_seconds=1.0),
                               framing=DEFAULT_FRAMING[dialect_name], dialect=dialect)


def _business_day(dialect_name: str, ledger: Ledger, *, alter_host_books: bool) -> tuple[list[Result], Journal]:
    journal = Journal(":memory:")
    card = seeded_card(seed=7, scheme="unionpay" if dialect_name == "cup" else "visa")

    async def scenario() -> list[Result]:
        async with running_host(dialect_name, ledger) as server:
            assert server.port
            results = [await _operate(dialect_name, server.port, journal, SignOn(now=NOW))]
            for amount in (1000, 2050, 399):
                results.append(await _operate(dialect_name, server.port, journal,
                                              Sale(now=NOW, amount_minor=amount, card=card)))
            if alter_host_books:  # the host lost one approval: its totals no longer match
                first_sale = ledger.authorizations(kind="sale")[0]
                ledger.set_status(first_sale["id"], "declined")
            results.append(await _operate(dialect_name, server.port, journal, Settle(now=NOW)))
            return results

    return run_bounded(scenario()), journal


def test_signon_three_sales_balanced_settlement(dialect_name: str) -> None:
    ledger = Ledger(":memory:")
    results, journal = _business_day(dialect_name, ledger, alter_host_books=False)
    assert [r.outcome for r in results] == [Outcome.APPROVED] * 4 + [Outcome.BALANCED]
    assert [r.stan for r in results] == ["000001", "000002", "000003", "000004", "000005"]
    assert [r.rc for r in results] == ["00"] * 5
    sales = ledger.authorizations(kind="sale")
    assert [(s["stan"], s["amount_minor"], s["status"], s["settled"], s["batch"]) for s in sales] == [
        ("000002", 1000, "approved", 1, "000001"), ("000003", 2050, "approved", 1, "000001"),
        ("000004", 399, "approved", 1, "000001")]
    assert all(s["pan_masked"] and "*" in s["pan_masked"] for s in sales)
    [settlement] = ledger.settlements()
    assert (settlement["result"], settlement["rc"], settlement["batch"]) == ("balanced", "00", "000001")
    assert settlement["terminal_totals"] == settlement["host_totals"] == {
        "debit_count": 3, "debit_minor": 3449, "credit_count": 0, "credit_minor": 0}
    books = journal.load()
    assert (books.batch, books.records, books.signed_on) == (2, [], True)
    assert results[-1].details["next_batch"] == "000002"


def test_unbalanced_settlement_is_answered_95_or_flag_2(dialect_name: str) -> None:
    """The host lost an approval: INTL answers 95, CUP 对账应答码 2; the terminal uploads its batch."""
    ledger = Ledger(":memory:")
    results, journal = _business_day(dialect_name, ledger, alter_host_books=True)
    settle = results[-1]
    assert settle.outcome is Outcome.UNBALANCED
    assert (settle.details["settlement_result"], settle.details["uploaded"]) == ("unbalanced", 3)
    if dialect_name == "cup":
        assert settle.rc == "00"  # CUP carries the result in field 48
    else:
        assert settle.rc == "95"
    [settlement] = ledger.settlements()
    assert settlement["result"] == "uploaded"
    assert settlement["host_totals"]["debit_count"] == 2
    assert settlement["terminal_totals"]["debit_count"] == settlement["uploaded_totals"]["debit_count"] == 3
    assert settlement["exceptions"] == {"terminal_only": 1}  # the approval the host had lost, found by the upload
    books = journal.load()
    assert books.batch == 2 and books.records == []  # closed after the upload


def test_stray_answer_is_never_taken_for_an_approval() -> None:
    """A host that answers with another STAN: the terminal waits, times out, reports no answer."""

    handler_done = asyncio.Event()

    async def wrong_stan_host(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from specs.codec import decode, encode
        from specs.framing import Frame, FrameReader, pack

        framing, dialect = DEFAULT_FRAMING["intl-ascii"], get_dialect("intl-ascii")
        frames = FrameReader(framing)
        [frame] = frames.feed(await reader.read(4096))
        request = decode(frame.message, dialect)
        answer = {"t": "0210", "3": request["3"], "11": "999999", "39": "00", "41": request["41"]}
        writer.write(pack(Frame(message=encode(answer, dialect)), framing))
        await writer.drain()
        await reader.read(4096)  # until the terminal gives up and closes
        writer.close()
        handler_done.set()

    async def scenario() -> Result:
        server = await asyncio.start_server(wrong_stan_host, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            card = seeded_card(seed=1)
            journal = Journal(":memory:")
            journal.apply(SaveSignOn(signed_on=True))  # signed on earlier, to a host that loaded no keys
            result = await _operate("intl-ascii", port, journal, Sale(now=NOW, amount_minor=100, card=card),
                                    timeout=0.3)
            await handler_done.wait()
            return result
        finally:
            server.close()
            await server.wait_closed()

    result = run_bounded(scenario())
    assert (result.outcome, result.rc, result.stan) == (Outcome.NO_ANSWER, None, "000001")
    assert result.text == "no answer within 0.3 s"


# ------------------------------------------------------------------ the command line, as a user runs it


def _terminal(port: int, journal: Path, *args: str, dialect: str = "intl-bcd") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "emulator.cli", "--port", str(port), "--dialect", dialect,
                           "--journal", str(journal), "--timeout", "2", "--json", *args],
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("dialect", ["intl-bcd", "cup"])
def test_cli_business_day_continues_across_invocations(tmp_path: Path, dialect: str) -> None:
    with start_host("serve", "--dialect", dialect, "--port", "0", "--ledger", str(tmp_path / "host.sqlite")) as host:
        journal = tmp_path / "t.sqlite"
        outputs = []
        for args in (["signon"], ["sale", "12.34"], ["sale", "0.99"], ["sale", "100"], ["settle"]):
            done = _terminal(host.port, journal, *args, dialect=dialect)
            assert done.returncode == 0, done.stderr
            outputs.append(json.loads(done.stdout))
        status = subprocess.run([sys.executable, "-m", "emulator.cli", "--journal", str(journal), "--json", "status"],
                                capture_output=True, text=True, timeout=30)
        exit_code = host.stop()
    assert exit_code == 0  # SIGTERM stops the host cleanly
    assert [o["outcome"] for o in outputs] == ["approved"] * 4 + ["balanced"]
    assert [o["stan"] for o in outputs] == ["000001", "000002", "000003", "000004", "000005"]
    assert [o["mti"] for o in outputs] == ["0800", "0200", "0200", "0200", "0500"]
    assert [o["rc"] for o in outputs] == ["00"] * 5
    assert outputs[1]["amount_minor"] == 1234 and outputs[1]["invoice"] == "000001"
    assert outputs[-1]["sale_amount_minor"] == 1234 + 99 + 10000
    shown = json.loads(status.stdout)
    # CUP closes even a balanced settlement with a 0320 207 end message: one more STAN
    assert shown["stan"] == ("000006" if dialect == "cup" else "000005")
    assert {k: shown[k] for k in ("invoice", "batch", "signed_on", "open_records", "pending_reversals")} == {
        "invoice": "000003", "batch": "000002", "signed_on": True, "open_records": 0, "pending_reversals": []}
    books = Ledger(str(tmp_path / "host.sqlite"))  # a restarted host would see the same books
    try:
        assert [r["status"] for r in books.authorizations(kind="sale")] == ["approved"] * 3
        assert [r["result"] for r in books.settlements()] == ["balanced"]
    finally:
        books.close()


def test_cli_no_connection_exits_3(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port with nobody listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = _terminal(port, tmp_path / "t.sqlite", "--new-journal", "sale", "1.00")
    assert done.returncode == 3
    out = json.loads(done.stdout)
    assert (out["outcome"], out["rc"], out["mti"]) == ("connect_failed", None, None)
    assert out["text"].startswith(f"connection failed: 127.0.0.1:{port}: ")


def test_cli_no_answer_exits_4(tmp_path: Path) -> None:
    with socket.socket() as silent:  # accepts connections (kernel backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "emulator.cli", "--port", str(port), "--journal",
                               str(tmp_path / "t.sqlite"), "--new-journal", "--timeout", "0.3", "--json", "echo"],
                              capture_output=True, text=True, timeout=30)
    assert done.returncode == 4
    out = json.loads(done.stdout)
    assert (out["outcome"], out["rc"], out["mti"], out["stan"]) == ("no_answer", None, "0800", "000001")


@pytest.mark.parametrize(("amount", "message"), [
    ("12.345", "'12.345' has more than 2 decimal places, expecting e.g. 12.34"),
    ("abc", "'abc' is not a decimal amount, expecting e.g. 12.34"),
    ("-5", "'-5' is not a positive amount, expecting e.g. 12.34"),
])
def test_cli_bad_amount_is_a_usage_error(tmp_path: Path, amount: str, message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "--port", "9", "--journal", str(tmp_path / "t.sqlite"),
                           "sale", "--", amount], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert message in done.stderr


def test_cli_demo_runs_a_balanced_day() -> None:
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "demo"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("stub host (intl-bcd) ready on port ")
    assert [line.split()[0] for line in lines[1:6]] == ["signon", "sale", "sale", "sale", "settle"]
    assert "balanced" in lines[5]
    assert lines[-1] == "demo complete: signed on, 3 sales approved, settlement balanced, batch closed"
