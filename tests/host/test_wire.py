"""The host's one-pass encoding: the same bytes as the shared codec, the same MAC as sign/verify, and
a MAC checked over the bytes that arrived."""

from __future__ import annotations

import pytest

from host_stub.wire import encode_response, encode_signed, wire_mac_is_valid
from specs.codec import CodecError, encode
from specs.crypto import default_mac_algorithm, derive_test_key, sign, verify
from specs.dialects import get_dialect
from tests.host.helpers import make_terminal, signed_on

MAK = derive_test_key("wire test MAK")
DIALECTS = ["intl-ascii", "intl-bcd", "cup"]


def _answer(dialect_name: str) -> dict[str, str]:
    terminal = make_terminal(dialect_name)
    request = terminal.financial("sale", 1234)
    answer = {k: v for k, v in request.items() if k in ("3", "4", "11", "24", "25", "41", "42", "49", "60")}
    return {**answer, "t": "0210", "12": "093015", "13": "1123", "15": "1123", "37": "263270000001", "38": "007919",
            "39": "00"}


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_one_pass_encoding_gives_the_codec_bytes_and_the_sign_mac(dialect_name: str) -> None:
    dialect = get_dialect(dialect_name)
    message = _answer(dialect_name)
    assert encode_response(message, dialect) == encode(message, dialect)
    algorithm = default_mac_algorithm(dialect.family)
    wire, mac = encode_signed(message, dialect, MAK, algorithm)
    reference = sign(message, dialect, MAK, algorithm)
    assert mac == reference["64"] and wire == encode(reference, dialect)
    assert wire_mac_is_valid(wire, dialect, MAK, algorithm) and verify(reference, dialect, MAK, algorithm)
    damaged = bytearray(wire)
    damaged[5] ^= 0x01
    assert not wire_mac_is_valid(bytes(damaged), dialect, MAK, algorithm)
    assert not wire_mac_is_valid(wire[:4], dialect, MAK, algorithm)


def test_what_the_codec_refuses_is_still_refused_with_its_words() -> None:
    dialect = get_dialect("intl-bcd")
    with pytest.raises(CodecError, match="Unknown MTI '0910'"):
        encode_response({"t": "0910", "11": "000001", "41": "10000001", "39": "30"}, dialect)
    with pytest.raises(CodecError, match="Field 4 is 13 characters, expecting 12"):
        encode_response({**_answer("intl-bcd"), "4": "0000000012345"}, dialect)
    with pytest.raises(CodecError, match="Field 129 is not defined"):
        encode_response({**_answer("intl-bcd"), "129": "x"}, dialect)


@pytest.mark.parametrize("dialect_name", DIALECTS)
def test_the_core_checks_the_mac_over_the_bytes_received(dialect_name: str) -> None:
    host, terminal = signed_on(dialect_name)
    dialect = get_dialect(dialect_name)
    request = terminal.mac(terminal.financial("sale", 500))
    raw = encode(request, dialect)
    answer = host.answer(request, now=terminal.now, raw=raw)
    assert answer.response["39"] == "00" and answer.mac_key is not None and "64" not in answer.response
    # A well-MACed decoded request, with bytes that were altered on the way: the bytes decide.
    good = terminal.mac(terminal.financial("sale", 500))
    tampered = bytearray(encode(good, dialect))
    tampered[-9] ^= 0x01  # the last byte before the MAC
    wrong = host.answer(good, now=terminal.now, raw=bytes(tampered))
    assert wrong.response["39"] == "A0"
