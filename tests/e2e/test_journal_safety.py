"""The terminal's journal as careless operators use it, over real ``pos-terminal`` processes: two
invocations at once, a journal used with another terminal identity, a mistyped or empty path, and
a damaged file.  Each is refused with a clear message (exit 2) and nothing reaches the host."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from emulator.journal import Journal
from host_stub.ledger import Ledger
from tests.conftest import run_bounded, running_host
from tests.emulator.hosted import cli


def test_a_second_invocation_on_a_journal_in_use_exits_2_naming_the_pid(tmp_path: Path) -> None:
    """The first invocation holds the journal for its whole run (here: waiting for an answer that
    never comes); a second one on the same journal does not run alongside it."""
    journal = tmp_path / "t.sqlite"

    async def run() -> tuple[int, str, int | None, int]:
        request_arrived = asyncio.Event()
        writers: list[asyncio.StreamWriter] = []

        async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            await reader.read(1)  # the first invocation's request is on the wire: it holds the journal
            request_arrived.set()

        server = await asyncio.start_server(silent, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        first = asyncio.create_task(cli(port, journal, "signon", timeout=5.0, expect=None))
        await request_arrived.wait()
        pid = int((tmp_path / "t.sqlite.lock").read_text().strip())
        code, _, err = await cli(port, journal, "echo", timeout=5.0, expect=None)
        for writer in writers:  # the first invocation now gets no answer and ends
            writer.close()
        first_code, _, _ = await first
        server.close()
        await server.wait_closed()
        return code, err, pid, first_code

    code, err, pid, first_code = run_bounded(run(), 60.0)
    assert code == 2, err
    assert f"journal {tmp_path / 't.sqlite'} is in use by pid {pid}" in err and "Traceback" not in err
    assert first_code == 4  # the first one's request went unanswered: its own outcome, untouched
    assert Journal(str(journal)).load().stan == 1  # only the first invocation took a STAN


@pytest.mark.parametrize(("change", "named"), [
    (["--dialect", "cup"], "dialect 'intl-bcd' (given 'cup')"),
    (["--tid", "20000002"], "tid '10000001' (given '20000002')"),
])
def test_a_journal_is_bound_to_its_terminal_identity(tmp_path: Path, change: list[str], named: str) -> None:
    journal = tmp_path / "t.sqlite"
    ledger = Ledger(":memory:")

    async def run() -> tuple[int, str, int, int]:
        async with running_host("intl-bcd", ledger) as server:
            port = server.port or 0
            await cli(port, journal, "--tid", "10000001", "signon")
            requests = len(ledger.authorizations()) + len(server.journal.entries())
            code, _, err = await cli(port, journal, "--tid", "10000001", *change, "sale", "5.00", expect=None)
            after = len(ledger.authorizations()) + len(server.journal.entries())
            moved, _, _ = await cli(port, journal, "--tid", "10000001", *change, "--move-journal", "echo",
                                    dialect="cup" if "cup" in change else "intl-bcd", expect=None)
            return code, err, after - requests, moved

    code, err, sent, moved = run_bounded(run(), 30.0)
    assert code == 2 and named in err and "--move-journal" in err and "Traceback" not in err
    assert sent == 0  # refused before anything went to the host
    assert moved != 2  # moving it on purpose is allowed


def test_a_journal_moved_to_another_host_is_refused_unless_moved_on_purpose(tmp_path: Path) -> None:
    journal = tmp_path / "t.sqlite"

    async def run() -> tuple[int, str, int]:
        async with running_host("intl-bcd") as first, running_host("intl-bcd") as second:
            await cli(first.port or 0, journal, "signon")
            code, _, err = await cli(second.port or 0, journal, "sale", "5.00", expect=None)
            sent = len(second.journal.entries())
            await cli(second.port or 0, journal, "--move-journal", "signon")
            return code, err, sent

    code, err, sent = run_bounded(run(), 30.0)
    assert code == 2 and "host '127.0.0.1:" in err and sent == 0


@pytest.mark.parametrize("kind", ["mistyped", "empty"])
def test_a_missing_or_empty_journal_is_no_journal_and_starts_no_terminal(tmp_path: Path, kind: str) -> None:
    good = tmp_path / "t.sqlite"
    wrong = tmp_path / ("t.sqlte" if kind == "mistyped" else "empty.sqlite")
    if kind == "empty":
        wrong.write_bytes(b"")
    ledger = Ledger(":memory:")

    async def run() -> tuple[int, str, int]:
        async with running_host("intl-bcd", ledger) as server:
            await cli(server.port or 0, good, "signon")
            await cli(server.port or 0, good, "sale", "1.00")
            before = len(server.journal.entries())
            code, _, err = await cli_on(server.port or 0, wrong, "sale", "2.00")
            return code, err, len(server.journal.entries()) - before

    code, err, sent = run_bounded(run(), 30.0)
    assert code == 2 and sent == 0
    assert f"--journal {wrong}: no such journal" in err and "signon or with --new-journal" in err
    assert (not wrong.exists()) if kind == "mistyped" else wrong.stat().st_size == 0  # nothing was created


async def cli_on(port: int, journal: Path, *args: str) -> tuple[int, object, str]:
    """``cli`` without the helper's --new-journal for a journal that does not exist yet."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulator.cli", "--port", str(port), "--journal", str(journal), "--timeout", "0.5",
        "--json", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def _damage_last_page(path: Path) -> None:
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.seek(size - 4096)
        f.write(b"\x0d" + b"\xff" * 4095)


def test_a_damaged_journal_is_reported_as_damaged_and_never_used(tmp_path: Path) -> None:
    journal = tmp_path / "t.sqlite"
    ledger = Ledger(":memory:")

    async def run() -> list[tuple[int, str]]:
        async with running_host("intl-bcd", ledger) as server:
            port = server.port or 0
            await cli(port, journal, "signon")
            for amount in ("1.00", "2.00", "3.00"):
                await cli(port, journal, "sale", amount)
            _damage_last_page(journal)
            before = len(server.journal.entries())
            outs = []
            for args in (["status"], ["journal"], ["sale", "4.00"]):
                code, _, err = await cli_on(port, journal, *args)
                outs.append((code, err))
            assert len(server.journal.entries()) == before  # nothing was sent from a damaged journal
            return outs

    for code, err in run_bounded(run(), 30.0):
        assert code == 2, err
        assert f"--journal {journal} is damaged" in err and "no command can recover it" in err
        assert "Traceback" not in err and "next command recovers" not in err
