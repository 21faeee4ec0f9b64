"""Merchants, terminals and cards the host knows: status, region, limits, balances, expiry, PIN, TMK.

The registry lives in the ledger's SQLite file (tables ``merchants``, ``terminals``, ``cards``), so a
restarted host keeps balances, batch numbers and working keys, and a registry change made while
serving a request commits or rolls back with that request's ledger rows.

Cards are stored under a token (SHA-256 of the PAN, truncated) with the masked PAN: the host never
keeps a PAN in clear.  Working keys and the TMK are test keys; they are still never shown (the
control API shows key check values only).

Entries come from seeded Faker (:func:`generate`), from YAML/JSON (``from_dict``), from the control
API (``PUT /registry/...``, a partial update), or, unless the host is strict, from first sight
(terminal and merchant enrolled with defaults; an unknown card is accepted as :data:`OPEN_CARD`).

>>> m = Merchant.from_dict({"mid": "123456789012345", "status": "frozen", "limits": {"daily_count": 3}})
>>> m.status, m.limits.daily_count
('frozen', 3)
>>> Card.from_dict({"pan": "4761739001010010", "pin": "1234"}).pan_masked
'476173******0010'
>>> Merchant.from_dict({"mid": "123456789012345", "status": "closed"})
Traceback (most recent call last):
...
host_stub.validation.ConfigError: Key 'status' holds 'closed', expecting one of active, disabled, frozen, frozen_payout: merchant.status
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import date
from typing import Any

from faker import Faker

from host_stub.settings import FeeRule
from host_stub.validation import ConfigError, check_keys, want_bool, want_int, want_str
from specs.cards import seeded_card
from specs.masking import luhn_valid, mask_pan

#: Merchant status -> what it blocks.  ``frozen`` and ``disabled`` decline new financial requests
#: with 03 (settlement of the open batch stays possible, C15); ``frozen_payout`` keeps acquiring but
#: holds every payout; ``frozen`` also holds payouts.
MERCHANT_STATUSES = ("active", "frozen", "frozen_payout", "disabled")
#: Terminal status -> response code for financial requests and sign-on.
TERMINAL_STATUS_RC = {"active": None, "frozen": "58", "disabled": "97"}
#: Card status -> response code.
CARD_STATUS_RC = {"active": None, "restricted": "62", "lost": "62", "frozen": "57", "fraud": "59"}


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Daily limits (reset at the business-day cutover) and a per-transaction cap; None = no limit."""

    daily_amount_minor: int | None = None
    daily_count: int | None = None
    per_txn_max_minor: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"daily_amount_minor": self.daily_amount_minor, "daily_count": self.daily_count,
                "per_txn_max_minor": self.per_txn_max_minor}

    def updated(self, data: Mapping[str, Any], *, where: str) -> Limits:
        check_keys(data, _names(Limits), where=where)
        return replace(self, **{k: None if data[k] is None else want_int(data, k, where=where, minimum=0)
                                for k in data})


def _names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(cls))


def _optional_int(data: Mapping[str, Any], key: str, *, where: str) -> int | None:
    return None if data[key] is None else want_int(data, key, where=where)


def _optional_str(data: Mapping[str, Any], key: str, *, where: str) -> str | None:
    return None if data[key] is None else want_str(data, key, where=where)


