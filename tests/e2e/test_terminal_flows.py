"""Every terminal flow end to end against the stub host over TCP, in INTL and CUP.

After each scenario the terminal's journal and the host's ledger must agree (no orphan approval,
no orphan journal entry, nothing owed), and settlement totals must be equal on both sides.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from emulator.terminal import (
    Adjust,
    Balance,
    Completion,
    CompletionVoid,
    Echo,
    OfflineSale,
    Outcome,
    PreAuth,
    PreAuthVoid,
    Reference,
    Refund,
    Reprint,
    Reverse,
    Sale,
    SaveCounters,
    Settle,
    SignOff,
    SignOn,
    Void,
)
from host_stub.ledger import Ledger
from host_stub.server import HostServer
from specs.cards import seeded_card
from tests.conftest import run_bounded, running_host
from tests.emulator.hosted import NOW, Pos, assert_books_agree, fault, host_open

DIALECTS = ["intl-bcd", "cup"]


def card(dialect_name: str) -> Any:
    return seeded_card(seed=7, scheme="unionpay" if dialect_name == "cup" else "visa")


def scenario(dialect_name: str, body: Callable[[Pos, HostServer, Ledger], Awaitable[Any]]) -> Any:
    ledger = Ledger(":memory:")

    async def run() -> Any:
        async with running_host(dialect_name, ledger) as server:
            assert server.port
            pos = Pos(dialect_name, server.port)
            return await body(pos, server, ledger)

    return run_bounded(run())


def sale(pos: Pos, amount: int, **kw: Any) -> Awaitable[Any]:
    return pos(Sale(now=NOW, amount_minor=amount, card=card(pos.dialect_name)), **kw)


@pytest.mark.parametrize("dialect_name", ["intl-ascii", "intl-bcd", "cup"])
def test_sign_on_downloads_keys_and_every_answer_mac_verifies(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        signon = await pos(SignOn(now=NOW))
        assert (signon.outcome, signon.details["keys_loaded"]) == (Outcome.APPROVED, True)
        assert pos.books.signed_on and pos.books.key_block
        result = await sale(pos, 1234)
        assert result.outcome is Outcome.APPROVED  # the 0210 carried a MAC that verified
        [row] = ledger.authorizations(kind="sale")
        assert (row["stan"], row["status"], row["amount_minor"]) == (result.stan, "approved", 1234)
        echo = await pos(Echo(now=NOW))
        assert echo.outcome is Outcome.APPROVED
        off = await pos(SignOff(now=NOW))
        assert off.outcome is Outcome.APPROVED and not pos.books.signed_on
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_sale_void_refund_and_balance(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        first, second = await sale(pos, 1000), await sale(pos, 2500)
        void = await pos(Void(now=NOW, original=Reference(invoice=first.details["invoice"])))
        assert void.outcome is Outcome.APPROVED, void.text
        assert [r.status for r in pos.books.records] == ["voided", "approved", "approved"]
        refund = await pos(Refund(now=NOW, amount_minor=500, original=Reference(rrn=second.details["rrn"])))
        assert refund.outcome is Outcome.APPROVED, refund.text
        balance = await pos(Balance(now=NOW, card=card(dialect_name)))
        assert balance.outcome is Outcome.APPROVED, balance.text
        assert host_open(ledger) == sorted([(second.stan, "sale", 2500), (refund.stan, "refund", 500)])
        assert_books_agree(pos.books, ledger)
        settle = await pos(Settle(now=NOW))
        assert settle.outcome is Outcome.BALANCED, settle.text
        assert (settle.details["sale_amount_minor"], settle.details["refund_amount_minor"]) == (2500, 500)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_refund_of_a_sale_from_the_previous_batch(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        original = await sale(pos, 4000)
        assert (await pos(Settle(now=NOW))).outcome is Outcome.BALANCED
        # The closed batch keeps only the masked PAN: the card is presented again for the refund.
        refund = await pos(Refund(now=NOW, amount_minor=1500, card=card(pos.dialect_name)))
        assert refund.outcome is Outcome.APPROVED, refund.text
        assert pos.books.records[0].original_invoice == original.details["invoice"]
        assert_books_agree(pos.books, ledger)
        assert (await pos(Settle(now=NOW))).outcome is Outcome.BALANCED
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_preauth_completion_completion_void_and_preauth_void(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        pre = await pos(PreAuth(now=NOW, amount_minor=8000, card=card(dialect_name)))
        assert pre.outcome is Outcome.APPROVED, pre.text
        completion = await pos(Completion(now=NOW, amount_minor=7500))
        assert completion.outcome is Outcome.APPROVED, completion.text
        assert_books_agree(pos.books, ledger)
        cvoid = await pos(CompletionVoid(now=NOW))
        assert cvoid.outcome is Outcome.APPROVED, cvoid.text
        assert [r.status for r in pos.books.records if r.kind in ("preauth", "completion")] == [
            "completed", "voided"]
        assert_books_agree(pos.books, ledger)
        assert (await pos(Settle(now=NOW))).outcome is Outcome.BALANCED
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_preauth_void(dialect_name: str) -> None:
    """INTL sends the pre-auth void as an 0120 advice (specs.transactions), CUP as 0100 60.1=11."""
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        pre = await pos(PreAuth(now=NOW, amount_minor=900, card=card(dialect_name)))
        assert pre.outcome is Outcome.APPROVED
        pvoid = await pos(PreAuthVoid(now=NOW, original=Reference(invoice=pre.details["invoice"])))
        assert pvoid.outcome is Outcome.APPROVED, pvoid.text
        assert [r.status for r in pos.books.records] == ["voided", "approved"]
        assert [r["status"] for r in ledger.authorizations(kind="preauth")] == ["voided"]
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_offline_sale_and_tip_adjust_are_trickled_then_drained_before_settlement(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        online = await sale(pos, 1000)
        offline = await pos(OfflineSale(now=NOW, amount_minor=700, card=card(dialect_name)))
        adjust = await pos(Adjust(now=NOW, original=Reference(invoice=online.details["invoice"]), tip_minor=150))
        assert offline.outcome is adjust.outcome is Outcome.APPROVED
        assert ledger.authorizations(kind="offline_sale") == [] and len(pos.books.advices) == 2
        trickled = await sale(pos, 50)
        assert trickled.details["advices_sent"] == 1 and len(pos.books.advices) == 1
        [posted] = ledger.authorizations(kind="offline_sale")
        assert (posted["stan"], posted["status"], posted["amount_minor"]) == (offline.stan, "approved", 700)
        settle = await pos(Settle(now=NOW))  # drains the adjust first, then balances
        assert settle.outcome is Outcome.BALANCED, settle.text
        assert settle.details["sale_amount_minor"] == 1150 + 700 + 50
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_tip_adjust_of_an_offline_sale_reaches_the_host_with_the_rrn_it_got_later(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        offline = await pos(OfflineSale(now=NOW, amount_minor=300, card=card(dialect_name)))
        await pos(Adjust(now=NOW, original=Reference(invoice=offline.details["invoice"]), tip_minor=100))
        balance = await pos(Balance(now=NOW, card=card(dialect_name)))  # an online transaction: trickles one
        assert balance.details["advices_sent"] == 1
        settle = await pos(Settle(now=NOW))
        assert settle.outcome is Outcome.BALANCED and settle.details["sale_amount_minor"] == 400, settle.text
        [adjust] = ledger.authorizations(kind="adjust")
        assert adjust["status"] == "approved"
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_repeated_advice_is_posted_once(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        await pos(OfflineSale(now=NOW, amount_minor=700, card=card(dialect_name)))
        fault(server, {"mti": "0220", "nth": 1}, {"type": "drop_response"})  # posted, answer lost
        first = await sale(pos, 100)
        assert first.details["advices_sent"] == 1 and pos.books.advices[0].attempts == 1
        await sale(pos, 200)  # the repeat goes out as 0221 and is acknowledged
        assert pos.books.advices == []
        assert [r["amount_minor"] for r in ledger.authorizations(kind="offline_sale", status="approved")] == [700]
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
@pytest.mark.parametrize("failure", ["drop_response", "close_after_processing", "close_before_processing"])
def test_a_sale_without_answer_is_reversed_before_the_next_one(dialect_name: str, failure: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"mti": "0200", "nth": 1}, {"type": failure})
        lost = await sale(pos, 1000)
        assert lost.outcome is Outcome.NO_ANSWER and lost.details["reversal_pending"] is True
        assert pos.books.records == [] and [r.stan for r in pos.books.reversals] == [lost.stan]
        nxt = await sale(pos, 2000)
        assert nxt.outcome is Outcome.APPROVED and nxt.details["reversal_sent"] is True
        assert nxt.details["reversal_cleared"] is True and nxt.details["reversal_rc"] in ("00", "25")
        [reversal] = ledger.authorizations(kind="reversal")
        assert reversal["stan"] == lost.stan
        assert [r["status"] for r in ledger.authorizations(kind="sale", stan=lost.stan)] in (
            [], ["reversed"])  # posted and reversed, or never posted (answered 25)
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_a_late_answer_is_not_an_approval(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"mti": "0200", "nth": 1}, {"type": "delay_response", "seconds": 0.8})
        late = await sale(pos, 1000)
        assert late.outcome is Outcome.NO_ANSWER and pos.books.records == []
        cleared = await pos(Reverse(now=NOW))
        assert cleared.outcome is Outcome.APPROVED and pos.books.reversals == []
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
@pytest.mark.parametrize("stray", [{"type": "stan_offset", "offset": 1}, {"type": "omit_fields", "fields": ["41"]}])
def test_an_answer_that_does_not_match_is_no_answer_and_is_reversed(dialect_name: str, stray: dict[str, Any]) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"mti": "0200", "nth": 1}, stray)
        result = await sale(pos, 1000)
        assert result.outcome is Outcome.NO_ANSWER and pos.books.records == []
        assert [r.reason for r in pos.books.reversals] == ["98" if stray["type"] == "stan_offset" else "06"]
        await pos(Reverse(now=NOW))
        assert ledger.authorizations(kind="sale")[0]["status"] == "reversed"
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_approval_with_a_bad_mac_is_reversed_with_a0(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"mti": "0200", "nth": 1}, {"type": "corrupt_mac"})
        forged = await sale(pos, 1000)
        assert forged.outcome is Outcome.MAC_FAILED and pos.books.records == []
        assert [r.reason for r in pos.books.reversals] == ["A0"]
        await pos(Reverse(now=NOW))
        [reversal] = ledger.authorizations(kind="reversal")
        assert reversal["stan"] == forged.stan
        if dialect_name == "cup":
            assert reversal["reversal_reason"] == "A0"
        assert ledger.authorizations(kind="sale")[0]["status"] == "reversed"
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_rotated_keys_are_refreshed_by_signing_on_again(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        await sale(pos, 100)
        fault(server, {"mti": "0200", "nth": 1}, {"type": "rotate_keys"})
        rotated = await sale(pos, 200)
        assert rotated.outcome in (Outcome.DECLINED, Outcome.MAC_FAILED), rotated.text
        again = await sale(pos, 300)
        assert again.outcome is Outcome.APPROVED, again.text
        await pos(Reverse(now=NOW))
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


def test_cup_header_3_makes_the_terminal_sign_on_before_the_next_transaction() -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"mti": "0200", "nth": 1}, {"type": "header_processing_requirement", "value": "3"})
        await sale(pos, 100)
        assert pos.books.signon_required
        nxt = await sale(pos, 200)
        assert nxt.details["signed_on_again"] is True and not pos.books.signon_required
        assert [r["mti"] for r in ledger.authorizations()][-2:] == ["0800", "0200"]
        fault(server, {"mti": "0200", "nth": 1}, {"type": "header_processing_requirement", "value": "6"})
        await sale(pos, 300)
        assert pos.books.param_download == "6"
    scenario("cup", body)


def test_cup_77_batch_mismatch_signs_on_again_at_once() -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        server.host.settings = server.host.settings.updated({"strict_batch": True})
        await pos(SignOn(now=NOW))
        books = pos.books
        # The terminal's batch number drifted from the host's (e.g. restored from an old backup).
        pos.journal.apply(SaveCounters(stan=books.stan, invoice=books.invoice, batch=books.batch + 5))
        mismatch = await sale(pos, 100)
        assert mismatch.rc == "77" and mismatch.text.endswith("signed on again"), mismatch.text
        assert (await sale(pos, 200)).outcome is Outcome.APPROVED
    scenario("cup", body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_host_answering_25_to_a_reversal_of_an_unknown_original(dialect_name: str) -> None:
    """C40: with 25 final the terminal moves on; with only 00 final it is stuck, then refuses sales."""
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"mti": "0200", "nth": 1}, {"type": "close_before_processing"})
        await sale(pos, 1000)
        flawed = dict(final_reversal_codes=("00",), park_stuck_reversal=False)
        blocked = await sale(pos, 2000, **flawed)
        assert (blocked.outcome, blocked.mti, blocked.rc) == (Outcome.DECLINED, "0400", "25")
        refused = await sale(pos, 2000, **flawed)
        assert refused.outcome is Outcome.REFUSED and "stuck" in refused.text
        fixed = await sale(pos, 2000)
        assert fixed.outcome is Outcome.APPROVED and fixed.details["reversal_cleared"] is True
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_unbalanced_settlement_is_uploaded_and_closed_on_both_sides(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        for amount in (1000, 2050, 399):
            await sale(pos, amount)
        await pos(Refund(now=NOW, amount_minor=100))
        fault(server, {"kind": "settlement", "nth": 1}, {"type": "totals_delta", "debit_count": 1,
                                                         "debit_minor": 5})
        settle = await pos(Settle(now=NOW))
        assert settle.outcome is Outcome.UNBALANCED, settle.text
        assert settle.details["batch_closed"] is True and settle.details["uploaded"] == 4
        assert pos.books.records == [] and pos.books.batch == 2 and pos.books.settlement is None
        last = ledger.settlements()[-1]
        assert last["terminal_totals"] == {"debit_count": 3, "debit_minor": 3449, "credit_count": 1,
                                           "credit_minor": 100}
        assert host_open(ledger) == []
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_interrupted_upload_blocks_sales_and_resumes(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        count = 3 if dialect_name == "intl-bcd" else 10
        for amount in range(1, count + 1):
            await sale(pos, amount * 100)
        fault(server, {"kind": "settlement", "nth": 1}, {"type": "totals_delta", "debit_count": 1})
        fault(server, {"mti": "0320"}, {"type": "upload_interrupt", "after": 1}, times=1)
        interrupted = await pos(Settle(now=NOW))
        assert interrupted.details["batch_closed"] is False and interrupted.details["settlement_pending"] is True
        refused = await sale(pos, 100)
        assert refused.outcome is Outcome.REFUSED and refused.text.startswith("settlement of batch 000001 is pending")
        resumed = await pos(Settle(now=NOW))
        assert resumed.details["batch_closed"] is True and resumed.details["uploaded"] == count, resumed.text
        uploads = ledger.uploads()
        assert len(uploads) == count and len({u["original_stan"] for u in uploads}) == count  # each record once
        assert host_open(ledger) == [] and pos.books.batch == 2
    scenario(dialect_name, body)


def test_cup_imbalance_signalled_with_39_95() -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        server.host.settings = server.host.settings.updated({"cup_unbalanced_mode": "rc95"})
        await pos(SignOn(now=NOW))
        await sale(pos, 1000)
        fault(server, {"kind": "settlement", "nth": 1}, {"type": "totals_delta", "debit_count": 1})
        settle = await pos(Settle(now=NOW))
        assert (settle.outcome, settle.rc, settle.details["batch_closed"]) == (Outcome.UNBALANCED, "95", True)
    scenario("cup", body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_local_refusals_send_nothing(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        before = len(ledger.authorizations())
        await sale(pos, 1000, max_tranlog=1)
        full = await sale(pos, 1, max_tranlog=1)
        capped = await sale(pos, 5000, max_batch_amount_minor=5500)
        assert (full.outcome, capped.outcome) == (Outcome.REFUSED, Outcome.REFUSED)
        assert len(ledger.authorizations()) == before + 1
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_printer_failure_before_or_after_the_journal_commit(dialect_name: str) -> None:
    """C29: committed first, a dead printer costs a reprint; printed first, it costs an orphan approval."""
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fixed = await sale(pos, 1000, printer_fails=True)
        assert fixed.outcome is Outcome.APPROVED and fixed.details["printed"] is False
        assert_books_agree(pos.books, ledger)
        blocked = await sale(pos, 1500)  # the receipt is pending: no new sale before the reprint
        assert blocked.outcome is Outcome.REFUSED and "reprint" in blocked.text
        reprinted = await pos(Reprint(now=NOW))
        assert (reprinted.outcome, reprinted.details["invoice"]) == (Outcome.APPROVED, fixed.details["invoice"])
        flawed = await sale(pos, 2000, printer_fails=True, commit_before_print=False)
        assert flawed.details["committed"] is False and pos.books.reversals == []
        orphans = sorted(set(host_open(ledger)) - {(r.stan, r.kind, r.amount_minor) for r in pos.books.records})
        assert orphans == [(flawed.stan, "sale", 2000)]
    scenario(dialect_name, body)
