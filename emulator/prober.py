"""The probe's I/O: run the conformance checks of :mod:`emulator.probe` against a host over TCP.

Only the terminal side: sign-on and the echo test run through the terminal core
(:func:`emulator.channel.run_operation`, keys checked as the terminal checks them); every other
check sends what a well-behaved terminal never sends on its own (the same 0200 twice, a
corrupted MAC, a stale STAN, totals off by one) on a *raw exchange*: the request is built with
:mod:`emulator.messages`, signed with the MAC key of the probe's own sign-on
(:mod:`specs.crypto`), framed and written on a :class:`~emulator.channel.Link`, and the answer
matched on MTI + 10, STAN and TID like the terminal matches it.  STANs and batch numbers come from
the probe's journal counters, so the core and the raw path never reuse one by accident.

Nothing is left on the host: every sale a check gets approved is reversed, and every check that
created something settles its batch (which also tells whether the host counts what the probe
counts); a batch the host does not find balanced is uploaded and closed.  What could not be
undone is recorded in the check's ``left_behind`` and shown in the table and the report.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from emulator.channel import Endpoint, FrameTap, Link, Prepared, frame_parts, prepare, run_operation
from emulator.journal import Journal
from emulator.messages import (
    INTL_SETTLE_AFTER_UPLOAD,
    Profile,
    UploadItem,
    cup_upload_end,
    cup_upload_request,
    financial_request,
    intl_upload_request,
    repeat_mti,
    reversal_request,
    settlement_request,
)
from emulator.probe import (
    CHECK_NAMES,
    CheckRecord,
    Exchange,
    Settlement,
    latency_record,
)
from emulator.settings import TerminalSettings
from emulator.terminal import (
    ConnectionLost,
    Echo,
    MessageReceived,
    MessageUnreadable,
    Operation,
    SaveCounters,
    Send,
    SignOn,
    Terminal,
    TimerExpired,
    mismatch,
)
from specs.cards import Card
from specs.codec import Message, encode
from specs.codes import APPROVED, RECONCILE_ERROR
from specs.crypto import default_mac_algorithm, sign
from specs.dialects import Dialect
from specs.framing import Frame, Framing, pack
from specs.masking import mask_message, mask_pan
from specs.totals import CUP_BALANCED, CUP_UPLOAD_MAX_RECORDS, Totals, parse_cup_field_48, totals_of

log = structlog.get_logger("pos_terminal.probe")

#: Sale amounts of the checks (minor units): distinct, so no check's request looks like another's.
AMOUNTS = {"duplicate": 101, "reversal": 102, "unknown_reversal": 103, "late_reversal": 104, "bad_mac": 105,
           "missing_mac": 106, "stale_stan": 107, "advice": 108, "settlement": 109}


@dataclass(frozen=True, kw_only=True)
class ProbeConfig:
    endpoint: Endpoint
    dialect: Dialect
    framing: Framing
    profile: Profile
    settings: TerminalSettings
    timeout: float
    card: Card
    expectations: dict[str, dict[str, Any]] = field(default_factory=dict)
    only: tuple[str, ...] = ()


@dataclass
class _Sale:
    """A financial request the probe sent and its fate on the host."""

    request: Message
    exchange: Exchange
    kind: str = "sale"
    reversed: bool = False

    @property
    def approved(self) -> bool:
        return self.exchange.answered and self.exchange.rc == APPROVED

    @property
    def stan(self) -> str:
        return self.request["11"]


class Session:
    """One probe run: the terminal's journal, the link settings, the clock, what was sent."""

    def __init__(self, config: ProbeConfig, journal: Journal, tap: FrameTap | None = None) -> None:
        self.config, self.journal, self.tap = config, journal, tap
        self.tpdu, self.header = frame_parts(config.profile, config.settings, config.framing)
        self.started = time.monotonic()
        self.wall_started = time.time()
        #: Every approved sale of the run: (STAN, RRN), for the stale-STAN check.
        self.approved: list[tuple[str, str]] = []

    # ---------------------------------------------------------------- counters and clock

    def now(self) -> datetime:
        return datetime.now() + timedelta(seconds=self.journal.load().clock_offset_seconds)

    def now_ms(self) -> float:
        return (time.monotonic() - self.started) * 1000.0

    def take_stan(self) -> str:
        books = self.journal.load()
        stan = books.stan % 999_999 + 1
        self.journal.apply(SaveCounters(stan=stan, invoice=books.invoice, batch=books.batch))
        return f"{stan:06d}"

    def take_invoice(self) -> str:
        books = self.journal.load()
        invoice = books.invoice % 999_999 + 1
        self.journal.apply(SaveCounters(stan=books.stan, invoice=invoice, batch=books.batch))
        return f"{invoice:06d}"

    @property
    def batch(self) -> str:
        return f"{self.journal.load().batch:06d}"

    def next_batch(self) -> None:
        books = self.journal.load()
        self.journal.apply(SaveCounters(stan=books.stan, invoice=books.invoice, batch=books.batch % 999_999 + 1))

    @property
    def mac_key(self) -> bytes | None:
        keys = Terminal(self.config.profile, self.journal.load(), settings=self.config.settings).working_keys
        return keys.mak if keys else None

    # ---------------------------------------------------------------- exchanges

    async def core(self, record: CheckRecord, operation: Operation) -> dict[str, Any]:
        """One operation of the terminal core (sign-on, echo); its wire trace becomes the check's exchanges."""
        since = self.journal.last_trace_seq()
        terminal = Terminal(self.config.profile, self.journal.load(), settings=self.config.settings,
                            response_timeout_seconds=self.config.timeout)
        result = await run_operation(operation, terminal=terminal, journal=self.journal, endpoint=self.config.endpoint,
                                     framing=self.config.framing, dialect=self.config.dialect, tap=self.tap)
        current: Exchange | None = None
        for event in self.journal.trace(since=since):
            at = datetime.fromisoformat(str(event["at"]).replace("Z", "+00:00")).timestamp()
            at_ms = max(0.0, (at - self.wall_started) * 1000.0)
            kind, message = event["kind"], event.get("message") or {}
            if kind == "sent":
                current = Exchange(step=str(event["command"]), request=dict(message), at_ms=at_ms,
                                   mac="good" if "64" in message else "none")
                record.exchanges.append(current)
            elif kind == "received" and current is not None:
                if event.get("matched"):
                    current.response, current.seconds = dict(message), (at_ms - current.at_ms) / 1000.0
                    current.mac_verified = event.get("mac_verified")
                else:
                    current.strays.append(dict(message))
            elif kind == "connect_failed":
                record.exchanges.append(Exchange(step=str(event["command"]), request={}, outcome=kind,
                                                 detail=str(event.get("detail") or ""), at_ms=at_ms))
            elif current is not None and current.response is None:
                current.outcome, current.detail = str(kind), str(event.get("detail") or "")
        return result.as_dict()

    async def exchange(self, record: CheckRecord, step: str, message: Message, *, mac: str = "good",
                       timeout_factor: float = 1.0) -> Exchange:
        """Send one request as built (``mac``: ``good`` signs it, ``bad`` signs it and corrupts the
        MAC, ``none`` sends it unsigned) and wait for its matching answer."""
        config = self.config
        key = self.mac_key
        algorithm = config.settings.mac_algorithm or default_mac_algorithm(config.profile.family)
        if key is None:
            mac = "none"  # not signed on with keys: sent unsigned, as the terminal would
        if mac == "bad" and key is not None:
            signed = sign(message, config.dialect, key, algorithm)
            signed["64"] = ("0" if signed["64"][0] != "0" else "1") + signed["64"][1:]  # one hex digit off
            frame = Frame(message=encode(signed, config.dialect), tpdu=self.tpdu, header=self.header)
            prepared = Prepared(message=signed, data=pack(frame, config.framing), mac=(key, algorithm))
        else:
            prepared = prepare(Send(message=message, mac_key=key if mac == "good" else None, mac_algorithm=algorithm),
                               config.dialect, config.framing, self.tpdu, self.header)
        shown = self._masked(prepared.message)
        x = Exchange(step=step, request=shown, mac=mac, at_ms=self.now_ms())
        record.exchanges.append(x)
        try:
            link = await Link.open(config.endpoint, config.framing, config.dialect, self.tpdu, self.header, self.tap)
        except (OSError, TimeoutError) as exc:
            x.outcome = "connect_failed"
            x.detail = f"{config.endpoint.host}:{config.endpoint.port}: {getattr(exc, 'strerror', None) or exc or 'timed out'}"
            return x
        loop = asyncio.get_running_loop()
        try:
            started = loop.time()
            try:
                await link.send(prepared)
            except ConnectionError as exc:
                x.outcome, x.detail = "link_lost", repr(exc)
                return x
            deadline = started + config.timeout * timeout_factor
            while True:
                event = await link.next_input(deadline)
                if isinstance(event, MessageReceived):
                    if mismatch(prepared.message, event.message) is None:
                        x.response, x.seconds = self._masked(event.message), loop.time() - started
                        x.mac_verified = event.mac_valid
                        log.info("probe answer", step=step, rc=x.rc, seconds=round(x.seconds, 4))
                        return x
                    x.strays.append(self._masked(event.message))
                elif isinstance(event, TimerExpired):
                    x.outcome, x.detail = "timeout", f"no answer within {config.timeout * timeout_factor:g} s"
                    return x
                else:
                    assert isinstance(event, (ConnectionLost, MessageUnreadable))
                    x.outcome = "link_lost" if isinstance(event, ConnectionLost) else "unreadable"
                    x.detail = event.reason
                    return x
        finally:
            await link.close()

    def _masked(self, message: Message) -> dict[str, str]:
        masked = mask_message(message)
        pan = self.config.card.pan
        return {k: v.replace(pan, mask_pan(pan)) if isinstance(v, str) else v for k, v in masked.items()}

    # ---------------------------------------------------------------- building blocks of the checks

    def sale_request(self, amount_minor: int, *, stan: str | None = None, kind: str = "sale") -> Message:
        card = self.config.card
        return financial_request(self.config.profile, kind, stan=stan or self.take_stan(), batch=self.batch,
                                 now=self.now(), amount_minor=amount_minor, pan=card.pan, expiry=card.expiry,
                                 invoice=self.take_invoice(),
                                 auth_code=f"{int(time.time()) % 1_000_000:06d}" if kind == "offline_sale" else None)

    async def sale(self, record: CheckRecord, amount_minor: int, *, step: str = "sale", mac: str = "good",
                   stan: str | None = None, kind: str = "sale") -> _Sale:
        request = self.sale_request(amount_minor, stan=stan, kind=kind)
        exchange = await self.exchange(record, step, request, mac=mac)
        sale = _Sale(request=request, exchange=exchange, kind=kind)
        if sale.approved and exchange.response:
            self.approved.append((sale.stan, exchange.response.get("37", "")))
        return sale

    def reversal_of(self, sale: _Sale, *, repeat: bool = False) -> Message:
        message = reversal_request(sale.request, self.config.profile.family, reason="06")
        if repeat:
            message["t"] = repeat_mti(message["t"])
        return message

    async def reverse(self, record: CheckRecord, sale: _Sale, *, step: str = "reversal",
                      repeat: bool = False) -> Exchange:
        exchange = await self.exchange(record, step, self.reversal_of(sale, repeat=repeat))
        if exchange.answered and exchange.rc in ("00", "12", "25"):
            sale.reversed = True
        return exchange

    async def undo(self, record: CheckRecord, sales: list[_Sale]) -> None:
        """Reverse every sale of the check that the host may have posted and that is not reversed yet."""
        for sale in sales:
            if sale.reversed or sale.kind != "sale" or (sale.exchange.answered and not sale.approved):
                continue  # declined: nothing to undo
            exchange = await self.reverse(record, sale, step="cleanup reversal")
            what = f"sale STAN {sale.stan} {int(sale.request['4']) / 100:.2f}"
            if sale.reversed:
                record.cleanup.append(f"{what} reversed (rc {exchange.rc})")
            else:
                record.left_behind.append(f"{what} could not be reversed ({exchange.outcome}, rc {exchange.rc or '--'}); "
                                          "settled with the batch instead")

    async def settle(self, record: CheckRecord, standing: list[_Sale], *, delta_minor: int = 0) -> Settlement:
        """Settle the probe's batch with the totals of ``standing`` (plus ``delta_minor`` on the debit
        amount of the first 0500); upload ``standing`` and close when the host is not balanced."""
        config, family = self.config, self.config.profile.family
        items = [_upload_item(s) for s in standing]
        totals = totals_of((s.kind, int(s.request["4"])) for s in standing)
        first_totals = replace(totals, debit_minor=totals.debit_minor + delta_minor)
        batch = self.batch
        request = settlement_request(config.profile, first_totals, stan=self.take_stan(), batch=batch, now=self.now())
        first = await self.exchange(record, "settlement", request, timeout_factor=config.settings.settlement_timeout_factor)
        settlement = Settlement(batch=batch, first="no_answer" if not first.answered else "declined",
                                first_rc=first.rc)
        if not first.answered:
            record.left_behind.append(f"batch {batch}: the settlement got no answer ({first.outcome}); the batch may "
                                      "still be open on the host")
            record.settlement = settlement
            return settlement
        flag = ""
        if family == "cup" and first.rc == APPROVED and first.response:
            try:
                host_totals, flag = parse_cup_field_48(first.response.get("48", ""))
                settlement.host_totals = _totals_text(host_totals)
            except ValueError:
                flag = "3"
            settlement.flag = flag
        if first.rc == RECONCILE_ERROR or (first.rc == APPROVED and family == "cup" and flag != CUP_BALANCED):
            settlement.first = "unbalanced"
        elif first.rc == APPROVED:
            settlement.first = "balanced"
        if settlement.first == "declined":
            record.left_behind.append(f"batch {batch}: the settlement was declined (rc {first.rc}); the batch is "
                                      "still open on the host")
            record.settlement = settlement
            return settlement
        close: Exchange | None = None
        if family == "cup":
            if settlement.first == "unbalanced":
                for start in range(0, len(items), CUP_UPLOAD_MAX_RECORDS):
                    chunk = items[start:start + CUP_UPLOAD_MAX_RECORDS]
                    upload = await self.exchange(record, "upload", cup_upload_request(
                        config.profile, chunk, stan=self.take_stan(), batch=batch, now=self.now()))
                    settlement.uploaded += len(chunk) if upload.rc == APPROVED else 0
            close = await self.exchange(record, "upload end", cup_upload_end(
                config.profile, stan=self.take_stan(), batch=batch, now=self.now(),
                balanced=settlement.first == "balanced", uploaded=settlement.uploaded))
        elif settlement.first == "unbalanced":
            for item in items:
                upload = await self.exchange(record, "upload", intl_upload_request(
                    config.profile, item, stan=self.take_stan(), now=self.now()))
                settlement.uploaded += 1 if upload.rc == APPROVED else 0
            close = await self.exchange(record, "settlement after upload", settlement_request(
                config.profile, totals, stan=self.take_stan(), batch=batch, now=self.now(),
                processing_code=INTL_SETTLE_AFTER_UPLOAD), timeout_factor=config.settings.settlement_timeout_factor)
        settlement.close_rc = close.rc if close is not None else first.rc
        settlement.closed = settlement.close_rc == APPROVED
        if settlement.closed:
            self.next_batch()
            record.cleanup.append(f"batch {batch} settled ({settlement.text()})")
        else:
            record.left_behind.append(f"batch {batch} not closed ({settlement.text()})")
        if settlement.first == "unbalanced" and delta_minor == 0:
            record.left_behind.append(f"batch {batch}: the host's totals differed from what the probe left standing "
                                      f"({_totals_text(totals)}"
                                      + (f" vs host {settlement.host_totals}" if settlement.host_totals else "")
                                      + "); it was closed with the probe's upload — check the host's books")
        record.settlement = settlement
        return settlement

    async def finish(self, record: CheckRecord, sales: list[_Sale], *, settle: bool = True) -> None:
        """Undo what the check created and settle its batch with whatever still stands."""
        await self.undo(record, sales)
        if not any(s.approved or not s.exchange.answered for s in sales):
            record.cleanup.append("nothing posted (declined)")
            return
        if settle:
            await self.settle(record, [s for s in sales if s.approved and not s.reversed])


