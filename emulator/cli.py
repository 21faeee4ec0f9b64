"""``pos-terminal``: drive the emulated POS terminal from the command line.

    pos-terminal --port 8583 --dialect intl-bcd --journal t1.sqlite signon
    pos-terminal --port 8583 --journal t1.sqlite --json sale 12.34
    pos-terminal --port 8583 --journal t1.sqlite settle
    pos-terminal demo            # start a stub host child, sign on, three sales, settle

Exit codes: 0 the exchange completed (approved, declined, balanced or unbalanced); 2 bad usage or
configuration; 3 no connection could be made; 4 the request went out and no answer came.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from specs.cards import Card, seeded_card
from specs.cliopts import framing_options, resolve_framing
from specs.dialects import DIALECTS, get_dialect
from specs.framing import Framing
from specs.logs import configure_logging
from specs.masking import mask_pan

from emulator.channel import Endpoint, run_operation
from emulator.hostproc import HostStartError, start_host
from emulator.journal import Journal
from emulator.messages import Profile
from emulator.terminal import Echo, Operation, Outcome, Result, Sale, Settle, SignOff, SignOn, Terminal

EXIT_CONNECT_FAILED = 3
EXIT_NO_ANSWER = 4


class Settings:
    """Global options, resolved once per invocation."""

    def __init__(self, **options: Any) -> None:
        self.host: str = options["host"]
        self.port: int | None = options["port"]
        self.dialect = get_dialect(options["dialect"])
        self.framing: Framing = resolve_framing(options["dialect"], options["length_prefix"], options["tpdu"],
                                                options["cup_header"], options["max_frame_bytes"])
        self.journal_path: str = options["journal"]
        self.profile = Profile(tid=options["tid"], mid=options["mid"], family=self.dialect.family, nii=options["nii"])
        self.timeout: float = options["timeout"]
        self.json: bool = options["json_output"]


def parse_amount(text: str) -> int:
    """``"12.34"`` -> 1234 minor units.

    Raises:
        click.BadParameter: not a positive decimal with at most 2 places.
    """
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise click.BadParameter(f"{text!r} is not a decimal amount, expecting e.g. 12.34") from None
    if not value.is_finite() or value <= 0:
        raise click.BadParameter(f"{text!r} is not a positive amount, expecting e.g. 12.34")
    if value != value.quantize(Decimal("0.01")):
        raise click.BadParameter(f"{text!r} has more than 2 decimal places, expecting e.g. 12.34")
    minor = int(value * 100)
    if minor > 999_999_999_999:
        raise click.BadParameter(f"{text!r} does not fit field 4 (12 digits of minor units)")
    return minor


def _validate_identity(tid: str, mid: str) -> None:
    if len(tid) != 8:
        raise click.BadParameter(f"TID {tid!r} is {len(tid)} characters, expecting 8", param_hint="--tid")
    if len(mid) != 15:
        raise click.BadParameter(f"MID {mid!r} is {len(mid)} characters, expecting 15", param_hint="--mid")


@click.group()
@click.option("--host", default="127.0.0.1", show_default=True, help="Host address.")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Host TCP port.")
@click.option("--dialect", type=click.Choice(sorted(DIALECTS)), default="intl-bcd", show_default=True)
@click.option("--journal", default="terminal.sqlite", show_default=True, help="Terminal journal (SQLite file).")
@click.option("--tid", default="10000001", show_default=True, help="Terminal ID (field 41, 8 characters).")
@click.option("--mid", default="123456789012345", show_default=True, help="Merchant ID (field 42, 15 characters).")
@click.option("--nii", default="112", show_default=True, help="NII (INTL field 24 and TPDU destination).")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=60.0, show_default=True,
              help="Response timeout in seconds.")
@click.option("--json", "json_output", is_flag=True, help="Print one JSON object per command on stdout.")
@click.option("--log-json", is_flag=True, help="Log JSON lines on stderr instead of console text.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@framing_options
@click.pass_context
def main(ctx: click.Context, log_json: bool, log_level: str, **options: Any) -> None:
    """Emulated ISO 8583 POS terminal."""
    configure_logging(json=log_json, level=log_level)
    _validate_identity(options["tid"], options["mid"])
    ctx.obj = Settings(**options)


def _run(settings: Settings, make_operation: Any) -> Result:
    if settings.port is None:
        raise click.UsageError("--port is required for commands that talk to the host")
    journal = Journal(settings.journal_path)
    try:
        terminal = Terminal(settings.profile, journal.load(), response_timeout_seconds=settings.timeout)
        endpoint = Endpoint(host=settings.host, port=settings.port,
                            connect_timeout_seconds=min(10.0, max(settings.timeout, 0.5)))
        return asyncio.run(run_operation(make_operation(datetime.now()), terminal=terminal, journal=journal,
                                         endpoint=endpoint, framing=settings.framing, dialect=settings.dialect))
    finally:
        journal.close()


def _report(settings: Settings, result: Result) -> None:
    if settings.json:
        click.echo(json.dumps(result.as_dict()))
    else:
        click.echo(format_result(result))
    if result.outcome is Outcome.CONNECT_FAILED:
        sys.exit(EXIT_CONNECT_FAILED)
    if result.outcome is Outcome.NO_ANSWER:
        sys.exit(EXIT_NO_ANSWER)


def format_result(result: Result) -> str:
    """One human line per command."""
    exchange = f"{result.mti or '----'} -> {result.response_mti or '----'}"
    parts = [f"{result.command:<8}", exchange, f"rc {result.rc or '--'}", f"{result.outcome.value:<10}"]
    if result.stan:
        parts.append(f"STAN {result.stan}")
    d = result.details
    if "amount_minor" in d:
        parts.append(f"amount {d['amount_minor'] / 100:.2f}")
    if d.get("rrn"):
        parts.append(f"RRN {d['rrn']} auth {d['auth_code']}")
    if "settlement_result" in d:
        parts.append(f"batch {d['batch']} sales {d['sale_count']}/{d['sale_amount_minor'] / 100:.2f}")
    parts.append(f"({result.text})")
    return "  ".join(parts)


def _card(settings: Settings, pan: str | None, expiry: str | None) -> Card:
    default = seeded_card(seed=int(settings.profile.tid) if settings.profile.tid.isdigit() else 8583,
                          scheme="unionpay" if settings.dialect.family == "cup" else "visa")
    return Card(pan=pan or default.pan, expiry=expiry or default.expiry)


@main.command()
@click.pass_obj
def signon(settings: Settings) -> None:
    """Sign on (0800): INTL 70=001, CUP 60.3=003; CUP adopts the host's batch number."""
    _report(settings, _run(settings, lambda now: SignOn(now=now)))


