"""The control API of a real ``pos-host`` process, driven as an attacker and a careless operator
would: only its owner may drive it, and every bad input is a 4xx JSON answer that changes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from emulator.control_client import ControlClient
from emulator.hostproc import HostProcess, start_host
from emulator.pytest_plugin import ControlApiError, PosHost
from emulator.runner import RunAborted, api
from tests.conftest import run_bounded

TOKEN = "s3cret-token-for-tests"


@pytest.fixture(scope="module")
def host() -> Iterator[HostProcess]:
    with start_host("serve", "--port", "0", "--control-port", "0") as process:
        yield process


@pytest.fixture(autouse=True)
def _fresh(host: HostProcess) -> None:
    """Each test starts from empty books, no faults and the configured clock."""
    assert call(host, "POST", "/reset")[0] == 200


@pytest.fixture(scope="module")
def guarded() -> Iterator[HostProcess]:
    with start_host("serve", "--port", "0", "--control-port", "0", "--control-token", TOKEN) as process:
        yield process


def call(process: HostProcess, method: str, path: str, body: bytes | None = None,
         headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
    """One HTTP call; (status, the JSON answer).  A non-JSON answer fails the test."""
    url = f"http://127.0.0.1:{process.ready['control_port']}{path}"
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            assert exc.headers.get_content_type() == "application/json", exc.read()[:300]
            return exc.code, json.loads(exc.read())


JSON = {"Content-Type": "application/json"}


def post_json(process: HostProcess, path: str, value: Any) -> tuple[int, Any]:
    return call(process, "POST", path, json.dumps(value).encode(), JSON)


def test_a_web_page_of_another_origin_cannot_drive_it(host: HostProcess) -> None:
    assert post_json(host, "/faults", {"action": {"type": "drop_response"}, "id": "keep"})[0] == 201
    # What a browser sends for <form enctype="text/plain" method="post" action=".../reset">.
    status, answer = call(host, "POST", "/reset", b"x=1", {"Content-Type": "text/plain",
                                                           "Origin": "http://evil.example"})
    assert status == 403 and "Origin 'http://evil.example'" in answer["error"]
    status, answer = call(host, "POST", "/faults", b'{"action": {"type": "drop_response"}}',
                          {"Content-Type": "text/plain"})
    assert status == 415 and answer["key"] == "Content-Type"
    assert [f["id"] for f in call(host, "GET", "/faults")[1]["faults"]] == ["keep"]  # nothing changed
    port = host.ready["control_port"]
    own = call(host, "GET", "/clock", headers={"Origin": f"http://127.0.0.1:{port}"})
    assert own[0] == 200
    assert call(host, "DELETE", "/faults")[0] == 200


def test_with_a_token_every_call_needs_it_as_a_bearer(guarded: HostProcess) -> None:
    assert guarded.ready["control_token"] is True and guarded.ready["control_bind"] == "127.0.0.1"
    assert TOKEN not in json.dumps(guarded.ready)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        status, answer = call(guarded, "POST", "/reset", headers=headers)
        assert status == 401 and answer["key"] == "Authorization" and TOKEN not in answer["error"]
    assert call(guarded, "POST", "/reset", headers={"Authorization": f"Bearer {TOKEN}"}) == (200, {"reset": True})
    status, document = call(guarded, "GET", "/openapi.json")  # the description stays readable
    assert status == 200 and document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert document["security"] == [{"bearer": []}]
    assert "401" in document["paths"]["/reset"]["post"]["responses"]


def test_every_client_in_the_repository_sends_the_token(guarded: HostProcess) -> None:
    url = f"http://127.0.0.1:{guarded.ready['control_port']}"
    with pytest.raises(ControlApiError, match="401"):
        PosHost(host="127.0.0.1", port=guarded.port, control_url=url, dialect="intl-bcd").clock()
    plugin = PosHost(host="127.0.0.1", port=guarded.port, control_url=url, dialect="intl-bcd", control_token=TOKEN)
    assert plugin.ledger("authorizations") == [] and "now" in plugin.clock()

    async def runner_client() -> tuple[list[dict[str, Any]], str]:  # the matrix runner's way: off the loop
        rows = await api(ControlClient(url, token=TOKEN).ledger, "settlements")
        try:
            await api(ControlClient(url, token="wrong").reset)
        except RunAborted as exc:
            return rows, str(exc)
        return rows, ""

    rows, refused = run_bounded(runner_client())
    assert rows == [] and "answered 401" in refused


def test_a_control_api_beyond_loopback_needs_a_token() -> None:
    done = subprocess.run([sys.executable, "-m", "host_stub.cli", "serve", "--port", "0", "--control-port", "0",
                           "--control-bind", "0.0.0.0"], capture_output=True, text=True, timeout=30,
                          env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2 and "--control-token" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize(("path", "body", "key"), [
    ("/registry/generate", {"seed": 1, "cards": 10**9}, "cards"),
    ("/registry/generate", {"merchants": 10**6, "terminals_per_merchant": 10**6}, "merchants"),
    ("/clock", {"set": "9999-12-31T00:00:00"}, "set"),
    ("/clock", {"advance_seconds": 1e300}, "advance_seconds"),
    ("/clock", {"advance_seconds": 10**400}, "advance_seconds"),
    ("/clock", {"set": 5}, "set"),
    ("/faults", {"action": {"type": "delay_response", "seconds": 1e308}}, "seconds"),
    ("/faults", {"action": {"type": "duplicate_response", "copies": 10**9}}, "copies"),
    ("/faults", {"action": {"type": "delay_response", "seconds": "soon"}}, "seconds"),
])
def test_unbounded_values_answer_400_json_and_change_nothing(host: HostProcess, path: str, body: Any,
                                                             key: str) -> None:
    before = call(host, "GET", "/clock")[1]["now"][:13], call(host, "GET", "/faults")[1]
    cards = len(call(host, "GET", "/registry/cards")[1]["cards"])
    status, answer = post_json(host, path, body)
    assert status == 400 and answer["key"] == key, answer
    assert (call(host, "GET", "/clock")[1]["now"][:13], call(host, "GET", "/faults")[1]) == before
    assert len(call(host, "GET", "/registry/cards")[1]["cards"]) == cards


@pytest.mark.parametrize(("raw", "expecting"), [
    (b'{"advance_seconds": NaN}', "finite numbers"),
    (b'{"advance_seconds": Infinity}', "finite numbers"),
    (b'{"when": ' + b"[" * 30_000 + b"]" * 30_000 + b"}", "nested"),
    (b'{"when": ' + b'{"a": ' * 40 + b"1" + b"}" * 40 + b"}", "nested"),
])
def test_non_json_numbers_and_deep_nesting_answer_400_json(host: HostProcess, raw: bytes, expecting: str) -> None:
    for path in ("/clock", "/faults"):
        status, answer = call(host, "POST", path, raw, JSON)
        assert status == 400 and expecting in answer["error"], answer
    assert call(host, "GET", "/faults")[1]["faults"] == []


def test_a_body_over_the_limit_answers_413_json(host: HostProcess) -> None:
    status, answer = call(host, "PUT", "/settings", json.dumps({"x": "y" * 200_000}).encode(), JSON)
    assert status == 413 and answer["error"]


def test_ledger_listings_are_paginated_and_clients_read_every_page(host: HostProcess, tmp_path: Path) -> None:
    """Rows come page by page (``limit``, ``offset``, ``total``, ``next``); the plugin's client
    follows the pages, so it still reads the whole ledger."""
    terminal = [sys.executable, "-m", "emulator.cli", "--port", str(host.port), "--timeout", "2", "--json",
                "--journal", str(tmp_path / "t.sqlite")]
    for args in (["signon"], ["sale", "1.00"], ["sale", "2.00"], ["sale", "3.00"], ["sale", "4.00"]):
        done = subprocess.run([*terminal, *args], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
    status, page = call(host, "GET", "/ledger/authorizations?mti=0200&limit=3")
    assert status == 200 and [r["amount_minor"] for r in page["authorizations"]] == [100, 200, 300]
    assert (page["total"], page["limit"], page["offset"]) == (4, 3, 0)
    status, last = call(host, "GET", page["next"])
    assert [r["amount_minor"] for r in last["authorizations"]] == [400] and last["next"] is None
    for bad in ("limit=0", "limit=100001", "offset=-1", "limit=x"):
        status, answer = call(host, "GET", f"/ledger/authorizations?{bad}")
        assert status == 400 and answer["key"] == bad.split("=")[0]
    plugin = PosHost(host="127.0.0.1", port=host.port, control_url=f"http://127.0.0.1:{host.ready['control_port']}",
                     dialect="intl-bcd")
    original = plugin.call

    def small_pages(method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        return original(method, path, body, {**(query or {}), "limit": 2} if "?" not in path else query)

    plugin.call = small_pages  # type: ignore[method-assign]
    assert [r["amount_minor"] for r in plugin.ledger("authorizations", mti="0200")] == [100, 200, 300, 400]


def test_the_matrix_drives_a_guarded_external_host_with_its_token(guarded: HostProcess) -> None:
    control = f"http://127.0.0.1:{guarded.ready['control_port']}"
    base = [sys.executable, "-m", "emulator.cli", "matrix", "--only", "C16", "--dialect", "intl-bcd",
            "--host", f"127.0.0.1:{guarded.port}", "--control", control]
    env = {"PATH": "/usr/bin:/bin"}  # no POS_HOST_CONTROL_TOKEN inherited
    refused = subprocess.run(base, capture_output=True, text=True, timeout=120, env=env)
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
    done = subprocess.run([*base, "--control-token", TOKEN], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "1 resolved" in done.stdout
