"""``pos-terminal probe`` end to end against the stub host in host settings where the verdicts differ.

The tests configure the stub host directly (settings, faults: what its control API would do); the
probe itself only ever talks ISO 8583 to it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from emulator.channel import Endpoint
from emulator.journal import Journal
from emulator.messages import Profile
from emulator.probe import CHECK_NAMES, load_expectations, result_data
from emulator.prober import ProbeConfig, run_probe
from emulator.settings import TerminalSettings
from host_stub.ledger import Ledger
from specs.cards import seeded_card
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING
from tests.conftest import run_bounded, running_host
from tests.emulator.hosted import TID, fault

ROOT = Path(__file__).resolve().parents[2]
FAST_EXPECT = {"late_reversal": {"delay_seconds": 0.05}}


async def probe(port: int, dialect: str, *, expect: dict[str, Any] | None = None,
                only: tuple[str, ...] = ()) -> dict[str, Any]:
    expectations = load_expectations({**FAST_EXPECT, **(expect or {})}, source="test")
    config = ProbeConfig(endpoint=Endpoint(host="127.0.0.1", port=port, connect_timeout_seconds=1.0),
                         dialect=get_dialect(dialect), framing=DEFAULT_FRAMING[dialect],
                         profile=Profile(family=get_dialect(dialect).family, tid=TID), settings=TerminalSettings(),
                         timeout=0.5, card=seeded_card(seed=7, scheme="unionpay" if dialect == "cup" else "visa"),
                         expectations=expectations, only=only)
    records = await run_probe(config, Journal(":memory:"))
    return result_data(records, expectations, {"host": "127.0.0.1", "port": port})


def verdicts(data: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in data["checks"]}


def nothing_left(ledger: Ledger) -> None:
    """The probe left no standing approval in an open batch and no batch open on the host."""
    assert ledger.open_records(TID) == []
    assert ledger.open_batch_totals(TID).debit_count == 0


@pytest.mark.parametrize("dialect", ["intl-bcd", "cup"])
def test_a_host_requiring_macs_passes_every_check_and_keeps_nothing(dialect: str) -> None:
    ledger = Ledger(":memory:")

    async def go() -> dict[str, Any]:
        async with running_host(dialect, ledger) as server:
            server.host.settings = replace(server.host.settings, require_mac=True)
            return await probe(server.port or 0, dialect)

    data = run_bounded(go(), 40.0)
    assert verdicts(data) == dict.fromkeys(CHECK_NAMES, "pass"), [c["findings"] for c in data["checks"]]
    assert data["ok"] and data["left_behind"] == []
    nothing_left(ledger)
    by = {c["name"]: c for c in data["checks"]}
    assert by["settlement"]["settlement"]["first"] == "unbalanced" and by["settlement"]["settlement"]["closed"]
    assert by["duplicate"]["exchanges"][1]["rc"] == "94"
    assert [x["request"]["t"] for x in by["reversal"]["exchanges"][:3]] == ["0200", "0400", "0401"]
    assert {row["mti"] for row in by["latency"]["facts"]["per_mti"]} >= {"0200", "0400", "0500", "0800"}


def test_a_host_taking_unsigned_requests_fails_missing_mac_and_the_approval_is_reversed() -> None:
    ledger = Ledger(":memory:")

    async def go() -> dict[str, Any]:
        async with running_host("intl-ascii", ledger) as server:
            server.host.settings = replace(server.host.settings, require_mac=False)  # on by default
            return await probe(server.port or 0, "intl-ascii", only=("missing_mac", "bad_mac"))

    data = run_bounded(go(), 20.0)
    assert verdicts(data) == {"bad_mac": "pass", "missing_mac": "fail"}  # sign-on ran, but was not selected
    missing = next(c for c in data["checks"] if c["name"] == "missing_mac")
    assert "answered rc 00, expecting rc A0" in missing["findings"][0]
    assert any("reversed (rc 00)" in c for c in missing["cleanup"]) and not data["left_behind"]
    nothing_left(ledger)


@pytest.mark.parametrize(("host_rc", "expected", "verdict"), [
    ("25", None, "pass"), ("12", None, "pass"), ("00", None, "pass"),
    ("12", ["25"], "fail"), ("00", ["25", "12"], "fail"), ("25", ["25"], "pass")])
def test_the_unknown_reversal_verdict_follows_the_hosts_answer_and_the_expectation(
        host_rc: str, expected: list[str] | None, verdict: str) -> None:
    async def go() -> dict[str, Any]:
        async with running_host("intl-bcd") as server:
            server.host.settings = replace(server.host.settings, reversal_unknown_rc=host_rc)
            return await probe(server.port or 0, "intl-bcd", only=("unknown_reversal",),
                               expect={"unknown_reversal": {"rc": expected}} if expected else None)

    data = run_bounded(go(), 20.0)
    check = next(c for c in data["checks"] if c["name"] == "unknown_reversal")
    assert (check["status"], check["exchanges"][0]["rc"]) == (verdict, host_rc)
    assert data["ok"] is (verdict == "pass")


def test_a_host_that_posts_the_duplicate_is_caught_by_the_settlement_and_says_what_is_left() -> None:
    ledger = Ledger(":memory:")

    async def go() -> dict[str, Any]:
        async with running_host("intl-bcd", ledger) as server:
            # The host answers the second 0200 (the duplicate) 00 and books it: a second debit.
            fault(server, {"mti": "0200", "nth": 2}, {"type": "respond_rc", "rc": "00"})
            return await probe(server.port or 0, "intl-bcd", only=("duplicate",))

    data = run_bounded(go(), 20.0)
    duplicate = next(c for c in data["checks"] if c["name"] == "duplicate")
    assert duplicate["status"] == "fail"
    assert any("expecting rc 94 or the same answer" in f for f in duplicate["findings"])
    assert any("second debit" in f for f in duplicate["findings"])
    assert duplicate["settlement"]["first"] == "unbalanced" and duplicate["settlement"]["closed"]
    assert data["left_behind"] and "check the host's books" in data["left_behind"][0]


def test_the_command_prints_the_table_writes_the_reports_and_exits_1_on_a_failed_check(tmp_path: Path) -> None:
    expect = tmp_path / "expect.yaml"
    expect.write_text("late_reversal: {delay_seconds: 0.05}\nunknown_reversal: {rc: ['12']}\n")
    report, capture = tmp_path / "report", tmp_path / "probe.pcap"

    async def go(port: int) -> tuple[int, str]:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "emulator.cli", "--port", str(port), "--timeout", "0.5", "probe", "--only",
            "unknown_reversal,reversal", "--expect", str(expect), "--report", str(report), "--pcap", str(capture),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        out, err = await process.communicate()
        assert err.decode().splitlines() == ["probe: reversal: 4 exchange(s)", "probe: unknown_reversal: 1 exchange(s)"]
        assert process.returncode is not None
        return process.returncode, out.decode()

    async def main() -> tuple[int, str]:
        async with running_host("intl-bcd") as server:
            return await go(server.port or 0)

    code, out = run_bounded(main(), 30.0)
    assert code == 1, out
    assert "unknown_reversal  FAIL" in out and "reversal          PASS" in out and "nothing left on the host" in out
    data = json.loads((report / "probe.json").read_text())
    assert [c["name"] for c in data["checks"]] == ["reversal", "unknown_reversal"]
    page = (report / "index.html").read_text()
    assert page.count('<table class="ladder">') == 2 and "0401" in page
    assert seeded_card(seed=int(TID), scheme="visa").pan not in page + (report / "probe.json").read_text()
    assert 'failures="1"' in (report / "junit.xml").read_text()
    assert capture.stat().st_size > 24
    assert list(tmp_path.glob("*.sqlite")) == []  # no --journal: the probe's journal lived in memory


def test_a_stale_stan_run_alone_makes_its_own_earlier_sale_and_undoes_both() -> None:
    ledger = Ledger(":memory:")

    async def go() -> dict[str, Any]:
        async with running_host("cup", ledger) as server:
            return await probe(server.port or 0, "cup", only=("stale_stan",))

    data = run_bounded(go(), 20.0)
    [check] = data["checks"]
    assert check["status"] == "pass", check["findings"]
    assert [x["step"] for x in check["exchanges"]][:2] == ["earlier sale", "sale"]
    assert check["exchanges"][0]["request"]["11"] == check["exchanges"][1]["request"]["11"]
    # the stub refuses a second request with the same TID and STAN whatever its amount (94): only the
    # earlier sale is left to undo
    assert check["summary"] == "sale with STAN 000002 rc 94"
    assert len([c for c in check["cleanup"] if "reversed" in c]) == 1 and not data["left_behind"]
    nothing_left(ledger)


def test_no_host_at_the_address_makes_every_check_an_error_and_sends_nothing_else() -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on any more
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    data = run_bounded(probe(port, "intl-bcd", only=("signon", "duplicate")), 20.0)
    assert verdicts(data) == {"signon": "error", "duplicate": "error"} and not data["ok"]
    assert "no connection to the host" in data["checks"][1]["findings"][0]
