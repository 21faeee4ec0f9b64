"""``pos-terminal load`` and :func:`emulator.load.run_load` against stub host children: small numbers,
books checked after every run (the big runs are in the README and ``benchmarks/soak.py``)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import resource
import urllib.request
from pathlib import Path

import pytest
from aiohttp import web
from click.testing import CliRunner
from hdrh.histogram import HdrHistogram

from emulator.channel import Endpoint
from emulator.cli import main as terminal_main
from emulator.control_client import ControlApiError, ControlClient
from emulator.hostproc import start_host
from emulator.journal import Journal
from emulator.load import (
    LoadError,
    LoadOptions,
    LoadResult,
    LoadTerminal,
    parse_mix,
    raise_nofile_limit,
    run_load,
)
from emulator.settings import TerminalSettings
from emulator.terminal import Settle, SignOn
from specs.cards import seeded_card
from specs.framing import DEFAULT_FRAMING
from tests.conftest import run_bounded, running_host


def _load(options: LoadOptions) -> LoadResult:
    return run_bounded(run_load(options), 60.0)


def test_open_loop_every_terminal_signs_on_transacts_settles_and_the_books_are_equal() -> None:
    result = _load(LoadOptions(terminals=20, rate=40, duration_seconds=2, timeout_seconds=0.9))
    data = result.as_dict()
    assert result.ok and result.books_equal, data["invariants"]
    types = {t["type"]: t for t in data["types"]}
    assert types["signon"]["count"] == 20 and types["signon"]["outcomes"] == {"approved": 20}
    assert types["settle"]["count"] == 20 and types["settle"]["outcomes"] == {"balanced": 20}
    scheduled = sum(t["count"] for name, t in types.items() if name not in ("signon", "settle"))
    assert scheduled == data["scheduled"] == 80 and data["unanswered"] == 0
    assert types["sale"]["mti"] == "0200" and set(types["sale"]["rc"]) == {"00"}
    assert 0 < types["sale"]["latency_ms"]["p50"] <= types["sale"]["latency_ms"]["p99"] <= types["sale"]["latency_ms"]["max"]
    assert data["wire"]["0800"] == {"sent": 20, "rc 00": 20} and data["wire"]["0500"] == {"sent": 20, "rc 00": 20}
    assert data["settlement"] == {"settled": 20, "terminals": 20, "not_settled": []}
    assert all(v["holds"] for v in data["invariants"].values()) and set(data["invariants"]) == {
        "G1", "G2", "G3", "G4", "G5", "G6", "G8"}
    assert sum(r["count"] for r in data["timeline"]) == scheduled
    histogram = HdrHistogram.decode(types["sale"]["hdr_histogram"])  # the JSON's histogram is the whole one
    assert histogram.get_total_count() == types["sale"]["count"]


def test_a_fault_mix_loses_answers_and_the_terminals_reverse_so_the_books_stay_equal() -> None:
    result = _load(LoadOptions(terminals=5, count=60, mix={"sale": 100}, timeout_seconds=0.3, seed=7,
                               faults={"drop_response": 20, "delay_response": 10}))
    data = result.as_dict()
    assert result.books_equal, data["invariants"]
    assert result.ok  # unanswered requests are expected with a fault mix
    sale = next(t for t in data["types"] if t["type"] == "sale")
    assert sale["outcomes"].get("no_answer", 0) > 0 and data["unanswered"] == sale["outcomes"]["no_answer"]
    assert data["wire"]["0400"]["sent"] >= sale["outcomes"]["no_answer"]  # each lost answer was reversed
    assert data["settlement"]["settled"] == 5


def test_a_flawed_terminal_that_never_reverses_fails_the_run_naming_terminal_and_stan() -> None:
    flawed = TerminalSettings(reversal_first=False, reverse_at_idle=False)
    result = _load(LoadOptions(terminals=3, count=30, mix={"sale": 100}, timeout_seconds=0.3, seed=3,
                               faults={"drop_response": 30}, settings=flawed))
    assert not result.ok and not result.books_equal
    orphans = result.invariants["G1"]
    assert orphans and all(f.startswith("orphan approval: TID 3000000") and " STAN 0000" in f for f in orphans)


def test_an_external_host_is_loaded_through_its_address_and_a_bad_fault_leaves_no_fault_behind() -> None:
    with start_host("--log-level", "warning", "serve", "--port", "0", "--control-port", "0") as host:
        control = f"http://127.0.0.1:{host.ready['control_port']}"
        external = LoadOptions(terminals=3, count=9, mix={"sale": 100}, timeout_seconds=0.9, first_tid=50000001,
                               host=f"127.0.0.1:{host.port}", control_url=control)
        assert _load(external).ok
        with pytest.raises(ControlApiError, match="Key 'type' holds 'zz_unknown'"):
            _load(dataclasses.replace(external, faults={"drop_response": 5, "zz_unknown": 1}))
        with urllib.request.urlopen(control + "/faults", timeout=10) as response:
            assert json.load(response)["faults"] == []  # drop_response was added, then removed
        with urllib.request.urlopen(control + "/ledger/authorizations?tid=50000001&kind=sale", timeout=10) as r:
            assert len(json.load(r)["authorizations"]) >= 1


def test_the_cli_prints_the_summary_writes_json_and_an_offline_page(tmp_path: Path) -> None:
    journals = tmp_path / "journals"
    run = CliRunner().invoke(terminal_main, ["load", "--terminals", "3", "--closed", "--count", "12", "--timeout",
                                             "0.9", "--mix", "sale=70,balance=30", "--report", str(tmp_path),
                                             "--journal-dir", str(journals)])
    assert run.exit_code == 0, run.output
    lines = run.output.splitlines()
    assert lines[0] == (f"load: 3 terminals (intl-bcd), closed loop for 12 operations, journals in {journals}, "
                        "faults none")
    assert sorted(p.name for p in journals.glob("*.sqlite")) == ["30000001.sqlite", "30000002.sqlite",
                                                                  "30000003.sqlite"]
    journal = Journal(str(journals / "30000002.sqlite"))
    assert journal.load().closed_batches  # each journal file holds its day
    journal.close()
    assert any(line.startswith("sale          0200") for line in lines)
    assert "settlement: 3/3 terminals closed their batch with the host's agreement" in lines
    assert "G1 No orphan approvals: holds" in lines and lines[-2].endswith("books equal")
    data = json.loads((tmp_path / "load.json").read_text(encoding="utf-8"))
    assert data["schema"] == "pos-harness/load/1" and data["ok"] is True and data["operations"] == 12
    page = (tmp_path / "load.html").read_text(encoding="utf-8")
    assert "<svg" in page and "latency over time" in page
    assert "<script" not in page and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page
    pans = [seeded_card(seed=30000001 + i).pan for i in range(3)]  # the terminals' cards
    assert not [p for p in pans if p in page or p in run.output or p in (tmp_path / "load.json").read_text()]


@pytest.mark.parametrize(("args", "expected"), [
    (["--rate", "5", "--closed", "--count", "3"], "give --rate TPS (open loop) or --closed, one of them"),
    (["--closed"], "give --duration S or --count N: a load is always bounded"),
    (["--closed", "--count", "3", "--mix", "sale=80,tip=5"],
     "--mix names 'tip', expecting one of sale, void, refund, balance, offline_sale, echo"),
    (["--closed", "--count", "3", "--faults", "drop_response=120"],
     "fault drop_response=120 is not a percentage, expecting 0 to 100"),
    (["--closed", "--count", "3", "--host", "127.0.0.1:9"],
     "an external host needs its control API URL too (--control): the fault mix is set and the books are"),
])
def test_bad_options_are_usage_errors_naming_what_was_expected(args: list[str], expected: str) -> None:
    run = CliRunner().invoke(terminal_main, ["load", *args])
    assert run.exit_code == 2 and expected in run.output, run.output


def test_parse_mix_and_the_open_file_limit() -> None:
    assert parse_mix("drop_response=2,delay_response=0.5", allowed=None) == {"drop_response": 2.0,
                                                                              "delay_response": 0.5}
    with pytest.raises(LoadError, match="item 'sale' is not NAME=PERCENT"):
        parse_mix("sale")
    soft, hard = raise_nofile_limit(64)
    assert (soft, hard) == resource.getrlimit(resource.RLIMIT_NOFILE) and soft >= 64


def test_a_load_terminal_keeps_its_core_and_its_journal_file_in_step(tmp_path: Path) -> None:
    """The core lives from one operation to the next; after each one the journal file holds exactly its books."""
    async def day() -> list[str]:
        async with running_host("cup") as server:
            t = LoadTerminal(tid="30000009", mid="123456789012345", dialect_name="cup",
                             endpoint=Endpoint(host="127.0.0.1", port=server.port or 0),
                             framing=DEFAULT_FRAMING["cup"], timeout_seconds=0.9, settings=TerminalSettings(),
                             journal_path=str(tmp_path / "30000009.sqlite"))
            outcomes = []
            for kind in ("signon", "sale", "sale", "void", "refund", "offline_sale", "balance", "sale", "settle"):
                result = await t.run(t.operation(kind) if kind not in ("signon", "settle") else
                                     (SignOn if kind == "signon" else Settle)(now=t.now()))
                assert result is not None
                outcomes.append(result.outcome.value)
                assert t.journal.load() == t.terminal.books, kind
            t.close()
            return outcomes

    outcomes = run_bounded(day())
    assert outcomes == ["approved"] * 8 + ["balanced"]


def test_the_control_client_sends_the_bearer_token_and_names_a_refusal() -> None:
    seen: list[str | None] = []

    async def faults(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization"))
        return web.json_response({"error": "Key 'type' holds 'x'"}, status=400)

    async def exchange() -> None:
        app = web.Application()
        app.router.add_post("/faults", faults)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            client = ControlClient(f"http://127.0.0.1:{port}/", token="s3cret")
            with pytest.raises(ControlApiError, match="POST /faults answered 400: Key 'type' holds 'x'"):
                await asyncio.to_thread(client.call, "POST", "/faults", {})
        finally:
            await runner.cleanup()

    run_bounded(exchange())
    assert seen == ["Bearer s3cret"]


def test_progress_goes_to_stderr_and_the_summary_to_stdout() -> None:
    run = CliRunner().invoke(terminal_main, ["load", "--terminals", "2", "--closed", "--count", "4", "--progress",
                                             "--timeout", "0.9"])
    assert run.exit_code == 0, run.output
    assert all(f"{phase}:" in run.stderr for phase in ("signon", "load", "settle"))  # one bar per phase (tqdm)
    assert run.stdout.startswith("load: 2 terminals") and "op/s" not in run.stdout