@dataclass(frozen=True, kw_only=True, slots=True)
class Merchant:
    """A merchant (card acceptor, field 42) and how its money is paid out.

    Attributes:
        available_balance_minor: funds a refund or void may draw on (C20: 51 above it); None = unlimited.
        payout_days: T+n override of the host's ``payout_days``.
        payout_hold: a hold reason (``legal_hold``, ``risk``...): every payout is created held.
        bank_account_valid: False makes every payout fail ("bank account invalid", C25).
        fee_schedule: overrides the host's fee schedule when not empty.
    """

    mid: str
    name: str = ""
    status: str = "active"
    region: str = ""
    mcc: str = "5999"
    limits: Limits = field(default_factory=Limits)
    available_balance_minor: int | None = None
    payout_days: int | None = None
    payout_hold: str | None = None
    bank_account_valid: bool = True
    fee_schedule: tuple[FeeRule, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {"mid": self.mid, "name": self.name, "status": self.status, "region": self.region, "mcc": self.mcc,
                "limits": self.limits.as_dict(), "available_balance_minor": self.available_balance_minor,
                "payout_days": self.payout_days, "payout_hold": self.payout_hold,
                "bank_account_valid": self.bank_account_valid,
                "fee_schedule": [r.as_dict() for r in self.fee_schedule]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "merchant") -> Merchant:
        check_keys(data, _names(cls), where=where)
        if "mid" not in data:
            raise ConfigError("Missing key 'mid'", key="mid", where=where)
        return cls(mid=_mid(data, where)).updated({k: v for k, v in data.items() if k != "mid"}, where=where)

    def updated(self, data: Mapping[str, Any], *, where: str = "merchant") -> Merchant:
        check_keys(data, _names(Merchant), where=where)
        changes: dict[str, Any] = {}
        for key in data:
            if key == "mid":
                if _mid(data, where) != self.mid:
                    raise ConfigError(f"Key 'mid' holds {data['mid']!r}, expecting {self.mid!r} (the path's MID)",
                                      key=key, where=where)
            elif key == "status":
                changes[key] = want_str(data, key, where=where, choices=MERCHANT_STATUSES)
            elif key in ("name", "region"):
                changes[key] = want_str(data, key, where=where)
            elif key == "mcc":
                changes[key] = want_str(data, key, where=where, digits=4)
            elif key == "limits":
                changes[key] = self.limits.updated(data[key] or {}, where=f"{where}.limits")
            elif key in ("available_balance_minor", "payout_days"):
                changes[key] = _optional_int(data, key, where=where)
            elif key == "payout_hold":
                changes[key] = _optional_str(data, key, where=where)
            elif key == "bank_account_valid":
                changes[key] = want_bool(data, key, where=where)
            elif key == "fee_schedule":
                changes[key] = tuple(FeeRule.from_dict(r, where=f"{where}.fee_schedule[{i}]")
                                     for i, r in enumerate(data[key] or []))
        return replace(self, **changes)


def _mid(data: Mapping[str, Any], where: str) -> str:
    mid = want_str(data, "mid", where=where)
    if len(mid) != 15:
        raise ConfigError(f"Key 'mid' holds {mid!r}, expecting 15 characters (field 42)", key="mid", where=where)
    return mid


def _tid(data: Mapping[str, Any], where: str) -> str:
    tid = want_str(data, "tid", where=where)
    if len(tid) != 8:
        raise ConfigError(f"Key 'tid' holds {tid!r}, expecting 8 characters (field 41)", key="tid", where=where)
    return tid


@dataclass(frozen=True, kw_only=True, slots=True)
class Terminal:
    """A terminal (field 41): identity, status, TMK, and the state the host keeps for it.

    Attributes:
        tmk: terminal master key (hex); None = the shared test TMK of :mod:`specs.crypto`.
        batch: the host's open batch number for this terminal (CUP 0810 60.2).
        signon_count: sign-ons so far; working keys are derived from it, so each sign-on gets fresh keys.
        signed_on_date: business date of the last sign-on (``require_daily_signon``).
        keys_valid: working keys usable (False after sign-off or a key rotation).
        pik, mak, tdk: working keys (hex) from the last sign-on.
        key_layout: CUP 60.3 of the last sign-on (001/003/004).
        mac_failures: consecutive MAC failures; at the host's limit every request gets A0 until sign-on.
    """

    tid: str
    mid: str
    status: str = "active"
    region: str = ""
    limits: Limits = field(default_factory=Limits)
    tmk: str | None = None
    batch: int = 1
    signon_count: int = 0
    signed_on_date: str | None = None
    keys_valid: bool = False
    pik: str | None = None
    mak: str | None = None
    tdk: str | None = None
    key_layout: str | None = None
    mac_failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"tid": self.tid, "mid": self.mid, "status": self.status, "region": self.region,
                "limits": self.limits.as_dict(), "tmk": self.tmk, "batch": self.batch,
                "signon_count": self.signon_count, "signed_on_date": self.signed_on_date,
                "keys_valid": self.keys_valid, "pik": self.pik, "mak": self.mak, "tdk": self.tdk,
                "key_layout": self.key_layout, "mac_failures": self.mac_failures}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "terminal") -> Terminal:
        check_keys(data, _names(cls), where=where)
        for required in ("tid", "mid"):
            if required not in data:
                raise ConfigError(f"Missing key {required!r}", key=required, where=where)
        return cls(tid=_tid(data, where), mid=_mid(data, where)).updated(
            {k: v for k, v in data.items() if k not in ("tid", "mid")}, where=where)

    def updated(self, data: Mapping[str, Any], *, where: str = "terminal") -> Terminal:
        check_keys(data, _names(Terminal), where=where)
        changes: dict[str, Any] = {}
        for key in data:
            if key == "tid":
                if _tid(data, where) != self.tid:
                    raise ConfigError(f"Key 'tid' holds {data['tid']!r}, expecting {self.tid!r} (the path's TID)",
                                      key=key, where=where)
            elif key == "mid":
                changes[key] = _mid(data, where)
            elif key == "status":
                changes[key] = want_str(data, key, where=where, choices=TERMINAL_STATUS_RC)
            elif key == "region":
                changes[key] = want_str(data, key, where=where)
            elif key == "limits":
                changes[key] = self.limits.updated(data[key] or {}, where=f"{where}.limits")
            elif key in ("tmk", "pik", "mak", "tdk"):
                value = _optional_str(data, key, where=where)
                if value is not None and (len(value) not in (16, 32, 48)
                                          or any(c not in "0123456789abcdefABCDEF" for c in value)):
                    raise ConfigError(f"Key {key!r} holds {len(value)} characters, expecting 16, 32 or 48 hex digits",
                                      key=key, where=where)
                changes[key] = value.upper() if value else None
            elif key == "batch":
                changes[key] = want_int(data, key, where=where, minimum=0)
                if changes[key] > 999_999:
                    raise ConfigError(f"Key 'batch' holds {changes[key]}, expecting at most 999999", key=key, where=where)
            elif key in ("signon_count", "mac_failures"):
                changes[key] = want_int(data, key, where=where, minimum=0)
            elif key in ("signed_on_date", "key_layout"):
                changes[key] = _optional_str(data, key, where=where)
            elif key == "keys_valid":
                changes[key] = want_bool(data, key, where=where)
        return replace(self, **changes)


