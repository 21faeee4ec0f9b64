"""``pos-terminal replay FILE.pcap``: send the terminal side of a recorded session again and diff
every answer against the recorded one, field by field.

The capture (``--pcap``) is cut into request/answer pairs (:func:`pairs`: each terminal request and
the first host message of the same connection that answers it — MTI + 10, same STAN and TID).
Each request is then sent again as a new one (:func:`rewrite`): a new STAN from the replay's own
counter (a reversal or a repeat takes the new STAN of the request it belongs to), the date and time
of now, the real card (the capture holds it masked: ``--pan``/``--expiry`` or the emulator's
default test card; the PIN block, track data and ICC data cannot be replayed and are left out), the
new RRN and approval code where a request refers to an earlier answer (void, refund, completion),
and a new MAC under the keys of a fresh sign-on (a recorded sign-on is replayed as a sign-on
through the terminal core, so the keys are the ones the host just issued).

:func:`diff` compares the answers, leaving out the fields that must differ (``DEFAULT_IGNORE``:
STAN, time, date, RRN, approval code, MAC; overridable) and the fields the capture holds masked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from emulator.pcap import Captured
from emulator.probe import CheckRecord
from emulator.prober import Session
from emulator.terminal import SignOn, mismatch
from specs.codec import Message
from specs.dialects import REPEAT_OF
from specs.masking import SENSITIVE_FIELDS
from specs.totals import (
    UploadRecord,
    cup_upload_field_48,
    intl_upload_field_60,
    parse_cup_upload_field_48,
    parse_intl_upload_field_60,
)

#: Answer fields that must differ between two runs of the same session.
DEFAULT_IGNORE: tuple[str, ...] = ("11", "12", "13", "37", "38", "64")
#: Request fields a replay cannot reproduce from a masked capture (PIN block and what goes with it,
#: track data, ICC data): left out of the replayed request.
NOT_REPLAYED = ("35", "36", "45", "52", "53", "26", "55")


@dataclass(frozen=True, slots=True)
class Pair:
    """A recorded request and the recorded answer to it (None: none was captured)."""

    index: int
    request: Message
    response: Message | None


def pairs(captured: Sequence[Captured]) -> list[Pair]:
    """The terminal's requests of a capture, each with the first host message of its connection
    that answers it; frames that do not decode are left out."""
    out: list[Pair] = []
    waiting: list[tuple[int, Captured]] = []
    answers: dict[int, Message] = {}
    for item in captured:
        if item.message is None:
            continue
        if item.sent:
            waiting.append((len(out), item))
            out.append(Pair(index=len(out) + 1, request=item.message, response=None))
            continue
        for position, (slot, request) in enumerate(waiting):
            if request.connection == item.connection and mismatch(request.message or {}, item.message) is None:
                answers[slot] = item.message
                del waiting[position]
                break
    return [Pair(index=p.index, request=p.request, response=answers.get(i)) for i, p in enumerate(out)]


def is_sign_on(message: Mapping[str, str], family: str) -> bool:
    """A sign-on request (INTL 0800 70 = 001; CUP 0800, its sign-off and echo being 0820)."""
    return message.get("t") == "0800" and (family == "cup" or message.get("70") == "001")


@dataclass
class Rewriter:
    """What the replay learnt so far: recorded STAN -> new STAN, recorded RRN / approval code -> new."""

    stans: dict[str, str] = field(default_factory=dict)
    rrns: dict[str, str] = field(default_factory=dict)
    auth_codes: dict[str, str] = field(default_factory=dict)

    def learn(self, recorded: Mapping[str, str] | None, replayed: Mapping[str, str] | None) -> None:
        """Map the recorded answer's RRN and approval code to the replayed answer's."""
        if not recorded or not replayed:
            return
        for key, table in (("37", self.rrns), ("38", self.auth_codes)):
            if recorded.get(key) and replayed.get(key):
                table[recorded[key]] = replayed[key]


def rewrite(request: Message, rewriter: Rewriter, *, new_stan: str, local_time: str, local_date: str,
            pan: str, expiry: str) -> Message:
    """The recorded request as a new one (see the module doc); ``new_stan`` is used unless the
    request is a reversal or repeat of an earlier one.

    >>> r = Rewriter(stans={"000002": "000007"})
    >>> rewrite({"t": "0400", "11": "000002", "2": "476173000000001", "4": "000000000100", "52": "00"}, r,
    ...         new_stan="000008", local_time="101500", local_date="1207", pan="4761739001010010", expiry="3012")
    {'t': '0400', '11': '000007', '2': '4761739001010010', '4': '000000000100'}
    """
    out = {k: v for k, v in request.items() if k not in (*NOT_REPLAYED, "64")}
    mti, old = out["t"], out.get("11", "")
    follows = mti in REPEAT_OF or mti.startswith("04")
    stan = rewriter.stans.get(old, new_stan) if follows else new_stan
    if "11" in out:
        rewriter.stans.setdefault(old, stan)
        out["11"] = stan
    if "12" in out and mti not in ("0320",):
        out["12"] = local_time
    if "13" in out and mti not in ("0320",):
        out["13"] = local_date
    if "2" in out:
        out["2"] = pan
        if "52" in request and "22" in out:
            out["22"] = out["22"][:2] + "2"  # no PIN: the PIN block is not replayed
    if "14" in out:
        out["14"] = expiry
    if out.get("37") in rewriter.rrns:
        out["37"] = rewriter.rrns[out["37"]]
    if out.get("38") in rewriter.auth_codes:
        out["38"] = rewriter.auth_codes[out["38"]]
    if "61" in out and len(out["61"]) >= 12:  # CUP original batch N6 + original STAN N6 + date
        out["61"] = out["61"][:6] + rewriter.stans.get(out["61"][6:12], out["61"][6:12]) + out["61"][12:]
    if mti == "0320" and "60" in out:
        if len(out["60"]) >= 11 and out["60"][8:11] == "201" and "48" in out:
            records = parse_cup_upload_field_48(out["48"])
            out["48"] = cup_upload_field_48([UploadRecord(stan=rewriter.stans.get(r.stan, r.stan), pan=pan,
                                                          amount_minor=r.amount_minor, card_org=r.card_org)
                                             for r in records])
        elif len(out["60"]) >= 10 and out["60"][:10].isdigit() and "2" in out:  # INTL: original MTI + STAN
            original_mti, original_stan = parse_intl_upload_field_60(out["60"])
            out["60"] = intl_upload_field_60(original_mti, rewriter.stans.get(original_stan, original_stan))
    return out


@dataclass(frozen=True, slots=True)
class Difference:
    index: int
    mti: str
    recorded_stan: str
    replayed_stan: str
    field: str
    recorded: str | None
    replayed: str | None


def _masked_in_capture(number: str, mti: str) -> bool:
    return number in SENSITIVE_FIELDS and not (number == "62" and not mti.startswith("08"))


def diff(pair: Pair, replayed_request: Message, replayed: Mapping[str, str] | None, *,
         ignore: Iterable[str] = DEFAULT_IGNORE) -> list[Difference]:
    """The fields in which the replayed answer differs from the recorded one (``answer`` when one
    of them is missing), leaving out ``ignore`` and the fields the capture holds masked.

    >>> p = Pair(index=1, request={"t": "0200", "11": "000002"}, response={"t": "0210", "39": "00", "37": "1"})
    >>> [(d.field, d.recorded, d.replayed) for d in diff(p, {"t": "0200", "11": "000009"},
    ...                                                   {"t": "0210", "39": "05", "37": "2"})]
    [('39', '00', '05')]
    """
    skipped = set(ignore)
    mti = pair.request.get("t", "")

    def difference(number: str, recorded: str | None, new: str | None) -> Difference:
        return Difference(index=pair.index, mti=mti, recorded_stan=pair.request.get("11", ""),
                          replayed_stan=replayed_request.get("11", ""), field=number, recorded=recorded, replayed=new)

    if pair.response is None or replayed is None:
        if pair.response is None and replayed is None:
            return []

        def said(answer: Mapping[str, str] | None) -> str:
            return "none" if answer is None else f"{answer.get('t')} rc {answer.get('39', '--')}"

        return [difference("answer", said(pair.response), said(replayed))]
    out = []
    numbers = sorted({*pair.response, *replayed} - skipped - {"t"}, key=lambda k: (len(k), k))
    for number in ("t", *numbers):
        if _masked_in_capture(number, mti):
            continue
        if pair.response.get(number) != replayed.get(number):
            out.append(difference(number, pair.response.get(number), replayed.get(number)))
    return out


def format_differences(differences: Sequence[Difference], replayed: int, *, ignore: Sequence[str]) -> str:
    """The table ``replay`` prints: one line per differing field, then the count."""
    lines = []
    if differences:
        header = f"{'#':>3}  {'MTI':<4}  {'STAN rec -> new':<17}  {'field':<6}  {'recorded':<32}  replayed"
        lines += [header, "-" * (len(header) + 24)]
        for d in differences:
            lines.append(f"{d.index:>3}  {d.mti:<4}  {d.recorded_stan:>6} -> {d.replayed_stan:<7}  {d.field:<6}  "
                         f"{d.recorded if d.recorded is not None else '(absent)'!s:<32}  "
                         f"{d.replayed if d.replayed is not None else '(absent)'}")
        lines.append("-" * (len(header) + 24))
    answers = len({d.index for d in differences})
    lines.append(f"{replayed} requests replayed; {answers} answer(s) differ"
                 + f" (ignoring fields {', '.join(ignore)} and the fields the capture holds masked)")
    return "\n".join(lines)


def as_rows(differences: Sequence[Difference]) -> list[dict[str, Any]]:
    return [{"index": d.index, "mti": d.mti, "recorded_stan": d.recorded_stan, "replayed_stan": d.replayed_stan,
             "field": d.field, "recorded": d.recorded, "replayed": d.replayed} for d in differences]


class HostUnreachable(ConnectionError):
    """The replay could not connect to the host: nothing to compare."""


async def run_replay(recorded: Sequence[Pair], session: Session, *,
                     ignore: Iterable[str] = DEFAULT_IGNORE) -> list[Difference]:
    """Send every recorded request again (a sign-on first when the capture does not start with one)
    and diff each answer against the recorded one.

    Raises:
        HostUnreachable: the host refused the first connection (nothing was compared).
    """
    skipped = tuple(ignore)
    family, card = session.config.profile.family, session.config.card
    rewriter, record = Rewriter(), CheckRecord(name="replay")
    differences: list[Difference] = []
    if not recorded or not is_sign_on(recorded[0].request, family):
        await session.core(record, SignOn(now=session.now()))  # fresh working keys before anything is signed
    for pair in recorded:
        refused = next((x for x in record.exchanges if x.outcome == "connect_failed"), None)
        if refused is not None:
            raise HostUnreachable(f"no connection to the host: {refused.detail}")
        before = len(record.exchanges)
        if is_sign_on(pair.request, family):
            await session.core(record, SignOn(now=session.now()))
            exchange = record.exchanges[before] if len(record.exchanges) > before else None
            request, response = (exchange.request, exchange.response) if exchange else ({}, None)
        else:
            now = session.now()
            request = rewrite(pair.request, rewriter, new_stan=session.take_stan(), local_time=f"{now:%H%M%S}",
                              local_date=f"{now:%m%d}", pan=card.pan, expiry=card.expiry)
            exchange = await session.exchange(record, f"#{pair.index}", request,
                                              mac="good" if "64" in pair.request else "none")
            response = exchange.response
        rewriter.learn(pair.response, response)
        differences += diff(pair, request, response, ignore=skipped)
    return differences
