"""Connections under abuse: idle timeout, frame deadline, connection limit, accept() out of descriptors.

The limits are host settings, set short here through the configuration (and ``PUT /settings``).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from host_stub.settings import HostSettings
from host_stub.validation import ConfigError
from tests.conftest import run_bounded
from tests.host.conftest import HostUnderTest, running
from tests.host.helpers import WireClient, make_terminal

FAST = {"idle_timeout_seconds": 0.3, "frame_deadline_seconds": 0.3}


async def _journal(h: HostUnderTest, outcome: str) -> list[dict[str, Any]]:
    status, body = await h.api.get(f"/journal?outcome={outcome}")
    assert status == 200, body
    return list(body["journal"])


def test_connection_settings_are_checked_and_shown() -> None:
    settings = HostSettings.from_dict({"idle_timeout_seconds": 1.5, "max_connections": 3})
    assert settings.as_dict()["idle_timeout_seconds"] == 1.5 and settings.max_connections == 3
    with pytest.raises(ConfigError, match=r"expecting a number of seconds above 0: settings\.frame_deadline_seconds"):
        HostSettings.from_dict({"frame_deadline_seconds": 0})
    with pytest.raises(ConfigError, match=r"expecting at least 1: settings\.max_connections"):
        HostSettings.from_dict({"max_connections": 0})


def test_a_silent_connection_is_closed_after_the_idle_timeout_and_journalled() -> None:
    async def scenario() -> None:
        async with running("intl-bcd", config={"settings": FAST}) as h:
            silent = await h.connect()
            active = await h.connect()
            terminal = make_terminal("intl-bcd")
            answer = await active.exchange(terminal.financial("sale", 100))
            assert answer is not None and answer["39"] == "00"
            assert await silent.read_all() == b""  # closed by the host, nothing sent
            journal = await _journal(h, "idle_timeout")
            assert len(journal) >= 1 and "nothing received for 0.3 s" in journal[0]["error"]
            await silent.close()
            await active.close()

    run_bounded(scenario(), 10.0)


def test_a_byte_a_tick_peer_is_cut_at_the_frame_deadline_and_never_delays_others() -> None:
    async def scenario() -> None:
        async with running("intl-bcd", config={"settings": {"idle_timeout_seconds": 5.0,
                                                            "frame_deadline_seconds": 1.0}}) as h:
            slow = await h.connect()
            terminal = make_terminal("intl-bcd")
            data = slow.frame_bytes(terminal.financial("sale", 100))

            async def trickle() -> None:
                try:
                    for byte in data[8:-1]:  # never completes the frame
                        await slow.send_raw(bytes([byte]))
                        await asyncio.sleep(0.05)  # the abuse itself: one byte per tick
                except ConnectionError:
                    pass  # the host has closed it

            await slow.send_raw(data[:8])  # before the fast connection exists: the host holds a frame begun
            trickling = asyncio.create_task(trickle())
            fast = await h.connect()
            other = make_terminal("intl-bcd", tid="20000002")
            for _ in range(5):
                answer = await fast.exchange(other.financial("sale", 100))
                assert answer is not None and answer["39"] == "00"
            assert await _journal(h, "frame_deadline") == []  # all answered while the trickled frame was pending
            assert await slow.read_all() == b""
            trickling.cancel()
            await asyncio.gather(trickling, return_exceptions=True)
            journal = await _journal(h, "frame_deadline")
            assert len(journal) == 1 and "frame not complete within 1 s" in journal[0]["error"]
            _, fast_rows = await h.api.get("/ledger/authorizations?tid=20000002")
            assert len(fast_rows["authorizations"]) == 5
            await fast.close()
            await slow.close()

    run_bounded(scenario(), 15.0)


def test_a_connection_over_the_limit_is_closed_at_once_and_a_freed_slot_serves_again() -> None:
    async def scenario() -> None:
        async with running("intl-bcd", config={"settings": {"max_connections": 2}}) as h:
            first, second = await h.connect(), await h.connect()
            terminal = make_terminal("intl-bcd")
            for client in (first, second):  # both are being served (their tasks exist)
                answer = await client.exchange(terminal.financial("sale", 100))
                assert answer is not None and answer["39"] == "00"
            third = await h.connect()
            assert await third.read_all() == b""
            await third.close()
            journal = await _journal(h, "connection_limit")
            assert len(journal) == 1 and journal[0]["error"] == "2 connections open"
            await first.close()
            await h.runtime.server.until_connections_at_most(1)
            fourth = await h.connect()
            answer = await fourth.exchange(terminal.financial("sale", 100))
            assert answer is not None and answer["39"] == "00"
            await fourth.close()
            await second.close()

    run_bounded(scenario(), 10.0)


def test_a_connection_being_answered_is_not_cut_by_the_idle_timeout() -> None:
    async def scenario() -> None:
        async with running("intl-bcd", config={"settings": FAST}) as h:
            await h.api.fault({"mti": "0200"}, {"type": "delay_response", "seconds": 0.6})
            client = await h.connect()
            answer = await client.exchange(make_terminal("intl-bcd").financial("sale", 100))
            assert answer is not None and answer["39"] == "00"  # 0.6 s of the host's own delay: kept open
            await client.close()

    run_bounded(scenario(), 10.0)


def _ready(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, "pos-host exited before its ready line"
    return dict(json.loads(line))


def test_accept_out_of_descriptors_is_logged_once_per_interval_and_the_host_keeps_serving(tmp_path: Path) -> None:
    """A pos-host child with few descriptors: connections past them make accept() fail with EMFILE."""
    config = tmp_path / "host.yaml"
    config.write_text(json.dumps({"settings": {"accept_error_log_seconds": 60}}))
    limit = 48

    def few_descriptors() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    process = subprocess.Popen(
        [sys.executable, "-m", "host_stub.cli", "--log-json", "serve", "--dialect", "intl-bcd", "--port", "0",
         "--loop", "asyncio", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=few_descriptors,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        port = int(str(_ready(process)["port"]))

        async def scenario() -> None:
            clients = [await WireClient.connect(port, "intl-bcd") for _ in range(limit + 12)]  # the kernel queues them
            terminal = make_terminal("intl-bcd")
            answered = 0
            for client in clients[:8]:  # accepted before the descriptors ran out: served
                answer = await client.exchange(terminal.financial("sale", 100))
                answered += answer is not None and answer["39"] == "00"
            assert answered == 8
            for client in clients:
                await client.close()
            late = await WireClient.connect(port, "intl-bcd")  # asyncio accepts again after its pause
            answer = await late.exchange(terminal.financial("sale", 100))
            assert answer is not None and answer["39"] == "00"
            await late.close()

        run_bounded(scenario(), 20.0)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    resource_lines = [line for line in lines if "out of descriptors" in line.get("event", "")]
    assert len(resource_lines) == 1, resource_lines  # once per 60 s, however often accept() failed
    assert resource_lines[0]["error"] == "EMFILE"
    assert "Traceback" not in stderr
