"""The stub host's HTTP control API, spoken as a client: the one client the matrix runner, the pytest
plugin and the load and probe tools share.

Synchronous (the standard library's ``urllib``), so it works the same from a plain test, an async test
and a worker thread; the runner calls it through :func:`asyncio.to_thread`.  Every path segment that
comes from data (a PAN, a TID, a fault id) is quoted here, once; query values are sent as text.

>>> client = ControlClient("http://127.0.0.1:1/")
>>> client.url("/registry/cards/4111 1111", {"stan": 2, "tid": None})
'http://127.0.0.1:1/registry/cards/4111%201111?stan=2'
>>> client.url("/ledger/payouts?limit=2&offset=2")
'http://127.0.0.1:1/ledger/payouts?limit=2&offset=2'
>>> ControlClient.segment("f/1")
'f%2F1'
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from specs.cliopts import CONTROL_TOKEN_ENV

#: How long one control API call may take.
CONTROL_TIMEOUT_SECONDS = 30.0
#: The host's ledger tables (``GET /ledger/{table}``).
LEDGER_TABLES = ("authorizations", "settlements", "payouts")
#: The registry's tables (``PUT /registry/{table}/{key}``).
REGISTRY_TABLES = ("merchants", "terminals", "cards")


class ControlApiError(RuntimeError):
    """The host's control API answered with an error (what it said, the method and path)."""

    def __init__(self, method: str, path: str, status: int, error: str) -> None:
        super().__init__(f"host control API {method} {path} answered {status}: {error}")
        self.method, self.path, self.status, self.error = method, path, status, error


class ControlApiUnreachable(ConnectionError):
    """No answer from the control API at all (nothing listens there, or the call timed out)."""


class ControlClient:
    """Client of one host's control API.

    Args:
        control_url: the API's base URL, e.g. ``http://127.0.0.1:8584``.
        timeout_seconds: how long one call may take.
        token: the API's bearer token (default: the ``POS_HOST_CONTROL_TOKEN`` variable; none if unset).
    """

    def __init__(self, control_url: str, *, timeout_seconds: float = CONTROL_TIMEOUT_SECONDS,
                 token: str | None = None) -> None:
        self.control_url = control_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self._token = token or os.environ.get(CONTROL_TOKEN_ENV) or None

    @staticmethod
    def segment(value: str) -> str:
        """One path segment, quoted (a ``/`` in a fault id stays inside its segment)."""
        return urllib.parse.quote(str(value), safe="")

    def url(self, path: str, query: Mapping[str, Any] | None = None) -> str:
        """``path`` (which may carry a query already, as the API's ``next`` links do) under the base URL."""
        path, _, given = path.partition("?")
        url = self.control_url + urllib.parse.quote(path, safe="/%")
        pairs = {k: str(v) for k, v in (query or {}).items() if v is not None}
        parts = [p for p in (given, urllib.parse.urlencode(pairs)) if p]
        return url + ("?" + "&".join(parts) if parts else "")

    def call(self, method: str, path: str, body: Any = None, query: Mapping[str, Any] | None = None) -> Any:
        """One control API call; the answer's JSON.

        Raises:
            ControlApiError: the API answered 4xx/5xx (its ``error`` text is in the message).
            ControlApiUnreachable: no answer (refused, timed out).
        """
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = urllib.request.Request(self.url(path, query), data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_seconds) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            with exc:
                text = exc.read().decode(errors="replace")
            try:
                error = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                error = text
            raise ControlApiError(method, path, exc.code, str(error)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise ControlApiUnreachable(f"host control API {method} {self.url(path)} unreachable: {reason}") from None

    # ---------------------------------------------------------------- books, faults, clock

    def reset(self) -> None:
        """Empty books, faults and journal; settings, registry and clock back to the start."""
        self.call("POST", "/reset")

    def add_fault(self, when: Mapping[str, Any] | None = None, action: Mapping[str, Any] | str = "drop_response",
                  *, times: int | None = None, id: str | None = None) -> str:
        """Add a fault (``POST /faults``) and return its id.

        Args:
            when: the selector, e.g. ``{"kind": "sale", "nth": 1}`` or ``{"mti": "0200"}``; None: every request.
            action: ``{"type": "delay_response", "seconds": 0.6}`` or just the type, e.g. ``"drop_response"``.
            times: apply at most this many times.
            id: the fault's id (default: the host picks one).
        """
        body: dict[str, Any] = {"when": dict(when or {}),
                                "action": {"type": action} if isinstance(action, str) else dict(action)}
        if times is not None:
            body["times"] = times
        if id is not None:
            body["id"] = id
        return str(self.call("POST", "/faults", body)["id"])

    def remove_fault(self, fault_id: str) -> None:
        self.call("DELETE", f"/faults/{self.segment(fault_id)}")

    def clear_faults(self) -> int:
        """Remove every fault; returns how many there were."""
        return int(self.call("DELETE", "/faults")["removed"])

    def faults(self) -> list[dict[str, Any]]:
        """The active faults, in order, with their counters."""
        return list(self.call("GET", "/faults")["faults"])

    def clock(self) -> dict[str, Any]:
        """``{"now", "business_date", "in_cutover_window"}`` of the host's business clock."""
        return dict(self.call("GET", "/clock"))

    def set_clock(self, when: datetime | str) -> dict[str, Any]:
        """Set the business clock (a datetime or an ISO text); returns :meth:`clock`."""
        return dict(self.call("POST", "/clock", {"set": when.isoformat() if isinstance(when, datetime) else when}))

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the business clock forward; returns :meth:`clock`."""
        return dict(self.call("POST", "/clock", {"advance_seconds": seconds}))

    def ledger(self, table: str, **filters: Any) -> list[dict[str, Any]]:
        """Every row of ``authorizations``, ``settlements`` or ``payouts``, page after page (the API
        answers one page per call and names the ``next``); filters are any columns (``tid``, ``mid``,
        ``batch``, ``stan``, ``status`` …), combined with AND."""
        if table not in LEDGER_TABLES:
            raise ValueError(f"ledger {table!r} is not a host ledger, expecting one of {', '.join(LEDGER_TABLES)}")
        page = self.call("GET", f"/ledger/{table}", query=filters)
        rows = list(page[table])
        while page.get("next"):
            page = self.call("GET", page["next"])
            rows += page[table]
        return rows

    def journal(self, **filters: Any) -> list[dict[str, Any]]:
        """The requests the host received, masked, oldest first (filters ``tid``, ``mti``, ``outcome``, ``limit``)."""
        return list(self.call("GET", "/journal", query=filters)["journal"])

    def settings(self) -> dict[str, Any]:
        return dict(self.call("GET", "/settings"))

    def put_settings(self, **values: Any) -> dict[str, Any]:
        """Change some host settings (partial update); returns them all."""
        return dict(self.call("PUT", "/settings", values))

    def put_registry(self, table: str, key: str, **values: Any) -> dict[str, Any]:
        """Create or change a merchant (by MID), terminal (by TID) or card (by PAN): ``table`` is
        ``merchants``, ``terminals`` or ``cards``."""
        if table not in REGISTRY_TABLES:
            raise ValueError(f"registry {table!r} is not a registry table, expecting one of "
                             f"{', '.join(REGISTRY_TABLES)}")
        return dict(self.call("PUT", f"/registry/{table}/{self.segment(key)}", values))