def _totals_text(t: Totals) -> str:
    return f"debits {t.debit_count}/{t.debit_minor}, credits {t.credit_count}/{t.credit_minor}"


def _upload_item(sale: _Sale) -> UploadItem:
    request, response = sale.request, sale.exchange.response or {}
    return UploadItem(mti=request["t"], processing_code=request["3"], stan=request["11"],
                      invoice=request.get("62", ""), kind="sale", amount_minor=int(request["4"]), pan=request["2"],
                      expiry=request["14"], rrn=response.get("37", ""),
                      auth_code=response.get("38", "") or request.get("38", ""), local_date=request["13"],
                      local_time=request["12"], condition=request["25"])


# ============================================================================ the checks


async def _signon(s: Session, r: CheckRecord) -> None:
    result = await s.core(r, SignOn(now=s.now()))
    r.facts.update(rc=result.get("rc"), keys_loaded=bool(result.get("keys_loaded")), text=result.get("text"),
                   said=f"{result.get('outcome')} ({result.get('text')})")


async def _echo(s: Session, r: CheckRecord) -> None:
    result = await s.core(r, Echo(now=s.now()))
    r.facts.update(rc=result.get("rc"), said=f"{result.get('outcome')} ({result.get('text')})")


async def _duplicate(s: Session, r: CheckRecord) -> None:
    sale = await s.sale(r, AMOUNTS["duplicate"])
    sales = [sale]
    if sale.exchange.answered:
        again = await s.exchange(r, "duplicate", sale.request)
        if again.answered and again.rc == APPROVED and again.response != sale.exchange.response:
            r.facts["duplicate_rrn"] = (again.response or {}).get("37")
    await s.finish(r, sales)


