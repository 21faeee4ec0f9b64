"""What both command-line tools share: the wire switches of a link, and how a bad database path is told.

The dialect picks a default framing (:data:`specs.framing.DEFAULT_FRAMING`); a host profile
(``--profile``) may change that default, and each framing switch here overrides one part of it,
because real links mix them.  ``--profile`` and ``--packager`` change the field layout (see
:mod:`specs.profile` and :mod:`specs.packager`); terminal and host given the same files agree.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from specs.dialects import Dialect, load_dialect
from specs.framing import DEFAULT_FRAMING, DEFAULT_MAX_FRAME_BYTES, Framing
from specs.profile import ProfileError, shipped_profiles
from specs.storage import WrongBooks

#: The environment variable holding the stub host's control API token: ``pos-host serve`` reads it
#: (as ``--control-token``), and every client of the control API sends it as a bearer token.
CONTROL_TOKEN_ENV = "POS_HOST_CONTROL_TOKEN"


def framing_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--length-prefix``, ``--tpdu/--no-tpdu``, ``--cup-header/--no-cup-header`` and ``--max-frame-bytes``."""
    func = click.option("--length-prefix", type=click.Choice(["binary2", "ascii4"]), default=None,
                        help="Length prefix: 2-byte binary or 4 ASCII digits (default: the dialect's).")(func)
    func = click.option("--tpdu/--no-tpdu", default=None, help="5-byte TPDU after the length (default: the dialect's).")(func)
    func = click.option("--cup-header/--no-cup-header", default=None,
                        help="CUP 6-byte header after the TPDU (default: the dialect's).")(func)
    func = click.option("--max-frame-bytes", type=click.IntRange(16, 65535), default=DEFAULT_MAX_FRAME_BYTES,
                        show_default=True, help="Reject a frame whose declared length is larger.")(func)
    return func


def wire_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--profile FILE|NAME`` and ``--packager FILE.xml``."""
    func = click.option("--packager", default=None, metavar="FILE.xml",
                        help="jPOS GenericPackager XML file: the host's field layout (only its fields exist).")(func)
    func = click.option("--profile", default=None, metavar="FILE|NAME",
                        help="Host profile (YAML file, or a shipped one: " + ", ".join(shipped_profiles())
                             + "); its dialect replaces --dialect.")(func)
    return func


def resolve_wire(dialect: str, profile: str | None, packager: str | None, length_prefix: str | None,
                 tpdu: bool | None, cup_header: bool | None,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> tuple[Dialect, Framing]:
    """The dialect (``--dialect``, or the profile's, with the packager's fields) and its framing:
    the dialect's default, then the profile's framing, then the framing switches.

    Raises:
        click.BadParameter: a malformed profile or packager file (file, line and key named).
    """
    try:
        return link_of(dialect, profile, packager, length_prefix, tpdu, cup_header, max_frame_bytes)
    except ProfileError as exc:
        hint = "--packager" if packager and exc.file.endswith(".xml") else "--profile"
        raise click.BadParameter(str(exc), param_hint=hint) from None


def link_of(dialect: str, profile: str | None = None, packager: str | None = None, length_prefix: str | None = None,
            tpdu: bool | None = None, cup_header: bool | None = None,
            max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> tuple[Dialect, Framing]:
    """:func:`resolve_wire` for callers that are not a command line.

    Raises:
        ProfileError: a malformed profile or packager file.
    """
    wire = load_dialect(dialect, profile, packager)
    base = wire.profile.framing
    framing = resolve_framing(wire.profile.base, length_prefix or base.get("length_prefix"),
                              base.get("tpdu") if tpdu is None else tpdu,
                              base.get("cup_header") if cup_header is None else cup_header, max_frame_bytes)
    return wire, framing


def resolve_framing(dialect: str, length_prefix: str | None, tpdu: bool | None, cup_header: bool | None,
                    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Framing:
    """The dialect's default framing with the given switches applied."""
    base = DEFAULT_FRAMING[dialect]
    return Framing(length_prefix=length_prefix or base.length_prefix,  # type: ignore[arg-type]
                   tpdu=base.tpdu if tpdu is None else tpdu,
                   cup_header=base.cup_header if cup_header is None else cup_header,
                   max_frame_bytes=max_frame_bytes)


def database_open_problem(option: str, path: str, exc: BaseException, expected: str) -> str:
    """What was wrong with a database file given by ``option``, for a usage error.

    >>> import sqlite3
    >>> database_open_problem("--journal", "/no/such/t.sqlite",
    ...                       sqlite3.OperationalError("unable to open database file"), "a pos-terminal journal")
    '--journal /no/such/t.sqlite: cannot open: unable to open database file (folder /no/such does not exist)'
    """
    reason = str(exc) if isinstance(exc, sqlite3.Error) else (getattr(exc, "strerror", None) or str(exc))
    if isinstance(exc, WrongBooks) or (isinstance(exc, sqlite3.DatabaseError) and "not a database" in reason):
        return f"{option} {path} is not {expected} ({reason})"
    target = Path(path)
    folder = target.parent
    if target.is_dir():
        hint = "it is a folder"
    elif not folder.exists():
        hint = f"folder {folder} does not exist"
    elif not folder.is_dir():
        hint = f"{folder} is not a folder"
    else:
        hint = ""
    return f"{option} {path}: cannot open: {reason}" + (f" ({hint})" if hint else "")
