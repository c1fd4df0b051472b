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


# A multi-line value (a config file kept as one secret) whose short lines are the names
# of the log's own fields, and whose long lines are secret on their own.
FIELD_LINE_VALUE = (
    "event\nlevel\nsecret\ntimestamp\npath\n"
    "aws_secret_access_key = canary-logs-line-7d1c0b\n"
    "session-canary-logs-second-line-95e4"
)
LONG_LINES = (
    "aws_secret_access_key = canary-logs-line-7d1c0b",
    "session-canary-logs-second-line-95e4",
)


def json_events(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_multiline_value_naming_fields_keeps_every_key_and_event_name() -> None:
    """A value whose lines are `event`, `level`, `secret`, `timestamp` leaves the JSON lines whole."""
    known_values.add([FIELD_LINE_VALUE])
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    log = structlog.get_logger("test")
    log.info("file_written", secret="aws", path="~/.aws/credentials", short_sha="0123456789ab")
    log.warning("secret_refused", secret="aws", error=f"cannot write {FIELD_LINE_VALUE}")
    log.info("child_output", line=LONG_LINES[0], note=f"then {LONG_LINES[1]}")
    text = out.getvalue()
    events = json_events(out)
    assert [e["event"] for e in events] == ["file_written", "secret_refused", "child_output"]
    for e in events:
        assert {"event", "level", "timestamp"} <= e.keys()
    assert events[0] == {
        "event": "file_written",
        "secret": "aws",
        "path": "~/.aws/credentials",
        "short_sha": "0123456789ab",
        "level": "info",
        "timestamp": events[0]["timestamp"],
    }
    assert events[1]["secret"] == "aws"
    assert events[1]["error"] == "cannot write [redacted]"
    assert events[2]["line"] == "[redacted]"
    assert events[2]["note"] == "then [redacted]"
    assert FIELD_LINE_VALUE not in text
    for line in LONG_LINES:
        assert line not in text


def test_value_that_is_a_path_component_leaves_path_fields_intact() -> None:
    """Paths and secret names are metadata: a value equal to a directory name does not cut them."""
    known_values.add(["production"])
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    structlog.get_logger("test").info(
        "file_written",
        secret="production-db",
        path="~/.config/production/db.env",
        env_name="PRODUCTION_DB",
        note="the production password",
    )
    (event,) = json_events(out)
    assert event["path"] == "~/.config/production/db.env"
    assert event["secret"] == "production-db"
    assert event["env_name"] == "PRODUCTION_DB"
    assert event["note"] == "the [redacted] password"


def test_value_as_a_whole_metadata_field_is_still_redacted() -> None:
    """A `path` or `secret` field that *is* a known value prints as `[redacted]`."""
    known_values.add([CANARY])
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    structlog.get_logger("test").info("file_written", secret=CANARY, path=CANARY)
    (event,) = json_events(out)
    assert (event["secret"], event["path"]) == ("[redacted]", "[redacted]")


def test_multiline_value_in_exception_message_and_traceback_is_scrubbed() -> None:
    """The value, its repr form and its long lines leave an exception and its traceback."""
    known_values.add([FIELD_LINE_VALUE])
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    log = structlog.get_logger("test")
    try:
        raise ValueError(f"bad config {FIELD_LINE_VALUE!r}, line {LONG_LINES[1]!r}")
    except ValueError as exc:
        log.exception("sync_failed", error=str(exc), exc=exc)
    text = out.getvalue()
    (event,) = json_events(out)
    assert event["event"] == "sync_failed"
    assert {"level", "timestamp", "error", "exc", "exception"} <= event.keys()
    assert "Traceback" in str(event["exception"])
    assert "[redacted]" in str(event["exception"])
    assert event["error"] == "bad config '[redacted]', line '[redacted]'"
    for leaked in (FIELD_LINE_VALUE, repr(FIELD_LINE_VALUE)[1:-1], *LONG_LINES):
        assert leaked not in text


def test_long_line_of_a_value_printed_alone_is_scrubbed_short_lines_are_not() -> None:
    """A long line of a multi-line value is a secret on its own; a line like `level` is not."""
    known_values.add([FIELD_LINE_VALUE])
    out = io.StringIO()
    logs.configure(fmt="console", stream=out)
    log = structlog.get_logger("test")
    log.info("child_output", line=LONG_LINES[0])
    log.info("child_output", line="level")
    text = out.getvalue()
    assert LONG_LINES[0] not in text
    assert "line=[redacted]" in text
    assert "line=level" in text
    assert text.count("child_output") == 2


def test_identifier_keys_stay_unless_they_are_a_value() -> None:
    """Keys are names: a value `secret` does not cut `secrets`, but a key that is a value goes."""
    known_values.add(["hunter2_password_key", "secret"])
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    structlog.get_logger("test").info(
        "sync_done", secrets=3, nested={"hunter2_password_key": 1, "secret_count": 2}
    )
    (event,) = json_events(out)
    assert event["secrets"] == 3
    assert event["nested"] == {"[redacted]": 1, "secret_count": 2}


def test_whole_values_named_like_fields_leave_every_key_in_place() -> None:
    """Secrets whose values are `event`, `level`, `timestamp` and `secret` cut no key or name."""
    known_values.add(["event", "level", "timestamp", "secret", "exception"])
    out = io.StringIO()
    logs.configure(fmt="json", stream=out)
    log = structlog.get_logger("test")
    log.error("secret_refused", secret="db", path="~/db", error="the secret is refused")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("sync_failed")
    refused, failed = json_events(out)
    assert refused.keys() == {"event", "secret", "path", "error", "level", "timestamp"}
    assert (refused["event"], refused["level"], refused["secret"]) == (
        "secret_refused",
        "error",
        "db",
    )
    assert refused["error"] == "the [redacted] is refused"
    assert failed["event"] == "sync_failed"
    assert "exception" in failed