async def _reversal(s: Session, r: CheckRecord) -> None:
    sale = await s.sale(r, AMOUNTS["reversal"])
    if sale.approved:
        await s.reverse(r, sale)
        await s.exchange(r, "repeat", s.reversal_of(sale, repeat=True))
    await s.finish(r, [sale])


async def _unknown_reversal(s: Session, r: CheckRecord) -> None:
    never_sent = _Sale(request=s.sale_request(AMOUNTS["unknown_reversal"]), exchange=Exchange(step="", request={}))
    r.facts["stan"] = never_sent.stan
    await s.reverse(r, never_sent)
    r.cleanup.append(f"nothing posted (the original STAN {never_sent.stan} was never sent)")


async def _late_reversal(s: Session, r: CheckRecord) -> None:
    delay = float(s.config.expectations["late_reversal"]["delay_seconds"])
    r.facts["delay_seconds"] = delay
    sale = await s.sale(r, AMOUNTS["late_reversal"])
    if sale.approved:
        await asyncio.sleep(delay)  # the delay is what this check is about
        await s.reverse(r, sale)
    await s.finish(r, [sale])


async def _mac(s: Session, r: CheckRecord) -> None:
    if s.mac_key is None:
        r.error = "no working keys from the sign-on: the probe cannot sign a request, so MAC handling cannot be probed"
        return
    sale = await s.sale(r, AMOUNTS[r.name], mac="bad" if r.name == "bad_mac" else "none")
    await s.finish(r, [sale])


