"""The stub acquirer's decisions: a decoded request, the books and ``now`` in, a response out.

Rules (after h11 ``_state.py``):

1. No sockets, asyncio, wall clock or randomness.  The server passes ``now`` (the business clock)
   and :class:`Directives` (what the fault plan asks of this request); the ledger is the host's
   state and is passed in.
2. Everything one request changes (its own row, the original it reverses or voids, a card balance,
   a closed batch, a payout) happens inside one ledger transaction: on the books entirely or not at
   all.  Every request gets an authorization row, whatever its fate.
3. A request that is well-formed but wrong for the books is *answered* (with the response code the
   acquirer would give); nothing a terminal sends makes the core raise.

Theory of operation.  :meth:`Host.answer` names the request (:func:`classify`), then applies the
checks in the order a real acquirer does: a fault-forced answer; the message rules in force
(``required_fields``: 30 and 处理要求 1; ``min_software_version`` against the CUP header's
软件分版本号: 30 for financial requests, 处理要求 6 on every answer); the terminal and merchant in the
registry (97 / 58 / 03); the MAC (A0, and A0 to everything after ``mac_failure_limit`` consecutive
failures until a sign-on); sign-on of the day (22), CUP batch (77), cutover window (90); then the
per-kind rules below.  Approvals get an RRN (37), an approval code (38) and the settlement date
(15) from the business calendar.

=================  ============================================================================
kind               rules (docs/domain.md#message-flows, docs/domain.md#response-codes; wire contract in ``host_stub/__init__.py``)
=================  ============================================================================
sale, preauth      card (14 Luhn/unknown, 62/57/59 status, 54 expiry, 55/99 PIN), per-transaction
                   cap 13, daily count 65 / amount 61 per merchant, terminal and card, balance 51;
                   duplicate (TID+STAN+13 on the books, whatever the amount) 94; an original whose reversal came
                   first (tombstone) is never posted (``late_original_rc``, 94)
void, *_void       original by TID + RRN (37): missing 25; settled, voided or reversed 12;
                   amount differs 13; merchant funds (``available_balance_minor``) 51
refund             original by TID + RRN: missing 25; reversed/voided 12; cumulative refunds above
                   the original amount 13; partial and repeated refunds allowed
completion         pre-auth by TID + RRN: missing 25; not open 12; amount above the pre-auth 13
offline, adjust    advices: posted once; a repeat (0221, or 0220 with the same TID+STAN+3+amount)
                   is answered 00 and not posted again
reversal (0400)    original by TID + STAN + 3 + amount among the terminal's unsettled requests;
                   approved -> reversed (undone once), repeat -> 00 again; unknown -> tombstone
                   (TID+STAN+13) and ``reversal_unknown_rc`` (25, 12 or 00)
settlement (0500)  totals compared; INTL 95 / CUP 对账应答码 2 (or 39=95); batch upload (0320)
                   rebuilds the batch; INTL 0500 960000 or CUP 0320 202/207 closes it; a repeated
                   identical 0500 for a closed batch is answered as before; every close creates a
                   payout (calendar, fees, holds, delays, failures)
=================  ============================================================================
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime
from typing import Any, ClassVar, NamedTuple

from host_stub.keys import INTL_KEY_LAYOUT, issue_working_keys, mac_is_valid, pin_from_block, signed
from host_stub.ledger import Ledger
from host_stub.registry import (
    CARD_STATUS_RC,
    OPEN_CARD,
    TERMINAL_STATUS_RC,
    Card,
    Merchant,
    Registry,
    Terminal,
    card_expired,
)
from host_stub.settings import HostSettings, fee_rule_at
from host_stub.wire import wire_mac_is_valid
from specs import codes
from specs.codec import Message
from specs.crypto import default_mac_algorithm
from specs.dialects import Dialect, response_mti
from specs.masking import luhn_valid, mask_pan
from specs.totals import (
    CUP_BALANCED,
    CUP_ERROR,
    CUP_UNBALANCED,
    CUP_UPLOAD_DATA,
    CUP_UPLOAD_END_BALANCED,
    CUP_UPLOAD_END_UNBALANCED,
    SETTLEMENT_CLASS,
    Totals,
    cup_field_48,
    parse_cup_field_48,
    parse_cup_field_48_foreign,
    parse_cup_upload_field_48,
    parse_intl_field_63,
    parse_intl_upload_field_60,
    totals_of,
)
from specs.transactions import identify, kind_of_cup_type, layout

#: CUP 0810 field 32: the stub acquirer's institution identification code.
ACQUIRER_ID = "00010000"
#: Request fields a response echoes (the rest are the host's own or must not come back: 2, 35, 52, 55).
_ECHO = ("3", "4", "11", "24", "25", "41", "42", "49", "60", "70")

#: Debit kinds that count against daily limits.
_LIMIT_KINDS = ("sale", "completion", "offline_sale")
#: Kinds whose original is found by TID + RRN (field 37), and the kinds that original may be.
_REFERENCED: dict[str, tuple[str, ...]] = {
    "void": ("sale",), "completion_void": ("completion",), "preauth_void": ("preauth",),
    "refund": ("sale", "completion", "offline_sale"), "completion": ("preauth",),
    "adjust": ("sale", "offline_sale", "completion"),
}
_ADVICE_MTIS = ("0220", "0221", "0120", "0121")
#: MID of a terminal enrolled from a message without field 42 (adopted from the first one with it).
UNKNOWN_MID = " " * 15
_FINANCIAL_MTIS = ("0100", "0200", *_ADVICE_MTIS)


@dataclass(frozen=True, kw_only=True, slots=True)
class Directives:
    """What the fault plan asks of the core for one request; the defaults mean "behave normally".

    Attributes:
        respond_rc: answer with this code without posting (respond_rc, maintenance 91/96).
        reversal_unknown_rc: answer for a reversal whose original is unknown (overrides the setting).
        drop_advice_posting: answer an advice 00 but do not post it (C13 ``ack_advice_but_drop``).
        totals_delta: added to the host's totals before a settlement comparison (C22).
        payout_delay_days, payout_hold, payout_failure: applied to a payout created by this request.
        rotate_keys: the terminal's working keys become invalid before this request is checked.
        omit_fields, stan_offset: response fields left out / STAN shifted (C41).
        corrupt_mac: field 64 of the response is wrong (C08).
        fault_ids: the faults behind these directives, recorded in the ledger row.
    """

    respond_rc: str | None = None
    reversal_unknown_rc: str | None = None
    drop_advice_posting: bool = False
    totals_delta: Totals | None = None
    payout_delay_days: int = 0
    payout_hold: str | None = None
    payout_failure: str | None = None
    rotate_keys: bool = False
    omit_fields: tuple[str, ...] = ()
    stan_offset: int = 0
    corrupt_mac: bool = False
    fault_ids: tuple[str, ...] = ()


NO_DIRECTIVES = Directives()


@dataclass(frozen=True, kw_only=True, slots=True)
class Answer:
    """The core's answer to one request.

    Attributes:
        response: the response message, ready to encode.
        processing_requirement: the CUP header 处理要求 the answer must carry (``1`` download
            parameters, ``6`` TMS download), or None when the core asks for nothing (header as received).
        mac_key: the MAK (hex) field 64 must be computed with while the response is encoded
            (:func:`host_stub.wire.encode_signed`); None when the response needs no MAC or already
            carries it (a response a fault damages after its MAC is signed by the core).
    """

    response: Message
    processing_requirement: str | None = None
    mac_key: str | None = None


#: CUP header 处理要求 values the core sets (docs/domain.md#frame-layout).
DOWNLOAD_PARAMETERS = "1"
TMS_DOWNLOAD = "6"


def classify(request: Message, dialect: Dialect) -> str:
    """Name the business meaning of a request.

    Returns ``sign_on``, ``sign_off``, ``echo``, ``settlement``, ``upload``, ``reversal``, a
    transaction kind of :mod:`specs.transactions` (``sale``, ``refund``, ...) or ``unsupported``.
    """
    mti = request["t"]
    if mti in ("0800", "0820"):
        if dialect.family == "cup":
            nmic = request.get("60", "")[8:11]
            if mti == "0800":
                return "sign_on" if nmic in ("001", "003", "004") else "unsupported"
            return {"002": "sign_off", "301": "echo"}.get(nmic, "unsupported")
        if mti == "0800" and "70" not in request and request.get("3") == "920000":
            return "sign_on"  # hosts that sign on by processing code (profile intl_sign_on "3=920000")
        return {"001": "sign_on", "002": "sign_off", "301": "echo"}.get(request.get("70", ""), "unsupported")
    if mti == "0500":
        return "settlement" if dialect.family == "cup" or request.get("3") in ("920000", "960000") else "unsupported"
    if mti == "0320":
        return "upload"
    if mti in ("0400", "0401"):
        return "reversal" if identify(request, dialect.family) else "unsupported"
    return identify(request, dialect.family) or "unsupported"


@dataclass(kw_only=True, slots=True)
class _Ctx:
    """One request being decided: inputs, what has been learnt, and the row and answer being built."""

    request: Message
    now: datetime
    directives: Directives
    kind: str
    business_date: date
    response: Message
    row: dict[str, Any]
    terminal: Terminal | None = None
    merchant: Merchant | None = None
    mac_state: str = "absent"  # absent | ok | bad | locked | missing
    pan: str | None = None
    card: Card | None = None
    original: dict[str, Any] | None = None
    effects: list[Callable[[int], None]] = field(default_factory=list)
    #: CUP header 软件分版本号 of the request's frame (None: no CUP header).
    software_version: str | None = None
    #: CUP header 处理要求 the answer must carry (None: nothing asked).
    processing_requirement: str | None = None
    #: The request's bytes as received (its MAC is checked over them), when the caller has them.
    raw: bytes | None = None
    #: The MAK the response is to be signed with while it is encoded (see :class:`Answer`).
    mac_key: str | None = None

    @property
    def tid(self) -> str:
        return self.request["41"]

    @property
    def amount(self) -> int | None:
        return int(self.request["4"]) if "4" in self.request else None


class ClockFields(NamedTuple):
    """One second of the business clock as a request's answer and its row write it."""

    hhmmss: str  # field 12
    mmdd: str  # field 13
    yyddd: str  # the RRN's prefix
    iso: str  # received_at