@dataclass(frozen=True, kw_only=True, slots=True)
class Card:
    """A card the host knows (stored under its keyed token, never with the PAN or PIN in clear).

    Attributes:
        token: :meth:`host_stub.ledger.Ledger.pan_token` of the PAN ("" until :meth:`Registry.put`).
        expiry: YYMM; None = trust field 14 / track 2 of the request.
        balance_minor: available funds (debits lower it, reversals/voids/refunds raise it); None = unlimited.
        pin_verifier: :meth:`host_stub.ledger.Ledger.pin_verifier` of PAN and PIN the PIN block must
            carry; None = any well-formed PIN block passes.
        pan, pin: as given (config, control API), until :meth:`Registry.put` turns them into the
            token and the verifier; never stored.
    """

    pan_masked: str
    token: str = ""
    expiry: str | None = None
    status: str = "active"
    balance_minor: int | None = None
    pin_verifier: str | None = None
    limits: Limits = field(default_factory=Limits)
    pan: str | None = field(default=None, repr=False, compare=False)
    pin: str | None = field(default=None, repr=False, compare=False)

    @property
    def has_pin(self) -> bool:
        return self.pin_verifier is not None or self.pin is not None

    def as_dict(self) -> dict[str, Any]:
        """What is stored and shown (the control API hides ``pin_verifier``)."""
        return {"pan_masked": self.pan_masked, "expiry": self.expiry, "status": self.status,
                "balance_minor": self.balance_minor, "pin_verifier": self.pin_verifier,
                "limits": self.limits.as_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "card") -> Card:
        check_keys(data, {"pan", *_CARD_KEYS}, where=where)
        if "pan" not in data:
            raise ConfigError("Missing key 'pan'", key="pan", where=where)
        pan = want_str(data, "pan", where=where)
        if not (12 <= len(pan) <= 19 and pan.isdigit() and luhn_valid(pan)):
            raise ConfigError(f"Key 'pan' holds {mask_pan(pan)!r}, expecting 12-19 digits passing the Luhn check",
                              key="pan", where=where)
        return cls(pan=pan, pan_masked=mask_pan(pan)).updated(
            {k: v for k, v in data.items() if k != "pan"}, where=where)

    def updated(self, data: Mapping[str, Any], *, where: str = "card") -> Card:
        check_keys(data, _CARD_KEYS | {"pan_masked"}, where=where)
        changes: dict[str, Any] = {}
        for key in data:
            if key == "expiry":
                changes[key] = None if data[key] is None else want_str(data, key, where=where, digits=4)
            elif key == "status":
                changes[key] = want_str(data, key, where=where, choices=CARD_STATUS_RC)
            elif key == "balance_minor":
                changes[key] = _optional_int(data, key, where=where)
            elif key == "pin":
                pin = None if data[key] is None else want_str(data, key, where=where)
                if pin is not None and not (4 <= len(pin) <= 12 and pin.isdigit()):
                    raise ConfigError("Key 'pin' holds a value that is not 4-12 digits", key=key, where=where)
                changes.update(pin=pin, pin_verifier=None)
            elif key == "limits":
                changes[key] = self.limits.updated(data[key] or {}, where=f"{where}.limits")
        return replace(self, **changes)