async def _stale_stan(s: Session, r: CheckRecord) -> None:
    sales: list[_Sale] = []
    if not s.approved:  # run alone: make the earlier sale first (it is reversed with the rest)
        earlier = await s.sale(r, AMOUNTS["stale_stan"] + 100, step="earlier sale")
        sales.append(earlier)
        if not earlier.approved:
            await s.finish(r, sales)
            r.error = f"the earlier sale was not approved ({earlier.exchange.outcome}, rc {earlier.exchange.rc or '--'}): " \
                      "there is no STAN to reuse"
            return
    stan, rrn = s.approved[0]
    r.facts.update(stan=stan, earlier_rrn=rrn)
    sales.append(await s.sale(r, AMOUNTS["stale_stan"], stan=stan))
    await s.finish(r, sales)


async def _advice(s: Session, r: CheckRecord) -> None:
    advice = await s.sale(r, AMOUNTS["advice"], step="advice", kind="offline_sale")
    repeat = dict(advice.request, t=repeat_mti(advice.request["t"]))
    await s.exchange(r, "repeat", repeat)
    # An advice is not reversed: it is settled (the batch totals say whether it was posted once).
    await s.settle(r, [advice] if advice.approved else [])


async def _settlement(s: Session, r: CheckRecord) -> None:
    sale = await s.sale(r, AMOUNTS["settlement"])
    if not sale.approved:
        await s.finish(r, [sale])
        return
    await s.settle(r, [sale], delta_minor=1)


