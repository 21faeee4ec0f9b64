"""The request journal: what the host received and what it did with it, masked, newest last.

Kept in memory (bounded); the durable record of every request is the authorization ledger.  The
journal adds what the ledger cannot hold: requests that never reached the core (undecodable
frames, connections closed by a fault), the answer as sent, and which faults fired.  It also
records each time a ``refuse_connect`` fault closes the listening socket (``listener_closed``, with
the faults) and each time the server listens again (``listener_reopened``); those entries carry no
request, and ``peer`` is the listening address.

Every message is masked (:func:`specs.masking.mask_message`) before it is stored, so nothing the
control API returns can leak a PAN, track data, a PIN block or a key.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from specs.codec import Message
from specs.masking import mask_error_text, mask_message


class RequestJournal:
    """A bounded, masked log of received requests."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: deque[dict[str, Any]] = deque(maxlen=max_entries)
        self._seq = 0

    def add(self, *, at: str, peer: str, outcome: str, request: Message | None = None, response: Message | None = None,
            faults: tuple[str, ...] = (), error: str | None = None) -> dict[str, Any]:
        """Record one request (or one frame that could not be read) and return the entry."""
        self._seq += 1
        entry: dict[str, Any] = {
            "seq": self._seq, "at": at, "peer": peer, "outcome": outcome,
            "mti": request.get("t") if request else None, "tid": request.get("41") if request else None,
            "stan": request.get("11") if request else None,
            "request": mask_message(request) if request else None,
            "response": mask_message(response) if response else None,
            "faults": list(faults), "error": mask_error_text(error) if error else None,
        }
        self._entries.append(entry)
        return entry

    def entries(self, *, tid: str | None = None, mti: str | None = None, outcome: str | None = None,
                limit: int | None = None) -> list[dict[str, Any]]:
        """Entries, oldest first, filtered by equality; ``limit`` keeps the newest ones."""
        rows = [e for e in self._entries if (tid is None or e["tid"] == tid) and (mti is None or e["mti"] == mti)
                and (outcome is None or e["outcome"] == outcome)]
        return rows[-limit:] if limit else rows

    def clear(self) -> None:
        self._entries.clear()
        self._seq = 0
