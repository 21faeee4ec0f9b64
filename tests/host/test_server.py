"""Robustness of the TCP shell: many terminals at once, malformed input, repeats on the wire, a failing
core, SIGTERM with a request in flight, and a restart that continues the same books."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from specs.codec import encode
from specs.framing import CupHeader, Frame, Tpdu, pack
from specs.logs import configure_logging
from specs.masking import mask_pan
from tests.conftest import run_bounded
from tests.host.conftest import HostUnderTest, running
from tests.host.helpers import TID, FakeTerminal, WireClient, make_terminal, totals


def test_many_terminals_at_once() -> None:
    terminals = [make_terminal("cup", tid=f"2{i:07d}") for i in range(40)]

    async def one_day(h: HostUnderTest, terminal: FakeTerminal) -> list[str]:
        client = await h.connect()
        try:
            answer = await client.exchange(terminal.sign_on())
            assert answer is not None
            terminal.take_keys(answer)
            codes = []
            for amount in (100, 200, 300):
                reply = await client.exchange(terminal.mac(terminal.financial("sale", amount)))
                assert reply is not None and terminal.mac_ok(reply)
                codes.append(reply["39"])
            settle = await client.exchange(terminal.mac(terminal.settlement(totals([100, 200, 300]))))
            assert settle is not None
            return codes + [settle["39"], settle["48"][30]]
        finally:
            await client.close()

    async def scenario() -> list[list[str]]:
        async with running("cup") as h:
            results = await asyncio.gather(*(one_day(h, t) for t in terminals))
            settlements = (await h.api.get("/ledger/settlements"))[1]["settlements"]
            assert len(settlements) == 40 and {s["result"] for s in settlements} == {"balanced"}
            assert len((await h.api.get("/ledger/payouts"))[1]["payouts"]) == 40
            return results

    assert run_bounded(scenario()) == [["00", "00", "00", "00", "1"]] * 40


async def _send_frame(client: WireClient, message: dict[str, str], *, header: bool = True) -> None:
    data = encode(message, client.dialect)
    await client.send_raw(pack(Frame(message=data, tpdu=Tpdu(destination="0112", source="0000") if client.framing.tpdu
                                     else None, header=CupHeader() if header and client.framing.cup_header else None),
                               client.framing))


@pytest.mark.parametrize("dialect_name", ["intl-ascii", "intl-bcd", "cup"])
def test_malformed_message_gets_30_when_it_can_be_answered(dialect_name: str) -> None:
    terminal = make_terminal(dialect_name)

    async def scenario() -> None:
        async with running(dialect_name) as h:
            client = await h.connect()
            try:
                sale = terminal.financial("sale", 100)
                del sale["22"]  # a mandatory field missing
                frame = client.frame_bytes({**sale, "22": "012"})
                await client.send_raw(_without_field_22(client, sale))
                answer = await client.receive()
                assert answer is not None and (answer["39"], answer["11"], answer["41"]) == ("30", sale["11"], TID)
                await client.send_raw(frame)  # the connection is still served
                assert (await client.receive())["39"] == "00"  # type: ignore[index]
            finally:
                await client.close()
            [row] = (await h.api.get("/ledger/authorizations?kind=malformed"))[1]["authorizations"]
            assert (row["rc"], row["status"], row["stan"]) == ("30", "declined", sale["11"])
            assert "Mandatory field 22 is missing" in row["reason"]
            [entry] = (await h.api.get("/journal?outcome=format_error"))[1]["journal"]
            assert terminal.card.pan not in json.dumps(entry) and entry["response"]["39"] == "30"

    run_bounded(scenario())


def _without_field_22(client: WireClient, sale: dict[str, str]) -> bytes:
    """A request the codec refuses (field 22 missing) but whose MTI, STAN and TID can be read."""
    import iso8583

    doc = {k: v for k, v in sale.items()}
    raw, _ = iso8583.encode(doc, dict(client.dialect.spec))
    tpdu = Tpdu(destination="0112", source="0000") if client.framing.tpdu else None
    header = CupHeader() if client.framing.cup_header else None
    return pack(Frame(message=bytes(raw), tpdu=tpdu, header=header), client.framing)


@pytest.mark.parametrize(("name", "data"), [
    ("garbage", b"\x00\x04ABCD"),
    ("unknown_mti", b"\x00\x22" + b"0900" + b"0020000000800000" + b"000001" + b"10000001"),
    ("length_too_big", b"\xff\xff" + b"0200"),
    ("a_response", None),
])
def test_undecodable_input_closes_only_that_connection(name: str, data: bytes | None) -> None:
    terminal = make_terminal("intl-ascii")

    async def scenario() -> None:
        async with running("intl-ascii") as h:
            bad, good = await h.connect(), await h.connect()
            try:
                if data is None:
                    await _send_frame(bad, {"t": "0210", "11": "000001", "39": "00", "41": TID, "3": "000000"})
                else:
                    await bad.send_raw(data)
                assert await bad.read_all() == b""  # closed, nothing written
                assert (await good.exchange(terminal.network("echo")))["39"] == "00"  # type: ignore[index]
            finally:
                await bad.close()
                await good.close()
            outcomes = [e["outcome"] for e in (await h.api.get("/journal"))[1]["journal"]]
            assert outcomes[0] in ("undecodable", "bad_frame", "not_a_request") and outcomes[-1] == "answered"

    run_bounded(scenario())


def test_bad_tpdu_closes_the_connection() -> None:
    async def scenario() -> None:
        async with running("intl-bcd") as h:
            client = await h.connect()
            try:
                await client.send_raw(b"\x00\x07" + b"\x61\x00\x00\x00\x00" + b"\x08\x00")
                assert await client.read_all() == b""
            finally:
                await client.close()
            [entry] = (await h.api.get("/journal"))[1]["journal"]
            assert entry["outcome"] == "bad_frame" and "TPDU id 0x61" in entry["error"]

    run_bounded(scenario())


def test_repeat_mtis_on_the_wire_with_macs() -> None:
    terminal = make_terminal("intl-bcd")

    async def scenario() -> None:
        async with running("intl-bcd") as h:
            client = await h.connect()
            try:
                terminal.take_keys(await client.exchange(terminal.sign_on()))  # type: ignore[arg-type]
                sale = terminal.mac(terminal.financial("sale", 100))
                assert (await client.exchange(sale))["39"] == "00"  # type: ignore[index]
                first = await client.exchange(terminal.mac(terminal.reversal(sale)))
                repeat = await client.exchange(terminal.mac(terminal.reversal(sale, mti="0401")))
                assert first is not None and repeat is not None
                assert [(a["t"], a["39"]) for a in (first, repeat)] == [("0410", "00"), ("0410", "00")]
                assert terminal.mac_ok(repeat)
                advice = terminal.financial("offline_sale", 50)
                assert (await client.exchange(terminal.mac({**advice, "t": "0221"})))["t"] == "0230"  # type: ignore[index]
            finally:
                await client.close()
            reversals = (await h.api.get("/ledger/authorizations?kind=reversal"))[1]["authorizations"]
            assert [(r["mti"], r["reason"]) for r in reversals] == [("0400", "reversed"), ("0401", "repeat")]

    run_bounded(scenario())


def test_a_failing_core_answers_96_and_keeps_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = make_terminal("cup")

    async def scenario() -> None:
        async with running("cup") as h:
            original = h.runtime.host.answer

            def broken(request: dict[str, str], **kwargs: Any) -> Any:
                if request["t"] == "0200":
                    raise RuntimeError("bug")
                return original(request, **kwargs)

            monkeypatch.setattr(h.runtime.host, "answer", broken)
            client = await h.connect()
            try:
                answer = await client.exchange(terminal.financial("sale", 100))
                assert answer is not None and (answer["t"], answer["39"], answer["60"]) == ("0210", "96", "22000001000")
                assert (await client.exchange(terminal.network("echo")))["39"] == "00"  # type: ignore[index]
            finally:
                await client.close()

    run_bounded(scenario())


def test_a_failing_core_logs_its_traceback_masked(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True, level="info")
    terminal = make_terminal("cup")
    key = "0123456789ABCDEFFEDCBA9876543210"

    async def scenario() -> None:
        async with running("cup") as h:
            def broken(request: dict[str, str], **kwargs: Any) -> Any:
                raise RuntimeError(f"no route for card {request['2']} under key {key}")

            monkeypatch.setattr(h.runtime.host, "answer", broken)
            client = await h.connect()
            try:
                answer = await client.exchange(terminal.financial("sale", 100))
                assert answer is not None and answer["39"] == "96"
            finally:
                await client.close()

    run_bounded(scenario())
    err = capsys.readouterr().err
    assert terminal.card.pan not in err and key not in err
    failed = [json.loads(line) for line in err.splitlines() if '"host core failed' in line]
    assert len(failed) == 1
    masked_pan = mask_pan(terminal.card.pan)
    assert failed[0]["exception"].endswith(f"RuntimeError: no route for card {masked_pan} under key *(32)")
    assert masked_pan in failed[0]["error"]


def test_hidden_fields_show_their_real_length_in_logs_and_journal(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=True, level="info")
    terminal = make_terminal("cup")
    track2 = terminal.card.pan + "=" + terminal.card.expiry + "1010000123"

    async def scenario() -> dict[str, Any]:
        async with running("cup") as h:
            client = await h.connect()
            try:
                terminal.take_keys(await client.exchange(terminal.sign_on()))  # type: ignore[arg-type]
                answer = await client.exchange(terminal.financial("sale", 100, pin="1234", **{"35": track2}))
                assert answer is not None
            finally:
                await client.close()
            status, body = await h.api.get("/journal?mti=0200")
            assert status == 200
            return dict(body["journal"][-1]["request"])

    journaled = run_bounded(scenario())
    expected = {"35": f"*({len(track2)})", "52": "*(16)", "2": mask_pan(terminal.card.pan)}
    assert {k: journaled[k] for k in expected} == expected
    err = capsys.readouterr().err
    logged = [json.loads(line)["message"] for line in err.splitlines() if '"event": "request"' in line]
    assert {k: logged[-1][k] for k in expected} == expected
    assert track2 not in err and "*(5)" not in err


def test_restart_with_the_same_ledger_file_continues_the_books(tmp_path: Path) -> None:
    path = str(tmp_path / "host.sqlite")
    terminal = make_terminal("intl-bcd")

    async def first_run() -> list[str]:
        async with running("intl-bcd", ledger_path=path, config={"registry": {"cards": [
                {"pan": terminal.card.pan, "balance_minor": 1000}]}}) as h:
            client = await h.connect()
            try:
                terminal.take_keys(await client.exchange(terminal.sign_on()))  # type: ignore[arg-type]
                rrns = []
                for amount in (100, 200):
                    answer = await client.exchange(terminal.mac(terminal.financial("sale", amount)))
                    rrns.append(answer["37"])  # type: ignore[index]
                return rrns
            finally:
                await client.close()

    async def second_run() -> tuple[dict[str, str], list[dict[str, Any]], dict[str, Any]]:
        async with running("intl-bcd", ledger_path=path, config={"registry": {"cards": [
                {"pan": terminal.card.pan, "balance_minor": 1000}]}}) as h:
            client = await h.connect()
            try:
                sale = await client.exchange(terminal.mac(terminal.financial("sale", 300)))  # old keys still valid
                assert sale is not None and terminal.mac_ok(sale)
                settle = await client.exchange(terminal.mac(terminal.settlement(totals([100, 200, 300]))))
                assert settle is not None
            finally:
                await client.close()
            card = (await h.api.get(f"/registry/cards/{terminal.card.pan}"))[1]
            return sale, (await h.api.get("/ledger/settlements"))[1]["settlements"], {**card, "settle_rc": settle["39"]}

    rrns = run_bounded(first_run())
    sale, settlements, card = run_bounded(second_run())
    assert int(sale["37"][-7:]) == int(rrns[-1][-7:]) + 1  # the RRN sequence continues
    assert card["settle_rc"] == "00" and settlements[0]["host_totals"]["debit_count"] == 3
    assert card["balance_minor"] == 400  # the config did not reset the balance the books had


# ------------------------------------------------------------------ the command line


def _start(*args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen([sys.executable, "-m", "host_stub.cli", "serve", "--port", "0", *args],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    assert ready["event"] == "ready"
    return process, ready


def _stop(process: subprocess.Popen[str]) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(10)
    finally:
        if process.stdout:
            process.stdout.close()


def test_ready_line_names_the_control_port_only_when_served() -> None:
    process, ready = _start("--dialect", "cup")
    assert _stop(process) == 0 and "control_port" not in ready
    process, ready = _start("--dialect", "cup", "--control-port", "0")

    async def openapi_status() -> int:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{ready['control_port']}/openapi.json") as response:
            return response.status

    try:
        assert isinstance(ready["control_port"], int) and ready["control_port"] != ready["port"]
        assert run_bounded(openapi_status()) == 200
    finally:
        assert _stop(process) == 0


def test_bad_config_file_is_a_usage_error_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "host.yaml"
    config.write_text("faults:\n  - when: {mti: '0200'}\n    action: {type: delay_response, secnds: 1}\n")
    done = subprocess.run([sys.executable, "-m", "host_stub.cli", "serve", "--port", "0", "--config", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "Unknown key 'secnds', expecting one of seconds, type: faults[0].action(delay_response).secnds" in done.stderr
    config.write_text("- just a list\n")
    done = subprocess.run([sys.executable, "-m", "host_stub.cli", "serve", "--port", "0", "--config", str(config)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "expecting a mapping of clock, faults, registry, settings" in done.stderr


def test_a_bad_ledger_path_is_a_usage_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-folder" / "host.sqlite"
    done = subprocess.run([sys.executable, "-m", "host_stub.cli", "serve", "--port", "0", "--ledger", str(missing)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stdout == ""  # no ready line
    assert (f"--ledger {missing}: cannot open: unable to open database file (folder {missing.parent} does not exist)"
            in done.stderr)
    text = tmp_path / "host.sqlite"
    text.write_text("not a ledger, some notes\n" * 10)
    done = subprocess.run([sys.executable, "-m", "host_stub.cli", "serve", "--port", "0", "--ledger", str(text)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "Traceback" not in done.stderr and done.stdout == ""
    assert f"--ledger {text} is not a pos-host ledger (file is not a database)" in done.stderr


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    config = tmp_path / "host.yaml"
    config.write_text("faults:\n"
                      "  - when: {kind: sale}\n    action: {type: interim_09, count: 1}\n"
                      "  - when: {kind: sale}\n    action: {type: delay_response, seconds: 0.5}\n")
    ledger = tmp_path / "host.sqlite"
    process, ready = _start("--dialect", "intl-ascii", "--config", str(config), "--ledger", str(ledger))
    terminal = make_terminal("intl-ascii")

    async def scenario() -> tuple[str, str]:
        client = await WireClient.connect(ready["port"], "intl-ascii")
        try:
            await client.send(terminal.financial("sale", 100))
            interim = await client.receive()  # the host has posted the sale and is in its delay
            assert interim is not None
            process.send_signal(signal.SIGTERM)
            final = await client.receive()
            assert final is not None
            return interim["39"], final["39"]
        finally:
            await client.close()

    try:
        assert run_bounded(scenario()) == ("09", "00")
    finally:
        assert process.wait(10) == 0
        if process.stdout:
            process.stdout.close()
    from host_stub.ledger import Ledger

    books = Ledger(str(ledger))
    try:
        assert [r["status"] for r in books.authorizations(kind="sale")] == ["approved"]
    finally:
        books.close()

