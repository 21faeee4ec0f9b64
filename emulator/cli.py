"""``pos-terminal``: drive the emulated POS terminal from the command line.

    pos-terminal --port 8583 --dialect intl-bcd --journal t1.sqlite signon
    pos-terminal --port 8583 --journal t1.sqlite --json sale 12.34
    pos-terminal --port 8583 --journal t1.sqlite void --invoice 1
    pos-terminal --port 8583 --journal t1.sqlite --set final_reversal_codes=00 sale 5.00
    pos-terminal --port 8583 --journal t1.sqlite settle
    pos-terminal demo            # start a stub host child, sign on, three sales, settle

Each invocation is one operation; everything durable (counters, keys, journal, pending reversals,
queued advices, the settlement state) lives in the ``--journal`` file, so the next invocation
continues where the last one stopped — also after ``--crash-at POINT`` killed it like a power cut.
When an operation leaves a reversal pending, the terminal sends it at once ("at idle") unless
``reverse_at_idle`` is off; ``reverse`` sends pending reversals on demand.

Options that apply to every command (before or after the command name): ``--host``, ``--port``,
``--dialect``, ``--journal``, ``--tid``, ``--mid``, ``--timeout``, ``--config FILE`` (YAML settings),
``--set name=value`` (repeatable), ``--crash-at POINT``, ``--operator ID`` (who does it: CUP 63.1,
the journal's ``operator``; roles from the ``operators`` setting), ``--now ISO-DATETIME`` (the
business time to use instead of the clock synced at sign-on, e.g. a scenario's clock) and ``--json``.

With ``--json`` each command prints one JSON object: the result keys (``command``, ``outcome``,
``mti``, ``response_mti``, ``rc``, ``stan``, ``text``, and what the command adds) plus ``operator``
and ``trace``, the wire trace of this invocation (events as :meth:`emulator.journal.Journal.trace`
returns them: ``kind`` sent / received / timeout / link_lost / unreadable / connect_failed / crash,
the masked ``message``, ``matched`` and ``mac_verified`` for received messages).  ``status --json``
shows the durable state (see :func:`status_of`); ``trace --since N --json`` the trace after event N
(also what a process that died at a crash point had sent).

Exit codes: 0 the exchange completed (approved, declined, balanced or unbalanced); 2 bad usage or
configuration; 3 no connection could be made; 4 a request went out and no (trustworthy) answer
came; 5 refused by the terminal itself, nothing sent; 137 died at the armed crash point.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click

from emulator.channel import Endpoint, RequestNotBuilt, run_invocation, run_operation
from emulator.hostproc import HostStartError, start_host
from emulator.journal import Journal
from emulator.messages import DEFAULT_MID, DEFAULT_NII, DEFAULT_TID, Profile
from emulator.settings import CRASH_POINTS, SettingsError, TerminalSettings, describe, load_settings
from emulator.terminal import (
    Adjust,
    Balance,
    Books,
    Completion,
    CompletionVoid,
    Echo,
    OfflineSale,
    Operation,
    Outcome,
    PreAuth,
    PreAuthVoid,
    Reference,
    Refund,
    Result,
    Reverse,
    Sale,
    Settle,
    SignOff,
    SignOn,
    Terminal,
    Void,
)
from specs.cards import Card, seeded_card
from specs.cliopts import database_open_problem, framing_options, resolve_wire, wire_options
from specs.crypto import check_pin
from specs.dialects import DIALECTS
from specs.logs import configure_logging
from specs.masking import mask_pan

EXIT_CONNECT_FAILED = 3
EXIT_NO_ANSWER = 4
EXIT_REFUSED = 5

_EXIT_CODES = {Outcome.CONNECT_FAILED: EXIT_CONNECT_FAILED, Outcome.NO_ANSWER: EXIT_NO_ANSWER,
               Outcome.MAC_FAILED: EXIT_NO_ANSWER, Outcome.REFUSED: EXIT_REFUSED}

#: Options every command takes, also after the command name: name -> click option factory.
_COMMON = ("host", "port", "dialect", "journal", "tid", "mid", "timeout", "config", "overrides", "crash_at",
           "operator", "now", "json_output")


def _common_options(func: Callable[..., Any], *, top: bool) -> Callable[..., Any]:
    """The options every command takes.  At the top level they carry the defaults; after the
    command name they default to None ("as given before the command")."""
    def default(value: Any) -> Any:
        return value if top else None
    options = [
        click.option("--host", default=default("127.0.0.1"), show_default=top, help="Host address."),
        click.option("--port", type=click.IntRange(1, 65535), default=None, help="Host TCP port."),
        click.option("--dialect", type=click.Choice(sorted(DIALECTS)), default=default("intl-bcd"), show_default=top),
        click.option("--journal", default=default("terminal.sqlite"), show_default=top,
                     help="Terminal journal (SQLite file)."),
        click.option("--tid", default=default(DEFAULT_TID), show_default=top,
                     help="Terminal ID (field 41, 8 characters)."),
        click.option("--mid", default=default(DEFAULT_MID), show_default=top,
                     help="Merchant ID (field 42, 15 characters)."),
        click.option("--timeout", type=click.FloatRange(min=0.001), default=default(60.0), show_default=top,
                     help="Response timeout in seconds."),
        click.option("--config", type=click.Path(dir_okay=False), default=None,
                     help="YAML file of settings (fix toggles, limits, keys, terminal faults)."),
        click.option("--set", "overrides", multiple=True, metavar="NAME=VALUE",
                     help="Override one setting (repeatable), e.g. --set final_reversal_codes=00,12,25."),
        click.option("--crash-at", type=click.Choice(sorted(CRASH_POINTS)), default=None,
                     help="Die like a power cut at this crash point (domain.md §3.1 a-g)."),
        click.option("--operator", default=None, metavar="ID",
                     help="Operator doing the command (3 digits, CUP 63.1); default: the first supervisor of the "
                          "operators setting, or 001."),
        click.option("--now", default=None, metavar="ISO-DATETIME",
                     help="Business time to use (e.g. 2024-06-03T09:00:00) instead of the clock synced at sign-on."),
        click.option("--json", "json_output", is_flag=True, default=None if not top else False,
                     help="Print one JSON object per command on stdout."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class Options:
    """Options of one invocation, resolved once."""

    def __init__(self, **options: Any) -> None:
        self.raw = options
        self.resolve()

    def merge(self, local: dict[str, Any]) -> None:
        """Apply options given after the command name (those not None win)."""
        for name in _COMMON:
            value = local.get(name)
            if name == "overrides":
                self.raw["overrides"] = (*self.raw.get("overrides", ()), *(value or ()))
            elif value is not None:
                self.raw[name] = value
        self.resolve()

    def resolve(self) -> None:
        o = self.raw
        _validate_identity(o["tid"], o["mid"])
        self.host: str = o["host"]
        self.port: int | None = o["port"]
        self.dialect, self.framing = resolve_wire(o["dialect"], o.get("profile"), o.get("packager"), o["length_prefix"],
                                                  o["tpdu"], o["cup_header"], o["max_frame_bytes"])
        self.journal_path: str = o["journal"]
        self.profile = Profile(tid=o["tid"], mid=o["mid"], family=self.dialect.family, nii=o["nii"],
                               wire=self.dialect.profile)
        self.timeout: float = o["timeout"]
        self.json: bool = bool(o["json_output"])
        operator = o.get("operator")
        if operator is not None and not (len(operator) == 3 and operator.isdigit()):
            raise click.BadParameter(f"operator {operator!r} is {len(operator)} characters, expecting 3 digits like 001",
                                     param_hint="--operator")
        self.operator: str | None = operator
        self.now: datetime | None = None
        if o.get("now"):
            try:
                self.now = datetime.fromisoformat(o["now"]).replace(tzinfo=None)
            except ValueError:
                raise click.BadParameter(f"{o['now']!r} is not an ISO date-time, expecting e.g. 2024-06-03T09:00:00",
                                         param_hint="--now") from None
        try:
            settings = load_settings(o["config"], o["overrides"])
            if o["crash_at"]:
                settings = load_settings(overrides=[f"crash_at={o['crash_at']}"], base=settings)
        except SettingsError as exc:
            raise click.BadParameter(str(exc), param_hint="--config/--set") from None
        self.settings: TerminalSettings = settings

    @property
    def wire_args(self) -> tuple[str, ...]:
        """``--profile`` / ``--packager`` as given, for a stub host started to match this terminal."""
        return (*(("--profile", self.raw["profile"]) if self.raw.get("profile") else ()),
                *(("--packager", self.raw["packager"]) if self.raw.get("packager") else ()))


class BadRequest(click.ClickException):
    """A request the operator's input made unbuildable: exit 2 like any other bad usage."""

    exit_code = 2


