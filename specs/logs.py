"""structlog set-up shared by both command-line tools: console or JSON lines, always masked.

Logs go to stderr so that stdout stays free for machine-readable output (the host's ready line,
``pos-terminal --json`` results).  The masking processor runs before any renderer, so no renderer
and no later processor ever sees card data or keys in clear.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, MutableMapping

import structlog

from specs.masking import mask_value


def mask_processor(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: mask PANs, track data, PIN blocks, ICC data and keys in every value."""
    return {key: mask_value(value) for key, value in event_dict.items()}  # type: ignore[return-value]


def configure_logging(*, json: bool = False, level: str = "info") -> None:
    """Configure structlog for a process.

    Args:
        json: one JSON object per line instead of coloured console output.
        level: minimum level name (debug, info, warning, error).
    """
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_processor,
    ]
    renderer: Any = (structlog.processors.JSONRenderer() if json
                     else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()))
    structlog.configure(
        processors=[*processors, structlog.processors.format_exc_info, renderer] if json else [*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # Resolve sys.stderr when a logger is made, not now, so redirected stderr (tests) is honoured.
        logger_factory=lambda *_args: structlog.PrintLogger(sys.stderr),
        cache_logger_on_first_use=False,
    )
