"""Every fault primitive end to end: set through the control API, observed on a real TCP connection,
and checked against the ledgers the control API serves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from specs.codec import CodecError, decode, decode_unvalidated
from specs.framing import FrameReader, FramingError
from tests.conftest import run_bounded
from tests.host.conftest import HostUnderTest, running
from tests.host.helpers import MID, TID, FakeTerminal, WireClient, make_terminal, totals

Body = Callable[[HostUnderTest, WireClient, FakeTerminal], Awaitable[Any]]


def scenario(dialect_name: str, body: Body, *, sign_on: bool = True, config: dict[str, Any] | None = None) -> Any:
    """Host + control API + one connected terminal (signed on, holding keys); runs ``body``."""
    terminal = make_terminal(dialect_name)

    async def run() -> Any:
        async with running(dialect_name, config=config) as h:
            client = await h.connect()
            try:
                if sign_on:
                    answer = await client.exchange(terminal.sign_on())
                    assert answer is not None and answer["39"] == "00"
                    terminal.take_keys(answer)
                return await body(h, client, terminal)
            finally:
                await client.close()

    return run_bounded(run())


async def ledger(h: HostUnderTest, table: str = "authorizations", query: str = "") -> list[dict[str, Any]]:
    status, body = await h.api.get(f"/ledger/{table}{query}")
    assert status == 200, body
    return list(body[table])


async def echo_answers(client: WireClient, terminal: FakeTerminal) -> None:
    """The next answer on this connection is the echo's: proves nothing else was written before it."""
    echo = terminal.network("echo")
    answer = await client.exchange(echo)
    assert answer is not None and (answer["11"], answer["39"]) == (echo["11"], "00")


def test_drop_response_posts_and_never_answers() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"mti": "0200"}, {"type": "drop_response"})
        sale = terminal.financial("sale", 1000)
        await client.send(sale)
        await echo_answers(client, terminal)
        [row] = await ledger(h, query="?kind=sale")
        assert (row["stan"], row["status"], row["faults"]) == (sale["11"], "approved", "f1")
        [entry] = (await h.api.get("/journal?mti=0200"))[1]["journal"]
        assert (entry["outcome"], entry["faults"]) == ("dropped", ["f1"])

    scenario("intl-bcd", body)


@pytest.mark.parametrize("dialect_name", ["intl-ascii", "cup"])
def test_close_before_processing_posts_nothing(dialect_name: str) -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "close_before_processing"})
        assert await client.exchange(terminal.financial("sale", 1000)) is None  # closed
        assert await ledger(h, query="?kind=sale") == []

    scenario(dialect_name, body)


def test_close_after_processing_posts_then_closes() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "close_after_processing"})
        assert await client.exchange(terminal.financial("sale", 1000)) is None
        assert [r["status"] for r in await ledger(h, query="?kind=sale")] == ["approved"]

    scenario("intl-ascii", body)


def test_delay_response_delays_only_its_own_connection() -> None:
    async def body(h: HostUnderTest, slow: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "delay_response", "seconds": 0.4})
        loop = asyncio.get_running_loop()
        started = loop.time()
        delayed = asyncio.ensure_future(slow.exchange(terminal.financial("sale", 1000)))
        other = await h.connect()
        try:
            second = make_terminal("intl-ascii", tid="10000002")
            for _ in range(3):
                answer = await other.exchange(second.network("echo"))
                assert answer is not None and answer["39"] == "00"
            assert not delayed.done()  # three answers on the other connection while the sale waits
        finally:
            await other.close()
        answer = await delayed
        assert answer is not None and answer["39"] == "00"
        assert loop.time() - started >= 0.4

    scenario("intl-ascii", body)


def test_interim_09_answers_come_first() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "interim_09", "count": 2, "interval_seconds": 0.01})
        sale = terminal.mac(terminal.financial("sale", 1000))
        await client.send(sale)
        answers = [await client.receive() for _ in range(3)]
        assert [a["39"] for a in answers] == ["09", "09", "00"]  # type: ignore[index]
        assert "37" not in answers[0] and "64" not in answers[0]  # type: ignore[operator]
        assert terminal.mac_ok(answers[2])  # type: ignore[arg-type]

    scenario("cup", body)


def test_partial_write_leaves_a_truncated_frame() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "partial_write", "bytes": 7})
        await client.send(terminal.financial("sale", 1000))
        received = await client.read_all()
        assert len(received) == 7
        reader = FrameReader(client.framing)
        assert reader.feed(received) == []
        with pytest.raises(FramingError, match="truncated"):
            reader.close()
        assert [r["status"] for r in await ledger(h, query="?kind=sale")] == ["approved"]

    scenario("intl-bcd", body)


def test_garbled_frame_does_not_decode() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "garbled_frame"})
        await client.send(terminal.financial("sale", 1000))
        frame = await client.receive_frame()
        assert frame is not None and frame.tpdu is not None and frame.header is not None
        with pytest.raises(CodecError):
            decode(frame.message, client.dialect)
        await echo_answers(client, terminal)  # the connection stays usable

    scenario("cup", body)