def parse_amount(text: str) -> int:
    """``"12.34"`` -> 1234 minor units.

    Raises:
        click.BadParameter: not a positive decimal with at most 2 places.
    """
    try:
        if not text.removeprefix("-").replace(".", "", 1).isdigit():  # Decimal alone takes 1e3, NaN and " 5"
            raise InvalidOperation
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


def _top_options(func: Callable[..., Any]) -> Callable[..., Any]:
    return _common_options(func, top=True)


@click.group()
@_top_options
@click.option("--nii", default=DEFAULT_NII, show_default=True, help="NII (INTL field 24 and TPDU destination).")
@click.option("--log-json", is_flag=True, help="Log JSON lines on stderr instead of console text.")
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(["debug", "info", "warning", "error"]))
@framing_options
@wire_options
@click.pass_context
def main(ctx: click.Context, /, log_json: bool, log_level: str, **options: Any) -> None:
    """Emulated ISO 8583 POS terminal."""
    configure_logging(json=log_json, level=log_level)
    ctx.obj = Options(**options)


def command(name: str | None = None, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
    """A subcommand that also takes the common options after its name."""
    def decorate(func: Callable[..., Any]) -> Any:
        @functools.wraps(func)  # also carries the click parameters declared on func
        def wrapper(**params: Any) -> Any:
            options: Options = click.get_current_context().obj
            options.merge({k: params.pop(k) for k in _COMMON if k in params})
            return func(options, **params)
        wrapper.__click_params__ = list(getattr(func, "__click_params__", []))  # type: ignore[attr-defined]
        return main.command(name, **kwargs)(_common_options(wrapper, top=False))
    return decorate


# --------------------------------------------------------------------------- running operations


def _now(books: Books, options: Options | None = None) -> datetime:
    """The terminal's clock: the business time given with ``--now``, else local time plus the offset
    learnt from the host at sign-on."""
    if options is not None and options.now is not None:
        return options.now
    return datetime.now() + timedelta(seconds=books.clock_offset_seconds)


def _operation(options: Options, make: Callable[[datetime], Operation], books: Books) -> Operation:
    operation = make(_now(books, options))
    return dataclasses.replace(operation, operator=options.operator) if options.operator else operation


async def _drive(options: Options, journal: Journal, make: Callable[[datetime], Operation]) -> Result:
    books = journal.load()
    trace_from = journal.last_trace_seq()
    terminal = Terminal(options.profile, books, response_timeout_seconds=options.timeout, settings=options.settings)
    assert options.port is not None
    endpoint = Endpoint(host=options.host, port=options.port,
                        connect_timeout_seconds=min(10.0, max(options.timeout, 0.5)))
    operation = _operation(options, make, books)
    result = await run_invocation(operation, terminal=terminal, journal=journal, endpoint=endpoint,
                                  framing=options.framing, dialect=options.dialect,
                                  idle_now=lambda: _now(terminal.books, options))
    return _with_trace(result, journal, trace_from)


def _with_trace(result: Result, journal: Journal, since: int) -> Result:
    """The result with the wire trace this invocation wrote (``trace``)."""
    return dataclasses.replace(result, details={**result.details, "trace": journal.trace(since=since)})


def _open_journal(options: Options) -> Journal:
    """The ``--journal`` file, opened (created when missing).

    Raises:
        click.UsageError: the file cannot be opened or is not a journal (exit 2), naming the option,
            the path and what was wrong.
    """
    try:
        return Journal(options.journal_path)
    except (sqlite3.Error, OSError) as exc:
        raise click.UsageError(database_open_problem("--journal", options.journal_path, exc,
                                             "a pos-terminal journal")) from None


def _run(options: Options, make: Callable[[datetime], Operation]) -> Result:
    if options.port is None:
        raise click.UsageError("--port is required for commands that talk to the host")
    return _in_journal(options, lambda journal: _drive(options, journal, make))


def _run_offline(options: Options, make: Callable[[datetime], Operation]) -> Result:
    """An operation that sends nothing (offline sale, tip adjust): no port is needed."""
    return _in_journal(options, lambda journal: _offline(options, journal, make))


def _in_journal(options: Options, drive: Callable[[Journal], Coroutine[Any, Any, Result]]) -> Result:
    """Open the journal, run ``drive`` on it, close it; what goes wrong becomes a CLI error."""
    journal = _open_journal(options)
    try:
        return asyncio.run(drive(journal))
    except RequestNotBuilt as exc:
        raise BadRequest(str(exc)) from None
    except sqlite3.Error as exc:  # disk full, file locked by another process ... mid-operation
        raise click.ClickException(
            f"--journal {options.journal_path}: could not be written ({exc}); it keeps its last committed state, "
            "as after a power cut, and the next command recovers from it (a pending reversal first)") from None
    finally:
        journal.close()


def run_command(options: Options, make: Callable[[datetime], Operation], *, offline: bool = False) -> Result:
    """One operation run exactly as one ``pos-terminal`` command runs it, for in-process callers
    (the pytest plugin's ``pos_terminal``): the journal opened and closed, a reversal left behind
    sent at idle, the invocation's wire trace in ``details["trace"]``.

    Args:
        options: the invocation's options (``Options(**raw)``, as the command line builds them).
        make: the operation at the terminal's clock, e.g. ``lambda now: Sale(now=now, ...)``.
        offline: an operation that sends nothing (offline sale, tip adjust): no port needed.

    Returns:
        The result ``--json`` prints (``result.as_dict()``); no exit code is derived from it.
    """
    return (_run_offline if offline else _run)(options, make)


def _exit_code(result: Result) -> int:
    failed = result.details.get("failed_step")
    if failed:
        return _EXIT_CODES.get(Outcome(failed["outcome"]), 0)
    return _EXIT_CODES.get(result.outcome, 0)


def _report(options: Options, result: Result) -> None:
    click.echo(json.dumps(result.as_dict()) if options.json else format_result(result))
    code = _exit_code(result)
    if code:
        sys.exit(code)


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
        if d.get("uploaded"):
            parts.append(f"uploaded {d['uploaded']}")
    if d.get("reversal_sent"):
        parts.append("reversal " + ("cleared" if d.get("reversal_cleared") else
                                    "parked" if d.get("reversal_parked") else "still pending"))
    parts.append(f"({result.text})")
    return "  ".join(parts)


def _card(options: Options, pan: str | None, expiry: str | None) -> Card:
    default = seeded_card(seed=int(options.profile.tid) if options.profile.tid.isdigit() else 8583,
                          scheme="unionpay" if options.dialect.family == "cup" else "visa")
    try:
        return Card(pan=pan or default.pan, expiry=expiry or default.expiry)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--pan" if "number" in str(exc) else "--expiry") from None


def _pin_option(ctx: click.Context, param: click.Parameter, pin: str | None) -> str | None:
    if pin is not None:
        try:
            check_pin(pin)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return pin


def _card_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--pin", default=None, callback=_pin_option, help="PIN entered by the cardholder (sent as an ISO 9564 "
                                                    "format 0 block under the PIN key).")(func)
    func = click.option("--expiry", default=None, help="Card expiry YYMM.")(func)
    func = click.option("--pan", default=None, help="Card number (default: a seeded Luhn-valid test card).")(func)
    return func


def _original_options(func: Callable[..., Any]) -> Callable[..., Any]:
    func = click.option("--rrn", default=None, help="The original's retrieval reference number.")(func)
    func = click.option("--invoice", default=None, help="The original's invoice number (default: the last "
                                                        "eligible transaction).")(func)
    return func


def _ref(invoice: str | None, rrn: str | None) -> Reference:
    return Reference(invoice=invoice, rrn=rrn)


# --------------------------------------------------------------------------- commands


@command()
def signon(options: Options) -> None:
    """Sign on (0800) and load the working keys: INTL 70=001, CUP 60.3 = key_mode; CUP adopts the host's batch."""
    _report(options, _run(options, lambda now: SignOn(now=now)))


@command()
def signoff(options: Options) -> None:
    """Sign off (INTL 0800 70=002, CUP 0820 60.3=002)."""
    _report(options, _run(options, lambda now: SignOff(now=now)))


@command()
def echo(options: Options) -> None:
    """Echo test (INTL 0800 70=301, CUP 0820 60.3=301)."""
    _report(options, _run(options, lambda now: Echo(now=now)))


@command()
@click.argument("amount")
@_card_options
def sale(options: Options, amount: str, pan: str | None, expiry: str | None, pin: str | None) -> None:
    """Sale (0200) of AMOUNT, a decimal such as 12.34."""
    minor = parse_amount(amount)
    card = _card(options, pan, expiry)
    _report(options, _run(options, lambda now: Sale(now=now, amount_minor=minor, card=card, pin=pin)))


@command()
@_card_options
def balance(options: Options, pan: str | None, expiry: str | None, pin: str | None) -> None:
    """Balance inquiry (0200 310000)."""
    card = _card(options, pan, expiry)
    _report(options, _run(options, lambda now: Balance(now=now, card=card, pin=pin)))


@command()
@click.argument("amount")
@_card_options
def preauth(options: Options, amount: str, pan: str | None, expiry: str | None, pin: str | None) -> None:
    """Pre-authorization (0100) of AMOUNT."""
    minor = parse_amount(amount)
    card = _card(options, pan, expiry)
    _report(options, _run(options, lambda now: PreAuth(now=now, amount_minor=minor, card=card, pin=pin)))


@command("preauth-void")
@_original_options
def preauth_void(options: Options, invoice: str | None, rrn: str | None) -> None:
    """Void a pre-authorization (INTL 0120 advice, CUP 0100 60.1=11)."""
    _report(options, _run(options, lambda now: PreAuthVoid(now=now, original=_ref(invoice, rrn))))


@command()
@click.argument("amount")
@_original_options
def completion(options: Options, amount: str, invoice: str | None, rrn: str | None) -> None:
    """Complete a pre-authorization for AMOUNT (INTL 0220 advice, CUP 0200 60.1=20)."""
    minor = parse_amount(amount)
    _report(options, _run(options, lambda now: Completion(now=now, amount_minor=minor, original=_ref(invoice, rrn))))


@command("completion-void")
@_original_options
def completion_void(options: Options, invoice: str | None, rrn: str | None) -> None:
    """Void a completion of the open batch."""
    _report(options, _run(options, lambda now: CompletionVoid(now=now, original=_ref(invoice, rrn))))


@command()
@_original_options
def void(options: Options, invoice: str | None, rrn: str | None) -> None:
    """Void a sale of the open batch."""
    _report(options, _run(options, lambda now: Void(now=now, original=_ref(invoice, rrn))))


@command()
@click.argument("amount")
@_original_options
def refund(options: Options, amount: str, invoice: str | None, rrn: str | None) -> None:
    """Refund AMOUNT of an earlier sale (INTL 0200 200000, CUP 0220 advice 60.1=25)."""
    minor = parse_amount(amount)
    _report(options, _run(options, lambda now: Refund(now=now, amount_minor=minor, original=_ref(invoice, rrn))))


@command("offline-sale")
@click.argument("amount")
@click.option("--pan", default=None, help="Card number (default: a seeded Luhn-valid test card).")
@click.option("--expiry", default=None, help="Card expiry YYMM.")
def offline_sale(options: Options, amount: str, pan: str | None, expiry: str | None) -> None:
    """Offline sale of AMOUNT: approved by the terminal, queued as an advice (no traffic now)."""
    minor = parse_amount(amount)
    card = _card(options, pan, expiry)
    _report(options, _run_offline(options, lambda now: OfflineSale(now=now, amount_minor=minor, card=card)))


@command()
@_original_options
@click.option("--tip", default=None, help="Tip to add to the original amount.")
@click.option("--amount", "new_amount", default=None, help="The new total amount.")
def adjust(options: Options, invoice: str | None, rrn: str | None, tip: str | None, new_amount: str | None) -> None:
    """Tip adjust of a sale in the open batch (queued advice): --tip TIP or --amount NEW_TOTAL."""
    if (tip is None) == (new_amount is None):
        raise click.UsageError("give exactly one of --tip and --amount")
    tip_minor = parse_amount(tip) if tip is not None else None
    new_minor = parse_amount(new_amount) if new_amount is not None else None
    _report(options, _run_offline(options, lambda now: Adjust(
        now=now, original=_ref(invoice, rrn), tip_minor=tip_minor, new_amount_minor=new_minor)))


async def _offline(options: Options, journal: Journal, make: Callable[[datetime], Operation]) -> Result:
    """An operation that sends nothing (offline sale, tip adjust): no endpoint is needed."""
    books = journal.load()
    trace_from = journal.last_trace_seq()
    terminal = Terminal(options.profile, books, response_timeout_seconds=options.timeout, settings=options.settings)
    result = await run_operation(_operation(options, make, books), terminal=terminal, journal=journal,
                                 endpoint=Endpoint(host=options.host, port=options.port or 1),
                                 framing=options.framing, dialect=options.dialect)
    return _with_trace(result, journal, trace_from)


@command()
def settle(options: Options) -> None:
    """Settle the open batch (or resume an interrupted settlement), uploading it when unbalanced."""
    _report(options, _run(options, lambda now: Settle(now=now)))


@command()
def reverse(options: Options) -> None:
    """Send the pending reversals now (also one that is stuck)."""
    _report(options, _run(options, lambda now: Reverse(now=now)))


def status_of(options: Options, books: Books, *, trace_seq: int = 0) -> dict[str, Any]:
    """What ``status`` shows: counters, sign-on, open batch, R, Q, S, host instructions, exceptions,
    closed batches.

    Keys (``--json``): ``stan``, ``invoice``, ``batch``, ``signed_on``, ``signon_date``,
    ``daily_signon``, ``keys_loaded``, ``signon_required``, ``param_download_required``;
    ``open_records`` and the open batch's ``sale_count`` / ``sale_amount_minor`` / ``refund_count`` /
    ``refund_amount_minor``; ``pending_reversals`` (rows) and ``pending_reversal_stans``;
    ``saf_queue`` (rows) and ``saf_queue_stans``; ``settlement`` (S or null) and
    ``settlement_state`` (``idle`` or the stage of the unfinished settlement: started, uploading,
    ending, host_closed); ``parked`` (every parked item), ``parked_reversals`` and
    ``parked_advices`` (rows: stan, why); ``closed_batches`` (batch, debit_count, debit_minor,
    credit_count, credit_minor, result, uploaded) and ``batches_closed``; ``receipt_pending``
    (invoices of journal records whose receipt never printed, closed batches included) and
    ``unprinted_receipts`` (those of the open batch); ``operators``; ``trace_seq`` (the last
    trace event: ``trace --since`` it).
    """
    totals = books.open_batch_totals()
    terminal = Terminal(options.profile, books, settings=options.settings)
    stuck_after = options.settings.reversal_max_attempts
    return {
        "stan": f"{books.stan:06d}", "invoice": f"{books.invoice:06d}", "batch": f"{books.batch:06d}",
        "signed_on": books.signed_on, "open_records": len(books.records),
        "sale_count": totals.debit_count, "sale_amount_minor": totals.debit_minor,
        "refund_count": totals.credit_count, "refund_amount_minor": totals.credit_minor,
        "keys_loaded": terminal.has_keys, "signon_required": books.signon_required,
        "param_download_required": books.param_download or None,
        "pending_reversals": [{"stan": r.stan, "kind": r.kind, "reason": r.reason, "attempts": r.attempts,
                               "refusals": r.refusals, "last_rc": r.last_rc, "stuck": r.refusals >= stuck_after}
                              for r in books.reversals],
        "saf_queue": [{"stan": a.stan, "kind": a.kind, "mti": a.message["t"], "attempts": a.attempts,
                       "invoice": a.invoice} for a in books.advices],
        "settlement": None if books.settlement is None else {
            "batch": books.settlement.batch, "stage": books.settlement.stage.value, "result": books.settlement.result,
            "uploaded": books.settlement.uploaded},
        "parked": [{"what": what, "stan": stan, "why": why} for what, stan, why in books.parked],
        "unprinted_receipts": [r.invoice for r in books.records if not r.printed],
        "pending_reversal_stans": [r.stan for r in books.reversals],
        "saf_queue_stans": [a.stan for a in books.advices],
        "settlement_state": "idle" if books.settlement is None else books.settlement.stage.value,
        "parked_reversals": [{"stan": stan, "why": why} for what, stan, why in books.parked if what == "reversal"],
        "parked_advices": [{"stan": stan, "why": why} for what, stan, why in books.parked if what == "advice"],
        "closed_batches": [b.as_dict() for b in books.closed_batches],
        "batches_closed": len(books.closed_batches),
        "receipt_pending": [r.invoice for r in (*books.history, *books.records) if not r.printed],
        "signon_date": books.signon_date or None, "daily_signon": books.daily_signon,
        "operators": dict(options.settings.operators),
        "trace_seq": trace_seq,
    }


@command()
def status(options: Options) -> None:
    """Show counters, sign-on state, the open batch, pending reversals, the SAF queue and the
    settlement state (no traffic)."""
    journal = _open_journal(options)
    try:
        data = status_of(options, journal.load(), trace_seq=journal.last_trace_seq())
    finally:
        journal.close()
    if options.json:
        click.echo(json.dumps(data))
        return
    flat = {k: v for k, v in data.items() if not isinstance(v, (list, dict)) or v}
    click.echo("  ".join(f"{k} {json.dumps(v) if isinstance(v, (list, dict)) else v}" for k, v in flat.items()))


@command("journal")
@click.option("--all", "include_settled", is_flag=True, help="Also show the records of closed batches.")
def journal_command(options: Options, include_settled: bool) -> None:
    """Show the journal, card numbers masked (no traffic)."""
    store = _open_journal(options)
    try:
        rows = store.records(include_settled=include_settled)
    finally:
        store.close()
    if not rows and not options.json:  # JSON lines: no record, no line
        click.echo("no transactions in the journal" if include_settled else
                   "no transactions in the open batch (--all shows closed batches too)")
    for row in rows:
        row["pan"] = mask_pan(row["pan"])
        click.echo(json.dumps(row) if options.json else
                   f"inv {row['invoice']} STAN {row['stan']} batch {row['batch']} {row['kind']} {row['status']} "
                   f"{row['amount_minor'] / 100:.2f} {row['pan']} RRN {row['rrn'] or '-'} auth {row['auth_code']} "
                   f"operator {row['operator'] or '-'}" + (" RECEIPT PENDING" if row["receipt_pending"] else ""))


@command("trace")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True,
              help="Only events after this sequence number (status shows the last as trace_seq).")
