"""A real ``pos-host`` process as a careless or hostile terminal meets it: after sign-on every
financial request must carry a MAC (``require_mac`` is on by default), and a second request under
a TID+STAN already on the books is a duplicate whatever its amount."""

from __future__ import annotations

import pytest

from emulator.hostproc import start_host
from tests.conftest import run_bounded
from tests.host.helpers import WireClient, make_terminal


@pytest.mark.parametrize("dialect_name", ["intl-bcd", "cup"])
def test_an_unmaced_request_after_sign_on_is_refused_by_default(dialect_name: str) -> None:
    with start_host("serve", "--dialect", dialect_name, "--port", "0") as host:
        async def run() -> tuple[str, str, str]:
            terminal = make_terminal(dialect_name)
            client = await WireClient.connect(host.port, dialect_name)
            try:
                signon = await client.exchange(terminal.sign_on())
                assert signon is not None and signon["39"] == "00"
                client.auto_mac = False  # a terminal that ignores the keys it was given
                unmaced = await client.exchange(terminal.financial("sale", 100))
                client.auto_mac = True
                maced = await client.exchange(terminal.financial("sale", 100))
                echo = await client.exchange(terminal.network("echo"))  # network management: no MAC
            finally:
                await client.close()
            assert unmaced is not None and maced is not None and echo is not None
            return unmaced["39"], maced["39"], echo["39"]

        assert run_bounded(run()) == ("A0", "00", "00")


@pytest.mark.parametrize("dialect_name", ["intl-bcd", "cup"])
def test_the_same_tid_and_stan_with_another_amount_is_a_duplicate(dialect_name: str) -> None:
    with start_host("serve", "--dialect", dialect_name, "--port", "0") as host:
        async def run() -> list[str]:
            terminal = make_terminal(dialect_name)
            client = await WireClient.connect(host.port, dialect_name)
            try:
                await client.exchange(terminal.sign_on())
                first = terminal.financial("sale", 100)
                answers = [await client.exchange(first)]
                for amount in ("000000000200", "000000000100"):  # re-sent under the same STAN
                    answers.append(await client.exchange({**first, "4": amount}))
            finally:
                await client.close()
            return [a["39"] if a else "" for a in answers]

        assert run_bounded(run()) == ["00", "94", "94"]
