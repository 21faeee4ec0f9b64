"""Framing: length prefix, optional TPDU, optional CUP 6-byte header, around one ISO message.

Wire layout (docs/domain.md#frame-layout, docs/domain.md#dialects-and-framing)::

    [length: 2-byte big-endian | 4 ASCII digits][TPDU 60 dest src][CUP header 6 bytes][ISO message]

The length counts everything after itself (TPDU + header + message).  A host answers with the
TPDU's source and destination swapped (jPOS ``NACChannel`` ``tpdu-swap``).

:class:`FrameReader` is sans-IO: feed it whatever bytes arrived (a frame split over several TCP
segments, or several frames in one) and it returns the complete frames.

>>> framing = Framing(tpdu=True)
>>> wire = pack(Frame(message=b"\\x08\\x00", tpdu=Tpdu(destination="0112", source="0000")), framing)
>>> wire.hex()
'000760011200000800'
>>> reader = FrameReader(framing)
>>> reader.feed(wire[:3]), reader.feed(wire[3:] + wire)
([], [Frame(message=b'\\x08\\x00', tpdu=Tpdu(destination='0112', source='0000'), header=None), \
Frame(message=b'\\x08\\x00', tpdu=Tpdu(destination='0112', source='0000'), header=None)])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

LengthPrefix = Literal["binary2", "ascii4"]

TPDU_ID = 0x60
TPDU_SIZE = 5
CUP_HEADER_SIZE = 6
DEFAULT_MAX_FRAME_BYTES = 8192


class FramingError(ValueError):
    """The byte stream does not hold a valid frame.

    Attributes:
        msg: description (what was found, what was expected).
        pos: byte offset in the stream buffer where the bad frame starts.
    """

    def __init__(self, msg: str, *, pos: int) -> None:
        super().__init__(f"{msg}: pos {pos}")
        self.msg = msg
        self.pos = pos


def _hex4(value: str, what: str) -> bytes:
    if len(value) != 4 or any(c not in "0123456789abcdefABCDEF" for c in value):
        raise ValueError(f"TPDU {what} {value!r} is not 4 hex digits")
    return bytes.fromhex(value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Tpdu:
    """Transport protocol data unit: ``0x60`` + destination (2 bytes) + source (2 bytes).

    INTL terminals build it as ``"600" + NII + "0000"``: NII 112 -> destination ``0112``.
    """

    destination: str = "0000"
    source: str = "0000"

    def to_bytes(self) -> bytes:
        return bytes([TPDU_ID]) + _hex4(self.destination, "destination") + _hex4(self.source, "source")

    @classmethod
    def from_bytes(cls, data: bytes) -> Tpdu:
        return cls(destination=data[1:3].hex(), source=data[3:5].hex())

    def swapped(self) -> Tpdu:
        """The TPDU a host puts on its answer: source and destination exchanged."""
        return Tpdu(destination=self.source, source=self.destination)


@dataclass(frozen=True, kw_only=True, slots=True)
class CupHeader:
    """The CUP 6-byte message header (报文头), 12 BCD digits (docs/domain.md#frame-layout).

    Attributes:
        app_type: 应用类别定义 N2: 60 magstripe financial, 61 IC financial.
        version: 软件总版本号 N2, e.g. 31.
        terminal_status: 终端状态 N1, 0 normal.
        processing_requirement: 处理要求 N1, set by the host: 0 none, 1 download parameters,
            2 upload status, 3 sign on again, 4 IC public keys, 5 IC parameters, 6 TMS download,
            7 BIN blacklist, 8 rates.
        software_version: 软件分版本号 N6.
    """

    app_type: str = "60"
    version: str = "31"
    terminal_status: str = "0"
    processing_requirement: str = "0"
    software_version: str = "000000"

    def to_bytes(self) -> bytes:
        digits = self.app_type + self.version + self.terminal_status + self.processing_requirement + self.software_version
        if len(digits) != 12 or not digits.isdigit():
            raise ValueError(f"CUP header {digits!r} is not 12 digits (N2 N2 N1 N1 N6)")
        return bytes.fromhex(digits)

    @classmethod
    def from_bytes(cls, data: bytes) -> CupHeader:
        d = data.hex()
        return cls(app_type=d[0:2], version=d[2:4], terminal_status=d[4], processing_requirement=d[5],
                   software_version=d[6:12])


@dataclass(frozen=True, kw_only=True, slots=True)
class Framing:
    """How messages are framed on one link: independent switches, not one dialect flag."""

    length_prefix: LengthPrefix = "binary2"
    tpdu: bool = False
    cup_header: bool = False
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES

    @property
    def prefix_size(self) -> int:
        return 2 if self.length_prefix == "binary2" else 4

    def describe(self) -> str:
        """The framing in words, for hints and logs.

        >>> Framing(tpdu=True).describe()
        '2-byte binary length, TPDU, no CUP header'
        """
        length = "2-byte binary length" if self.length_prefix == "binary2" else "4-digit ASCII length"
        return f"{length}, {'TPDU' if self.tpdu else 'no TPDU'}, {'CUP header' if self.cup_header else 'no CUP header'}"

    @property
    def overhead(self) -> int:
        """Bytes between the length prefix and the ISO message."""
        return (TPDU_SIZE if self.tpdu else 0) + (CUP_HEADER_SIZE if self.cup_header else 0)


#: The framing each encoding dialect uses unless told otherwise.
DEFAULT_FRAMING = {
    "intl-ascii": Framing(),
    "intl-bcd": Framing(tpdu=True),
    "cup": Framing(tpdu=True, cup_header=True),
}


@dataclass(frozen=True, kw_only=True, slots=True)
class Frame:
    """One frame's parts: the ISO message bytes, and the TPDU and CUP header when framed with them."""

    message: bytes
    tpdu: Tpdu | None = None
    header: CupHeader | None = None


def pack(frame: Frame, framing: Framing) -> bytes:
    """Frame one message.  Missing TPDU/header parts are filled with defaults when required.

    Raises:
        ValueError: the frame would exceed the maximum, or a prefix cannot hold its length.
    """
    body = b""
    if framing.tpdu:
        body += (frame.tpdu or Tpdu()).to_bytes()
    if framing.cup_header:
        body += (frame.header or CupHeader()).to_bytes()
    body += frame.message
    if len(body) > framing.max_frame_bytes:
        raise ValueError(f"Frame of {len(body)} bytes exceeds the maximum {framing.max_frame_bytes}")
    if framing.length_prefix == "binary2":
        if len(body) > 0xFFFF:
            raise ValueError(f"Frame of {len(body)} bytes does not fit a 2-byte length prefix")
        return len(body).to_bytes(2, "big") + body
    if len(body) > 9999:
        raise ValueError(f"Frame of {len(body)} bytes does not fit a 4-digit length prefix")
    return f"{len(body):04d}".encode("ascii") + body


class FrameReader:
    """Incremental frame parser (sans-IO): bytes in, complete frames out.

    After a :class:`FramingError` the stream is out of step and cannot be resynchronised; the
    caller closes that connection.
    """

    def __init__(self, framing: Framing) -> None:
        self.framing = framing
        self._buffer = bytearray()
        self._consumed = 0  # stream offset of the buffer's first byte, for error positions

    @property
    def buffered(self) -> int:
        """Bytes received but not yet part of a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes; return every frame now complete, in order.

        Raises:
            FramingError: a bad length prefix, a declared length over the maximum or below the
                framing overhead, or a TPDU whose id is not 0x60.
        """
        self._buffer += data
        frames: list[Frame] = []
        while True:
            frame = self._next_frame()
            if frame is None:
                return frames
            frames.append(frame)

    def close(self) -> None:
        """The peer closed the stream.

        Raises:
            FramingError: a frame was cut off (truncated frame).
        """
        if not self._buffer:
            return
        prefix = self.framing.prefix_size
        if len(self._buffer) < prefix:
            raise FramingError(f"Frame truncated inside its length prefix: got {len(self._buffer)} of {prefix} bytes",
                               pos=self._consumed)
        declared = self._declared_length()
        raise FramingError(f"Frame truncated: declared {declared} bytes, got {len(self._buffer) - prefix} "
                           "before the connection closed", pos=self._consumed)

    def _declared_length(self) -> int:
        raw = bytes(self._buffer[: self.framing.prefix_size])
        if self.framing.length_prefix == "binary2":
            return int.from_bytes(raw, "big")
        if not raw.isdigit():
            raise FramingError(f"Length prefix {raw!r} is not 4 ASCII digits", pos=self._consumed)
        return int(raw)

    def _next_frame(self) -> Frame | None:
        prefix = self.framing.prefix_size
        if len(self._buffer) < prefix:
            return None
        declared = self._declared_length()
        if declared > self.framing.max_frame_bytes:
            raise FramingError(f"Declared frame length {declared} exceeds the maximum {self.framing.max_frame_bytes}",
                               pos=self._consumed)
        minimum = self.framing.overhead + 2
        if declared < minimum:
            raise FramingError(f"Declared frame length {declared} is below the minimum {minimum} "
                               "(TPDU/header plus an MTI)", pos=self._consumed)
        if len(self._buffer) < prefix + declared:
            return None
        body = bytes(self._buffer[prefix: prefix + declared])
        start = self._consumed
        del self._buffer[: prefix + declared]
        self._consumed += prefix + declared
        tpdu = header = None
        if self.framing.tpdu:
            if body[0] != TPDU_ID:
                raise FramingError(f"TPDU id 0x{body[0]:02X}, expecting 0x60", pos=start + prefix)
            tpdu, body = Tpdu.from_bytes(body[:TPDU_SIZE]), body[TPDU_SIZE:]
        if self.framing.cup_header:
            header, body = CupHeader.from_bytes(body[:CUP_HEADER_SIZE]), body[CUP_HEADER_SIZE:]
        return Frame(message=body, tpdu=tpdu, header=header)

