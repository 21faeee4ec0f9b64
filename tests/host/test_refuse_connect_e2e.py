"""``refuse_connect`` end to end: a host that is down refuses the TCP connect (the listening socket is
closed), keeps its established connections, and listens again on the same port when the fault is
deleted or its business-clock window ends.  Set through the control API, observed on real sockets
and with ``pos-terminal`` as a child process."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from host_stub.clock import BusinessClock
from tests.conftest import run_bounded
from tests.emulator.hosted import cli
from tests.host.conftest import HostUnderTest, running
from tests.host.helpers import make_terminal

REFUSE = {"type": "refuse_connect"}


async def refused(port: int) -> bool:
    """True when a connect to ``port`` is refused by the kernel; an accepted connection is closed again."""
    try:
        _, writer = await asyncio.open_connection("127.0.0.1", port)
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False


async def listener_events(h: HostUnderTest) -> list[tuple[str, list[str]]]:
    status, body = await h.api.get("/journal")
    assert status == 200, body
    return [(e["outcome"], e["faults"]) for e in body["journal"] if e["outcome"].startswith("listener_")]


async def sales(h: HostUnderTest) -> list[dict[str, Any]]:
    status, body = await h.api.get("/ledger/authorizations?kind=sale")
    assert status == 200, body
    return list(body["authorizations"])


def test_refuse_connect_refuses_the_terminal_which_owes_no_reversal_then_delete_reopens(tmp_path: Path) -> None:
    journal = tmp_path / "t.sqlite"

    async def run() -> None:
        async with running("intl-bcd") as h:
            port = h.port
            assert not await refused(port)
            with structlog.testing.capture_logs() as logs:
                fault_id = await h.api.fault({}, REFUSE)
            assert h.runtime.server.listening is False
            assert await refused(port)

            code, out, _ = await cli(port, journal, "sale", "10.00", expect=3)
            assert code == 3 and out is not None and out["outcome"] == "connect_failed"
            _, status, _ = await cli(port, journal, "status")
            assert status is not None and status["pending_reversals"] == []  # nothing was sent: nothing owed
            assert await sales(h) == []

            assert (await h.api.delete(f"/faults/{fault_id}"))[0] == 200
            assert h.runtime.port == port and h.runtime.server.listening is True
            assert not await refused(port)
            _, approved, _ = await cli(port, journal, "sale", "10.00")
            assert approved is not None and approved["outcome"] == "approved"
            assert [(r["amount_minor"], r["status"]) for r in await sales(h)] == [(1000, "approved")]
            assert await listener_events(h) == [("listener_closed", [fault_id]), ("listener_reopened", [])]
            assert [(e["event"], e["log_level"]) for e in logs if "listener" in e["event"]] == [
                ("listener closed: refusing connects (fault)", "info")]

    run_bounded(run(), 60.0)


def test_established_connections_and_in_flight_requests_survive_the_close() -> None:
    async def run() -> None:
        async with running("intl-ascii") as h:
            terminal = make_terminal("intl-ascii")
            client = await h.connect()
            try:
                answer = await client.exchange(terminal.sign_on())
                assert answer is not None and answer["39"] == "00"
                await h.api.fault({"kind": "sale"}, {"type": "delay_response", "seconds": 0.3})
                sale = terminal.financial("sale", 500)
                await client.send(sale)  # in flight (delayed) while the listener closes
                await h.api.fault({}, REFUSE)
                assert await refused(h.port)
                answer = await client.receive()
                assert answer is not None and (answer["11"], answer["39"]) == (sale["11"], "00")
                echo = await client.exchange(terminal.network("echo"))  # the connection still serves
                assert echo is not None and echo["39"] == "00"
                assert (await h.api.delete("/faults"))[1] == {"removed": 2}
                assert not await refused(h.port)
                echo = await client.exchange(terminal.network("echo"))  # and survives the reopen too
                assert echo is not None and echo["39"] == "00"
            finally:
                await client.close()

    run_bounded(run())


def test_window_fault_follows_the_business_clock_set_and_advanced() -> None:
    async def run() -> None:  # the clock stands at 09:30:15 (frozen) until the test moves it
        async with running("cup") as h:
            fault_id = await h.api.fault({"between": ["10:00", "11:00"]}, REFUSE)
            assert not await refused(h.port)  # before the window
            assert (await h.api.post("/clock", {"set": "2026-11-23T10:15:00"}))[0] == 200
            assert await refused(h.port)
            assert (await h.api.post("/clock", {"advance_seconds": 3600}))[0] == 200  # 11:15, past the end
            assert not await refused(h.port)
            client = await h.connect()  # the same port serves again
            try:
                terminal = make_terminal("cup")
                answer = await client.exchange(terminal.sign_on())
                assert answer is not None and answer["39"] == "00"
            finally:
                await client.close()
            assert await listener_events(h) == [("listener_closed", [fault_id]), ("listener_reopened", [])]

    run_bounded(run())


def test_window_boundaries_are_met_by_a_timer_on_a_running_clock() -> None:
    async def run() -> None:
        async with running("intl-ascii", clock=BusinessClock()) as h:  # real time: the window comes and goes
            server = h.runtime.server
            closed = asyncio.ensure_future(server.until_listening(False))  # waiting before the window is set
            start = h.runtime.clock.now() + timedelta(seconds=0.3)
            end = start + timedelta(seconds=0.3)
            await h.api.fault({"between": [start.isoformat(), end.isoformat()]}, REFUSE)
            await closed  # woken by the timer set for the window's start
            assert await refused(h.port)
            await server.until_listening(True)  # and by the one set for its end
            assert not await refused(h.port)
            assert [outcome for outcome, _ in await listener_events(h)] == ["listener_closed", "listener_reopened"]

    run_bounded(run())


def test_a_configured_fault_refuses_from_the_start_survives_reset_and_stop() -> None:
    async def run() -> None:
        config = {"faults": [{"id": "down", "action": REFUSE}]}
        async with running("intl-bcd", config=config) as h:
            assert h.port > 0 and await refused(h.port)  # the port is known (ready line) though refused
            assert (await h.api.post("/reset"))[0] == 200  # back to the configuration: still down
            assert await refused(h.port)
            assert (await h.api.delete("/faults/down"))[0] == 200
            assert not await refused(h.port)
            await h.api.fault({}, REFUSE)
            assert await refused(h.port)
            assert (await h.api.post("/reset"))[0] == 200
            assert await refused(h.port)  # the configured fault again
        # leaving `running` stopped the host while it refused connects

    run_bounded(run())


def test_refuse_connect_validation_and_schema_over_the_api() -> None:
    async def run() -> list[tuple[int, Any]]:
        async with running("intl-ascii") as h:
            answers = [await h.api.post("/faults", {"when": {"nth": 1}, "action": REFUSE}),
                       await h.api.post("/faults", {"when": {"mti": "0200"}, "action": REFUSE}),
                       await h.api.post("/faults", {"action": REFUSE, "times": 2}),
                       await h.api.post("/faults", {"when": {"probability": 0.5}, "action": REFUSE})]
            assert not await refused(h.port)  # nothing was added
            answers.append(await h.api.get("/openapi.json"))
            return answers

    *bad, (status, document) = run_bounded(run())
    assert [(s, a["key"]) for s, a in bad] == [(400, "nth"), (400, "mti"), (400, "times"), (400, "probability")]
    assert all("cannot apply to refuse_connect" in a["error"] for _, a in bad)
    schemas = document["components"]["schemas"]
    assert status == 200 and "refuse_connect" in schemas["Action"]["discriminator"]["mapping"]
    assert schemas["Action.refuse_connect"]["properties"] == {"type": {"type": "string", "enum": ["refuse_connect"]}}