def clock_fields(now: datetime) -> ClockFields:
    """:class:`ClockFields` of ``now`` (formatting dates costs more than the rest of a sale's checks:
    the last few seconds are kept)."""
    return _clock_fields(now.replace(microsecond=0))


def rrn_of(now: datetime, seq: int) -> str:
    """The RRN (37) of the authorization row with id ``seq``: the business date (YYDDD) and the id.

    >>> rrn_of(datetime(2026, 11, 22, 9, 30), 7)
    '263260000007'
    """
    return f"{clock_fields(now).yyddd}{seq % 10_000_000:07d}"


def auth_code_of(seq: int) -> str:
    """The approval code (38) of the authorization row with id ``seq``.

    >>> auth_code_of(2)
    '015838'
    """
    return f"{(seq * 7919) % 1_000_000:06d}"


@functools.lru_cache(maxsize=8)
def _clock_fields(now: datetime) -> ClockFields:
    return ClockFields(f"{now:%H%M%S}", f"{now:%m%d}", f"{now:%y%j}", now.isoformat(timespec="seconds"))


class Host:
    """Stub acquirer core.

    Args:
        ledger: the books (and the registry tables).
        dialect: the encoding dialect; its family selects INTL or CUP conventions.
        settings: acquirer policy switches.
        registry: typed registry access; defaults to the ledger's registry tables.
    """

    def __init__(self, ledger: Ledger, dialect: Dialect, *, settings: HostSettings | None = None,
                 registry: Registry | None = None) -> None:
        self.ledger = ledger
        self.dialect = dialect
        self.family = dialect.family
        self.settings = settings or HostSettings()
        self.registry = registry or Registry(ledger)

    @property
    def settings(self) -> HostSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: HostSettings) -> None:
        self._settings = settings
        self.calendar = settings.calendar

    # ------------------------------------------------------------------ entry point

    def handle(self, request: Message, *, now: datetime, directives: Directives = NO_DIRECTIVES,
               software_version: str | None = None) -> Message:
        """:meth:`answer`, without the header instruction: the response message only (MACed)."""
        answer = self.answer(request, now=now, directives=directives, software_version=software_version)
        if answer.mac_key is not None:
            return signed(answer.response, self.dialect, answer.mac_key)
        return answer.response

    def answer(self, request: Message, *, now: datetime, directives: Directives = NO_DIRECTIVES,
               software_version: str | None = None, kind: str | None = None, raw: bytes | None = None) -> Answer:
        """Decide the answer to one decoded, validated request and record it in the ledger.

        Args:
            request: decoded request message (``"t"`` plus data elements).
            now: the business clock's current local time.
            directives: what the fault plan asks for this request.
            software_version: the CUP header's 软件分版本号 (N6), None without a CUP header.
            kind: :func:`classify` of the request when the caller has it already.
            raw: the request's bytes as received (field 64 is checked over them, not over a
                re-encoding of the decoded request).

        Returns:
            The response (MACed when the request was) and the 处理要求 its CUP header must carry.
        """
        calendar = self.calendar
        ctx = _Ctx(request=request, now=now, directives=directives, kind=kind or classify(request, self.dialect),
                   business_date=calendar.business_date(now), response=self._base_response(request, now), row={},
                   software_version=software_version, raw=raw)
        ctx.row = self._base_row(ctx)
        with self.ledger.request_transaction():
            rc = self._decide(ctx)
            self._finish(ctx, rc)
        return Answer(response=self._seal(ctx), processing_requirement=ctx.processing_requirement,
                      mac_key=ctx.mac_key)

    def record_rejected(self, partial: Message, *, reason: str, now: datetime) -> int:
        """Put a request that failed validation (answered 30) on the books; returns the row id.

        Args:
            partial: what could be decoded (at least MTI, 11 and 41).
            reason: the codec's description of the problem (no card data: the codec never echoes it).
            now: the business clock.
        """
        amount = partial.get("4", "")
        return self.ledger.insert_authorization(dict(
            received_at=now.isoformat(timespec="seconds"),
            business_date=self.calendar.business_date(now).isoformat(), mti=partial["t"], kind="malformed",
            tid=partial["41"], mid=partial.get("42", ""), stan=partial["11"], processing_code=partial.get("3"),
            amount_minor=int(amount) if amount.isdigit() else None, local_date=partial.get("13"),
            local_time=partial.get("12"), rc=codes.FORMAT_ERROR, status="declined", reason=reason))

    def refresh_payouts(self, now: datetime) -> int:
        """Pay every pending payout whose value date has come (business date of ``now``)."""
        today = self.calendar.business_date(now)
        return self.ledger.pay_due_payouts(today=today.isoformat(), at=now.isoformat(timespec="seconds"))

    def release_payout(self, payout_id: int, now: datetime) -> dict[str, Any]:
        """Release a held payout (C11/C36 hold lifted): it is pending, or paid if its value date has come.

        Raises:
            KeyError: no such payout.
            ValueError: the payout is not held.
        """
        payout = self.ledger.payout(payout_id)
        if payout is None:
            raise KeyError(payout_id)
        if payout["status"] != "held":
            raise ValueError(f"Payout {payout_id} is {payout['status']}, expecting held")
        self.ledger.update_payout(payout_id, status="pending", released_at=now.isoformat(timespec="seconds"))
        self.refresh_payouts(now)
        return self.ledger.payout(payout_id) or {}

    def merchant_changed(self, before: Merchant | None, after: Merchant, now: datetime) -> list[dict[str, Any]]:
        """A merchant's registry entry changed: release the payouts held for a reason that no longer
        applies (its ``payout_hold`` cleared or changed, or its status no longer frozen) (C11, C36).

        Payouts held by a fault (``payout_hold`` action) keep their hold: only ``POST
        /ledger/payouts/{id}/release`` lifts it.

        Returns:
            The released payouts as they are now (pending, or paid when their value date has come).
        """
        if before is None:
            return []
        lifted: set[str] = set()
        if before.payout_hold and before.payout_hold != after.payout_hold:
            lifted.add(before.payout_hold)
        if before.status in ("frozen", "frozen_payout") and after.status != before.status:
            lifted.add(f"merchant {before.status}")
            if after.status in ("frozen", "frozen_payout"):
                lifted.discard(f"merchant {after.status}")
        still_held = {after.payout_hold} if after.payout_hold else set()
        released = []
        with self.ledger.transaction():
            for payout in self.ledger.payouts(mid=after.mid, status="held"):
                if payout["hold_reason"] in lifted and payout["hold_reason"] not in still_held:
                    self.ledger.update_payout(payout["id"], status="pending", released_at=now.isoformat(timespec="seconds"))
                    released.append(payout["id"])
            self.refresh_payouts(now)
        return [p for p in (self.ledger.payout(i) for i in released) if p is not None]

    # ------------------------------------------------------------------ the checks, in order

    def _decide(self, ctx: _Ctx) -> str:
        self._load_parties(ctx)
        if ctx.directives.rotate_keys and ctx.terminal and ctx.terminal.keys_valid:
            ctx.terminal = self._save_terminal(replace(ctx.terminal, keys_valid=False))
        if ctx.kind != "sign_on":
            self._check_mac(ctx)
        if ctx.directives.respond_rc:
            ctx.row["reason"] = "fault"
            return ctx.directives.respond_rc
        rc = self._check_message_rules(ctx)
        if rc:
            return rc
        rc = self._check_parties(ctx)
        if rc:
            return rc
        if ctx.mac_state in ("bad", "locked", "missing"):
            ctx.row["reason"] = f"mac_{ctx.mac_state}"
            return codes.MAC_ERROR
        rc = self._check_session(ctx) or self._check_replay(ctx)
        if rc:
            return rc
        return self._HANDLERS.get(ctx.kind, Host._unsupported)(self, ctx)

    def _load_parties(self, ctx: _Ctx) -> None:
        """Terminal and merchant from the registry; an open host enrols them on first sight."""
        tid, mid = ctx.tid, ctx.request.get("42")
        terminal = self.registry.terminal(tid)
        if terminal is None and not self.settings.strict_registry:
            terminal = Terminal(tid=tid, mid=mid or UNKNOWN_MID)
            self.registry.put(terminal)
        elif terminal is not None and terminal.mid == UNKNOWN_MID and mid:  # enrolled by a message without 42
            terminal = replace(terminal, mid=mid)
            self.registry.put(terminal)
        ctx.terminal = terminal
        merchant_id = mid or (terminal.mid if terminal and terminal.mid != UNKNOWN_MID else None)
        merchant = self.registry.merchant(merchant_id) if merchant_id else None
        if merchant is None and merchant_id and not self.settings.strict_registry:
            merchant = Merchant(mid=merchant_id)
            self.registry.put(merchant)
        ctx.merchant = merchant
        if terminal:
            ctx.row["batch"] = f"{terminal.batch:06d}"

    def _check_message_rules(self, ctx: _Ctx) -> str | None:
        """The rules in force for every message: mandatory new fields (C33) and the minimum CUP
        software version (C07).  Both ask the terminal, in the header, for the download that cures them."""
        settings = self.settings
        minimum = settings.min_software_version
        outdated = (minimum is not None and ctx.software_version is not None
                    and ctx.software_version.isdigit() and int(ctx.software_version) < int(minimum))
        if outdated:
            ctx.processing_requirement = TMS_DOWNLOAD  # on every answer, whatever it says
        missing = [f for f in settings.required_for(ctx.request["t"]) if f not in ctx.request]
        if missing:
            ctx.row["reason"] = f"missing_required_field:{','.join(missing)}"
            ctx.processing_requirement = ctx.processing_requirement or DOWNLOAD_PARAMETERS
            return codes.FORMAT_ERROR
        if outdated and ctx.request["t"] in _FINANCIAL_MTIS:
            ctx.row["reason"] = f"software_version:{ctx.software_version}<{minimum}"
            return codes.FORMAT_ERROR
        return None

    def _check_parties(self, ctx: _Ctx) -> str | None:
        """Terminal and merchant registration, status and region (docs/domain.md#c06, #c15, #c19)."""
        terminal, merchant = ctx.terminal, ctx.merchant
        if terminal is None:
            ctx.row["reason"] = "unknown_terminal"
            return codes.TERMINAL_NOT_REGISTERED
        settles = ctx.kind in ("settlement", "upload", "reversal")
        status_rc = TERMINAL_STATUS_RC[terminal.status]
        if status_rc and not settles:
            ctx.row["reason"] = f"terminal_{terminal.status}"
            return status_rc
        mid = ctx.request.get("42")
        if mid and mid != terminal.mid:
            ctx.row["reason"] = "merchant_mismatch"
            return codes.INVALID_MERCHANT
        if ctx.kind in ("sign_on", "sign_off", "echo") and merchant is None and not self.settings.strict_registry:
            return None  # an INTL network message may come without field 42
        if merchant is None:
            ctx.row["reason"] = "unknown_merchant"
            return codes.INVALID_MERCHANT
        if ctx.kind in ("sign_off", "echo") or settles:
            return None
        if merchant.status in ("frozen", "disabled"):
            ctx.row["reason"] = f"merchant_{merchant.status}"
            return codes.INVALID_MERCHANT
        allowed = self.settings.allowed_regions
        if allowed is not None and (merchant.region not in allowed or (terminal.region and terminal.region not in allowed)):
            ctx.row["reason"] = "region"
            return codes.NOT_PERMITTED_TO_TERMINAL
        return None

    def _check_mac(self, ctx: _Ctx) -> None:
        """Verify field 64 when present (required with ``require_mac``); count consecutive failures
        (docs/domain.md#f1 host side, #c08)."""
        terminal = ctx.terminal
        if terminal is None:
            ctx.mac_state = "bad" if "64" in ctx.request else "absent"
            return
        if terminal.mac_failures >= self.settings.mac_failure_limit:
            ctx.mac_state = "locked"
            return
        if "64" not in ctx.request:
            if (self.settings.require_mac and terminal.keys_valid and terminal.mak
                    and self.dialect.profile.carries_mac(ctx.request["t"])):
                ctx.mac_state = "missing"  # the terminal holds a MAK and did not use it
            return
        good = bool(terminal.keys_valid and terminal.mak and self._mac_valid(ctx, terminal.mak))
        if good:
            ctx.mac_state = "ok"
            if terminal.mac_failures:
                ctx.terminal = self._save_terminal(replace(terminal, mac_failures=0))
        else:
            ctx.mac_state = "bad"
            ctx.terminal = self._save_terminal(replace(terminal, mac_failures=terminal.mac_failures + 1))

    def _mac_valid(self, ctx: _Ctx, mak_hex: str) -> bool:
        """Field 64 over the bytes the terminal sent (when the caller has them), else over the
        decoded request encoded again."""
        if ctx.raw is not None and not any(len(k) > 2 or (k.isdigit() and int(k) > 64) for k in ctx.request if k != "t"):
            return wire_mac_is_valid(ctx.raw, self.dialect, bytes.fromhex(mak_hex), default_mac_algorithm(self.family))
        return mac_is_valid(ctx.request, self.dialect, mak_hex)

    def _check_session(self, ctx: _Ctx) -> str | None:
        """Sign-on of the day (22), CUP batch (77), cutover window (90) for financial and settlement requests."""
        mti = ctx.request["t"]
        financial = mti in _FINANCIAL_MTIS
        if not (financial or mti in ("0500", "0320")):
            return None
        terminal = ctx.terminal
        assert terminal is not None
        if financial and self.settings.require_daily_signon and terminal.signed_on_date != ctx.business_date.isoformat():
            ctx.row["reason"] = "not_signed_on_today"
            return codes.SUSPECTED_MALFUNCTION
        if (financial and self.family == "cup" and self.settings.strict_batch
                and ctx.request.get("60", "")[2:8] != f"{terminal.batch:06d}"):
            ctx.row["reason"] = "batch_mismatch"
            return codes.BATCH_MISMATCH
        if self.calendar.in_cutover_window(ctx.now):
            ctx.row["reason"] = "cutover"
            return codes.CUTOVER_IN_PROGRESS
        return None

    def _check_replay(self, ctx: _Ctx) -> str | None:
        """A financial request (0100/0200) already on the books (94), or one whose reversal came first."""
        request = ctx.request
        if request["t"] not in ("0100", "0200"):
            return None
        replay = self.ledger.replay_of(tid=ctx.tid, stan=request["11"], local_date=request.get("13"))
        if replay == "duplicate":
            ctx.row["reason"] = "duplicate"
            return codes.DUPLICATE_TRANSMISSION
        if replay == "tombstone":
            ctx.row["reason"] = "reversed_before_arrival"
            return self.settings.late_original_rc
        return None

    # ------------------------------------------------------------------ network management

    def _sign_on(self, ctx: _Ctx) -> str:
        terminal = ctx.terminal
        assert terminal is not None
        layout = ctx.request.get("60", "")[8:11] if self.family == "cup" else INTL_KEY_LAYOUT
        count = terminal.signon_count + 1
        keys, block = issue_working_keys(tid=terminal.tid, signon_count=count, layout=layout, tmk_hex=terminal.tmk)
        ctx.terminal = self._save_terminal(replace(
            terminal, signon_count=count, signed_on_date=ctx.business_date.isoformat(), keys_valid=True,
            pik=keys["PIK"], mak=keys["MAK"], tdk=keys.get("TDK"), key_layout=layout, mac_failures=0))
        ctx.response["62"] = block
        if self.family == "cup":
            request_60 = ctx.request.get("60", "")
            ctx.response["60"] = request_60[:2] + f"{terminal.batch:06d}" + request_60[8:]
            # the CUP 0810 names the acquirer (32) and carries a retrieval reference (37)
            ctx.response["32"] = ACQUIRER_ID
            ctx.response["37"] = self._next_rrn(ctx)
        return codes.APPROVED

    def _sign_off(self, ctx: _Ctx) -> str:
        assert ctx.terminal is not None
        ctx.terminal = self._save_terminal(replace(ctx.terminal, keys_valid=False))
        return codes.APPROVED

    def _echo(self, ctx: _Ctx) -> str:
        return codes.APPROVED

    def _unsupported(self, ctx: _Ctx) -> str:
        ctx.row["reason"] = "unsupported"
        return codes.INVALID_TRANSACTION

    # ------------------------------------------------------------------ financial requests

    def _sale(self, ctx: _Ctx) -> str:
        return self._screen(ctx, need_card=True, limits=True) or self._approve(ctx, effect=self._debit_card(ctx))

    def _preauth(self, ctx: _Ctx) -> str:
        return self._screen(ctx, need_card=True, limits=False) or self._approve(ctx)

    def _balance(self, ctx: _Ctx) -> str:
        rc = self._screen(ctx, need_card=True, limits=False, amount_checks=False)
        if rc:
            return rc
        balance = ctx.card.balance_minor if ctx.card and ctx.card.balance_minor is not None else 0
        # Field 54: account type 10, amount type 02 (available), currency, sign, amount N12.
        currency = ctx.request.get("49", "156")
        ctx.response["54"] = f"1002{currency}{'C' if balance >= 0 else 'D'}{abs(balance):012d}"
        return codes.APPROVED

    def _offline_sale(self, ctx: _Ctx) -> str:
        rc = self._advice_gate(ctx)
        if rc is not None:
            return rc
        self._read_card(ctx)
        return self._approve(ctx, effect=self._debit_card(ctx))

    def _void(self, ctx: _Ctx) -> str:
        rc = self._find_original(ctx)
        if rc:
            return rc
        original = ctx.original
        assert original is not None
        if original["settled"] or original["status"] != "approved" or original["refunded_minor"]:
            ctx.row["reason"] = "original_settled" if original["settled"] else f"original_{original['status']}"
            return codes.INVALID_TRANSACTION
        if ctx.amount is not None and ctx.amount != original["amount_minor"]:
            ctx.row["reason"] = "amount_differs"
            return codes.INVALID_AMOUNT
        ctx.row["amount_minor"] = original["amount_minor"]
        rc = self._screen(ctx, need_card=False, limits=False, amount_checks=False) or self._merchant_funds(ctx)
        if rc:
            return rc
        amount = original["amount_minor"]

        def undo_original(_row_id: int) -> None:
            self.ledger.update_authorization(original["id"], status="voided")
            if ctx.kind != "preauth_void":
                self._credit_card_token(original["pan_token"], amount)
            if ctx.kind == "completion_void" and original["original_id"]:
                self.ledger.update_authorization(original["original_id"], status="approved")
            self._draw_merchant_funds(ctx, amount)

        return self._approve(ctx, effect=undo_original)

    _completion_void = _void
    _preauth_void = _void

    def _refund(self, ctx: _Ctx) -> str:
        if ctx.request["t"] in _ADVICE_MTIS:
            rc = self._advice_gate(ctx)
            if rc is not None:
                return rc
        rc = self._find_original(ctx)
        if rc:
            return rc
        original = ctx.original
        assert original is not None
        if original["status"] not in ("approved", "refunded"):
            ctx.row["reason"] = f"original_{original['status']}"
            return codes.INVALID_TRANSACTION
        amount = ctx.amount or 0
        if amount <= 0 or original["refunded_minor"] + amount > original["amount_minor"]:
            ctx.row["reason"] = "refund_exceeds_original"
            return codes.INVALID_AMOUNT
        rc = self._screen(ctx, need_card=False, limits=False, amount_checks=False) or self._merchant_funds(ctx)
        if rc:
            return rc

        def refund_original(_row_id: int) -> None:
            refunded = original["refunded_minor"] + amount
            self.ledger.update_authorization(
                original["id"], refunded_minor=refunded,
                status="refunded" if refunded == original["amount_minor"] else "approved")
            self._credit_card_token(original["pan_token"], amount)
            self._draw_merchant_funds(ctx, amount)

        return self._approve(ctx, effect=refund_original)

    def _completion(self, ctx: _Ctx) -> str:
        if ctx.request["t"] in _ADVICE_MTIS:
            rc = self._advice_gate(ctx)
            if rc is not None:
                return rc
        rc = self._find_original(ctx)
        if rc:
            return rc
        preauth = ctx.original
        assert preauth is not None
        if preauth["status"] != "approved":
            ctx.row["reason"] = f"preauth_{preauth['status']}"
            return codes.INVALID_TRANSACTION
        if (ctx.amount or 0) > preauth["amount_minor"]:
            ctx.row["reason"] = "completion_exceeds_preauth"
            return codes.INVALID_AMOUNT
        if ctx.request["t"] not in _ADVICE_MTIS:
            rc = self._screen(ctx, need_card=False, limits=True)
            if rc:
                return rc
        else:
            self._read_card(ctx)
        if ctx.row.get("pan_token") is None:
            ctx.row["pan_token"], ctx.row["pan_masked"] = preauth["pan_token"], preauth["pan_masked"]

        debit = self._debit_card(ctx)

        def complete(row_id: int) -> None:
            self.ledger.update_authorization(preauth["id"], status="completed")
            debit(row_id)

        return self._approve(ctx, effect=complete)

    def _adjust(self, ctx: _Ctx) -> str:
        rc = self._advice_gate(ctx)
        if rc is not None:
            return rc
        rc = self._find_original(ctx)
        if rc:
            return rc
        original = ctx.original
        assert original is not None
        if original["settled"] or original["status"] != "approved":
            ctx.row["reason"] = "original_settled" if original["settled"] else f"original_{original['status']}"
            return codes.INVALID_TRANSACTION
        new_amount = ctx.amount or 0

        def adjust(_row_id: int) -> None:
            self.ledger.update_authorization(original["id"], amount_minor=new_amount)
            self._credit_card_token(original["pan_token"], original["amount_minor"] - new_amount)

        return self._approve(ctx, effect=adjust)

    # ------------------------------------------------------------------ reversal

    def _reversal(self, ctx: _Ctx) -> str:
        request = ctx.request
        ctx.row["reversal_reason"] = request.get("39") if self.family == "cup" else None
        original = self.ledger.find_reversal_original(tid=ctx.tid, stan=request["11"],
                                                      processing_code=request.get("3"), amount_minor=ctx.amount)
        if original is None:
            local_date = request.get("13", "")
            if self.ledger.tombstone(tid=ctx.tid, stan=request["11"], local_date=local_date) is None:
                self.ledger.add_tombstone(tid=ctx.tid, stan=request["11"], local_date=local_date,
                                          processing_code=request.get("3"), amount_minor=ctx.amount,
                                          created_at=ctx.now.isoformat(timespec="seconds"))
            ctx.row["reason"] = "original_unknown"
            rc = ctx.directives.reversal_unknown_rc or self.settings.reversal_unknown_rc
            ctx.row["status"] = "approved" if rc == codes.APPROVED else "declined"
            return rc
        ctx.row["original_id"] = original["id"]
        if original["status"] in ("approved", "refunded"):
            self._undo(original)
            ctx.row["reason"] = "reversed"
        else:  # already reversed (a repeat), or never posted: nothing to undo, and never twice
            ctx.row["reason"] = "repeat" if original["status"] == "reversed" else f"original_{original['status']}"
        ctx.row["status"] = "approved"
        return codes.APPROVED

    def _undo(self, original: dict[str, Any]) -> None:
        """Undo one posted request exactly once: it leaves the totals and its effects are reversed."""
        self.ledger.update_authorization(original["id"], status="reversed")
        amount = original["amount_minor"] or 0
        kind = original["kind"]
        referenced = self.ledger.authorization(original["original_id"]) if original["original_id"] else None
        if kind in ("sale", "completion"):
            self._credit_card_token(original["pan_token"], amount)
        if kind == "completion" and referenced:
            self.ledger.update_authorization(referenced["id"], status="approved")
        if kind in ("void", "completion_void", "preauth_void") and referenced:
            self.ledger.update_authorization(referenced["id"], status="approved")
            if kind != "preauth_void":
                self._credit_card_token(referenced["pan_token"], -amount)
            self._restore_merchant_funds(original["mid"], amount)
        if kind == "completion_void" and referenced and referenced["original_id"]:
            self.ledger.update_authorization(referenced["original_id"], status="completed")
        if kind == "refund" and referenced:
            self.ledger.update_authorization(referenced["id"], refunded_minor=referenced["refunded_minor"] - amount,
                                             status="approved")
            self._credit_card_token(referenced["pan_token"], -amount)
            self._restore_merchant_funds(original["mid"], amount)

    # ------------------------------------------------------------------ shared financial steps

    def _screen(self, ctx: _Ctx, *, need_card: bool, limits: bool, amount_checks: bool = True) -> str | None:
        """Card (status, expiry, PIN), then per-transaction caps, daily limits and balance."""
        request = ctx.request
        rc = self._read_card(ctx, required=need_card)
        if rc:
            return rc
        card = ctx.card or OPEN_CARD
        status_rc = CARD_STATUS_RC[card.status]
        if status_rc:
            ctx.row["reason"] = f"card_{card.status}"
            return status_rc
        expiry = card.expiry or self._request_expiry(request)
        if expiry and expiry.isdigit() and len(expiry) == 4 and (
                card_expired(expiry, ctx.business_date) or (card.expiry and request.get("14", card.expiry) != card.expiry)):
            ctx.row["reason"] = "card_expired"
            return codes.EXPIRED_CARD
        rc = self._check_pin(ctx, card)
        if rc or not amount_checks:
            return rc
        amount = ctx.amount or 0
        parties = [p for p in (ctx.merchant, ctx.terminal, card) if p is not None]
        for party in parties:
            cap = party.limits.per_txn_max_minor
            if cap is not None and amount > cap:
                ctx.row["reason"] = "per_transaction_cap"
                return codes.INVALID_AMOUNT
        if limits:
            scopes = [(p, column, value) for p, column, value in (
                (ctx.merchant, "mid", ctx.merchant.mid if ctx.merchant else None),
                (ctx.terminal, "tid", ctx.tid),
                (ctx.card, "pan_token", ctx.card.token if ctx.card else None)) if p is not None and value]
            for party, column, value in scopes:
                lim = party.limits
                if lim.daily_count is None and lim.daily_amount_minor is None:
                    continue
                count, total = self.ledger.daily_usage(column=column, value=value,
                                                       business_date=ctx.business_date.isoformat(), kinds=_LIMIT_KINDS)
                if lim.daily_count is not None and count + 1 > lim.daily_count:
                    ctx.row["reason"] = f"daily_count_{column}"
                    return codes.EXCEEDS_FREQUENCY_LIMIT
                if lim.daily_amount_minor is not None and total + amount > lim.daily_amount_minor:
                    ctx.row["reason"] = f"daily_amount_{column}"
                    return codes.EXCEEDS_AMOUNT_LIMIT
        if card.balance_minor is not None and amount > card.balance_minor:
            ctx.row["reason"] = "insufficient_funds"
            return codes.NOT_SUFFICIENT_FUNDS
        return None

    def _read_card(self, ctx: _Ctx, *, required: bool = False) -> str | None:
        """PAN from field 2 or track 2; the registry card (or the open card of a non-strict host)."""
        pan = ctx.request.get("2") or (ctx.request.get("35", "").split("=")[0] or None)
        if pan is None:
            if required:
                ctx.row["reason"] = "no_pan"
                return codes.INVALID_CARD_NUMBER
            return None
        ctx.pan = pan
        token = self.ledger.pan_token(pan)
        ctx.row["pan_masked"], ctx.row["pan_token"] = mask_pan(pan), token
        if not (pan.isdigit() and 12 <= len(pan) <= 19 and luhn_valid(pan)):
            ctx.row["reason"] = "pan_not_luhn_valid"
            return codes.INVALID_CARD_NUMBER
        ctx.card = self.registry.card_by_token(token)
        if ctx.card is None and self.settings.strict_registry:
            ctx.row["reason"] = "unknown_card"
            return codes.INVALID_CARD_NUMBER
        return None

    @staticmethod
    def _request_expiry(request: Message) -> str | None:
        if "14" in request:
            return request["14"]
        track = request.get("35", "")
        return track.split("=", 1)[1][:4] if "=" in track else None

    def _check_pin(self, ctx: _Ctx, card: Card) -> str | None:
        block = ctx.request.get("52")
        if block is None:
            return None
        terminal = ctx.terminal
        if not (terminal and terminal.keys_valid and terminal.pik and ctx.pan):
            ctx.row["reason"] = "pin_without_keys"
            return codes.PIN_FORMAT_ERROR
        try:
            pin = pin_from_block(block, ctx.pan, terminal.pik)
        except ValueError:
            ctx.row["reason"] = "pin_block_unreadable"
            return codes.PIN_FORMAT_ERROR
        if card.pin_verifier is not None and self.ledger.pin_verifier(ctx.pan, pin) != card.pin_verifier:
            ctx.row["reason"] = "wrong_pin"
            return codes.INCORRECT_PIN
        return None

    def _find_original(self, ctx: _Ctx) -> str | None:
        """The original a void, refund, completion or adjust names by TID + RRN (field 37)."""
        rrn = ctx.request.get("37")
        original = self.ledger.find_by_rrn(tid=ctx.tid, rrn=rrn, kinds=_REFERENCED[ctx.kind]) if rrn else None
        if original is None:
            ctx.row["reason"] = "original_not_found"
            return codes.UNABLE_TO_LOCATE_RECORD
        ctx.original = original
        ctx.row["original_id"] = original["id"]
        if ctx.row.get("pan_token") is None:
            ctx.row["pan_token"], ctx.row["pan_masked"] = original["pan_token"], original["pan_masked"]
        return None

    def _advice_gate(self, ctx: _Ctx) -> str | None:
        """An advice already posted is answered 00 and not posted again; a fault may drop the posting."""
        request = ctx.request
        posted = self.ledger.find_posted_advice(tid=ctx.tid, stan=request["11"], processing_code=request.get("3"),
                                                amount_minor=ctx.amount)
        if posted is not None:
            ctx.row.update(status="repeat", reason="advice_repeat", original_id=posted["id"],
                           rrn=posted["rrn"], auth_code=posted["auth_code"])
            self._answer_approval(ctx, posted["rrn"], posted["auth_code"])
            return codes.APPROVED
        if ctx.directives.drop_advice_posting:
            ctx.row.update(status="dropped", reason="fault")
            return codes.APPROVED
        return None

    def _merchant_funds(self, ctx: _Ctx) -> str | None:
        merchant = ctx.merchant
        available = merchant.available_balance_minor if merchant else None
        if available is not None and (ctx.row.get("amount_minor") or 0) > available:
            ctx.row["reason"] = "merchant_funds"
            return codes.NOT_SUFFICIENT_FUNDS
        return None

    def _draw_merchant_funds(self, ctx: _Ctx, amount: int) -> None:
        merchant = ctx.merchant
        if merchant and merchant.available_balance_minor is not None:
            self.registry.put(replace(merchant, available_balance_minor=merchant.available_balance_minor - amount))

    def _restore_merchant_funds(self, mid: str, amount: int) -> None:
        merchant = self.registry.merchant(mid)
        if merchant and merchant.available_balance_minor is not None:
            self.registry.put(replace(merchant, available_balance_minor=merchant.available_balance_minor + amount))

    def _debit_card(self, ctx: _Ctx) -> Callable[[int], None]:
        """The effect of a posted debit on the card's balance (registered cards only)."""
        def debit(_row_id: int) -> None:
            card = ctx.card or (self.registry.card_by_token(ctx.row["pan_token"]) if ctx.row.get("pan_token") else None)
            if card is not None and card.balance_minor is not None and ctx.amount:
                self.registry.put(replace(card, balance_minor=card.balance_minor - ctx.amount))
        return debit

    def _credit_card_token(self, token: str | None, amount: int) -> None:
        card = self.registry.card_by_token(token) if token else None
        if card is not None and card.balance_minor is not None and amount:
            self.registry.put(replace(card, balance_minor=card.balance_minor + amount))

    def _approve(self, ctx: _Ctx, *, effect: Callable[[int], None] | None = None) -> str:
        """Post the request: RRN, approval code, settlement date; ``effect`` runs once the row exists."""
        rrn = self._next_rrn(ctx)  # the RRN comes from the row's own id
        auth_code = auth_code_of(ctx.row["id"])
        ctx.row.update(rrn=rrn, auth_code=auth_code, status="approved")
        self._answer_approval(ctx, rrn, auth_code)
        if effect is not None:
            ctx.effects.append(effect)
        return codes.APPROVED

    def _answer_approval(self, ctx: _Ctx, rrn: str | None, auth_code: str | None) -> None:
        ctx.response["15"] = f"{ctx.business_date:%m%d}"
        ctx.row["settlement_date"] = ctx.response["15"]
        if rrn:
            ctx.response["37"] = rrn
        if auth_code:
            ctx.response["38"] = auth_code

    # ------------------------------------------------------------------ settlement

    def _settlement(self, ctx: _Ctx) -> str:
        request, terminal = ctx.request, ctx.terminal
        assert terminal is not None
        cup = self.family == "cup"
        batch = request.get("60", "")[2:8] if cup else request.get(self.dialect.profile.batch_field, "")[:6]
        ctx.row["batch"] = batch
        try:
            if not (len(batch) == 6 and batch.isdigit()):
                raise ValueError(f"batch {batch!r}")
            theirs = parse_cup_field_48(request.get("48", ""))[0] if cup else parse_intl_field_63(request.get("63", ""))
            their_foreign = parse_cup_field_48_foreign(request.get("48", ""))[0] if cup else Totals()
        except ValueError:  # answer 30 and keep the request on the books
            ctx.row["reason"] = "bad_totals"
            if cup:
                ctx.response["48"] = cup_field_48(Totals(), flag=CUP_ERROR)
            return codes.FORMAT_ERROR
        request_key = f"{request.get('3', '')}:{request.get('48') if cup else request.get('63')}"
        closed = self.ledger.latest_settlement(tid=ctx.tid, batch=batch, status="closed")
        if closed is not None and closed["request_key"] == request_key:
            ctx.row["reason"] = "settlement_repeat"
            if closed["response_48"]:
                ctx.response["48"] = closed["response_48"]
            self.ledger.update_settlement(closed["id"], attempts=closed["attempts"] + 1)
            return str(closed["rc"])
        if closed is not None and closed["terminal_totals"] == asdict(theirs) and closed["rc"] == codes.APPROVED:
            # The terminal restarts the settlement of a batch the host already closed (it lost the
            # closing answer, C23): the batch is settled, so say so, and never close or pay it twice.
            ctx.row["reason"] = "settlement_of_closed_batch"
            if cup:
                settled = closed["uploaded_totals"] or closed["host_totals"]
                ctx.response["48"] = cup_field_48(Totals(**settled), flag=CUP_BALANCED, foreign_flag=CUP_BALANCED)
            self.ledger.update_settlement(closed["id"], attempts=closed["attempts"] + 1)
            return codes.APPROVED
        if not cup and request.get("3") == "960000":
            return self._close_after_upload(ctx, batch, theirs, request_key)
        ours = self._with_delta(self.ledger.open_batch_totals(ctx.tid), ctx.directives.totals_delta)
        balanced = ours == theirs
        if cup:
            mode = self.settings.cup_unbalanced_mode
            rc = codes.RECONCILE_ERROR if mode == "rc95" and not balanced else codes.APPROVED
            flag = CUP_BALANCED if balanced else CUP_ERROR if mode == "error" else CUP_UNBALANCED
            # every card of the stub counts as domestic: the foreign totals are zero on the host's side,
            # and the foreign 对账应答码 says whether the terminal's foreign totals agree with that
            foreign_flag = CUP_BALANCED if their_foreign == Totals() else CUP_UNBALANCED
            ctx.response["48"] = cup_field_48(ours, flag=flag, foreign_flag=foreign_flag)
        else:
            rc = codes.APPROVED if balanced else codes.RECONCILE_ERROR
        at = ctx.now.isoformat(timespec="seconds")
        pending = self.ledger.latest_settlement(tid=ctx.tid, batch=batch, status="awaiting_upload")
        fields = dict(terminal_totals=theirs, host_totals=ours, rc=rc, request_key=request_key,
                      response_48=ctx.response.get("48"), result="balanced" if balanced else "unbalanced",
                      status="closed" if balanced else "awaiting_upload")
        if pending is not None:
            self.ledger.update_settlement(pending["id"], attempts=pending["attempts"] + 1, **fields)
            settlement_id = pending["id"]
        else:
            settlement_id = self.ledger.insert_settlement(dict(
                tid=ctx.tid, mid=request.get("42", terminal.mid), batch=batch, family=self.family, opened_at=at,
                **fields))
        if balanced:
            records = [(r["kind"], r["amount_minor"] or 0, r["business_date"]) for r in self.ledger.open_records(ctx.tid)]
            self._close_batch(ctx, settlement_id, batch, records, result="balanced")
        return rc

    def _close_after_upload(self, ctx: _Ctx, batch: str, theirs: Totals, request_key: str) -> str:
        """INTL 0500 960000: close the batch as uploaded; 95 (and an exception) if the upload disagrees."""
        settlement = self.ledger.latest_settlement(tid=ctx.tid, batch=batch, status="awaiting_upload")
        if settlement is None:
            settlement_id = self.ledger.insert_settlement(dict(
                tid=ctx.tid, mid=ctx.request.get("42", ""), batch=batch, family=self.family, status="awaiting_upload",
                result="unbalanced", opened_at=ctx.now.isoformat(timespec="seconds"), terminal_totals=theirs,
                host_totals=self.ledger.open_batch_totals(ctx.tid), rc=codes.RECONCILE_ERROR))
        else:
            settlement_id = settlement["id"]
        uploaded, records = self._rebuild_from_uploads(ctx, settlement_id, batch)
        rc = codes.APPROVED if uploaded == theirs else codes.RECONCILE_ERROR
        self.ledger.update_settlement(settlement_id, request_key=request_key, rc=rc, terminal_totals=theirs)
        self._close_batch(ctx, settlement_id, batch, records,
                          result="uploaded" if rc == codes.APPROVED else "upload_mismatch", uploaded=uploaded)
        return rc

    def _upload(self, ctx: _Ctx) -> str:
        """0320: one INTL record, or up to 8 CUP records (60.3 201); CUP 202/207 ends the upload."""
        request = ctx.request
        cup = self.family == "cup"
        batch = request.get("60", "")[2:8] if cup else None
        settlement = self.ledger.latest_settlement(tid=ctx.tid, batch=batch, status="awaiting_upload")
        if batch is None:  # INTL: the batch is the one being settled, else the host's open one
            batch = settlement["batch"] if settlement else self._intl_upload_batch(ctx)
        ctx.row["batch"] = batch
        settlement_id = settlement["id"] if settlement else None
        at = ctx.now.isoformat(timespec="seconds")
        try:
            if cup:
                nmic = request.get("60", "")[8:11]
                if nmic in (CUP_UPLOAD_END_UNBALANCED, CUP_UPLOAD_END_BALANCED):
                    return self._cup_upload_end(ctx, batch, nmic, settlement_id)
                if nmic != CUP_UPLOAD_DATA:  # IC upload formats: acknowledged, not interpreted
                    ctx.row["reason"] = f"upload_{nmic}_not_interpreted"
                    return codes.APPROVED
                if "48" not in request:  # one refund or offline record as a full message
                    self.ledger.upsert_upload(self._cup_record_upload(ctx, batch, settlement_id, at))
                    ctx.row["reason"] = "upload_record"
                for record in parse_cup_upload_field_48(request["48"]) if "48" in request else ():
                    self.ledger.upsert_upload(dict(
                        settlement_id=settlement_id, tid=ctx.tid, batch=batch, original_stan=record.stan,
                        upload_stan=request["11"], amount_minor=record.amount_minor, pan_masked=mask_pan(record.pan),
                        pan_token=self.ledger.pan_token(record.pan), received_at=at))
            else:
                original_mti, original_stan = parse_intl_upload_field_60(request.get("60", ""))
                processing = request.get("3", "")
                original_processing = processing[:5] + "0"
                kind = identify({"t": original_mti, "3": original_processing, "25": request.get("25", ""),
                                 **({"37": request["37"]} if "37" in request else {})}, "intl")
                pan = request.get("2")
                self.ledger.upsert_upload(dict(
                    settlement_id=settlement_id, tid=ctx.tid, batch=batch, original_mti=original_mti,
                    original_stan=original_stan, upload_stan=request["11"], processing_code=original_processing,
                    kind=kind, amount_minor=ctx.amount, pan_masked=mask_pan(pan) if pan else None,
                    pan_token=self.ledger.pan_token(pan) if pan else None, rrn=request.get("37"), auth_code=request.get("38"),
                    invoice=request.get("62"), received_at=at))
        except ValueError:
            ctx.row["reason"] = "bad_upload"
            return codes.FORMAT_ERROR
        if settlement_id is not None:
            self.ledger.update_settlement(settlement_id, upload_count=len(self.ledger.uploads_of(tid=ctx.tid, batch=batch)))
        return codes.APPROVED

    def _cup_record_upload(self, ctx: _Ctx, batch: str, settlement_id: int | None, at: str) -> dict[str, Any]:
        """The upload row of a CUP 0320 carrying one record in full: kind from 60.1, original STAN from
        61.2, amount, card, RRN and approval code from 4, 2, 37 and 38.

        Raises:
            ValueError: 61 is not original batch N6 + STAN N6 + date N4, or 60.1 names no upload kind.
        """
        request = ctx.request
        original = request.get("61", "")
        if len(original) < 16 or not original[:16].isdigit():
            raise ValueError(f"field 61 {original!r} is not original batch N6 + STAN N6 + date N4")
        kind = kind_of_cup_type(request["60"][:2])
        if kind is None or SETTLEMENT_CLASS.get(kind) is None:
            raise ValueError(f"60.1 {request['60'][:2]!r} names no settlement record")
        pan = request.get("2")
        mti = layout(kind, "cup").mti
        return dict(settlement_id=settlement_id, tid=ctx.tid, batch=batch, original_mti=mti, original_stan=original[6:12],
                    upload_stan=request["11"], processing_code=request.get("3"), kind=kind, amount_minor=ctx.amount,
                    pan_masked=mask_pan(pan) if pan else None, pan_token=self.ledger.pan_token(pan) if pan else None,
                    rrn=request.get("37"), auth_code=request.get("38"), received_at=at)

    def _intl_upload_batch(self, ctx: _Ctx) -> str:
        """The batch an INTL 0320 belongs to when no settlement waits for an upload: the batch just
        closed if this record was uploaded for it (a terminal resending after a lost answer), else the
        host's open batch."""
        closed = self.ledger.latest_settlement(tid=ctx.tid, status="closed")
        original_stan = ctx.request.get("60", "")[4:10]
        if closed is not None and any(u["original_stan"] == original_stan
                                      for u in self.ledger.uploads_of(tid=ctx.tid, batch=closed["batch"])):
            return str(closed["batch"])
        return f"{ctx.terminal.batch:06d}" if ctx.terminal else "000000"

    def _cup_upload_end(self, ctx: _Ctx, batch: str, nmic: str, settlement_id: int | None) -> str:
        """CUP 0320 202/207: the upload is complete; close the batch as uploaded (or confirm a balanced close)."""
        count_text = ctx.request.get("48", "")
        end_count = int(count_text[:4]) if count_text[:4].isdigit() else None
        if settlement_id is None:  # 207 after a balanced 0510 (already closed), or an end without a 0500
            closed = self.ledger.latest_settlement(tid=ctx.tid, batch=batch, status="closed")
            if closed is not None:
                self.ledger.update_settlement(closed["id"], end_count=end_count)
                ctx.row["reason"] = "upload_end_after_close"
                return codes.APPROVED
            ctx.row["reason"] = "upload_end_without_settlement"
            return codes.APPROVED
        uploaded, records = self._rebuild_from_uploads(ctx, settlement_id, batch)
        uploads = self.ledger.uploads_of(tid=ctx.tid, batch=batch)
        exceptions: dict[str, Any] = {}
        if end_count is not None and end_count != len(uploads):
            exceptions["end_count"] = {"announced": end_count, "received": len(uploads)}
        if nmic == CUP_UPLOAD_END_BALANCED:
            exceptions["end_code"] = "207 after an unbalanced 0510, expecting 202"
        self.ledger.update_settlement(settlement_id, end_count=end_count)
        self._close_batch(ctx, settlement_id, batch, records, result="uploaded", uploaded=uploaded,
                          extra_exceptions=exceptions)
        return codes.APPROVED

    def _rebuild_from_uploads(self, ctx: _Ctx, settlement_id: int, batch: str) -> tuple[Totals, list[tuple[str, int, str]]]:
        """The batch as the terminal uploaded it; every upload and every host-only record gets a verdict.

        Returns the rebuilt totals and the records ``(kind, amount, business date)`` the payout is
        computed from.  CUP magstripe uploads (60.3 201) carry debit records only, so the host's
        own credit-class records stay in the CUP batch as the host has them unless the terminal
        uploaded them (one full 0320 per refund).
        """
        host_records = {r["stan"]: r for r in self.ledger.open_records(ctx.tid)}
        cup = self.family == "cup"
        at = ctx.now.isoformat(timespec="seconds")
        records: list[tuple[str, int, str]] = []
        seen: set[str] = set()
        posted = 0
        for upload in self.ledger.uploads_of(tid=ctx.tid, batch=batch):
            host = host_records.get(upload["original_stan"])
            amount = upload["amount_minor"] or 0
            record_id = host["id"] if host else None
            if host is None:
                match, kind, day = "terminal_only", upload["kind"] or "sale", ctx.business_date.isoformat()
                if upload["host_record_id"] is None:  # not posted from an earlier upload end
                    record_id, kind = self._post_uploaded(ctx, upload, batch)
                    posted += record_id is not None
                else:
                    record_id = upload["host_record_id"]
            else:
                seen.add(host["stan"])
                match = "matched" if host["amount_minor"] == amount else "amount_differs"
                kind, day = host["kind"], host["business_date"]
            self.ledger.update_upload(upload["id"], settlement_id=settlement_id, match=match, kind=kind,
                                      host_record_id=record_id,
                                      host_amount_minor=host["amount_minor"] if host else None)
            records.append((kind, amount, day))
        if posted:
            settlement = self.ledger.settlement(settlement_id)
            self.ledger.update_settlement(settlement_id, posted_from_upload=(settlement or {}).get(
                "posted_from_upload", 0) + posted)
        for stan, host in host_records.items():
            if stan in seen:
                continue
            if cup and SETTLEMENT_CLASS.get(host["kind"]) == "credit":
                records.append((host["kind"], host["amount_minor"] or 0, host["business_date"]))
                continue
            self.ledger.insert_upload(dict(
                settlement_id=settlement_id, tid=ctx.tid, batch=batch, original_mti=host["mti"], original_stan=stan,
                processing_code=host["processing_code"], kind=host["kind"], amount_minor=None,
                pan_masked=host["pan_masked"], rrn=host["rrn"], auth_code=host["auth_code"], match="host_only",
                host_record_id=host["id"], host_amount_minor=host["amount_minor"], received_at=at))
        return totals_of((k, a) for k, a, _ in records), records

    def _post_uploaded(self, ctx: _Ctx, upload: dict[str, Any], batch: str) -> tuple[int | None, str]:
        """Post an uploaded record the host does not have standing (C13: an advice acknowledged but
        never posted, or finally declined while the terminal kept it): the batch upload is the
        terminal's proof of the sale, and the host rebuilds its batch from it.

        A record the host reversed or voided is not brought back: the terminal's upload is then an
        exception of the settlement, not a posting.

        Returns:
            The new authorization row's id (None when not posted) and the record's kind.
        """
        earlier = self.ledger.find_request(tid=ctx.tid, stan=upload["original_stan"])
        kind = (earlier or {}).get("kind") or upload["kind"] or "sale"
        if earlier is not None and earlier["status"] not in ("declined", "dropped"):
            return None, kind  # reversed, voided, refunded or already standing: nothing to post
        mti = upload["original_mti"] or (earlier or {}).get("mti") or "0200"
        rrn, auth_code = upload["rrn"], upload["auth_code"]
        seq = self.ledger.reserve_authorization_id()
        if not rrn:
            rrn, auth_code = rrn_of(ctx.now, seq), auth_code or auth_code_of(seq)
        previous = earlier or {}
        row_id = self.ledger.insert_authorization(dict(
            id=seq, received_at=ctx.now.isoformat(timespec="seconds"), business_date=ctx.business_date.isoformat(),
            mti=mti[:3] + "0", kind=kind, tid=ctx.tid, mid=ctx.request.get("42") or previous.get("mid") or "",
            stan=upload["original_stan"], processing_code=upload["processing_code"] or previous.get("processing_code"),
            amount_minor=upload["amount_minor"], currency=previous.get("currency"),
            pan_masked=upload["pan_masked"] or previous.get("pan_masked"),
            pan_token=upload["pan_token"] or previous.get("pan_token"), local_date=previous.get("local_date"),
            local_time=previous.get("local_time"), rrn=rrn, auth_code=auth_code, rc=codes.APPROVED,
            status="approved", reason="posted_from_upload", batch=batch, terminal_batch=previous.get("terminal_batch"),
            settlement_date=f"{ctx.business_date:%m%d}", original_id=previous.get("id")))
        return row_id, kind

    def _close_batch(self, ctx: _Ctx, settlement_id: int, batch: str, records: list[tuple[str, int, str]], *,
                     result: str, uploaded: Totals | None = None, extra_exceptions: dict[str, Any] | None = None) -> None:
        """Close the terminal's batch on the host: records settled, batch number advanced, payout created."""
        terminal = ctx.terminal
        assert terminal is not None
        exceptions = dict(extra_exceptions or {})
        if uploaded is not None:
            verdicts: dict[str, int] = {}
            for row in self.ledger.uploads(settlement_id=settlement_id):
                verdicts[row["match"]] = verdicts.get(row["match"], 0) + 1
            exceptions.update({k: v for k, v in verdicts.items() if k != "matched"})
        self.ledger.settle_open_records(tid=ctx.tid, batch=batch)
        self.ledger.update_settlement(settlement_id, status="closed", result=result,
                                      closed_at=ctx.now.isoformat(timespec="seconds"),
                                      business_date=ctx.business_date.isoformat(), uploaded_totals=uploaded,
                                      exceptions=exceptions)
        ctx.terminal = self._save_terminal(replace(terminal, batch=int(batch) % 999_999 + 1))
        self._create_payout(ctx, settlement_id, batch, records)

    def _create_payout(self, ctx: _Ctx, settlement_id: int, batch: str, records: list[tuple[str, int, str]]) -> None:
        merchant = ctx.merchant or Merchant(mid=ctx.request.get("42", "?" * 15))
        directives = ctx.directives
        schedule = merchant.fee_schedule or self.settings.fee_schedule
        by_settlement_date = self.settings.fee_date_basis == "settlement"
        gross = fee = 0
        for kind, amount, day in records:
            cls = SETTLEMENT_CLASS.get(kind)
            if cls == "debit":
                gross += amount
                rule = fee_rule_at(schedule, ctx.business_date if by_settlement_date else date.fromisoformat(day))
                fee += rule.fee(amount) if rule else 0
            elif cls == "credit":
                gross -= amount
        calendar = self.calendar
        days = merchant.payout_days if merchant.payout_days is not None else self.settings.payout_days
        value_date = calendar.value_date(ctx.business_date, days=days)
        if directives.payout_delay_days:
            value_date = calendar.value_date(value_date, days=directives.payout_delay_days)
        status, hold, failure = "pending", None, None
        if directives.payout_failure or not merchant.bank_account_valid:
            status, failure = "failed", directives.payout_failure or "bank account invalid"
        elif directives.payout_hold or merchant.payout_hold or merchant.status in ("frozen", "frozen_payout"):
            status = "held"
            hold = directives.payout_hold or merchant.payout_hold or f"merchant {merchant.status}"
        self.ledger.insert_payout(dict(
            mid=merchant.mid, tid=ctx.tid, batch=batch, settlement_id=settlement_id,
            business_date=ctx.business_date.isoformat(), value_date=value_date.isoformat(), gross_minor=gross,
            fee_minor=fee, net_minor=gross - fee, amount_minor=gross - fee, status=status, hold_reason=hold,
            failure_reason=failure,
            delay_days=directives.payout_delay_days, created_at=ctx.now.isoformat(timespec="seconds")))
        self.refresh_payouts(ctx.now)

    @staticmethod
    def _with_delta(totals: Totals, delta: Totals | None) -> Totals:
        if delta is None:
            return totals
        return Totals(debit_count=max(0, totals.debit_count + delta.debit_count),
                      debit_minor=max(0, totals.debit_minor + delta.debit_minor),
                      credit_count=max(0, totals.credit_count + delta.credit_count),
                      credit_minor=max(0, totals.credit_minor + delta.credit_minor))

    # ------------------------------------------------------------------ recording and answering

    def _next_rrn(self, ctx: _Ctx) -> str:
        """The RRN of this request's row: made from the id the ledger hands the row (no counter of its own)."""
        seq = ctx.row["id"] = self.ledger.reserve_authorization_id()
        return rrn_of(ctx.now, seq)

    def _base_response(self, request: Message, now: datetime) -> Message:
        response: Message = {"t": response_mti(request["t"])}
        response.update({k: request[k] for k in _ECHO if k in request})
        stamps = clock_fields(now)
        response["12"], response["13"] = stamps.hhmmss, stamps.mmdd
        return response

    def _base_row(self, ctx: _Ctx) -> dict[str, Any]:
        request = ctx.request
        cup_batch = request.get("60", "")[2:8] if self.family == "cup" and len(request.get("60", "")) >= 8 else None
        return dict(received_at=clock_fields(ctx.now).iso, business_date=ctx.business_date.isoformat(),
                    mti=request["t"], kind=ctx.kind, tid=request["41"], mid=request.get("42", ""),
                    stan=request["11"], processing_code=request.get("3"), amount_minor=ctx.amount,
                    currency=request.get("49"), local_date=request.get("13"), local_time=request.get("12"),
                    terminal_batch=cup_batch, batch=None, status=None, reason=None,
                    faults=",".join(ctx.directives.fault_ids) or None)

    def _finish(self, ctx: _Ctx, rc: str) -> None:
        ctx.response["39"] = rc
        if self.family == "cup" and ctx.response["t"] == "0510" and "48" not in ctx.response:
            ctx.response["48"] = ctx.request.get("48", "")  # 48 is mandatory in a CUP 0510, whatever the answer
        row = ctx.row
        if row.get("status") is None:
            row["status"] = "approved" if rc == codes.APPROVED else "declined"
        row["rc"] = rc
        if not row.get("mid") and ctx.terminal:
            row["mid"] = ctx.terminal.mid
        row_id = self.ledger.insert_authorization(row)
        for effect in ctx.effects if row["status"] == "approved" else ():
            effect(row_id)

    def _seal(self, ctx: _Ctx) -> Message:
        """The MAC (when the request carried a good one), then the damage faults ask for.

        Fields the host's layout does not define (a packager file that has no field 15, say) are left out.

        The damage comes after the MAC, as from a host whose bug sits between its MAC and its socket:
        a response with a shifted STAN or a missing 41 then also fails the terminal's MAC check.
        """
        formats = self.dialect.formats
        if any(k != "t" and k not in formats for k in ctx.response):  # a packager's layout without 15, 32 ...
            ctx.response = {k: v for k, v in ctx.response.items() if k == "t" or k in formats}
        response = ctx.response
        directives = ctx.directives
        terminal = ctx.terminal
        if ctx.mac_state == "ok" and response.get("39") != codes.MAC_ERROR and terminal and terminal.mak:
            if not (directives.omit_fields or directives.stan_offset or directives.corrupt_mac):
                ctx.mac_key = terminal.mak  # signed while it is encoded: one encoding
                return response
            response = signed(response, self.dialect, terminal.mak)
        for number in directives.omit_fields:
            response.pop(number, None)
        if directives.stan_offset and "11" in response:
            response["11"] = f"{(int(response['11']) + directives.stan_offset) % 1_000_000:06d}"
        if directives.corrupt_mac:
            mac = response.get("64", "0" * 16)
            response["64"] = f"{int(mac, 16) ^ 0xFF:016X}"
        return response

    def _save_terminal(self, terminal: Terminal) -> Terminal:
        self.registry.put(terminal)
        return terminal

    _HANDLERS: ClassVar[dict[str, Callable[[Host, _Ctx], str]]] = {
        "sign_on": _sign_on, "sign_off": _sign_off, "echo": _echo, "settlement": _settlement, "upload": _upload,
        "reversal": _reversal, "sale": _sale, "preauth": _preauth, "balance": _balance, "void": _void,
        "completion_void": _completion_void, "preauth_void": _preauth_void, "refund": _refund,
        "completion": _completion, "offline_sale": _offline_sale, "adjust": _adjust,
    }