def trace_command(options: Options, since: int) -> None:
    """Show the wire trace (masked): what was sent and received, with the terminal's verdict on each
    answer (matched, MAC verified), timeouts, link events, crashes (no traffic)."""
    store = _open_journal(options)
    try:
        events = store.trace(since=since)
    finally:
        store.close()
    for event in events:
        if options.json:
            click.echo(json.dumps(event))
            continue
        message = event["message"] or {}
        verdict = ""
        if event["kind"] == "received":
            verdict = (" matched" if event["matched"] else " STRAY") + {True: " mac ok", False: " MAC BAD", None: ""}[
                event["mac_verified"]]
        click.echo(f"{event['seq']:>5} {event['at']} {event['command'] or '-':<8} {event['kind']:<14} "
                   f"{message.get('t', ''):<4} {message.get('11', ''):<6} {message.get('39', ''):<2}{verdict}"
                   + (f" ({event['detail']})" if event["detail"] else ""))


@command("settings")
def show_settings(options: Options) -> None:
    """Show the effective settings (defaults, --config, --set), the TMK hidden."""
    data = describe(options.settings)
    click.echo(json.dumps(data) if options.json else "\n".join(f"{k} = {v}" for k, v in data.items()))


@command()
@click.option("--sales", "amounts", default="10.00,20.00,30.00", show_default=True,
              help="Comma-separated sale amounts.")