_CARD_KEYS = frozenset({"expiry", "status", "balance_minor", "pin", "limits"})

#: The card an open (non-strict) host assumes for a PAN it does not know: active, no limits.
OPEN_CARD = Card(pan_masked="")

_KINDS: dict[type, str] = {Merchant: "merchants", Terminal: "terminals", Card: "cards"}


class Registry:
    """Typed access to the registry tables of a :class:`~host_stub.ledger.Ledger`."""

    #: Entries kept in the read cache at most (an open host sees one card per PAN it is sent).
    CACHE_ENTRIES = 10_000

    def __init__(self, store: Any) -> None:
        self.store = store
        # Reads are served from the ledger's cache (shared by every Registry on that ledger, emptied
        # by the ledger on rollback and reset); writes go to SQLite first, then to the cache.
        self._cache: dict[tuple[str, str], Any] = getattr(store, "registry_cache", {})

    def _get(self, kind: str, key: str, build: Any) -> Any:
        try:
            return self._cache[(kind, key)]
        except KeyError:
            pass
        doc = self.store.registry_get(kind, key)
        entry = build(doc) if doc else None
        if len(self._cache) >= self.CACHE_ENTRIES:
            self._cache.clear()
        self._cache[(kind, key)] = entry
        return entry

    def merchant(self, mid: str) -> Merchant | None:
        return self._get("merchants", mid, _merchant_from_doc)  # type: ignore[no-any-return]

    def terminal(self, tid: str) -> Terminal | None:
        return self._get("terminals", tid, self._terminal_from_doc)  # type: ignore[no-any-return]

    def card(self, pan: str) -> Card | None:
        return self.card_by_token(self.store.pan_token(pan))

    def card_by_token(self, token: str) -> Card | None:
        return self._get("cards", token, _card_from_doc)  # type: ignore[no-any-return]

    def keyed(self, card: Card) -> Card:
        """The card as these books keep it: PAN and PIN (when given) turned into the keyed token and
        the PIN verifier, and dropped.

        Raises:
            ValueError: a PIN without the PAN it belongs to.
        """
        if card.pan is None and card.pin is None:
            return card
        pan = card.pan
        if card.pin is not None and pan is None:
            raise ValueError("a card PIN is stored only as a verifier of PAN and PIN: the PAN is needed")
        token = self.store.pan_token(pan) if pan is not None else card.token
        verifier = self.store.pin_verifier(pan, card.pin) if card.pin is not None and pan else card.pin_verifier
        return replace(card, token=token, pin_verifier=verifier, pan=None, pin=None)

    def put(self, entry: Merchant | Terminal | Card) -> None:
        if isinstance(entry, Card):
            entry = self.keyed(entry)
        key, kind = _key(entry), _KINDS[type(entry)]
        doc = entry.as_dict()
        if isinstance(entry, Card):
            doc["token"] = entry.token
        if isinstance(entry, Terminal):
            doc.update({name: self.store.seal_key(doc[name]) for name in _KEY_FIELDS})
        self.store.registry_put(kind, key, doc)
        self._cache[(kind, key)] = entry

    def merchants(self) -> list[Merchant]:
        return [_merchant_from_doc(d) for d in self.store.registry_all("merchants")]

    def terminals(self) -> list[Terminal]:
        return [self._terminal_from_doc(d) for d in self.store.registry_all("terminals")]

    def _terminal_from_doc(self, doc: Mapping[str, Any]) -> Terminal:
        """A stored terminal, its keys decrypted (they are stored sealed: :meth:`Ledger.seal_key`)."""
        return _terminal_from_doc({**doc, **{name: self.store.open_key(doc.get(name)) for name in _KEY_FIELDS}})

    def cards(self) -> list[Card]:
        return [_card_from_doc(d) for d in self.store.registry_all("cards")]

    def load(self, data: Mapping[str, Any], *, where: str = "registry", overwrite: bool = True) -> dict[str, int]:
        """Add the entries of a config's ``registry`` section; returns how many of each kind were stored.

        Keys: ``generate`` (arguments of :func:`generate`), ``merchants``, ``terminals``, ``cards``
        (lists of entries as in ``from_dict``).  With ``overwrite=False`` an entry already in the
        ledger is kept as it is (a restarted host keeps balances, batch numbers and keys).
        Every entry is checked before any is stored.
        """
        check_keys(data, {"generate", "merchants", "terminals", "cards"}, where=where)
        entries: list[Merchant | Terminal | Card] = []
        if data.get("generate") is not None:
            entries += generate_from_dict(data["generate"], where=f"{where}.generate")
        for kind, cls in (("merchants", Merchant), ("terminals", Terminal), ("cards", Card)):
            items = data.get(kind) or []
            if not isinstance(items, list):
                raise ConfigError(f"Key {kind!r} holds {type(items).__name__}, expecting a list", key=kind, where=where)
            entries += [cls.from_dict(item, where=f"{where}.{kind}[{i}]") for i, item in enumerate(items)]
        counts = {"merchants": 0, "terminals": 0, "cards": 0}
        for entry in entries:
            kind = _KINDS[type(entry)]
            if isinstance(entry, Card):
                entry = self.keyed(entry)
            if not overwrite and self.store.registry_get(kind, _key(entry)) is not None:
                continue
            self.put(entry)
            counts[kind] += 1
        return counts


