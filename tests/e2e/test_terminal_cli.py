"""``pos-terminal`` as an operator drives it: a full business day in both dialects, settings from a
config file and ``--set``, status and journal, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from emulator.cli import main as terminal_main
from emulator.journal import Journal
from host_stub.ledger import Ledger
from tests.conftest import run_bounded, running_host
from tests.emulator.hosted import assert_books_agree, cli, fault, host_open


@pytest.mark.parametrize("dialect", ["intl-bcd", "cup"])
def test_a_full_business_day_from_the_command_line(dialect: str, tmp_path: Path) -> None:
    """Sign-on, sales, a void, a refund, an offline sale, a timed-out sale reversed automatically,
    settlement with batch upload — the "done when" of issue 3."""
    ledger = Ledger(":memory:")
    journal = tmp_path / "t.sqlite"

    async def day() -> list[dict[str, Any]]:
        async with running_host(dialect, ledger) as server:
            port = server.port or 0
            outs: list[dict[str, Any]] = []

            async def run(*args: str, expect: int = 0) -> dict[str, Any]:
                _, out, _ = await cli(port, journal, *args, dialect=dialect, expect=expect)
                assert out is not None
                outs.append(out)
                return out

            await run("signon")
            first = await run("sale", "12.34")
            await run("sale", "20.00")
            await run("void", "--invoice", first["invoice"])
            await run("refund", "5.00", "--rrn", outs[2]["rrn"])
            await run("offline-sale", "7.50")
            fault(server, {"mti": "0200", "nth": 1}, {"type": "drop_response"})
            lost = await run("sale", "99.00", expect=4)
            assert lost["outcome"] == "no_answer" and lost["reversal_sent"] is True  # sent at idle, right away
            assert lost["reversal_cleared"] is True and lost["reversal_pending"] is False
            await run("sale", "3.00")  # trickles the offline sale
            fault(server, {"kind": "settlement", "nth": 1}, {"type": "totals_delta", "debit_count": 1})
            await run("settle")
            await run("status")
            return outs

    outs = run_bounded(day(), 60.0)
    assert [o["command"] for o in outs[:-1]] == ["signon", "sale", "sale", "void", "refund", "offline-sale", "sale",
                                                 "sale", "settle"]
    assert [o["outcome"] for o in outs[:6]] == ["approved"] * 6
    settle, status = outs[-2], outs[-1]
    assert (settle["outcome"], settle["batch_closed"], settle["settlement_result"]) == ("unbalanced", True,
                                                                                       "unbalanced")
    assert settle["uploaded"] == 4 and settle["sale_amount_minor"] == 2000 + 750 + 300
    assert settle["refund_amount_minor"] == 500
    assert (status["batch"], status["open_records"], status["pending_reversals"], status["saf_queue"],
            status["settlement"]) == ("000002", 0, [], [], None)
    assert host_open(ledger) == []
    [reversed_sale] = [r for r in ledger.authorizations(kind="sale") if r["amount_minor"] == 9900]
    assert reversed_sale["status"] == "reversed"


def test_settings_from_a_config_file_and_set_overrides(tmp_path: Path) -> None:
    config = tmp_path / "terminal.yaml"
    config.write_text("final_reversal_codes: ['00']\nmax_tranlog: 7\nreversal_first: false\n", encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "--journal", str(tmp_path / "t.sqlite"), "--json",
                           "settings", "--config", str(config), "--set", "reversal_first=true",
                           "--set", "final_reversal_codes=00,25"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert (data["final_reversal_codes"], data["max_tranlog"], data["reversal_first"]) == (["00", "25"], 7, True)
    assert data["tmk"] == "*(32)"


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "reversal_frist=false"], "Unknown setting 'reversal_frist' (from --set)"),
    (["--set", "max_tranlog=many"], "Setting max_tranlog holds 'many', expecting a whole number"),
    (["--set", "final_reversal_codes=000"], "expecting 2-character response codes"),
])
def test_bad_settings_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "--journal", str(tmp_path / "t.sqlite"), *args,
                           "status"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and message in done.stderr


def test_stuck_reversal_is_refused_locally_with_exit_5_then_cleared_by_reverse(tmp_path: Path) -> None:
    ledger = Ledger(":memory:")
    journal = tmp_path / "t.sqlite"
    flawed = ("--set", "final_reversal_codes=00", "--set", "park_stuck_reversal=false")

    async def run() -> None:
        async with running_host("cup", ledger) as server:
            port = server.port or 0
            await cli(port, journal, "signon", dialect="cup")
            fault(server, {"mti": "0200", "nth": 1}, {"type": "close_before_processing"})
            _, lost, _ = await cli(port, journal, *flawed, "sale", "10.00", dialect="cup", expect=4)
            assert lost is not None and lost["reversal_sent"] is True and lost["reversal_cleared"] is False
            _, refused, _ = await cli(port, journal, *flawed, "sale", "10.00", dialect="cup", expect=5)
            assert refused is not None and refused["outcome"] == "refused" and refused["mti"] is None
            assert "stuck" in refused["text"]
            sent_before = len(ledger.authorizations())
            await cli(port, journal, *flawed, "sale", "10.00", dialect="cup", expect=5)
            assert len(ledger.authorizations()) == sent_before  # a local refusal sends nothing
            _, cleared, _ = await cli(port, journal, "reverse", dialect="cup")  # 25 is final by default
            assert cleared is not None and cleared["outcome"] == "approved" and cleared["reversal_rc"] == "25"
            _, ok, _ = await cli(port, journal, *flawed, "sale", "10.00", dialect="cup")
            assert ok is not None and ok["outcome"] == "approved"
            store = Journal(str(journal))
            try:
                assert_books_agree(store.load(), ledger)
            finally:
                store.close()

    run_bounded(run(), 60.0)


def test_journal_is_masked_and_options_work_after_the_command(tmp_path: Path) -> None:
    ledger = Ledger(":memory:")
    journal = tmp_path / "t.sqlite"

    async def run() -> None:
        async with running_host("intl-bcd", ledger) as server:
            await cli(server.port or 0, journal, "sale", "1.00", "--pan", "4761739001010010", "--expiry", "3012")

    run_bounded(run())
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "journal", "--journal", str(journal), "--json"],
                          capture_output=True, text=True, timeout=30)
    [row] = [json.loads(line) for line in done.stdout.splitlines()]
    assert row["pan"] == "476173******0010" and "4761739001010010" not in done.stdout
    assert (row["kind"], row["amount_minor"], row["status"]) == ("sale", 100, "approved")


def test_offline_sale_needs_no_host(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "--journal", str(tmp_path / "t.sqlite"), "--json",
                           "--new-journal", "offline-sale", "4.00"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert (out["outcome"], out["mti"], out["advice_queued"]) == ("approved", "0220", True)
    status = subprocess.run([sys.executable, "-m", "emulator.cli", "--journal", str(tmp_path / "t.sqlite"), "--json",
                             "status"], capture_output=True, text=True, timeout=30)
    assert [a["kind"] for a in json.loads(status.stdout)["saf_queue"]] == ["offline_sale"]


@pytest.mark.parametrize("command", [["status"], ["journal"], ["trace"], ["offline-sale", "4.00"],
                                     ["--port", "1", "sale", "1.00"], ["--port", "1", "signon"]])
def test_a_journal_in_a_missing_folder_is_a_usage_error(tmp_path: Path, command: list[str]) -> None:
    path = tmp_path / "no-such-folder" / "t.sqlite"
    done = CliRunner().invoke(terminal_main, ["--journal", str(path), *command])
    assert done.exit_code == 2, done.output
    assert f"--journal {path}: " in done.stderr and f"folder {path.parent} does not exist" in done.stderr
    assert "Traceback" not in done.output and not path.parent.exists()


def test_a_journal_that_is_not_a_database_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.sqlite"
    path.write_text("sale 12.34 approved, not a database\n" * 10)
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "--journal", str(path), "status"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert f"--journal {path} is not a pos-terminal journal (file is not a database)" in done.stderr
    assert "Traceback" not in done.stderr
    assert path.read_text().startswith("sale 12.34 approved")  # left as it was
    folder = CliRunner().invoke(terminal_main, ["--journal", str(tmp_path), "status"])
    assert folder.exit_code == 2 and f"--journal {tmp_path}: cannot open: unable to open database file (it is a folder)" \
        in folder.stderr


def test_the_other_sides_books_are_refused_and_left_as_they_were(tmp_path: Path) -> None:
    """The host's ledger given as a terminal journal (and the other way round) is a usage error:
    neither side adds its tables to the other's file."""
    import sqlite3
    from contextlib import closing

    from host_stub.ledger import Ledger

    ledger_path, journal_path = tmp_path / "host.sqlite", tmp_path / "terminal.sqlite"
    Ledger(str(ledger_path)).close()
    Journal(str(journal_path)).close()

    def tables(path: Path) -> set[str]:
        with closing(sqlite3.connect(path)) as db:
            return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    before = tables(ledger_path), tables(journal_path)
    done = CliRunner().invoke(terminal_main, ["--journal", str(ledger_path), "status"])
    assert done.exit_code == 2, done.output
    assert f"--journal {ledger_path} is not a pos-terminal journal (it holds the tables authorizations," in done.stderr
    host = subprocess.run([sys.executable, "-m", "host_stub.cli", "serve", "--port", "0", "--ledger", str(journal_path)],
                          capture_output=True, text=True, timeout=30)
    assert host.returncode == 2 and host.stdout == "" and "Traceback" not in host.stderr
    assert f"--ledger {journal_path} is not a pos-host ledger (it holds the tables batches," in host.stderr
    assert (tables(ledger_path), tables(journal_path)) == before
