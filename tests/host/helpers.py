"""Test-side helpers for the host suite: a minimal terminal that builds requests, a wire client.

The terminal here is deliberately small and independent of ``emulator`` (which is being rewritten
concurrently): it builds requests from :mod:`specs.transactions` exactly as the wire contract says,
so the host is tested against the contract text, not against another implementation.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from host_stub.host import Directives, Host
from host_stub.ledger import Ledger
from host_stub.settings import HostSettings
from specs.cards import seeded_card
from specs.codec import Message, decode, encode
from specs.crypto import (
    DEFAULT_TEST_TMK,
    KEY_BLOCK_LAYOUT,
    MAC_ALGORITHMS,
    default_mac_algorithm,
    mac_data,
    parse_key_block,
    pin_block,
    sign,
    verify,
)
from specs.dialects import Dialect, get_dialect
from specs.framing import DEFAULT_FRAMING, CupHeader, Frame, FrameReader, Framing, Tpdu, pack
from specs.totals import (
    Totals,
    UploadRecord,
    cup_field_48,
    cup_upload_field_48,
    intl_field_63,
    intl_upload_field_60,
    intl_upload_processing_code,
)
from specs.transactions import layout

TID = "10000001"
MID = "123456789012345"
NOW = datetime(2026, 11, 23, 9, 30, 15)  # a Monday
VISA = seeded_card(seed=7, scheme="visa")
UNIONPAY = seeded_card(seed=7, scheme="unionpay")


@dataclass
class FakeTerminal:
    """Builds requests for one terminal and keeps what a terminal keeps: STAN, batch, keys."""

    dialect: Dialect
    tid: str = TID
    mid: str = MID
    stan: int = 0
    batch: int = 1
    invoice: int = 0
    pik: bytes | None = None
    mak: bytes | None = None
    now: datetime = NOW
    sent: list[Message] = field(default_factory=list)

    @property
    def family(self) -> str:
        return self.dialect.family

    @property
    def card(self) -> Any:
        return UNIONPAY if self.family == "cup" else VISA

    def next_stan(self) -> str:
        self.stan = self.stan % 999_999 + 1
        return f"{self.stan:06d}"

    def base(self, mti: str, stan: str | None = None) -> Message:
        message: Message = {"t": mti, "11": stan or self.next_stan(), "12": f"{self.now:%H%M%S}",
                            "13": f"{self.now:%m%d}", "41": self.tid, "42": self.mid}
        if self.family == "intl":
            message["24"] = "112"
        return message

    def sign_on(self, layout_code: str = "003") -> Message:
        if self.family == "cup":
            message = self.base("0800")
            message.update({"60": "00" + f"{self.batch:06d}" + layout_code, "63": "001"})
            return message
        return {**self.base("0800"), "70": "001"}

    def network(self, purpose: str) -> Message:
        if self.family == "cup":
            code = {"sign_off": "002", "echo": "301"}[purpose]
            return {**self.base("0820"), "60": "00" + f"{self.batch:06d}" + code}
        return {**self.base("0800"), "70": {"sign_off": "002", "echo": "301"}[purpose]}

    def financial(self, kind: str, amount: int | None = None, *, pan: str | None = None, expiry: str | None = None,
                  original: Message | None = None, answer: Message | None = None, pin: str | None = None,
                  **extra: str) -> Message:
        """A financial request of ``kind``; ``original``/``answer`` are the request and response it refers to."""
        wire = layout(kind, self.family)
        message = self.base(wire.mti)
        card_pan = pan or self.card.pan
        message.update({"2": card_pan, "3": wire.processing_code, "14": expiry or self.card.expiry, "22": "012",
                        "25": wire.condition})
        if amount is not None:
            message["4"] = f"{amount:012d}"
        if self.family == "cup":
            message.update({"49": "156", "60": f"{wire.cup_type}{self.batch:06d}000"})
        else:
            self.invoice += 1
            message["62"] = f"{self.invoice:06d}"
        if answer is not None:
            message["37"] = answer["37"]
            message["38"] = answer["38"]
        if original is not None and self.family == "cup":
            message["61"] = original["60"][2:8] + original["11"] + original["13"]
        if pin is not None:
            assert self.pik is not None, "sign on first"
            message["52"] = pin_block(pin, card_pan, self.pik).hex().upper()
            message["22"] = "011"
        message.update(extra)
        return message

    def reversal(self, original: Message, reason: str = "98", mti: str = "0400") -> Message:
        """A copy of the original with MTI 0400, no 52 or 64, same STAN; CUP adds 39 = reason."""
        message = {k: v for k, v in original.items() if k not in ("52", "64")}
        message["t"] = mti
        if self.family == "cup":
            message["39"] = reason
        return message

    def settlement(self, totals: Totals, *, processing_code: str = "920000") -> Message:
        message = self.base("0500")
        if self.family == "cup":
            message.update({"48": cup_field_48(totals), "49": "156", "60": "00" + f"{self.batch:06d}201",
                            "63": "001"})
        else:
            message.update({"3": processing_code, "60": f"{self.batch:06d}", "63": intl_field_63(totals)})
        return message

    def intl_upload(self, original: Message, answer: Message) -> Message:
        message = self.base("0320")
        message.update({"2": original["2"], "3": intl_upload_processing_code(original["3"]), "4": original["4"],
                        "14": original["14"], "37": answer["37"], "38": answer["38"],
                        "60": intl_upload_field_60(original["t"], original["11"]), "62": original["62"]})
        return message

    def cup_upload(self, records: list[tuple[Message, int]]) -> Message:
        message = self.base("0320")
        uploads = [UploadRecord(stan=m["11"], pan=m["2"], amount_minor=amount) for m, amount in records]
        message.update({"48": cup_upload_field_48(uploads), "60": "00" + f"{self.batch:06d}201"})
        return message

    def cup_upload_end(self, count: int, *, balanced: bool = False) -> Message:
        message = self.base("0320")
        message.update({"48": f"{count:04d}", "60": "00" + f"{self.batch:06d}" + ("207" if balanced else "202")})
        return message

    # ---------------------------------------------------------------- keys and MAC

    def take_keys(self, answer: Message, layout_code: str = "003") -> None:
        """Load the working keys of an 0810 (field 62 under the test TMK, check values verified)."""
        length, _ = KEY_BLOCK_LAYOUT[layout_code]
        keys = parse_key_block(DEFAULT_TEST_TMK, bytes.fromhex(answer["62"]), length)
        self.pik, self.mak = keys[0], keys[1]
        if self.family == "cup":
            self.batch = int(answer["60"][2:8])

    def mac(self, message: Message) -> Message:
        """Field 64 under our MAK (see :func:`mac_message`)."""
        assert self.mak is not None
        return mac_message(message, self.dialect, self.mak)

    def mac_ok(self, answer: Message) -> bool:
        assert self.mak is not None
        return verify(answer, self.dialect, self.mak, default_mac_algorithm(self.family))


def mac_message(message: Message, dialect: Dialect, mak: bytes) -> Message:
    """``message`` with field 64 under ``mak``; a repeat (0221/0401) is MACed over its own MTI (the
    codec only encodes first transmissions, so the MTI bytes of the first transmission's block are
    replaced)."""
    algorithm = default_mac_algorithm(dialect.family)
    first = {"0221": "0220", "0401": "0400"}.get(message["t"])
    if first is None:
        return sign(message, dialect, mak, algorithm)
    block = mac_data({**message, "t": first}, dialect)
    mti = bytes.fromhex(message["t"]) if dialect.bcd else message["t"].encode("ascii")
    block = mti + block[len(mti):]
    return {**message, "64": MAC_ALGORITHMS[algorithm](mak, block).hex().upper()}


def _needs_mac(message: Message, dialect: Dialect) -> bool:
    """A request a terminal holding keys MACs: one its wire profile MACs, not already MACed."""
    return "64" not in message and dialect.profile.carries_mac(message.get("t", ""))


def make_terminal(dialect_name: str, **kwargs: Any) -> FakeTerminal:
    return FakeTerminal(dialect=get_dialect(dialect_name), **kwargs)


def make_host(dialect_name: str, **settings: Any) -> Host:
    """A core on in-memory books with the given settings."""
    return Host(Ledger(":memory:"), get_dialect(dialect_name), settings=HostSettings.from_dict(settings))


def signed_on(dialect_name: str, **settings: Any) -> tuple[Host, FakeTerminal]:
    """A core and a terminal that has signed on and holds its working keys."""
    host, terminal = make_host(dialect_name, **settings), make_terminal(dialect_name)
    answer = ask(host, terminal.sign_on())
    assert answer["39"] == "00"
    terminal.take_keys(answer)
    return host, terminal


def ask(host: Host, message: Message, *, now: datetime = NOW, directives: Directives | None = None,
        mac: bool = True) -> Message:
    """One request through the pure core; a terminal that signed on MACs it (field 64 under the MAK
    the host issued it) unless it already carries a MAC or ``mac`` is False."""
    registered = host.registry.terminal(message.get("41", ""))
    if (mac and _needs_mac(message, host.dialect) and registered is not None and registered.keys_valid
            and registered.mak):
        message = mac_message(message, host.dialect, bytes.fromhex(registered.mak))
    return host.handle(message, now=now, directives=directives or Directives())


class WireClient:
    """One TCP connection to a host speaking the dialect's default framing (a terminal's socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, dialect: Dialect,
                 framing: Framing, maks: dict[str, bytes] | None = None) -> None:
        self.reader, self.writer = reader, writer
        self.dialect, self.framing = dialect, framing
        self.frames = FrameReader(framing)
        self._pending: list[Frame] = []
        #: The MAK of each TID that signed on (over this connection, or others sharing ``maks``):
        #: its later requests are MACed.
        self.maks: dict[str, bytes] = {} if maks is None else maks
        self.auto_mac = True

    @classmethod
    async def connect(cls, port: int, dialect_name: str, *, maks: dict[str, bytes] | None = None) -> WireClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, get_dialect(dialect_name), DEFAULT_FRAMING[dialect_name], maks)

    def frame_bytes(self, message: Message) -> bytes:
        tpdu = Tpdu(destination="0112", source="0000") if self.framing.tpdu else None
        header = CupHeader() if self.framing.cup_header else None
        first = {"0221": "0220", "0401": "0400"}.get(message["t"])
        if first is None:
            data = encode(message, self.dialect)
        else:  # the codec encodes first transmissions only: encode as one, put the repeat MTI back
            mti = bytes.fromhex(message["t"]) if self.dialect.bcd else message["t"].encode("ascii")
            data = mti + encode({**message, "t": first}, self.dialect)[len(mti):]
        return pack(Frame(message=data, tpdu=tpdu, header=header), self.framing)

    async def send(self, message: Message) -> None:
        """Write one request; one of a TID that signed on here is MACed first (``auto_mac``)."""
        mak = self.maks.get(message.get("41", ""))
        if self.auto_mac and mak is not None and _needs_mac(message, self.dialect):
            message = mac_message(message, self.dialect, mak)
        await self.send_raw(self.frame_bytes(message))

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def receive_frame(self) -> Frame | None:
        """The next frame, or None when the host closed the connection."""
        while not self._pending:
            data = await self.reader.read(4096)
            if not data:
                return None
            self._pending.extend(self.frames.feed(data))
        return self._pending.pop(0)

    async def receive(self) -> Message | None:
        frame = await self.receive_frame()
        return decode(frame.message, self.dialect) if frame else None

    async def exchange(self, message: Message) -> Message | None:
        """Send (MACed, as a signed-on terminal would: see :meth:`send`) and read the answer; an
        approved sign-on's working keys are kept for the TID's later requests."""
        await self.send(message)
        answer = await self.receive()
        if answer is not None and answer.get("t") == "0810" and answer.get("39") == "00" and "62" in answer:
            layout_code = answer.get("60", "")[8:11] if self.dialect.family == "cup" else "003"
            length, _ = KEY_BLOCK_LAYOUT.get(layout_code, KEY_BLOCK_LAYOUT["003"])
            self.maks[answer["41"]] = parse_key_block(DEFAULT_TEST_TMK, bytes.fromhex(answer["62"]), length)[1]
        return answer

    async def read_all(self) -> bytes:
        """Everything until the host closes the connection."""
        chunks = []
        while True:
            data = await self.reader.read(4096)
            if not data:
                return b"".join(chunks)
            chunks.append(data)

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


def totals(debit: list[int] = (), credit: list[int] = ()) -> Totals:  # type: ignore[assignment]
    return Totals(debit_count=len(debit), debit_minor=sum(debit), credit_count=len(credit), credit_minor=sum(credit))