def _key(entry: Merchant | Terminal | Card) -> str:
    return entry.mid if isinstance(entry, Merchant) else entry.tid if isinstance(entry, Terminal) else entry.token


# The ledger holds only documents this module wrote (``as_dict`` of a checked entry), so reading
# them back skips the checks: this runs for every request the host serves.

def _merchant_from_doc(doc: Mapping[str, Any]) -> Merchant:
    fees = tuple(FeeRule(effective_from=date.fromisoformat(r["effective_from"]), rate_bps=r["rate_bps"],
                         fixed_minor=r["fixed_minor"]) for r in doc["fee_schedule"])
    return Merchant(**{**doc, "limits": Limits(**doc["limits"]), "fee_schedule": fees})


#: The terminal fields holding keys: stored encrypted, never in clear.
_KEY_FIELDS = ("tmk", "pik", "mak", "tdk")


def _terminal_from_doc(doc: Mapping[str, Any]) -> Terminal:
    return Terminal(**{**doc, "limits": Limits(**doc["limits"])})


def _card_from_doc(doc: Mapping[str, Any]) -> Card:
    # A document written before PINs were kept as verifiers holds "pin": it is not used (and is
    # dropped the next time the card is stored); load the card again to give it a PIN.
    return Card(**{**{k: v for k, v in doc.items() if k != "pin"}, "limits": Limits(**doc["limits"])})


