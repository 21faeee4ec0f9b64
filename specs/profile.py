"""Host profiles: one YAML file that says how one acquirer's host lays its messages out.

Real hosts of the same family differ in details an integrator cannot change on their side: the
alignment of an odd-length BCD field, whether field 49 travels in a sale, how an INTL terminal
signs on, how long the INTL settlement totals are, which messages carry a MAC, where the batch
number lives.  A profile starts from one of the built-in dialects and overrides exactly those
details; terminal and stub host load the same file, so both sides put the same bytes on the wire.

::

    name: acme-edc                # optional; the file name without .yaml otherwise
    dialect: intl-bcd             # required: the dialect to start from
    description: ACME's EDC host
    framing: {length_prefix: ascii4, tpdu: true}      # optional framing defaults
    fields:                       # field format overrides (any subset of the keys)
      "22": {type: n, length: fixed, max_len: 3, encoding: bcd, align: right}
      "49": {encoding: bcd, type: n}
    messages:                     # optional fields per request MTI
      "0200": {add: [49], omit: [12, 13]}
    mac: {"0500": true, "0320": false}               # MTI -> carries field 64
    intl_sign_on: "3=920000"      # or "70=001" (INTL only)
    intl_totals: short30          # or pax90 (INTL only)
    batch_field: 62               # or 60 (INTL only)

Every value is checked on load; an error names the file, the line and the key::

    acme.yaml line 7: key 'fields.22.align': expected one of left, right, found middle

``load_profile`` takes a file path or the name of a profile shipped with the package
(:data:`SHIPPED`, the files in ``specs/profiles/``).

>>> p = parse_profile('''
... dialect: intl-bcd
... intl_sign_on: "3=920000"
... messages: {"0200": {add: [49]}}
... ''', name="acme.yaml")
>>> p.name, p.base, p.intl_sign_on, sorted(p.add_fields["0200"])
('acme', 'intl-bcd', '3=920000', ['49'])
>>> parse_profile("dialect: intl-bcd\\nbatch_field: 61\\n", name="acme.yaml")
Traceback (most recent call last):
...
specs.profile.ProfileError: acme.yaml line 2: key 'batch_field': expected one of 60, 62, found 61
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

from specs.scenario.model import ScenarioError
from specs.scenario.reader import _Y, _compose, _Reader

#: The built-in dialects a profile may start from, and their family.
BASE_DIALECTS: Mapping[str, str] = MappingProxyType({"intl-ascii": "intl", "intl-bcd": "intl", "cup": "cup"})
INTL_SIGN_ON_FORMS = ("70=001", "3=920000")
INTL_TOTALS_LAYOUTS = ("pax90", "short30")
BATCH_FIELDS = ("60", "62")
FIELD_KINDS = ("n", "an", "ans", "z", "b")
LENGTH_TYPES = ("fixed", "LL", "LLL")
ENCODINGS = ("ascii", "bcd", "binary", "ebcdic")
ALIGNMENTS = ("left", "right")
#: Optional fields a profile may add to a request, with what the terminal puts in them.
ADDABLE_FIELDS: Mapping[str, str] = MappingProxyType({
    "12": "local time hhmmss", "13": "local date MMDD", "24": "NII", "42": "MID", "49": "currency code",
})
#: Field-format keys of a ``fields`` entry and the FieldFormat attribute each sets.
FORMAT_KEYS: Mapping[str, str] = MappingProxyType({
    "type": "kind", "length": "length", "max_len": "max_len", "encoding": "encoding",
    "length_encoding": "length_encoding", "align": "align", "pad": "pad", "desc": "desc",
})
_TOP_KEYS = ("name", "dialect", "description", "framing", "fields", "messages", "mac", "intl_sign_on",
             "intl_totals", "batch_field")
_FRAMING_KEYS = ("length_prefix", "tpdu", "cup_header")


class ProfileError(ScenarioError):
    """A profile (or packager) file is malformed: ``"<file> line <n>: key '<path>': <what>"``."""


@dataclass(frozen=True, kw_only=True, slots=True)
class WireProfile:
    """What one host expects on the wire, as differences from a built-in dialect.

    Attributes:
        name: what the profile is called (shown in the host's ready line and errors).
        base: the built-in dialect it starts from.
        fields: per field number, FieldFormat attributes to override (``kind``, ``encoding`` ...).
        exact_fields: only the fields in ``fields`` exist (a jPOS packager defines every field).
        mti_encoding, bitmap_encoding: ``bcd``/``binary`` or ``ascii``; None: the base dialect's.
        add_fields, omit_fields: per request MTI, optional fields carried or left out.
        mac: per MTI, whether it carries field 64 (MTIs not listed: the family's default).
        intl_sign_on: INTL 0800 sign-on as field 70 = 001 or processing code 920000.
        intl_totals: INTL 0500 field 63 as 90 characters (PAX EDC) or the 30 digits alone.
        batch_field: INTL field carrying the batch number of the 0500 (60, or 62).
        framing: framing defaults (``length_prefix``, ``tpdu``, ``cup_header``).
        source: the file it was read from ("" for the built-in defaults).
        packager: the jPOS GenericPackager file the fields came from, if any.
        lines: line of each key path in ``source`` (for errors found after loading).
    """

    name: str
    base: str
    description: str = ""
    fields: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: MappingProxyType({}))
    exact_fields: bool = False
    mti_encoding: str | None = None
    bitmap_encoding: str | None = None
    add_fields: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    omit_fields: Mapping[str, frozenset[str]] = field(default_factory=lambda: MappingProxyType({}))
    mac: Mapping[str, bool] = field(default_factory=lambda: MappingProxyType({}))
    intl_sign_on: str = "70=001"
    intl_totals: str = "pax90"
    batch_field: str = "60"
    framing: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    source: str = ""
    #: The jPOS packager file the field layout came from ("" for none).
    packager: str = ""
    lines: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def family(self) -> str:
        return BASE_DIALECTS[self.base]

    def carries_mac(self, mti: str) -> bool:
        """Whether a request with this MTI carries field 64 (once the terminal holds a MAK).

        Network management (08xx) never does; CUP settlement and batch upload (0500, 0320) do not
        unless the profile says so; everything else does unless the profile says otherwise.

        >>> default_profile("cup").carries_mac("0500"), default_profile("intl-bcd").carries_mac("0500")
        (False, True)
        """
        if mti in self.mac:
            return self.mac[mti]
        if mti[:2] == "08":
            return False
        return not (self.family == "cup" and mti in ("0500", "0320"))

    def shape(self, message: dict[str, str], values: Mapping[str, str]) -> dict[str, str]:
        """``message`` with the optional fields this profile adds (taken from ``values``) and
        without those it omits, for the message's MTI."""
        mti = message["t"]
        for number in self.add_fields.get(mti, ()):
            if number not in message and values.get(number):
                message[number] = values[number]
        for number in self.omit_fields.get(mti, ()):
            message.pop(number, None)
        return message

    def where(self, key: str) -> tuple[str, int]:
        """(file, line) of a key path, for errors found after loading."""
        return Path(self.source).name if self.source else self.name, self.lines.get(key, self.lines.get("", 1))

    def error(self, key: str, msg: str) -> ProfileError:
        file, line = self.where(key)
        return ProfileError(msg, file=file, line=line, key=key)


def default_profile(dialect: str) -> WireProfile:
    """The profile of a built-in dialect as it is (no overrides)."""
    if dialect not in BASE_DIALECTS:
        raise ValueError(f"Unknown dialect {dialect!r}, expecting one of {', '.join(sorted(BASE_DIALECTS))}")
    return WireProfile(name=dialect, base=dialect)


def _profiles_dir() -> Any:
    return resources.files("specs") / "profiles"


def shipped_profiles() -> tuple[str, ...]:
    """Names of the profiles shipped with the package."""
    return tuple(sorted(p.name[:-5] for p in _profiles_dir().iterdir() if p.name.endswith(".yaml")))


def load_profile(ref: str) -> WireProfile:
    """A profile from a YAML file, or the shipped profile of that name.

    Raises:
        ProfileError: the file is malformed (file, line, key); or neither a file nor a shipped name.
    """
    path = Path(ref)
    if path.is_file():
        return parse_profile(path.read_text(encoding="utf-8"), name=path.name, source=str(path))
    shipped = _profiles_dir() / f"{ref}.yaml"
    if "/" not in ref and not ref.endswith(".yaml") and shipped.is_file():
        return parse_profile(shipped.read_text(encoding="utf-8"), name=f"{ref}.yaml", source=f"{ref}.yaml")
    raise ProfileError(f"no such file, and not a shipped profile (expecting a YAML file or one of "
                       f"{', '.join(shipped_profiles())})", file=ref, line=1, key=None)


def parse_profile(text: str, *, name: str, source: str = "") -> WireProfile:
    """Parse and validate a profile's YAML text (``name`` is the file name used in errors).

    Raises:
        ProfileError: naming the file, the line and the key.
    """
    try:
        root = _compose(text, name)
        return _ProfileReader(name).profile(root, source=source or name)
    except ProfileError:
        raise
    except ScenarioError as exc:
        raise ProfileError(exc.msg, file=exc.file, line=exc.line, key=exc.key) from None


class _ProfileReader(_Reader):
    def profile(self, root: _Y, *, source: str) -> WireProfile:
        top = self.mapping(root, "", allowed=_TOP_KEYS, required=("dialect",), what="a profile")
        lines: dict[str, int] = {"": root.line, **{k: self.key_line(root, k) for k in top}}
        base = self.choice(top["dialect"], "dialect", tuple(BASE_DIALECTS))
        family = BASE_DIALECTS[base]
        values: dict[str, Any] = {
            "name": self.label_text(top["name"], "name") if "name" in top else Path(self.file).stem,
            "base": base, "source": source,
        }
        if "description" in top:
            values["description"] = self.text(top["description"], "description")
        if "framing" in top:
            values["framing"] = MappingProxyType(self.framing(top["framing"], "framing"))
        if "fields" in top:
            values["fields"] = MappingProxyType(self.fields(top["fields"], "fields", lines))
        if "messages" in top:
            add, omit = self.messages(top["messages"], "messages", lines)
            values["add_fields"], values["omit_fields"] = MappingProxyType(add), MappingProxyType(omit)
        if "mac" in top:
            entries = self.free_mapping(top["mac"], "mac", "a mapping of MTI to true or false")
            values["mac"] = MappingProxyType({
                self.mti_key(top["mac"], k, "mac"): self.boolean(v, f"mac.{k}") for k, v in entries.items()})
        for key, choices in (("intl_sign_on", INTL_SIGN_ON_FORMS), ("intl_totals", INTL_TOTALS_LAYOUTS),
                             ("batch_field", BATCH_FIELDS)):
            if key in top:
                if family != "intl":
                    self.fail(top[key], key, f"applies to the INTL dialects only, found it in a {base} profile")
                values[key] = self.choice(top[key], key, choices)
        values["lines"] = MappingProxyType(lines)
        return WireProfile(**values)

    def label_text(self, y: _Y, path: str) -> str:
        text = self.text(y, path, what="a name")
        if not all(c.isalnum() or c in "-_." for c in text):
            self.expected(y, path, "a name of letters, digits, '-', '_' and '.'")
        return text

    def mti_key(self, y: _Y, key: str, path: str) -> str:
        if len(key) != 4 or not key.isdigit():
            raise ProfileError(f"expected a 4-digit MTI like '0200' (quoted), found {key}", file=self.file,
                               line=self.key_line(y, key), key=f"{path}.{key}")
        return key

    def framing(self, y: _Y, path: str) -> dict[str, Any]:
        entries = self.mapping(y, path, allowed=_FRAMING_KEYS, what="framing")
        out: dict[str, Any] = {}
        if "length_prefix" in entries:
            out["length_prefix"] = self.choice(entries["length_prefix"], f"{path}.length_prefix", ("binary2", "ascii4"))
        for key in ("tpdu", "cup_header"):
            if key in entries:
                out[key] = self.boolean(entries[key], f"{path}.{key}")
        return out

    def field_number(self, y: _Y, key: str, path: str) -> str:
        if not (key.isdigit() and key[0] != "0" and 2 <= int(key) <= 128):
            raise ProfileError(f"expected a field number 2-128, found {key}", file=self.file,
                               line=self.key_line(y, key), key=f"{path}.{key}")
        return key

    def fields(self, y: _Y, path: str, lines: dict[str, int]) -> dict[str, Mapping[str, Any]]:
        out: dict[str, Mapping[str, Any]] = {}
        for key, entry in self.free_mapping(y, path, "a mapping of field number to its format").items():
            number = self.field_number(y, key, path)
            here = f"{path}.{number}"
            lines[here] = self.key_line(y, key)
            out[number] = MappingProxyType(self.field_format(entry, here))
        return out

    def field_format(self, y: _Y, path: str) -> dict[str, Any]:
        entries = self.mapping(y, path, allowed=FORMAT_KEYS, what="a field format")
        out: dict[str, Any] = {}
        for key, entry in entries.items():
            here = f"{path}.{key}"
            if key == "type":
                out["kind"] = self.choice(entry, here, FIELD_KINDS)
            elif key == "length":
                out["length"] = self.choice(entry, here, LENGTH_TYPES)
            elif key == "max_len":
                out["max_len"] = self.integer(entry, here, minimum=1, what="a length in characters (bytes for b)")
            elif key in ("encoding", "length_encoding"):
                out[FORMAT_KEYS[key]] = self.choice(entry, here, ENCODINGS)
            elif key == "align":
                out["align"] = self.choice(entry, here, ALIGNMENTS)
            elif key == "pad":
                out["pad"] = self.choice(entry, here, ("0", "F"))
            else:
                out["desc"] = self.text(entry, here)
        return out

    def messages(self, y: _Y, path: str, lines: dict[str, int]) -> tuple[dict[str, frozenset[str]],
                                                                          dict[str, frozenset[str]]]:
        add: dict[str, frozenset[str]] = {}
        omit: dict[str, frozenset[str]] = {}
        for key, entry in self.free_mapping(y, path, "a mapping of MTI to add/omit lists").items():
            mti = self.mti_key(y, key, path)
            here = f"{path}.{mti}"
            lines[here] = self.key_line(y, key)
            parts = self.mapping(entry, here, allowed=("add", "omit"), what="optional fields of one MTI")
            if "add" in parts:
                numbers = self.numbers(parts["add"], f"{here}.add")
                for i, number in enumerate(numbers):
                    if number not in ADDABLE_FIELDS:
                        self.expected(self.seq(parts["add"], f"{here}.add")[i], f"{here}.add[{i}]",
                                      "a field the terminal can fill: " + ", ".join(
                                          f"{k} ({v})" for k, v in ADDABLE_FIELDS.items()))
                add[mti] = frozenset(numbers)
            if "omit" in parts:
                omit[mti] = frozenset(self.numbers(parts["omit"], f"{here}.omit"))
                lines[f"{here}.omit"] = parts["omit"].line
        return add, omit

    def numbers(self, y: _Y, path: str) -> list[str]:
        out = []
        for i, item in enumerate(self.seq(y, path, what="a list of field numbers")):
            text = item.text if item.is_scalar else None
            if text is None or not (text.isdigit() and text[0] != "0" and 2 <= int(text) <= 128):
                self.expected(item, f"{path}[{i}]", "a field number 2-128")
            assert text is not None
            out.append(text)
        return out