def demo(options: Options, amounts: str) -> None:
    """Start a stub host child, then sign on, run the sales and settle (balanced)."""
    minors = [parse_amount(a.strip()) for a in amounts.split(",") if a.strip()]
    with tempfile.TemporaryDirectory(prefix="pos-harness-demo-") as tmp:
        try:
            host = start_host("serve", "--dialect", options.dialect.profile.base, "--port", "0",
                              "--ledger", str(Path(tmp) / "host.sqlite"), *options.wire_args,
                              "--length-prefix", options.framing.length_prefix,
                              "--tpdu" if options.framing.tpdu else "--no-tpdu",
                              "--cup-header" if options.framing.cup_header else "--no-cup-header")
        except HostStartError as exc:
            raise click.ClickException(str(exc)) from None
        with host:
            click.echo(f"stub host ({options.dialect.name}) ready on port {host.port}")
            options.port = host.port
            options.journal_path = str(Path(tmp) / "terminal.sqlite")
            card = _card(options, None, None)
            steps: list[Callable[[datetime], Operation]] = [lambda now: SignOn(now=now)]
            steps += [lambda now, m=m: Sale(now=now, amount_minor=m, card=card) for m in minors]  # type: ignore[misc]
            steps.append(lambda now: Settle(now=now))
            result: Result | None = None
            for step in steps:
                result = _run(options, step)
                click.echo(json.dumps(result.as_dict()) if options.json else format_result(result))
                if not result.outcome.completed or result.outcome is Outcome.DECLINED:
                    raise click.ClickException(f"demo stopped: {result.command} {result.outcome.value} ({result.text})")
            assert result is not None
            if result.outcome is not Outcome.BALANCED:
                raise click.ClickException(f"demo settlement was {result.outcome.value}, expecting balanced")
            click.echo("demo complete: signed on, "
                       f"{len(minors)} sales approved, settlement balanced, batch closed")