@main.command()
@click.pass_obj
def signoff(settings: Settings) -> None:
    """Sign off (INTL 0800 70=002, CUP 0820 60.3=002)."""
    _report(settings, _run(settings, lambda now: SignOff(now=now)))


@main.command()
@click.pass_obj
def echo(settings: Settings) -> None:
    """Echo test (INTL 0800 70=301, CUP 0820 60.3=301)."""
    _report(settings, _run(settings, lambda now: Echo(now=now)))


@main.command()
@click.argument("amount")
@click.option("--pan", default=None, help="Card number (default: a seeded Luhn-valid test card).")
@click.option("--expiry", default=None, help="Card expiry YYMM.")
@click.pass_obj
def sale(settings: Settings, amount: str, pan: str | None, expiry: str | None) -> None:
    """Sale (0200) of AMOUNT, a decimal such as 12.34."""
    minor = parse_amount(amount)
    card = _card(settings, pan, expiry)
    _report(settings, _run(settings, lambda now: Sale(now=now, amount_minor=minor, card=card)))


@main.command()
@click.pass_obj
def settle(settings: Settings) -> None:
    """Settle the open batch (INTL 0500 920000 with field 63; CUP 0500 with field 48)."""
    _report(settings, _run(settings, lambda now: Settle(now=now)))


@main.command()
@click.pass_obj
def status(settings: Settings) -> None:
    """Show counters, sign-on state and the open batch (no traffic)."""
    journal = Journal(settings.journal_path)
    try:
        books = journal.load()
    finally:
        journal.close()
    totals = books.open_batch_totals()
    data = {"stan": f"{books.stan:06d}", "invoice": f"{books.invoice:06d}", "batch": f"{books.batch:06d}",
            "signed_on": books.signed_on, "open_records": len(books.records),
            "sale_count": totals.debit_count, "sale_amount_minor": totals.debit_minor}
    click.echo(json.dumps(data) if settings.json else "  ".join(f"{k} {v}" for k, v in data.items()))


@main.command()
@click.pass_obj
def journal(settings: Settings) -> None:
    """Show the open batch's journal, card numbers masked (no traffic)."""
    store = Journal(settings.journal_path)
    try:
        rows = store.records()
    finally:
        store.close()
    for row in rows:
        row["pan"] = mask_pan(row["pan"])
        click.echo(json.dumps(row) if settings.json else
                   f"inv {row['invoice']} STAN {row['stan']} batch {row['batch']} {row['kind']} "
                   f"{row['amount_minor'] / 100:.2f} {row['pan']} RRN {row['rrn']} auth {row['auth_code']}")


@main.command()
@click.option("--sales", "amounts", default="10.00,20.00,30.00", show_default=True,
              help="Comma-separated sale amounts.")
@click.pass_obj
def demo(settings: Settings, amounts: str) -> None:
    """Start a stub host child, then sign on, run the sales and settle (balanced)."""
    minors = [parse_amount(a.strip()) for a in amounts.split(",") if a.strip()]
    with tempfile.TemporaryDirectory(prefix="pos-harness-demo-") as tmp:
        try:
            host = start_host("serve", "--dialect", settings.dialect.name, "--port", "0",
                              "--ledger", str(Path(tmp) / "host.sqlite"),
                              "--length-prefix", settings.framing.length_prefix,
                              "--tpdu" if settings.framing.tpdu else "--no-tpdu",
                              "--cup-header" if settings.framing.cup_header else "--no-cup-header")
        except HostStartError as exc:
            raise click.ClickException(str(exc)) from None
        with host:
            click.echo(f"stub host ({settings.dialect.name}) ready on port {host.port}")
            settings.port = host.port
            settings.journal_path = str(Path(tmp) / "terminal.sqlite")
            card = _card(settings, None, None)
            steps: list[Any] = [lambda now: SignOn(now=now)]
            steps += [lambda now, m=m: Sale(now=now, amount_minor=m, card=card) for m in minors]
            steps.append(lambda now: Settle(now=now))
            for step in steps:
                result = _run(settings, step)
                click.echo(json.dumps(result.as_dict()) if settings.json else format_result(result))
                if not result.outcome.completed or result.outcome is Outcome.DECLINED:
                    raise click.ClickException(f"demo stopped: {result.command} {result.outcome.value} ({result.text})")
            if result.outcome is not Outcome.BALANCED:
                raise click.ClickException(f"demo settlement was {result.outcome.value}, expecting balanced")
            click.echo("demo complete: signed on, "
                       f"{len(minors)} sales approved, settlement balanced, batch closed")


if __name__ == "__main__":
    main()
