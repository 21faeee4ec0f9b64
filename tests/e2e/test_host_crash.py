"""kill -9 of ``pos-host`` in the middle of sales from several terminals, then a restart on the same ledger.

Real processes: the host is a ``pos-host serve`` child with a file ledger; four terminals run in this
process (the emulator's channel, each with its own journal file and TID) and sell in a loop.  The
host is killed with SIGKILL while sales are in flight, restarted on the same ``--ledger`` (the same
port when it can be bound again, else a new one the terminals are pointed at), and then every
terminal goes idle (its pending reversals are sent) and settles.

Afterwards, from the ledger file: every approval a terminal saw is on the books, no request is
posted twice, and G1 (no orphan approval), G2 (no orphan journal entry) and G3 (no double charge)
hold for every terminal; every terminal's batch settled balanced.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from collections import Counter
from pathlib import Path

from emulator.invariants import Evidence, check_g1, check_g2, check_g3
from emulator.journal import Journal
from emulator.terminal import Idle, Outcome, Sale, Settle, SignOn
from host_stub.ledger import Ledger
from specs.cards import seeded_card
from tests.conftest import run_bounded
from tests.emulator.hosted import NOW, Pos

TERMINALS = 4
KILL_AFTER_APPROVALS = 12


async def start_host(ledger: Path, port: int = 0) -> tuple[asyncio.subprocess.Process, int]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "host_stub.cli", "--log-level", "warning", "serve", "--dialect", "intl-bcd",
        "--port", str(port), "--ledger", str(ledger),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert process.stdout is not None
    line = await process.stdout.readline()
    if not line:
        _, err = await process.communicate()
        raise OSError(f"pos-host did not start: {err.decode()[-500:]}")
    return process, int(json.loads(line)["port"])


def test_a_host_killed_mid_sales_restarts_on_its_ledger_and_the_terminals_reconcile_it(tmp_path: Path) -> None:
    ledger_path = tmp_path / "host.sqlite"
    card = seeded_card(seed=5, scheme="visa")
    seen: dict[str, list[str]] = {}  # TID -> STANs of the approvals the terminal saw
    intents: dict[str, dict[str, tuple[str, ...]]] = {}  # TID -> purchase -> STANs that served it
    owed: list[str] = []  # STANs of the reversals the terminals owed after the kill

    async def scenario() -> list[Pos]:
        host, port = await start_host(ledger_path)
        poses = [Pos("intl-bcd", port, journal=Journal(str(tmp_path / f"terminal{i}.sqlite")), tid=f"3000000{i}")
                 for i in range(TERMINALS)]
        approvals = 0
        enough = asyncio.Event()
        for pos in poses:
            assert (await pos(SignOn(now=NOW))).outcome is Outcome.APPROVED
            seen[pos.tid], intents[pos.tid] = [], {}

        async def sell(pos: Pos) -> None:
            nonlocal approvals
            for n in range(1000):  # until the host is gone
                result = await pos(Sale(now=NOW, amount_minor=100 + n, card=card))
                intents[pos.tid][f"{pos.tid}-sale-{n}"] = (result.stan,) if result.stan else ()
                if result.outcome is not Outcome.APPROVED:
                    return
                seen[pos.tid].append(str(result.stan))
                approvals += 1
                if approvals >= KILL_AFTER_APPROVALS:
                    enough.set()

        async def kill() -> None:
            await enough.wait()
            host.send_signal(signal.SIGKILL)  # the others are mid-sale
            await host.wait()

        try:
            await asyncio.gather(kill(), *(sell(pos) for pos in poses))
        finally:
            if host.returncode is None:  # a terminal failed before the kill
                host.send_signal(signal.SIGKILL)
                await host.wait()
        assert host.returncode == -signal.SIGKILL
        owed.extend(r.stan for pos in poses for r in pos.books.reversals)
        assert owed, "the kill left no sale in flight"
        try:
            host, _ = await start_host(ledger_path, port)  # same port (SO_REUSEADDR)
        except OSError:
            host, new_port = await start_host(ledger_path)  # taken meanwhile: point the terminals at the new one
            for pos in poses:
                pos.port = new_port
        try:
            for pos in poses:
                idle = await pos(Idle(now=NOW))
                assert pos.books.reversals == [], idle
                settled = await pos(Settle(now=NOW))
                assert settled.outcome is Outcome.BALANCED, settled
        finally:  # a failed check must not leave the host running
            host.send_signal(signal.SIGTERM)
            await host.communicate()
        return poses

    poses = run_bounded(scenario(), 60.0)
    ledger = Ledger(str(ledger_path))
    try:
        rows = ledger.authorizations()
        settlements = ledger.settlements()
    finally:
        ledger.close()
    assert sum(len(stans) for stans in seen.values()) >= KILL_AFTER_APPROVALS
    for pos in poses:
        mine = [r for r in rows if r["tid"] == pos.tid and r["mti"] == "0200"]
        posted = Counter(r["stan"] for r in mine if r["status"] in ("approved", "reversed"))
        assert all(count == 1 for count in posted.values()), f"posted twice: {posted}"
        approved = {r["stan"] for r in mine if r["status"] == "approved"}
        assert set(seen[pos.tid]) <= approved, f"{pos.tid}: approvals seen but not on the books"
        books = pos.books
        journal = tuple({"stan": r.stan, "batch": r.batch, "kind": r.kind, "status": r.status,
                         "amount_minor": r.amount_minor, "rrn": r.rrn, "tid": pos.tid}
                        for r in (*books.records, *books.history))
        evidence = Evidence(tid=pos.tid, journal=journal, authorizations=tuple(rows),
                            intents=intents[pos.tid], pending_reversals=())
        for check in (check_g1, check_g2, check_g3):
            result = check(evidence)
            assert result.holds, (pos.tid, result.findings)
        [settlement] = [s for s in settlements if s["tid"] == pos.tid]
        assert settlement["result"] == "balanced", settlement
        pos.journal.close()
