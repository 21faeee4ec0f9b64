"""``pos-terminal replay``: a recorded session sent again to a fresh stub host answers the same; a
host whose setting changed is named field by field."""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from emulator.pcap import read_pcap
from emulator.replay import pairs
from specs.dialects import get_dialect
from specs.framing import DEFAULT_FRAMING
from tests.conftest import run_bounded, running_host
from tests.emulator.hosted import cli


async def replay(port: int, capture: Path, dialect: str, *extra: str) -> tuple[int, dict[str, Any]]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulator.cli", "--port", str(port), "--dialect", dialect, "--timeout", "0.5",
        "--json", "replay", str(capture), *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None and out, err.decode()
    return process.returncode, json.loads(out.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("dialect", ["intl-bcd", "cup"])
def test_a_replay_against_the_same_stub_host_differs_nowhere_and_a_changed_setting_is_named(
        dialect: str, tmp_path: Path) -> None:
    capture, journal = tmp_path / "session.pcap", tmp_path / "t.sqlite"

    async def go() -> tuple[tuple[int, dict[str, Any]], tuple[int, dict[str, Any]], tuple[int, dict[str, Any]]]:
        async with running_host(dialect) as server:  # the recording
            for args in (("signon",), ("sale", "12.34"), ("sale", "5.00"), ("void", "--invoice", "000001"),
                         ("echo",), ("settle",)):
                await cli(server.port or 0, journal, "--pcap", str(capture), *args, dialect=dialect)
        async with running_host(dialect) as fresh:  # the same stub host, started again
            same = await replay(fresh.port or 0, capture, dialect)
        async with running_host(dialect) as changed:  # a rule change: the settlement must carry field 62
            changed.host.settings = replace(changed.host.settings, required_fields=(("0500", ("62",)),))
            differs = await replay(changed.port or 0, capture, dialect)
            narrower = await replay(changed.port or 0, capture, dialect, "--ignore", "11,12,13,37,38,39,64")
            gone_port = changed.port or 0
        process = await asyncio.create_subprocess_exec(  # the host is gone: nothing to compare, exit 3
            sys.executable, "-m", "emulator.cli", "--port", str(gone_port), "--dialect", dialect, "--timeout", "0.5",
            "replay", str(capture), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await process.communicate()
        assert process.returncode == 3 and "no connection to the host" in err.decode()
        return same, differs, narrower

    (code, same), (code2, differs), (_, narrower) = run_bounded(go(), 60.0)
    recorded = pairs(read_pcap(capture, get_dialect(dialect), DEFAULT_FRAMING[dialect]))
    assert [p.request["t"] for p in recorded][:5] == ["0800", "0200", "0200", "0200", "0800" if dialect != "cup"
                                                     else "0820"]
    assert all(p.response is not None for p in recorded)
    assert (code, same) == (0, {"replayed": len(recorded), "differences": []})
    assert code2 == 1
    assert {(d["mti"], d["field"], d["recorded"], d["replayed"]) for d in differs["differences"]} >= {
        ("0500", "39", "00", "30")}
    assert {d["mti"] for d in differs["differences"]} <= {"0500", "0320"}  # nothing before the settlement differs
    assert all(d["field"] != "39" for d in narrower["differences"])  # --ignore 39: the code is not compared