_RUNNERS = {"signon": _signon, "echo": _echo, "duplicate": _duplicate, "reversal": _reversal,
            "unknown_reversal": _unknown_reversal, "late_reversal": _late_reversal, "bad_mac": _mac,
            "missing_mac": _mac, "stale_stan": _stale_stan, "advice": _advice, "settlement": _settlement}


async def run_probe(config: ProbeConfig, journal: Journal, *, tap: FrameTap | None = None,
                    progress: Callable[[str], None] | None = None) -> list[CheckRecord]:
    """Run the selected checks in order (sign-on always runs first: the other checks need its keys).

    Returns:
        One record per selected check, then ``latency`` over every exchange of the run.
    """
    session = Session(config, journal, tap)
    selected = [n for n in CHECK_NAMES if not config.only or n in config.only]
    records: list[CheckRecord] = []
    signon = CheckRecord(name="signon")
    await _signon(session, signon)
    if "signon" in selected:
        records.append(signon)
    failed_connect = any(x.outcome == "connect_failed" for x in signon.exchanges)
    for name in selected:
        if name in ("signon", "latency"):
            continue
        record = CheckRecord(name=name)
        if failed_connect:
            record.error = f"no connection to the host ({signon.exchanges[0].detail})"
        else:
            await _RUNNERS[name](session, record)
            if progress is not None:
                progress(f"{name}: {len(record.exchanges)} exchange(s)" + (f", {record.error}" if record.error else ""))
        records.append(record)
    if "latency" in selected:
        everything = records if "signon" in selected else [signon, *records]
        records.append(latency_record(x for r in everything for x in r.exchanges))
    return records