@main.command("matrix")
@click.option("--only", default=None, metavar="C01,C22", help="Run only these causes (comma-separated ids).")
@click.option("--dialect", "dialect_filter", default=None, metavar="D[,D]",
              help=f"Run only these dialects (comma-separated; {', '.join(sorted(DIALECTS))}); default: every "
                   "dialect each scenario lists.")
@click.option("--report", "report_dir", type=click.Path(file_okay=False), default=None,
              help="Write matrix.json, junit.xml and index.html into this directory.")
@click.option("--host", "host_address", default=None, metavar="HOST:PORT",
              help="Run against this host instead of stub host children (needs --control and one --dialect).")
@click.option("--control", "control_url", default=None, metavar="URL",
              help="The control API of the --host, e.g. http://127.0.0.1:8584.")
@click.option("--jobs", type=click.IntRange(1, 32), default=2, show_default=True,
              help="Scenarios run in parallel (one stub host child per job and dialect).")
@click.option("--timeout", "response_timeout", type=click.FloatRange(min=0.05), default=0.5, show_default=True,
              help="The terminal's response timeout in every run (fault delays scale with it).")
@click.pass_context
def matrix(ctx: click.Context, only: str | None, dialect_filter: str | None, report_dir: str | None,
           host_address: str | None, control_url: str | None, jobs: int, response_timeout: float) -> None:
    """Run the cause-and-fix matrix: every cause with the fix off (the symptom must appear) and on
    (its invariants must hold); print one row per cause and the wall time.  Exit 1 if any row does
    not behave as its scenario file expects."""
    from emulator.report import format_failures, format_table, write_reports
    from emulator.runner import MatrixError, MatrixOptions
    from emulator.runner import run as run_matrix
    from specs.scenario import ScenarioError

    group = ctx.parent.params if ctx.parent is not None else {}
    if group.get("log_level") == "warning":  # the default: keep the progress lines readable
        configure_logging(json=bool(group.get("log_json")), level="error")
    dialects = tuple(d.strip() for d in (dialect_filter or "").split(",") if d.strip())
    unknown = [d for d in dialects if d not in DIALECTS]
    if unknown:
        raise click.BadParameter(f"{', '.join(unknown)} is not a dialect, expecting {', '.join(sorted(DIALECTS))}",
                                 param_hint="--dialect")
    if (host_address is None) != (control_url is None):
        raise click.UsageError("--host and --control go together")
    options = MatrixOptions(only=tuple(c.strip().upper() for c in (only or "").split(",") if c.strip()),
                            dialects=dialects, jobs=jobs, host=host_address, control_url=control_url,
                            response_timeout_seconds=response_timeout)
    try:
        result = run_matrix(options, progress=lambda line: click.echo(line, err=True))
    except MatrixError as exc:
        raise click.UsageError(str(exc)) from None
    except ScenarioError as exc:  # a malformed scenario file: file, line and key, no traceback
        raise click.ClickException(f"scenario file: {exc}") from None
    data = result.as_dict()
    click.echo(format_table(data))
    failures = format_failures(data)
    if failures:
        click.echo("\nNot as the scenario files expect:\n" + failures)
    if report_dir is not None:
        paths = write_reports(data, report_dir)
        click.echo(f"\nreports: {', '.join(str(p) for p in paths.values())}")
    click.echo(f"wall time {result.wall_seconds:.1f} s")
    if not result.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
