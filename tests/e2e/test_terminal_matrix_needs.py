"""What the cause-and-fix matrix needs from the terminal, end to end against the stub host over TCP
(specs/scenarios/README.md §8): C07 software version, C09 sign-on on 77/22/new day, C10 no financial
resend, C14 operators, C33 device information, the wire trace, and the command line's status, trace,
``--operator`` and ``--now``."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from emulator.journal import Journal
from emulator.terminal import Outcome, Reference, Sale, Settle, SignOn, Void
from host_stub.ledger import Ledger
from host_stub.registry import Terminal as HostTerminal
from host_stub.server import HostServer
from host_stub.settings import HostSettings
from specs.cards import seeded_card
from tests.conftest import run_bounded, running_host
from tests.emulator.hosted import NOW, TID, Pos, assert_books_agree, cli, fault

DIALECTS = ["intl-bcd", "cup"]


def card(dialect_name: str) -> Any:
    return seeded_card(seed=7, scheme="unionpay" if dialect_name == "cup" else "visa")


def scenario(dialect_name: str, body: Callable[[Pos, HostServer, Ledger], Awaitable[Any]], **host: Any) -> Any:
    ledger = Ledger(":memory:")

    async def run() -> Any:
        async with running_host(dialect_name, ledger) as server:
            assert server.port
            if host:
                server.host.settings = HostSettings.from_dict(host)
            return await body(Pos(dialect_name, server.port), server, ledger)

    return run_bounded(run())


def sale(pos: Pos, amount: int, *, now: datetime = NOW, **kw: Any) -> Awaitable[Any]:
    operator = kw.pop("operator", None)
    return pos(Sale(now=now, amount_minor=amount, card=card(pos.dialect_name), operator=operator), **kw)


# ------------------------------------------------------------------------------ C10


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_c10_the_flawed_resend_is_a_94_and_a_double_charge_the_fixed_terminal_reverses(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"kind": "sale", "nth": 1}, {"type": "drop_response"})
        first = await sale(pos, 8800, never_resend_financial=False)
        assert (first.outcome, first.rc, first.details["resent"]) == (Outcome.DECLINED, "94", True)
        assert pos.books.reversals == []  # the 94 made it drop the reversal it owed
        rows = ledger.authorizations(stan=first.stan, kind="sale")
        assert [(r["mti"], r["status"], r["rc"]) for r in rows] == [("0200", "approved", "00"),
                                                                    ("0200", "declined", "94")]
        again = await sale(pos, 8800)
        assert again.outcome is Outcome.APPROVED
        assert len(ledger.authorizations(kind="sale", status="approved")) == 2  # the customer paid twice

        fault(server, {"kind": "sale", "nth": 1}, {"type": "drop_response"})
        lost = await sale(pos, 100)  # the fixed terminal (default): no resend, a reversal is owed
        assert lost.outcome is Outcome.NO_ANSWER and [r.stan for r in pos.books.reversals] == [lost.stan]
        retried = await sale(pos, 100)
        assert retried.outcome is Outcome.APPROVED and retried.details["reversal_cleared"] is True
        assert [r["status"] for r in ledger.authorizations(stan=lost.stan, kind="sale")] == ["reversed"]

    scenario(dialect_name, body)


# ------------------------------------------------------------------------------ C07, C33


def test_c07_old_software_is_declined_30_with_a_tms_download_until_updated() -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        signon = await pos(SignOn(now=NOW), software_version="310001")
        assert signon.outcome is Outcome.APPROVED and pos.books.param_download == "6"
        old = await sale(pos, 5000, software_version="310001")
        assert (old.outcome, old.rc) == (Outcome.DECLINED, "30")
        assert old.text == "format error; the host asks for a software (TMS) download (处理要求 6)"
        assert pos.books.reversals == [] and ledger.authorizations(kind="sale", status="approved") == []
        updated = await pos(SignOn(now=NOW), software_version="310002")
        assert updated.outcome is Outcome.APPROVED and pos.books.param_download == ""
        assert (await sale(pos, 5000, software_version="310002")).outcome is Outcome.APPROVED

    scenario("cup", body, min_software_version="310002")


def test_c33_a_sign_on_without_device_information_is_30_and_blocks_sales_until_it_is_sent() -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        old = await pos(SignOn(now=NOW), send_device_info=False)
        assert (old.outcome, old.rc) == (Outcome.DECLINED, "30") and pos.books.param_download == "1"
        blocked = await sale(pos, 6600, send_device_info=False)  # signs on again first: 30 again
        assert (blocked.outcome, blocked.rc, blocked.mti) == (Outcome.DECLINED, "30", "0800")
        assert ledger.authorizations(kind="sale") == []
        compliant = await pos(SignOn(now=NOW))  # the parameter download turned device information on
        assert compliant.outcome is Outcome.APPROVED
        [signon_row] = ledger.authorizations(kind="sign_on", status="approved")
        assert signon_row["rc"] == "00"
        entry = server.journal.entries(mti="0800")[-1]
        assert entry["request"]["62"].startswith("*(")  # sent (and masked in the host journal)
        assert (await sale(pos, 6600)).outcome is Outcome.APPROVED

    scenario("cup", body, required_fields={"0800": ["62"]})


# ------------------------------------------------------------------------------ C09


def test_c09_77_signs_on_and_adopts_the_centre_batch_and_22_teaches_the_daily_sign_on() -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        day1 = datetime(2024, 6, 3, 9, 0)
        server.clock.set(day1)
        assert (await pos(SignOn(now=day1))).outcome is Outcome.APPROVED
        assert pos.books.signon_date == "2024-06-03"
        host_terminal = server.host.registry.terminal(TID)
        assert host_terminal is not None
        server.host.registry.put(HostTerminal(**{**host_terminal.as_dict(), "limits": host_terminal.limits,
                                                 "batch": 9}))
        moved = await sale(pos, 3000, now=day1)
        assert (moved.outcome, moved.rc, moved.details["signed_on_again"]) == (Outcome.DECLINED, "77", True)
        assert pos.books.batch == 9
        retried = await sale(pos, 3000, now=day1)
        assert retried.outcome is Outcome.APPROVED and pos.books.records[-1].batch == "000009"

        day2 = day1 + timedelta(days=1)
        server.clock.set(day2)
        first = await sale(pos, 2000, now=day2)  # the host says 22: sign on at once, and learn the rule
        assert (first.outcome, first.rc, first.details["signed_on_again"]) == (Outcome.DECLINED, "22", True)
        assert pos.books.daily_signon and pos.books.signon_date == "2024-06-04"
        assert (await sale(pos, 2000, now=day2)).outcome is Outcome.APPROVED

        day3 = day2 + timedelta(days=1)
        server.clock.set(day3)
        before = len(ledger.authorizations(kind="sign_on"))
        third = await sale(pos, 1500, now=day3)  # signs on first: no 22 any more
        assert third.outcome is Outcome.APPROVED and third.details["signed_on_again"] is True
        assert len(ledger.authorizations(kind="sign_on")) == before + 1
        assert ledger.authorizations(rc="22") and len(ledger.authorizations(rc="22")) == 1
        assert (await pos(Settle(now=day3))).outcome is Outcome.BALANCED

    scenario("cup", body, strict_batch=True, require_daily_signon=True)


# ------------------------------------------------------------------------------ C14


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_c14_a_cashier_cannot_void_and_every_record_and_cup_request_names_its_operator(dialect_name: str) -> None:
    roles = {"001": "cashier", "002": "cashier", "099": "supervisor"}

    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        assert (await pos(SignOn(now=NOW, operator="099"), operators=roles)).outcome is Outcome.APPROVED
        paid = await sale(pos, 6000, operator="002", operators=roles)
        assert paid.outcome is Outcome.APPROVED
        sent_before = len(server.journal.entries())
        void = await pos(Void(now=NOW, original=Reference(invoice=paid.details["invoice"]), operator="002"),
                         operators=roles)
        assert void.outcome is Outcome.REFUSED and len(server.journal.entries()) == sent_before
        [row] = ledger.authorizations(stan=paid.stan, kind="sale")
        assert row["status"] == "approved"
        if dialect_name == "cup":
            assert server.journal.entries(mti="0200")[-1]["request"]["63"] == "002"
        assert (await pos(Settle(now=NOW, operator="099"), operators=roles)).outcome is Outcome.BALANCED
        journal_rows = pos.journal.records(include_settled=True)
        assert [(r["kind"], r["operator"]) for r in journal_rows] == [("sale", "002")]
        assert_books_agree(pos.books, ledger)

    scenario(dialect_name, body)


# ------------------------------------------------------------------------------ the wire trace


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_the_trace_records_every_message_with_the_verdict_on_each_answer(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"kind": "sale", "nth": 1}, {"type": "stan_offset", "offset": 1})
        since = pos.journal.last_trace_seq()
        lost = await sale(pos, 1234)
        assert lost.outcome is Outcome.NO_ANSWER
        retried = await sale(pos, 1234)
        assert retried.outcome is Outcome.APPROVED
        events = [(e["command"], e["kind"], (e["message"] or {}).get("t"), e["matched"], e["mac_verified"])
                  for e in pos.journal.trace(since=since)]
        assert events == [
            ("sale", "sent", "0200", None, None),
            ("sale", "received", "0210", False, None),  # STAN shifted: set aside, never an approval
            ("sale", "timeout", None, None, None),
            ("sale", "sent", "0400", None, None),  # reversal first
            ("sale", "received", "0410", True, True),
            ("sale", "sent", "0200", None, None),
            ("sale", "received", "0210", True, True),
        ]
        stray = pos.journal.trace(since=since)[1]
        assert stray["detail"].startswith("STAN ") and stray["message"]["11"] != lost.stan
        sent = pos.journal.trace(since=since)[0]["message"]
        assert sent["11"] == lost.stan and sent["2"].count("*") == 6 and "64" in sent  # masked PAN, with its MAC

    scenario(dialect_name, body)


# ------------------------------------------------------------------------------ the command line


def _status(journal: Path, *args: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "emulator.cli", "--journal", str(journal), "--json", *args, "status"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_cli_status_trace_operator_and_now(tmp_path: Path) -> None:
    ledger = Ledger(":memory:")
    journal = tmp_path / "t.sqlite"
    roles = ("--set", "operators=001:cashier,099:supervisor")

    async def run() -> None:
        async with running_host("cup", ledger) as server:
            port = server.port or 0
            server.clock.set(datetime(2024, 6, 3, 9, 0))
            _, signon, _ = await cli(port, journal, *roles, "signon", "--now", "2024-06-03T09:00:00", dialect="cup")
            assert signon is not None and signon["operator"] == "099"
            assert [e["kind"] for e in signon["trace"]] == ["sent", "received"]
            assert signon["trace"][1]["matched"] is True
            _, paid, _ = await cli(port, journal, *roles, "sale", "60.00", "--operator", "001",
                                   "--now", "2024-06-03T09:05:00", dialect="cup")
            assert paid is not None and paid["operator"] == "001" and paid["outcome"] == "approved"
            assert server.journal.entries(mti="0200")[-1]["request"]["63"] == "001"
            assert server.journal.entries(mti="0200")[-1]["request"]["13"] == "0603"  # --now is the terminal's clock
            _, refused, _ = await cli(port, journal, *roles, "void", "--invoice", paid["invoice"], "--operator", "001",
                                      dialect="cup", expect=5)
            assert refused is not None and refused["outcome"] == "refused" and refused["trace"] == []
            fault(server, {"kind": "sale", "nth": 1}, {"type": "drop_response"})
            fault(server, {"kind": "reversal", "nth": 1}, {"type": "drop_response"})
            await cli(port, journal, *roles, "--set", "reverse_at_idle=false", "sale", "5.00", dialect="cup", expect=4)
            fault(server, {"kind": "settlement", "nth": 1}, {"type": "totals_delta", "debit_count": 1})
            _, settled, _ = await cli(port, journal, *roles, "settle", dialect="cup")
            assert settled is not None and settled["outcome"] == "unbalanced" and settled["batch_closed"] is True
            await cli(port, journal, *roles, "--set", "printer_fails=true", "sale", "7.00", dialect="cup")

    run_bounded(run(), 60.0)
    status = _status(journal, "--set", "operators=001:cashier,099:supervisor")
    assert (status["settlement_state"], status["batches_closed"]) == ("idle", 1)
    assert status["pending_reversal_stans"] == [] and status["saf_queue_stans"] == []
    [closed] = status["closed_batches"]
    assert {k: closed[k] for k in ("batch", "debit_count", "debit_minor", "result")} == {
        "batch": "000001", "debit_count": 1, "debit_minor": 6000, "result": "unbalanced"}
    assert status["receipt_pending"] == [status["unprinted_receipts"][0]] and status["operators"]["099"] == "supervisor"
    assert status["signon_date"] == "2024-06-03" and status["trace_seq"] > 0
    rows = [json.loads(line) for line in subprocess.run(
        [sys.executable, "-m", "emulator.cli", "--journal", str(journal), "--json", "journal", "--all"],
        capture_output=True, text=True, timeout=30).stdout.splitlines()]
    assert [(r["kind"], r["operator"], r["receipt_pending"], r["settled"]) for r in rows] == [
        ("sale", "001", False, 1), ("sale", "099", True, 0)]
    trace = [json.loads(line) for line in subprocess.run(
        [sys.executable, "-m", "emulator.cli", "--journal", str(journal), "--json", "trace", "--since",
         str(status["trace_seq"] - 2)], capture_output=True, text=True, timeout=30).stdout.splitlines()]
    assert [(e["kind"], e["message"]["t"]) for e in trace] == [("sent", "0200"), ("received", "0210")]
    text = subprocess.run([sys.executable, "-m", "emulator.cli", "--journal", str(journal), "trace"],
                          capture_output=True, text=True, timeout=30).stdout
    assert " STRAY" not in text and "timeout" in text and "matched mac ok" in text


def test_cli_bad_operator_and_now_are_usage_errors(tmp_path: Path) -> None:
    for args, message in ((["--operator", "1"], "expecting 3 digits like 001"),
                          (["--now", "tomorrow"], "is not an ISO date-time")):
        done = subprocess.run([sys.executable, "-m", "emulator.cli", "--journal", str(tmp_path / "t.sqlite"), *args,
                               "status"], capture_output=True, text=True, timeout=30)
        assert done.returncode == 2 and message in done.stderr


def test_a_crash_leaves_what_was_sent_and_the_crash_in_the_trace(tmp_path: Path) -> None:
    ledger = Ledger(":memory:")
    journal = tmp_path / "t.sqlite"

    async def run() -> None:
        async with running_host("intl-bcd", ledger) as server:
            port = server.port or 0
            await cli(port, journal, "signon")
            _code, out, _ = await cli(port, journal, "sale", "9.99", "--crash-at", "b", expect=137)
            assert out is None
            store = Journal(str(journal))
            try:
                kinds = [(e["command"], e["kind"], (e["message"] or {}).get("t"), e["detail"])
                         for e in store.trace(since=2)]
            finally:
                store.close()
            assert kinds == [("sale", "sent", "0200", None), ("sale", "crash", None, "crash point b")]
            _, recovered, _ = await cli(port, journal, "sale", "1.00")
            assert recovered is not None and [e["message"]["t"] for e in recovered["trace"]
                                              if e["kind"] == "sent"] == ["0400", "0200"]

    run_bounded(run(), 60.0)


# ------------------------------------------------------------------------------ C03


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_c03_after_a_key_rotation_the_owed_reversal_is_refused_a0_then_signed_on_and_sent_again(
        dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"kind": "sale", "nth": 1}, {"type": "drop_response"})
        lost = await sale(pos, 3000, reverse_at_idle=False)
        assert lost.outcome is Outcome.NO_ANSWER
        fault(server, {}, {"type": "rotate_keys"}, times=1)
        after = await sale(pos, 2000)
        assert after.outcome is Outcome.APPROVED and after.details["signed_on_again"] is True
        mtis = [e["mti"] for e in server.journal.entries()][-4:]
        assert mtis == ["0400", "0800", "0400", "0200"]
        assert [r["rc"] for r in ledger.authorizations(stan=lost.stan, mti="0400")] == ["A0", "00"]
        assert [r["status"] for r in ledger.authorizations(stan=lost.stan, mti="0200")] == ["reversed"]
        assert_books_agree(pos.books, ledger)

    scenario(dialect_name, body)
