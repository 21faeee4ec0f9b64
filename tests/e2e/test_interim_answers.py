"""Interim answers (39=09, "request in progress"): the host is still working on the request. The
terminal decides nothing on them: it keeps its pending reversal and waits for the real answer, up to
``max_interim_answers`` restarts of its response timer; past that it times out and reverses.  (Taking
a 09 for a decline would drop the reversal while the host goes on to approve: an orphan approval.)"""

from __future__ import annotations

import pytest

from emulator.terminal import Outcome, Reverse, SignOn
from host_stub.ledger import Ledger
from host_stub.server import HostServer
from tests.e2e.test_terminal_flows import DIALECTS, sale, scenario
from tests.emulator.hosted import NOW, Pos, assert_books_agree, fault


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_interim_answers_extend_the_wait_and_the_real_answer_counts(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        # Two interim answers 0.3 s apart, then the approval 0.6 s after the request: later than the
        # 0.5 s timeout, but each interim restarts it.
        fault(server, {"kind": "sale", "nth": 1}, {"type": "interim_09", "count": 2, "interval_seconds": 0.3})
        result = await sale(pos, 4200)
        assert result.outcome is Outcome.APPROVED and result.rc == "00", result.text
        [row] = ledger.authorizations(kind="sale")
        assert (row["status"], row["amount_minor"]) == ("approved", 4200)
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_past_the_limit_interims_are_ignored_and_the_sale_is_reversed(dialect_name: str) -> None:
    async def body(pos: Pos, server: HostServer, ledger: Ledger) -> None:
        await pos(SignOn(now=NOW))
        fault(server, {"kind": "sale", "nth": 1}, {"type": "interim_09", "count": 3, "interval_seconds": 0.3})
        result = await sale(pos, 4200, max_interim_answers=1)
        assert result.outcome is Outcome.NO_ANSWER, result.text
        assert result.details["reversal_pending"]  # kept through the interims, then owed
        reversed_ = await pos(Reverse(now=NOW))
        assert reversed_.details["reversal_cleared"], reversed_.text
        [row] = ledger.authorizations(kind="sale", mti="0200")
        assert row["status"] == "reversed"  # no money taken for a sale the merchant never saw approved
        assert_books_agree(pos.books, ledger)
    scenario(dialect_name, body)
