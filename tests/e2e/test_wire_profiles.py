"""Profiles and packager files end to end: terminal and stub host given the same file agree over
TCP; given different layouts the terminal says what to check; CUP batch upload in both forms."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from emulator.terminal import OfflineSale, Outcome, Refund, Sale, Settle, SignOn
from host_stub.cli import main as host_main
from host_stub.ledger import Ledger
from specs.cards import seeded_card
from specs.cliopts import resolve_wire
from specs.profile import shipped_profiles
from tests.conftest import run_bounded, running_host
from tests.emulator.hosted import NOW, Pos, assert_books_agree, fault

DATA = Path(__file__).parent.parent / "data"
EDC = str(DATA / "edc-ascii-mti.xml")


def card(family: str) -> Any:
    return seeded_card(seed=7, scheme="unionpay" if family == "cup" else "visa")


def sent(pos: Pos, mti: str) -> list[dict[str, str]]:
    return [e["message"] for e in pos.journal.trace() if e["kind"] == "sent" and e["message"]["t"] == mti]


def wired(profile: str | None, packager: str | None = None, dialect: str = "intl-bcd") -> Any:
    """Run ``body(pos, ledger)`` with terminal and in-process host on the same profile/packager."""
    wire, framing = resolve_wire(dialect, profile, packager, None, None, None)

    def run(body: Any) -> Any:
        ledger = Ledger(":memory:")

        async def go() -> Any:
            async with running_host(wire.profile.base, ledger, dialect=wire, framing=framing) as server:
                assert server.port
                pos = Pos(wire.profile.base, server.port, wire=wire, framing=framing)
                return await body(pos, server, ledger)

        return run_bounded(go())
    return run


@pytest.mark.parametrize("name", shipped_profiles())
def test_a_shipped_profile_signs_on_sells_refunds_and_settles(name: str) -> None:
    async def body(pos: Pos, server: Any, ledger: Ledger) -> None:
        family = pos.wire.family if pos.wire else "intl"
        assert (await pos(SignOn(now=NOW))).outcome is Outcome.APPROVED
        assert (await pos(Sale(now=NOW, amount_minor=1234, card=card(family)))).outcome is Outcome.APPROVED
        assert (await pos(Refund(now=NOW, amount_minor=200))).outcome is Outcome.APPROVED
        assert_books_agree(pos.books, ledger)
        settle = await pos(Settle(now=NOW))
        assert settle.outcome is Outcome.BALANCED, settle.text
        assert ledger.settlements()[-1]["batch"] == "000001" and ledger.settlements()[-1]["status"] == "closed"
        return None
    wired(name)(body)


def test_intl_sign_on_by_processing_code_end_to_end() -> None:
    async def body(pos: Pos, server: Any, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        await pos(Sale(now=NOW, amount_minor=1000, card=card("intl")))
        await pos(Settle(now=NOW))
        sign_on, = sent(pos, "0800")
        assert sign_on["3"] == "920000" and "70" not in sign_on
        settlement, = sent(pos, "0500")
        assert settlement["62"] == "000001" and "60" not in settlement and len(settlement["63"]) == 30
    wired("intl-pcode-signon")(body)


@pytest.mark.parametrize(("profile", "macs"), [(None, False), ("cup-mac-all", True)])
def test_cup_settlement_and_upload_carry_a_mac_only_when_the_profile_says(profile: str | None, macs: bool) -> None:
    async def body(pos: Pos, server: Any, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        await pos(Sale(now=NOW, amount_minor=1000, card=card("cup")))
        fault(server, {"kind": "settlement", "nth": 1}, {"type": "totals_delta", "debit_count": 1})
        settle = await pos(Settle(now=NOW))
        assert settle.outcome is Outcome.UNBALANCED and settle.details["batch_closed"] is True, settle.text
        assert all(("64" in m) is macs for m in sent(pos, "0500") + sent(pos, "0320"))
        assert all("64" in m for m in sent(pos, "0200"))
    wired(profile, dialect="cup")(body)


def test_cup_upload_lists_online_sales_and_sends_refunds_and_offline_records_in_full() -> None:
    async def body(pos: Pos, server: Any, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        for amount in (1000, 2050):
            await pos(Sale(now=NOW, amount_minor=amount, card=card("cup")))
        await pos(Refund(now=NOW, amount_minor=300))
        await pos(OfflineSale(now=NOW, amount_minor=700, card=card("cup")))
        fault(server, {"kind": "settlement", "nth": 1}, {"type": "totals_delta", "debit_count": 1})
        settle = await pos(Settle(now=NOW))
        assert settle.outcome is Outcome.UNBALANCED and settle.details["uploaded"] == 4, settle.text
        uploads = sent(pos, "0320")
        listed, refund, offline, end = uploads
        assert listed["48"][:2] == "02" and listed["60"][8:11] == "201" and "4" not in listed
        assert (refund["60"][:2], refund["4"], "48" in refund) == ("25", "000000000300", False)
        assert (offline["60"][:2], offline["4"], offline["61"][:6]) == ("30", "000000000700", "000001")
        assert end["60"][8:11] == "202" and end["48"] == "0004"
        rows = ledger.uploads()
        assert sorted(r["kind"] for r in rows) == ["offline_sale", "refund", "sale", "sale"]
        assert len({r["original_stan"] for r in rows}) == 4 and all(r["match"] == "matched" for r in rows)
        closed = ledger.settlements()[-1]
        assert closed["status"] == "closed" and closed["uploaded_totals"] == closed["terminal_totals"]  # G4
    wired(None, dialect="cup")(body)


def test_a_packager_file_drives_sign_on_sale_and_settlement_over_tcp() -> None:
    async def body(pos: Pos, server: Any, ledger: Ledger) -> None:
        assert pos.wire is not None and pos.wire.bcd is False  # ASCII MTI on this wire
        assert (await pos(SignOn(now=NOW))).outcome is Outcome.APPROVED
        assert (await pos(Sale(now=NOW, amount_minor=1234, card=card("intl")))).outcome is Outcome.APPROVED
        settle = await pos(Settle(now=NOW))
        assert settle.outcome is Outcome.BALANCED, settle.text
        assert ledger.settlements()[-1]["status"] == "closed"
    wired(None, EDC)(body)


def test_a_packager_mismatch_is_reported_with_what_to_check() -> None:
    wire, framing = resolve_wire("intl-bcd", None, EDC, None, None, None)

    async def go() -> None:
        async with running_host("intl-bcd") as server:  # the host speaks plain intl-bcd
            assert server.port
            pos = Pos("intl-bcd", server.port, wire=wire, framing=framing)
            result = await pos(SignOn(now=NOW))
            assert result.outcome is Outcome.NO_ANSWER
            assert ("the host closed the connection without answering: check --dialect / --tpdu / --length-prefix "
                    f"(this terminal sends intl-bcd (profile intl-bcd, packager {EDC}) with 2-byte binary length, "
                    "TPDU, no CUP header)") in result.text
    run_bounded(go())


def test_both_command_lines_take_the_same_packager_file(tmp_path: Path) -> None:
    wire, framing = resolve_wire("intl-bcd", None, EDC, None, None, None)

    async def go() -> None:
        async with running_host("intl-bcd", dialect=wire, framing=framing) as server:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "emulator.cli", "--port", str(server.port), "--packager", EDC,
                "--journal", str(tmp_path / "t.sqlite"), "--timeout", "0.5", "--json", "signon",
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
            out, err = await process.communicate()
            assert process.returncode == 0, err.decode()[-2000:]
            assert json.loads(out.decode().splitlines()[-1])["outcome"] == "approved"
    run_bounded(go())


def test_pos_host_refuses_a_bad_profile_with_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "acme.yaml"
    path.write_text("dialect: cup\nfields:\n  \"22\": {align: middle}\n", encoding="utf-8")
    result = CliRunner().invoke(host_main, ["serve", "--profile", str(path), "--port", "0"])
    assert result.exit_code == 2
    assert "acme.yaml line 3: key 'fields.22.align': expected one of left, right, found middle" in result.output
