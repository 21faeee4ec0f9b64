"""Start a stub host as a child process and read its ready line.

The emulator never imports ``host_stub``: it runs ``pos-host serve --port 0`` (as
``python -m host_stub.cli`` with the same interpreter, so no PATH lookup is needed) and learns the
bound port from the JSON ready line, exactly as it would for a host in a container.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass
from typing import Any, Self

READY_TIMEOUT_SECONDS = 20.0


class HostStartError(RuntimeError):
    """The child host exited or printed something other than its ready line."""



def host_address(text: str, option: str = "--host") -> tuple[str, int]:
    """``HOST:PORT`` as the address and port of a host the terminal is pointed at.

    >>> host_address("127.0.0.1:8583")
    ('127.0.0.1', 8583)
    >>> host_address("8583", "--pos-host")
    Traceback (most recent call last):
    ValueError: --pos-host '8583' is not HOST:PORT, expecting e.g. 127.0.0.1:8583

    Raises:
        ValueError: not HOST:PORT with a port 1-65535 (the text names ``option``).
    """
    address, _, port = text.rpartition(":")
    if not address or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{option} {text!r} is not HOST:PORT, expecting e.g. 127.0.0.1:8583")
    return address, int(port)

@dataclass
class HostProcess:
    """A running child host; use as a context manager to stop it (SIGTERM) on exit."""

    process: subprocess.Popen[str]
    ready: dict[str, Any]

    @property
    def port(self) -> int:
        return int(self.ready["port"])

    def stop(self, timeout_seconds: float = 10.0) -> int:
        """SIGTERM, wait, and return the exit code (SIGKILL if it does not stop in time)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        return self.process.returncode

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_host(*args: str, stderr: Any = subprocess.DEVNULL) -> HostProcess:
    """Run ``pos-host [global options] serve ...`` with ``args`` and wait for its ready line.

    Args:
        args: arguments after ``pos-host``, e.g. ``("serve", "--dialect", "cup", "--port", "0")``.
        stderr: where the child's log goes (default: discarded).

    Raises:
        HostStartError: the child exited, or its first stdout line is not a ready event.
    """
    process = subprocess.Popen([sys.executable, "-m", "host_stub.cli", *args], stdout=subprocess.PIPE,
                               stderr=stderr, text=True)
    assert process.stdout is not None
    line: list[str] = []
    reader = threading.Thread(target=lambda: line.append(process.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(READY_TIMEOUT_SECONDS)
    first = line[0] if line else ""
    try:
        ready = json.loads(first)
        if ready.get("event") != "ready":
            raise ValueError
    except ValueError:
        process.kill()
        process.wait()
        raise HostStartError(f"stub host did not become ready: first stdout line {first.strip()!r}, "
                             f"expecting a JSON ready event (exit code {process.returncode})") from None
    return HostProcess(process=process, ready=ready)
