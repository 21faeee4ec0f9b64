"""``pos-host``: run the stub acquirer host.

    pos-host serve --dialect intl-bcd --port 0 --ledger host.sqlite
    pos-host serve --dialect cup --port 0 --control-port 0 --config host.yaml
    pos-host serve --profile acme.yaml --packager acme.xml --port 0

When listening it prints one JSON line on stdout, ``{"event": "ready", "port": <port>, ...}`` (with
``"control_port"`` when the control API is served), so that a parent process can start it on
port 0 and read the ports back.  SIGTERM and SIGINT stop it cleanly: no new connections,
in-flight requests finish (their ledger transaction and answer), the ledger is closed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Callable

import click
import structlog

from host_stub.runtime import HostRuntime, read_config_file
from host_stub.validation import ConfigError
from specs.cliopts import CONTROL_TOKEN_ENV, database_open_problem, framing_options, resolve_wire, wire_options
from specs.dialects import DIALECTS
from specs.logs import configure_logging

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
@click.option("--control-port", type=click.IntRange(0, 65535), default=None,
              help="Serve the HTTP control API on this port (0 picks a free one; the ready line says which).")
@click.option("--control-bind", default=None, help="Address of the control API (default: 127.0.0.1).")
@click.option("--control-token", envvar=CONTROL_TOKEN_ENV, default=None, show_envvar=True,
              help="Bearer token every control API call must carry (mandatory when --control-bind is not loopback).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML file with settings, registry, faults and clock to start with.")
@click.option("--grace-seconds", type=click.FloatRange(0), default=5.0, show_default=True,
              help="On SIGTERM/SIGINT, how long in-flight requests may take to finish.")
@click.option("--loop", "loop_name", type=click.Choice(["auto", "asyncio", "uvloop"]), default="auto", show_default=True,
              help="Event loop: uvloop (faster; pip install 'pos-harness[fast]'), the standard asyncio loop, or "
                   "auto: uvloop when it is installed.")
@framing_options
@wire_options
def serve(dialect: str, bind: str, port: int, ledger_path: str, control_port: int | None, control_bind: str | None,
          control_token: str | None, config_path: str | None, grace_seconds: float, loop_name: str,
          length_prefix: str | None, tpdu: bool | None, cup_header: bool | None, max_frame_bytes: int,
          profile: str | None, packager: str | None) -> None:
    """Serve terminals until SIGTERM or SIGINT."""
    wire, framing = resolve_wire(dialect, profile, packager, length_prefix, tpdu, cup_header, max_frame_bytes)
    control_bind = control_bind or "127.0.0.1"
    if control_port is not None and not control_token and not _loopback(control_bind):
        raise click.UsageError(f"--control-bind {control_bind} is not a loopback address: anyone who can reach it "
                               "could drive the host, so --control-token (or POS_HOST_CONTROL_TOKEN) is required")
    try:
        config = read_config_file(config_path) if config_path else {}
        runtime = HostRuntime(dialect=wire, framing=framing, ledger_path=ledger_path, config=config,
                              grace_seconds=grace_seconds)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--config") from None
    except (sqlite3.Error, OSError) as exc:  # the books are opened here: a bad --ledger is bad usage
        raise click.UsageError(database_open_problem("--ledger", ledger_path, exc, "a pos-host ledger")) from None
    except ValueError as exc:  # the storage key file beside the ledger is not one
        raise click.UsageError(f"--ledger {ledger_path}: {exc}") from None
    loop_factory = _loop_factory(loop_name)
    try:
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            runner.run(_serve(runtime, bind, port, control_port, control_bind, control_token or None))
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {bind}:{port}: {exc.strerror or exc}") from None


def _loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def _loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop ``--loop`` asks for (None: the standard asyncio loop)."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise click.UsageError("--loop uvloop: uvloop is not installed (pip install 'pos-harness[fast]')") from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


async def _serve(runtime: HostRuntime, bind: str, port: int, control_port: int | None, control_bind: str,
                 control_token: str | None) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    try:
        await runtime.start(bind, port, control_port=control_port, control_bind=control_bind,
                            control_token=control_token)
    except OSError:
        await runtime.stop()
        raise
    framing = runtime.framing
    ready = {"event": "ready", "port": runtime.port, "bind": bind, "dialect": runtime.dialect.profile.base,
             "wire": runtime.dialect.describe(),
             "framing": {"length_prefix": framing.length_prefix, "tpdu": framing.tpdu,
                         "cup_header": framing.cup_header},
             "ledger": runtime.ledger.path, "pid": os.getpid(), "loop": _loop_kind()}
    if runtime.control_port is not None:
        ready["control_port"] = runtime.control_port
        ready["control_bind"] = control_bind
        ready["control_token"] = control_token is not None  # whether one is needed, never the token
    print(json.dumps(ready), flush=True)
    log.warning("test keys in use: working keys are derived from the TID and sign-on count and sent under each "
                "terminal's TMK (the public test TMK unless the registry gives one), and the ledger keeps them; "
                "fit for tests only, never for real cards")
    log.info("listening", port=runtime.port, control_port=runtime.control_port, dialect=runtime.dialect.describe(),
             faults=len(runtime.faults))
    await stopping.wait()
    log.info("stopping")
    await runtime.stop()
    sys.stdout.flush()


def _loop_kind() -> str:
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"


if __name__ == "__main__":
    main()
