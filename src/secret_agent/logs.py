"""Logging setup: structlog, console on a TTY and JSON otherwise, always redacted.

The only module that configures logging. The chain, in order:
1. merge context, add level and timestamp;
2. format an exception into text with *no locals* (structlog's defaults would show
   them, and a local may hold a value);
3. `redact_event`: a key named `value` (or `token`) becomes `[redacted]`, and every
   known secret value is scrubbed out of every string, tracebacks included. The log's
   structure stays: keys and event names are names, printed as they are unless one *is*
   a known value; the fields the chain adds (level, timestamp, logger) are never values;
   a secret's name, path, env_name and short_sha are metadata, printed as they are
   unless one is exactly a value (a value `aws` leaves `path=~/.aws/credentials` whole);
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

from secret_agent.redact import REDACTED, Secret, is_known, scrub

LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
SENSITIVE_KEYS: Final = frozenset({"value", "token", "content", "password"})
# Added by the chain itself (and structlog's stdlib bridge), never from a value.
CHAIN_KEYS: Final = frozenset({"level", "timestamp", "logger", "_record", "_from_structlog"})
# What a secret is called and where it goes: shown in `status` too, never scrubbed as text.
METADATA_KEYS: Final = frozenset({"secret", "path", "env_name", "short_sha"})
# Keys that every reader of the log relies on: the same in every line, so never a value's.
FIXED_KEYS: Final = CHAIN_KEYS | METADATA_KEYS | {"event", "exception"}


def redact_event(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    """Scrub known values from every string in the event, recursively, keeping its shape."""
    # A stdlib record's event is its message, free text; structlog's is a snake_case name.
    foreign = event.get("_from_structlog") is False
    for key in list(event):
        obj = event.pop(key)
        if key in CHAIN_KEYS:
            event[key] = obj
        elif key in SENSITIVE_KEYS:
            event[key] = REDACTED
        elif isinstance(obj, str) and (
            key in METADATA_KEYS or (key == "event" and not foreign and obj.isidentifier())
        ):
            event[key] = _scrub_name(obj)
        else:
            event[key if key in FIXED_KEYS else _scrub_key(key)] = _scrub_any(obj)
    return event


def _scrub_name(text: str) -> str:
    return REDACTED if is_known(text) else text


def _scrub_key(key: object) -> str:
    text = str(key)
    # Keys written in code are identifiers; one built from data may hold a value in part.
    return _scrub_name(text) if text.isidentifier() else scrub(text)


def _scrub_any(obj: Any) -> Any:
    if obj is None or isinstance(obj, bool | int | float):
        return obj
    if isinstance(obj, MutableMapping):
        return {
            _scrub_key(k): REDACTED if k in SENSITIVE_KEYS else _scrub_any(v)
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
