"""Registry, settings and business clock driven through the control API, observed over TCP:
daily limits that reset at the cutover (C18), the cutover window (C26), strict batch and daily
sign-on (C09), card and merchant status (C15-C17), and the payout chain on the value date (C25)."""

from __future__ import annotations

from typing import Any

from tests.conftest import run_bounded
from tests.host.conftest import HostUnderTest, running
from tests.host.helpers import MID, TID, FakeTerminal, WireClient, make_terminal, totals


def scenario(dialect_name: str, body: Any) -> Any:
    terminal = make_terminal(dialect_name)

    async def run() -> Any:
        async with running(dialect_name) as h:
            client = await h.connect()
            try:
                answer = await client.exchange(terminal.sign_on())
                assert answer is not None and answer["39"] == "00"
                terminal.take_keys(answer)
                return await body(h, client, terminal)
            finally:
                await client.close()

    return run_bounded(run())


async def rc(client: WireClient, terminal: FakeTerminal, message: dict[str, str]) -> str:
    answer = await client.exchange(terminal.mac(message))
    assert answer is not None
    return answer["39"]


def test_daily_limit_then_cutover_then_approvals_resume() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        api = h.api
        await api.put("/settings", {"cutover": "23:00", "cutover_window_seconds": 300})
        await api.put(f"/registry/merchants/{MID}", {"limits": {"daily_count": 2}})
        assert [await rc(client, terminal, terminal.financial("sale", 100)) for _ in range(3)] == ["00", "00", "65"]
        await api.post("/clock", {"set": "2026-11-23T23:01:00"})
        assert await rc(client, terminal, terminal.financial("sale", 100)) == "90"  # inside the cutover window
        await api.post("/clock", {"advance_seconds": 300})
        answer = await client.exchange(terminal.mac(terminal.financial("sale", 100)))
        assert answer is not None and (answer["39"], answer["15"]) == ("00", "1124")
        reasons = [r["reason"] for r in (await api.get("/ledger/authorizations?kind=sale"))[1]["authorizations"]]
        assert reasons == [None, None, "daily_count_mid", "cutover", None]

    scenario("cup", body)


def test_strict_batch_and_daily_sign_on() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        api = h.api
        await api.put("/settings", {"strict_batch": True, "require_daily_signon": True})
        await api.put(f"/registry/terminals/{TID}", {"batch": 42})  # force_batch
        assert await rc(client, terminal, terminal.financial("sale", 100)) == "77"
        terminal.take_keys(await client.exchange(terminal.sign_on()))  # type: ignore[arg-type]
        assert terminal.batch == 42
        assert await rc(client, terminal, terminal.financial("sale", 100)) == "00"
        await api.post("/clock", {"advance_seconds": 86400})
        assert await rc(client, terminal, terminal.financial("sale", 100)) == "22"

    scenario("cup", body)


def test_card_and_merchant_status_from_the_registry() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        api = h.api
        pan = terminal.card.pan
        await api.put(f"/registry/cards/{pan}", {"balance_minor": 150, "pin": "2468"})
        assert await rc(client, terminal, terminal.financial("sale", 100, pin="2468")) == "00"
        assert await rc(client, terminal, terminal.financial("sale", 100, pin="2468")) == "51"
        assert (await api.get(f"/registry/cards/{pan}"))[1]["balance_minor"] == 50
        assert await rc(client, terminal, terminal.financial("sale", 10, pin="1111")) == "55"
        await api.put(f"/registry/cards/{pan}", {"expiry": "2601"})
        assert await rc(client, terminal, terminal.financial("sale", 10, expiry="2601", pin="2468")) == "54"
        await api.put(f"/registry/merchants/{MID}", {"status": "disabled"})
        assert await rc(client, terminal, terminal.financial("sale", 10)) == "03"
        await api.put(f"/registry/terminals/{TID}", {"status": "disabled"})
        assert await rc(client, terminal, terminal.financial("sale", 10)) == "97"
        echo = await client.exchange(terminal.network("echo"))  # INTL 08xx carries 70: never MACed in 64
        assert echo is not None and echo["39"] == "97"  # a disabled terminal is refused everything but settling
        assert await rc(client, terminal, terminal.settlement(totals([100]))) == "00"

    scenario("intl-bcd", body)


def test_settled_batch_is_paid_on_its_value_date() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        api = h.api
        await api.put("/settings", {"fee_schedule": [{"effective_from": "2026-01-01", "rate_bps": 50}],
                                    "holidays": ["2026-11-24"]})
        for amount in (10_000, 20_000):
            assert await rc(client, terminal, terminal.financial("sale", amount)) == "00"
        assert await rc(client, terminal, terminal.settlement(totals([10_000, 20_000]))) == "00"
        [payout] = (await api.get(f"/ledger/payouts?tid={TID}&batch=000001"))[1]["payouts"]
        assert (payout["net_minor"], payout["fee_minor"], payout["value_date"], payout["status"]) == (
            29_850, 150, "2026-11-25", "pending")
        await api.post("/clock", {"set": "2026-11-25T08:00:00"})
        [paid] = (await api.get("/ledger/payouts?status=paid"))[1]["payouts"]
        assert paid["id"] == payout["id"]

    scenario("intl-ascii", body)


def test_fault_listing_never_shows_a_pan() -> None:
    async def body(h: HostUnderTest, client: WireClient, terminal: FakeTerminal) -> None:
        pan = terminal.card.pan
        status, added = await h.api.post("/faults", {"when": {"pan": pan}, "action": {"type": "respond_rc", "rc": "62"}})
        assert status == 201 and pan not in str(added) and added["when"]["pan"] == [pan[:6] + "******" + pan[-4:]]
        assert pan not in str((await h.api.get("/faults"))[1])
        assert await rc(client, terminal, terminal.financial("sale", 10)) == "62"  # the fault still has the PAN
        assert pan not in str(await h.api.delete(f"/faults/{added['id']}"))

    scenario("cup", body)