def test_bad_length_prefix_breaks_the_terminal_reader() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "bad_length_prefix"})
        await client.send(terminal.financial("sale", 1000))
        with pytest.raises(FramingError, match="exceeds the maximum"):
            await client.receive_frame()

    scenario("intl-ascii", body)


def test_duplicate_response_arrives_twice() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "duplicate_response"})
        sale = terminal.financial("sale", 1000)
        first, second = await client.exchange(sale), await client.receive()
        assert first == second and first is not None and first["11"] == sale["11"]
        assert len(await ledger(h, query="?kind=sale")) == 1

    scenario("intl-bcd", body)


@pytest.mark.parametrize("dialect_name", ["intl-ascii", "cup"])
def test_respond_rc_by_bin_and_amount(dialect_name: str) -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"bin": terminal.card.pan[:6], "amount_min": 5000}, {"type": "respond_rc", "rc": "59"})
        assert (await client.exchange(terminal.financial("sale", 4999)))["39"] == "00"  # type: ignore[index]
        declined = await client.exchange(terminal.financial("sale", 5000))
        assert declined is not None and declined["39"] == "59" and "37" not in declined
        assert [r["status"] for r in await ledger(h, query="?kind=sale")] == ["approved", "declined"]

    scenario(dialect_name, body)


def test_omit_fields_and_stan_offset() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale", "nth": 1}, {"type": "omit_fields", "fields": ["41"]})
        await h.api.fault({"kind": "sale", "nth": 2}, {"type": "stan_offset", "offset": 1})
        await client.send(terminal.financial("sale", 100))
        frame = await client.receive_frame()
        assert frame is not None
        with pytest.raises(CodecError, match="Mandatory field 41 is missing"):
            decode(frame.message, client.dialect)
        assert "41" not in decode_unvalidated(frame.message, client.dialect)
        sale = terminal.financial("sale", 100)
        answer = await client.exchange(sale)
        assert answer is not None and answer["11"] == f"{int(sale['11']) + 1:06d}"

    scenario("intl-bcd", body)


def test_corrupt_mac() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "corrupt_mac"})
        answer = await client.exchange(terminal.mac(terminal.financial("sale", 100)))
        assert answer is not None and answer["39"] == "00" and not terminal.mac_ok(answer)

    scenario("cup", body)


def test_rotate_keys_then_a0_until_sign_on() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "rotate_keys"}, times=1)
        assert (await client.exchange(terminal.mac(terminal.financial("sale", 100))))["39"] == "A0"  # type: ignore[index]
        assert (await client.exchange(terminal.mac(terminal.financial("sale", 100))))["39"] == "A0"  # type: ignore[index]
        terminal.take_keys(await client.exchange(terminal.sign_on()))  # type: ignore[arg-type]
        assert (await client.exchange(terminal.mac(terminal.financial("sale", 100))))["39"] == "00"  # type: ignore[index]

    scenario("intl-ascii", body)


def test_header_processing_requirement() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "sale"}, {"type": "header_processing_requirement", "value": "3"})
        await client.send(terminal.financial("sale", 100))
        frame = await client.receive_frame()
        assert frame is not None and frame.header is not None
        assert (frame.header.processing_requirement, frame.header.app_type) == ("3", "60")
        assert frame.tpdu is not None and (frame.tpdu.destination, frame.tpdu.source) == ("0000", "0112")

    scenario("cup", body)


@pytest.mark.parametrize("dialect_name", ["intl-ascii", "cup"])
def test_totals_delta_forces_an_upload(dialect_name: str) -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "settlement"}, {"type": "totals_delta", "debit_count": 1, "debit_minor": 1})
        assert (await client.exchange(terminal.financial("sale", 100)))["39"] == "00"  # type: ignore[index]
        answer = await client.exchange(terminal.settlement(totals([100])))
        assert answer is not None
        if dialect_name == "cup":
            assert answer["39"] == "00" and answer["48"][30] == "2"
        else:
            assert answer["39"] == "95"
        [settlement] = await ledger(h, "settlements")
        assert (settlement["result"], settlement["host_totals"]["debit_minor"]) == ("unbalanced", 101)

    scenario(dialect_name, body)


def test_drop_advice_posting_then_repeat_posts() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"mti": "0220"}, {"type": "drop_advice_posting"})
        advice = terminal.financial("offline_sale", 300)
        assert (await client.exchange(advice))["39"] == "00"  # type: ignore[index]
        assert (await client.exchange({**advice, "t": "0221"}))["39"] == "00"  # type: ignore[index]
        assert [r["status"] for r in await ledger(h, query="?kind=offline_sale")] == ["dropped", "approved"]

    scenario("cup", body)


