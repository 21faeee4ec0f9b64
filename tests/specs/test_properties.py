"""Property tests (hypothesis) for the codec and the framing: what remote bytes can do to us.

* any bytes decode to a message or raise :class:`CodecError` (never another exception), for every
  dialect, validated or layout only;
* any byte stream, cut into any segments, gives frames or raises :class:`FramingError`;
* a valid message of every MTI of every dialect encodes and decodes back to itself.

Bounded (``max_examples``) and without a per-example deadline, so they stay fast and steady on a
loaded machine.
"""

from __future__ import annotations

import itertools
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from specs.codec import CodecError, Message, decode, decode_unvalidated, encode
from specs.dialects import DIALECTS, Dialect, FieldFormat, get_dialect
from specs.framing import DEFAULT_FRAMING, Frame, FrameReader, Framing, FramingError, Tpdu, pack

BOUNDED = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DIALECT_NAMES = sorted(DIALECTS)

_CHARS = {
    "n": string.digits,
    "z": string.digits + "=",
    "an": string.ascii_letters + string.digits + " ",
    "ans": "".join(chr(c) for c in range(0x20, 0x7F)),
    "b": "0123456789ABCDEF",
}


def field_value(fmt: FieldFormat) -> st.SearchStrategy[str]:
    """A value the format accepts (binary fields as upper-case hex, two digits a byte)."""
    unit = 2 if fmt.kind == "b" else 1
    if fmt.length == "fixed":
        sizes = st.just(fmt.max_len)
    else:
        sizes = st.integers(min_value=1, max_value=min(fmt.max_len, 40))
    return sizes.flatmap(lambda n: st.text(alphabet=_CHARS[fmt.kind], min_size=n * unit, max_size=n * unit))


@st.composite
def valid_message(draw: st.DrawFn, dialect: Dialect) -> Message:
    mti = draw(st.sampled_from(dialect.known_mtis))
    optional = sorted(k for k in dialect.formats if k not in dialect.mandatory[mti] and k != "1")
    chosen = set(dialect.mandatory[mti]) | set(draw(st.lists(st.sampled_from(optional), max_size=8, unique=True)))
    message: Message = {"t": mti}
    for number in sorted(chosen, key=int):
        message[number] = draw(field_value(dialect.formats[number]))
    return message


@pytest.mark.parametrize("name", DIALECT_NAMES)
@BOUNDED
@given(data=st.binary(max_size=300))
def test_any_bytes_decode_to_a_message_or_a_codec_error(name: str, data: bytes) -> None:
    dialect = get_dialect(name)
    for decoder in (decode, decode_unvalidated):
        try:
            message = decoder(data, dialect)
        except CodecError as exc:
            assert exc.field and str(exc)  # names where
        else:
            assert isinstance(message, dict) and "t" in message


@pytest.mark.parametrize("name", DIALECT_NAMES)
@BOUNDED
@given(data=st.data())
def test_a_valid_message_with_damaged_bytes_decodes_or_names_the_problem(name: str, data: st.DataObject) -> None:
    dialect = get_dialect(name)
    wire = bytearray(encode(data.draw(valid_message(dialect)), dialect))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        wire[data.draw(st.integers(min_value=0, max_value=len(wire) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(min_value=0, max_value=len(wire)))
    for candidate in (bytes(wire), bytes(wire[:cut])):
        try:
            decode(candidate, dialect)
        except CodecError:
            pass


@pytest.mark.parametrize("name", DIALECT_NAMES)
@BOUNDED
@given(data=st.data())
def test_encode_then_decode_gives_the_message_back(name: str, data: st.DataObject) -> None:
    dialect = get_dialect(name)
    message = data.draw(valid_message(dialect))
    assert decode(encode(message, dialect), dialect) == message


FRAMINGS = [Framing(), Framing(length_prefix="ascii4"), Framing(tpdu=True), Framing(tpdu=True, cup_header=True)]


@pytest.mark.parametrize("framing", FRAMINGS, ids=lambda f: f"{f.length_prefix}-tpdu{int(f.tpdu)}-cup{int(f.cup_header)}")
@BOUNDED
@given(stream=st.binary(max_size=400), cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_any_byte_stream_in_any_segments_gives_frames_or_a_framing_error(framing: Framing, stream: bytes,
                                                                         cuts: list[int]) -> None:
    reader = FrameReader(framing)
    edges = sorted({0, len(stream), *(c for c in cuts if c <= len(stream))})
    try:
        for start, end in itertools.pairwise(edges):
            for frame in reader.feed(stream[start:end]):
                assert isinstance(frame, Frame)
        reader.close()
    except FramingError as exc:
        assert exc.pos >= 0 and str(exc)


@pytest.mark.parametrize("name", DIALECT_NAMES)
@BOUNDED
@given(data=st.data())
def test_frames_split_or_merged_anywhere_come_out_whole_and_in_order(name: str, data: st.DataObject) -> None:
    dialect, framing = get_dialect(name), DEFAULT_FRAMING[name]
    messages = [encode(data.draw(valid_message(dialect)), dialect) for _ in range(data.draw(st.integers(1, 3)))]
    tpdu = Tpdu(destination="0112") if framing.tpdu else None
    stream = b"".join(pack(Frame(message=m, tpdu=tpdu), framing) for m in messages)
    cuts = sorted(set(data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=8))))
    reader = FrameReader(framing)
    got: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)]):
        got.extend(frame.message for frame in reader.feed(stream[start:end]))
    reader.close()
    assert got == messages
