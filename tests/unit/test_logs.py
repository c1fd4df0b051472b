"""The logging chain scrubs values from every event, exceptions included."""

from __future__ import annotations

import io
import json

import structlog

from secret_agent import logs
from secret_agent.redact import Secret, known_values

CANARY = "canary-logs-8e2f"


def test_known_values_are_scrubbed_from_events_and_tracebacks() -> None:
    """A value in a message, a nested field, an exception or a traceback never prints."""
    known_values.add([CANARY, "multi-line canary\nsecond-line-canary"])
    out = io.StringIO()
    logs.configure(level="debug", fmt="json", stream=out)
    log = structlog.get_logger("test")
    log.info(
        "event",
        note=f"has {CANARY} inside",
        nested={"k": [CANARY]},
        value="raw",
        wrapped=Secret(CANARY),
    )
    try:
        raise ValueError(f"boom {CANARY} second-line-canary")
    except ValueError:
        log.exception("failed")
    text = out.getvalue()
    assert CANARY not in text
    assert "second-line-canary" not in text
    events = [json.loads(line) for line in text.splitlines()]
    assert events[0]["value"] == "[redacted]"
    assert "[redacted]" in events[1]["exception"]
    assert "Traceback" in events[1]["exception"]


def test_secret_wrapper_never_prints_its_value() -> None:
    """repr, str and format of a Secret show [redacted]."""
    s = Secret(CANARY)
    assert CANARY not in f"{s} {s!r} {s!s} {[s]} { ({'k': s}) }"
    assert s.reveal() == CANARY


def test_values_inside_bytes_sets_objects_and_keys_are_scrubbed() -> None:
    """Whatever its type, a logged object is rendered and scrubbed before it is printed."""
    known_values.add([CANARY])

    class Holder:
        def __repr__(self) -> str:
            return f"Holder({CANARY})"

    out = io.StringIO()
    logs.configure(level="debug", fmt="json", stream=out)
    structlog.get_logger("test").info(
        "odd_types", data=CANARY.encode(), s={CANARY}, obj=Holder(), **{CANARY: 1}
    )
    assert CANARY not in out.getvalue()
    assert "[redacted]" in out.getvalue()


def test_stdlib_logging_goes_through_the_same_scrub() -> None:
    """A library logging a value through stdlib logging is scrubbed too."""
    import logging

    known_values.add([CANARY])
    out = io.StringIO()
    logs.configure(level="debug", fmt="json", stream=out)
    logging.getLogger("somelib").warning("token is %s", CANARY)
    assert out.getvalue()
    assert CANARY not in out.getvalue()
