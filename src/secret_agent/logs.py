"""Logging setup: structlog, console on a TTY and JSON otherwise, always redacted.

The only module that configures logging. The chain, in order:
1. merge context, add level and timestamp;
2. format an exception into text with *no locals* (structlog's defaults would show
   them, and a local may hold a value);
3. `redact_event`: a key named `value` (or `token`) becomes `[redacted]`, and every
   known secret value is scrubbed out of every string, tracebacks included;
4. render.
The stdlib logging of libraries (httpx logs each request at INFO) is routed through
the same chain and held at WARNING.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Final, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from secret_agent.redact import REDACTED, Secret, scrub

LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
SENSITIVE_KEYS: Final = frozenset({"value", "token", "content", "password"})


def redact_event(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Scrub known values from every string in the event, recursively."""
    for key in list(event):
        value = event.pop(key)
        safe_key = scrub(key)
        event[safe_key] = REDACTED if key in SENSITIVE_KEYS else _scrub_any(value)
    return event


def _scrub_any(obj: Any) -> Any:
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, MutableMapping):
        return {
            scrub(str(k)): REDACTED if k in SENSITIVE_KEYS else _scrub_any(v)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [_scrub_any(v) for v in obj]
    if isinstance(obj, Secret):
        text = REDACTED
    elif isinstance(obj, str):
        text = obj
    elif isinstance(obj, BaseException):
        text = f"{type(obj).__name__}: {obj}"
    else:
        # Anything else (bytes, sets, objects) would be rendered later through its
        # repr, after this processor: render it now, so the scrub sees that text.
        text = repr(obj)
    return scrub(text)


def _format_exception(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Render `exc_info` as plain traceback text without locals, before redaction."""
    exc_info = event.pop("exc_info", None)
    if exc_info:
        if exc_info is True:
            exc_info = sys.exc_info()
        elif isinstance(exc_info, BaseException):
            exc_info = (type(exc_info), exc_info, exc_info.__traceback__)
        event["exception"] = structlog.processors.format_exc_info(
            _logger, _method, {"exc_info": exc_info}
        ).get("exception", "")
    return event


def configure(*, level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Set up structlog and the stdlib bridge; safe to call again (e.g. on reload)."""
    out = stream if stream is not None else sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())
    renderer: Processor
    if use_console:
        renderer = structlog.dev.ConsoleRenderer(
            colors=out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    else:
        renderer = structlog.processors.JSONRenderer()
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _format_exception,
        redact_event,
    ]
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared], processor=renderer
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(LEVELS.get(level, logging.INFO))
    for noisy in ("httpx", "httpcore", "uvicorn", "uvicorn.access", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
