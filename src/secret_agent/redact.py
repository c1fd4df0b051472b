"""Keeping secret values out of everything that is printed.

`Secret` wraps a value so that `repr`, `str`, f-strings and structlog all show
`[redacted]`; the only way to the bytes is `.reveal()`, which is greppable. The
`Registry` remembers every value seen this process so `scrub` can remove them from
any text (log lines, exception messages, tracebacks) as a last line of defence.

This module must not import anything of ours: every other module may import it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Final, NoReturn

REDACTED: Final = "[redacted]"

# Values shorter than this are not scrubbed from free text: replacing every "a" or
# "1" in a log line would destroy it and protect nothing.
MIN_SCRUB_LENGTH: Final = 4


class Secret:
    """A secret value whose every printable form is `[redacted]`."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself: call only where it is written to its destination."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({REDACTED})"

    def __str__(self) -> str:
        return REDACTED

    def __format__(self, spec: str) -> str:
        return REDACTED

    def __structlog__(self) -> str:
        return REDACTED

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Secret cannot be pickled")


class Registry:
    """The set of secret values (and tokens) this process has seen, for `scrub`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._ordered: tuple[str, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        """Remember values to scrub; short ones are ignored (see `MIN_SCRUB_LENGTH`)."""
        with self._lock:
            before = len(self._values)
            for value in values:
                if len(value) >= MIN_SCRUB_LENGTH:
                    self._values.add(value)
                    # A multi-line value may be printed line by line (tracebacks, repr of
                    # a split), so its lines are scrubbed on their own too.
                    self._values.update(
                        line for line in value.splitlines() if len(line) >= MIN_SCRUB_LENGTH
                    )
            if len(self._values) != before:
                # Longest first, so a value containing another is replaced whole.
                self._ordered = tuple(sorted(self._values, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self._ordered = ()

    def scrub(self, text: str) -> str:
        """Return `text` with every known value (and its repr form) replaced."""
        for value in self._ordered:
            if value in text:
                text = text.replace(value, REDACTED)
            escaped = repr(value)[1:-1]
            if escaped != value and escaped in text:
                text = text.replace(escaped, REDACTED)
        return text


# The one process-wide registry: values enter it where they enter the process
# (sources, config for tokens), and `logs` scrubs with it.
known_values: Final = Registry()


def scrub(text: str) -> str:
    """Replace every value this process knows of in `text` with `[redacted]`."""
    return known_values.scrub(text)
