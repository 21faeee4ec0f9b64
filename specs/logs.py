"""structlog set-up shared by both command-line tools: console or JSON lines, always masked.

Logs go to stderr so that stdout stays free for machine-readable output (the host's ready line,
``pos-terminal --json`` results).  The masking processor runs before any renderer, so no renderer
and no later processor ever sees card data or keys in clear.  Exceptions (``exc_info=True``) and
stacks (``stack_info=True``) are rendered to text *before* it, so a PAN or key quoted by an
exception is masked too, in both modes.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from specs.masking import mask_error_text, mask_named

#: Event keys holding rendered exceptions, stacks or error texts: masked with :func:`mask_error_text`.
ERROR_TEXT_KEYS = frozenset({"exception", "stack", "error"})

_PLAIN = (str, int, float, bool, type(None))


def mask_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask PANs, track data, PIN blocks, ICC data and keys in every value.

    Each value is masked by its key (:func:`specs.masking.mask_named`: ``pan=`` keeps first 6 /
    last 4, ``tmk=``, ``pin=``, ``track2=`` … are hidden) and recursively into dicts and lists;
    rendered exceptions and error texts are masked with :func:`specs.masking.mask_error_text`; any
    other object (a dataclass, an exception) is replaced by its ``repr`` (what the renderer would
    have printed), masked the same way.
    """
    masked: dict[str, Any] = {}
    for key, value in event_dict.items():
        if key in ERROR_TEXT_KEYS and isinstance(value, str):
            masked[key] = mask_error_text(value)
        else:
            masked[key] = _rendered(mask_named(key, value))
    return masked


def _rendered(value: Any) -> Any:
    """JSON-like values as they are; any other object as its masked repr, so that no renderer prints
    ``Card(pan='4761…')`` or ``Keys(mak='…')`` in clear."""
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, Mapping):
        return {k: _rendered(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rendered(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_rendered(v) for v in value)
    return mask_error_text(repr(value))


def configure_logging(*, json: bool = False, level: str = "info") -> None:
    """Configure structlog for a process.

    Args:
        json: one JSON object per line instead of coloured console output.
        level: minimum level name (debug, info, warning, error).
    """
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     # plain_traceback: the exception arrives as masked text; a pretty (rich) formatter
                     # would re-render it, with its locals, from the live traceback, unmasked.
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                                        exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,  # exc_info -> "exception" text, before masking
            mask_processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # Resolve sys.stderr when a logger is made, not now, so redirected stderr (tests) is honoured.
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