def generate(*, seed: int, merchants: int = 1, terminals_per_merchant: int = 1, cards: int = 3,
             balance_minor: int | None = 10_000_000, pin: str | None = None) -> list[Merchant | Terminal | Card]:
    """A deterministic registry: same arguments, same merchants, terminals and cards.

    Card ``i`` (0-based) is :func:`specs.cards.seeded_card` with ``seed=seed * 1000 + i``, cycling
    through the UnionPay, Visa and Mastercard schemes, so a test can rebuild the PANs it needs.

    >>> entries = generate(seed=7, merchants=1, terminals_per_merchant=2, cards=1)
    >>> [type(e).__name__ for e in entries]
    ['Merchant', 'Terminal', 'Terminal', 'Card']
    >>> entries[3].pan_masked == mask_pan(seeded_card(seed=7000, scheme="unionpay").pan)
    True
    """
    fake = Faker()
    fake.seed_instance(seed)
    out: list[Merchant | Terminal | Card] = []
    for m in range(merchants):
        mcc = fake.random_element(("5411", "5812", "5999", "7011"))
        mid = fake.numerify("###") + fake.numerify("####") + mcc + f"{m + 1:04d}"
        out.append(Merchant(mid=mid, name=fake.company()[:40], mcc=mcc, region=mid[3:7]))
        for t in range(terminals_per_merchant):
            out.append(Terminal(tid=f"{fake.numerify('####')}{m * terminals_per_merchant + t + 1:04d}", mid=mid,
                                region=mid[3:7]))
    schemes = ("unionpay", "visa", "mastercard")
    for i in range(cards):
        card = seeded_card(seed=seed * 1000 + i, scheme=schemes[i % len(schemes)])
        out.append(Card(pan=card.pan, pan_masked=mask_pan(card.pan), expiry=card.expiry,
                        balance_minor=balance_minor, pin=pin))
    return out


#: How many entries one ``generate`` may add (merchants x terminals_per_merchant terminals).
MAX_GENERATE = {"merchants": 1000, "terminals_per_merchant": 10, "cards": 1000}


def generate_from_dict(data: Mapping[str, Any], *, where: str) -> list[Merchant | Terminal | Card]:
    check_keys(data, {"seed", "merchants", "terminals_per_merchant", "cards", "balance_minor", "pin"}, where=where)
    kwargs: dict[str, Any] = {"seed": want_int(data, "seed", where=where) if "seed" in data else 0}
    for key in ("merchants", "terminals_per_merchant", "cards"):
        if key in data:
            kwargs[key] = want_int(data, key, where=where, minimum=0, maximum=MAX_GENERATE[key])
    if "balance_minor" in data:
        kwargs["balance_minor"] = _optional_int(data, "balance_minor", where=where)
    if "pin" in data:
        kwargs["pin"] = _optional_str(data, "pin", where=where)
    return generate(**kwargs)


def card_expired(expiry: str, today: date) -> bool:
    """True when YYMM lies before ``today``'s month.

    >>> card_expired("2404", date(2024, 5, 1)), card_expired("2405", date(2024, 5, 31))
    (True, False)
    """
    return (2000 + int(expiry[:2]), int(expiry[2:])) < (today.year, today.month)

