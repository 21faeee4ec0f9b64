"""Card data and keys at rest, over real processes: a business day of ``pos-terminal`` against a
``pos-host`` child, every log at debug level and every report written to files, then every file
the tools wrote is searched.  After the batch closed, no file holds a test PAN in clear, an unkeyed
SHA-256 token of one (rebuildable from the 6+4 mask), a card PIN or PIN block, or a clear key."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from emulator.hostproc import start_host
from specs.cards import seeded_card
from specs.crypto import derive_test_key
from specs.masking import mask_pan

PIN = "4931"


def _put_card(control_port: int, pan: str, body: dict[str, object]) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{control_port}/registry/cards/{pan}", method="PUT",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status in (200, 201)


def _add_fault(control_port: int, body: dict[str, object]) -> None:
    request = urllib.request.Request(f"http://127.0.0.1:{control_port}/faults", method="POST",
                                     data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 201


def test_no_file_the_tools_write_holds_card_data_or_a_clear_key_after_settlement(tmp_path: Path) -> None:
    cards = [seeded_card(seed=41, scheme="visa"), seeded_card(seed=42, scheme="mastercard")]
    journal, logs = tmp_path / "terminal.sqlite", tmp_path / "terminal.log"
    with (tmp_path / "host.log").open("w") as host_log, start_host(
            "--log-json", "--log-level", "debug", "serve", "--port", "0", "--control-port", "0",
            "--ledger", str(tmp_path / "host.sqlite"), stderr=host_log) as host:
        control = host.ready["control_port"]
        _put_card(control, cards[0].pan, {"pin": PIN, "expiry": cards[0].expiry})
        _put_card(control, cards[1].pan, {"expiry": cards[1].expiry})

        def terminal(*args: str, out: str | None = None) -> None:
            with logs.open("a") as log:
                done = subprocess.run([sys.executable, "-m", "emulator.cli", "--log-json", "--log-level", "debug",
                                       "--port", str(host.port), "--journal", str(journal), "--timeout", "0.5",
                                       "--json", *args], stdout=subprocess.PIPE, stderr=log, text=True, timeout=60)
            assert done.returncode in (0, 4), (args, done.stdout)
            if out is not None:
                (tmp_path / out).write_text(done.stdout)

        terminal("signon")
        terminal("sale", "12.00", "--pan", cards[0].pan, "--expiry", cards[0].expiry, "--pin", PIN)
        terminal("sale", "7.00", "--pan", cards[1].pan, "--expiry", cards[1].expiry)
        terminal("offline-sale", "3.00", "--pan", cards[1].pan, "--expiry", cards[1].expiry)
        _add_fault(control, {"when": {"kind": "sale", "nth": 1}, "action": {"type": "drop_response"}})
        terminal("sale", "9.00", "--pan", cards[0].pan, "--expiry", cards[0].expiry, "--pin", PIN)  # reversed
        terminal("settle", out="settle.json")
        terminal("status", out="status.json")
        terminal("journal", "--all", out="journal.json")
        terminal("trace", out="trace.json")
        with urllib.request.urlopen(f"http://127.0.0.1:{control}/ledger/authorizations", timeout=10) as answer:
            (tmp_path / "authorizations.json").write_bytes(answer.read())  # what the control API shows
        assert host.stop() == 0
    shown = json.loads((tmp_path / "authorizations.json").read_text())["authorizations"]
    tokens = {r["pan_masked"]: r["pan_token"] for r in shown if r["pan_token"]}
    assert set(tokens) == {mask_pan(c.pan) for c in cards}  # tokens are there, and keyed (searched below)

    status = json.loads((tmp_path / "status.json").read_text())
    assert (status["open_records"], status["pending_reversals"], status["saf_queue"]) == (0, [], [])
    assert status["batches_closed"] == 1
    settle = json.loads((tmp_path / "settle.json").read_text())  # the PIN sale approved: PIN verified
    assert (settle["outcome"], settle["sale_count"], settle["sale_amount_minor"]) == ("balanced", 3, 2200)
    tid = "10000001"
    clear_keys = [derive_test_key(f"{tid}:1:{name}", 16).hex() for name in ("PIK", "MAK")]
    forbidden = {
        **{f"PAN {mask_pan(c.pan)}": c.pan for c in cards},
        **{f"unkeyed token of {mask_pan(c.pan)}": hashlib.sha256(c.pan.encode()).hexdigest()[:32] for c in cards},
        **{f"clear working key {i}": key for i, key in enumerate(clear_keys)},
        "the card PIN": f'"pin": "{PIN}"',
    }
    written = sorted(p for p in tmp_path.iterdir() if p.is_file())
    names = {p.name for p in written}
    assert {"terminal.sqlite", "host.sqlite", "host.sqlite.key", "terminal.log", "host.log", "trace.json",
            "journal.json"} <= names, names
    assert (tmp_path / "host.log").stat().st_size > 0 and logs.stat().st_size > 0  # debug logs were written
    for path in written:
        if path.name == "host.sqlite.key":  # the storage key the ledger's keys are sealed under
            continue
        data = path.read_bytes()
        for what, needle in forbidden.items():
            for form in {needle.encode(), needle.upper().encode(), needle.lower().encode()}:
                assert form not in data, f"{path.name} holds {what} in clear"
        assert not re.search(rb'"52": "[0-9A-Fa-f]', data), f"{path.name} holds a PIN block in clear"
