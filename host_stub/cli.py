"""``pos-host``: run the stub acquirer host.

    pos-host serve --dialect intl-bcd --port 0 --ledger host.sqlite

When listening it prints one JSON line on stdout, ``{"event": "ready", "port": <port>, ...}``, so
that a parent process can start it on port 0 and read the port back.  SIGTERM and SIGINT stop it
cleanly: no new connections, in-flight answers finish, the ledger is closed.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys

import click
import structlog

from specs.dialects import DIALECTS, get_dialect
from specs.cliopts import framing_options, resolve_framing
from specs.framing import Framing
from specs.logs import configure_logging

from host_stub.clock import BusinessClock
from host_stub.host import Host
from host_stub.ledger import Ledger
from host_stub.server import HostServer

log = structlog.get_logger("pos_host")


@click.group()
@click.option("--log-json", is_flag=True, help="Log JSON lines on stderr instead of console text.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
def main(log_json: bool, log_level: str) -> None:
    """Stub ISO 8583 acquirer host."""
    configure_logging(json=log_json, level=log_level)


@main.command()
@click.option("--dialect", type=click.Choice(sorted(DIALECTS)), default="intl-bcd", show_default=True)
@click.option("--bind", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="TCP port; 0 picks a free one.")
@click.option("--ledger", "ledger_path", default=":memory:", show_default=True,
              help="SQLite ledger file; a restarted host with the same file keeps its books.")
@framing_options
def serve(dialect: str, bind: str, port: int, ledger_path: str, length_prefix: str | None,
          tpdu: bool | None, cup_header: bool | None, max_frame_bytes: int) -> None:
    """Serve terminals until SIGTERM or SIGINT."""
    framing = resolve_framing(dialect, length_prefix, tpdu, cup_header, max_frame_bytes)
    try:
        asyncio.run(_serve(dialect, bind, port, ledger_path, framing))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None


async def _serve(dialect_name: str, bind: str, port: int, ledger_path: str, framing: Framing) -> None:
    dialect = get_dialect(dialect_name)
    ledger = Ledger(ledger_path)
    server = HostServer(Host(ledger, dialect), dialect=dialect, framing=framing, clock=BusinessClock())
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    bound_port = await server.start(bind, port)
    print(json.dumps({"event": "ready", "port": bound_port, "bind": bind, "dialect": dialect.name,
                      "framing": {"length_prefix": framing.length_prefix, "tpdu": framing.tpdu,
                                  "cup_header": framing.cup_header},
                      "ledger": ledger_path, "pid": os.getpid()}), flush=True)
    log.info("listening", port=bound_port, dialect=dialect.name)
    await stopping.wait()
    log.info("stopping")
    await server.stop()
    ledger.close()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