@pytest.mark.parametrize("dialect_name", ["intl-bcd", "cup"])
def test_upload_interrupt_then_resume_uploads_each_record_once(dialect_name: str) -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({}, {"type": "upload_interrupt", "after": 1})
        done = []
        for amount in (100, 200):
            sale = terminal.financial("sale", amount)
            answer = await client.exchange(sale)
            assert answer is not None
            done.append((sale, answer))
        assert (await client.exchange(terminal.settlement(totals([100, 250]))))["39"] in ("95", "00")  # type: ignore[index]
        cup = dialect_name == "cup"
        uploads = ([terminal.cup_upload([(s, int(s["4"]))]) for s, _ in done] if cup
                   else [terminal.intl_upload(s, a) for s, a in done])
        assert (await client.exchange(uploads[0]))["39"] == "00"  # type: ignore[index]
        assert await client.exchange(uploads[1]) is None  # interrupted at the second record
        resumed = await h.connect()
        try:
            for upload in uploads:  # a terminal without per-record flags resends everything
                assert (await resumed.exchange({**upload, "11": terminal.next_stan()}))["39"] == "00"  # type: ignore[index]
            end = (terminal.cup_upload_end(2) if cup
                   else terminal.settlement(totals([100, 200]), processing_code="960000"))
            assert (await resumed.exchange(end))["39"] == "00"  # type: ignore[index]
        finally:
            await resumed.close()
        [settlement] = await ledger(h, "settlements")
        assert settlement["status"] == "closed" and settlement["result"] == "uploaded"
        assert sorted((u["original_stan"], u["repeats"]) for u in settlement["uploads"]) == [
            (done[0][0]["11"], 1), (done[1][0]["11"], 0)]
        [fault] = (await h.api.get("/faults"))[1]["faults"]
        assert fault["fired"] == 1

    scenario(dialect_name, body)


def test_maintenance_window_refuses_connections_inside_the_window() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"between": ["09:00", "10:00"]}, {"type": "maintenance_window", "mode": "refuse"})
        refused = await h.connect()
        try:
            assert await refused.read_all() == b""  # closed without a byte
        finally:
            await refused.close()
        assert await client.exchange(terminal.financial("sale", 100)) is None  # open connections too
        await h.api.post("/clock", {"set": "2026-11-23T10:00:00"})
        after = await h.connect()
        try:
            assert (await after.exchange(terminal.financial("sale", 100)))["39"] == "00"  # type: ignore[index]
        finally:
            await after.close()
        assert [e["outcome"] for e in (await h.api.get("/journal"))[1]["journal"]][-3:] == [
            "refused", "closed_before_processing", "answered"]

    scenario("intl-ascii", body)


def test_maintenance_window_answering_96_posts_nothing() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": ["sale", "settlement"]}, {"type": "maintenance_window", "rc": "96"})
        assert (await client.exchange(terminal.financial("sale", 100)))["39"] == "96"  # type: ignore[index]
        assert (await client.exchange(terminal.settlement(totals())))["39"] == "96"  # type: ignore[index]
        assert [r["status"] for r in await ledger(h, query="?kind=sale")] == ["declined"]
        assert await ledger(h, "settlements") == []

    scenario("cup", body)


@pytest.mark.parametrize("rc", ["00", "12", "25"])
def test_reversal_rc_for_unknown_original(rc: str) -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "reversal"}, {"type": "reversal_rc_for_unknown_original", "rc": rc})
        never_arrived = terminal.financial("sale", 100)
        answer = await client.exchange(terminal.mac(terminal.reversal(never_arrived)))
        assert answer is not None and (answer["t"], answer["39"]) == ("0410", rc)
        assert terminal.mac_ok(answer)
        late = await client.exchange(never_arrived)
        assert late is not None and late["39"] == "94"

    scenario("intl-bcd", body)


@pytest.mark.parametrize(("action", "status", "field", "value"), [
    ({"type": "payout_delay", "days": 2}, "pending", "value_date", "2026-11-26"),
    ({"type": "payout_hold", "reason": "risk"}, "held", "hold_reason", "risk"),
    ({"type": "payout_failure", "reason": "account closed"}, "failed", "failure_reason", "account closed"),
])
def test_payout_faults(action: dict[str, Any], status: str, field: str, value: str) -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        await h.api.fault({"kind": "settlement", "mid": MID}, action)
        assert (await client.exchange(terminal.financial("sale", 100)))["39"] == "00"  # type: ignore[index]
        assert (await client.exchange(terminal.settlement(totals([100]))))["39"] == "00"  # type: ignore[index]
        [payout] = await ledger(h, "payouts", f"?tid={TID}")
        assert (payout["status"], payout[field]) == (status, value)

    scenario("intl-ascii", body)


def test_faults_from_the_config_file_apply_from_the_start() -> None:
    config = {"faults": [{"when": {"mti": "0800", "fields": {"70": "001"}}, "action": {"type": "respond_rc", "rc": "91"},
                          "times": 1}]}

    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        assert (await client.exchange(terminal.sign_on()))["39"] == "91"  # type: ignore[index]
        assert (await client.exchange(terminal.sign_on()))["39"] == "00"  # type: ignore[index]

    scenario("intl-ascii", body, sign_on=False, config=config)
