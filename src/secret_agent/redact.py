"""Keeping secret values out of everything that is printed.

`Secret` wraps a value so that `repr`, `str`, f-strings and structlog all show
`[redacted]`; the only way to the bytes is `.reveal()`, which is greppable. The
`Registry` remembers every value seen this process so `scrub` can remove them from
any text (log lines, exception messages, tracebacks) as a last line of defence.

`scrub` costs time linear in the length of the text, whatever the size and the number
of the values (a daemon registers every rotated value and forgets none):
1. `Registry.add` turns each value it has not seen into *patterns*, once: the value,
   its repr-escaped form (what a traceback or the repr of a container shows) and, for a
   multi-line value, each line of at least `MIN_FRAGMENT_LENGTH` characters and its
   escaped form. Shorter lines (`event`, `}`, `[default]`) are not secrets on their own,
   and scrubbing them would take the same words out of every log line.
2. Patterns fall in two groups by length: long (`MIN_FRAGMENT_LENGTH` or more) and short.
   A group of at most `SEARCH_LIMIT` patterns is searched for pattern by pattern, longest
   first, with `str.replace` (C speed; the usual case: a few dozen values).
3. A larger group (the lines of a PEM bundle, months of rotations) is searched through
   an index from each pattern's first characters (the group's *width*) to the patterns
   that begin so, longest first: every position of the text is looked up once, so the
   cost does not grow with the number of patterns.
4. `scrub` runs the long group before the short one, and within a group the longer
   pattern wins (searched first; or, at one position of the index, tried first), so a
   value that contains another goes whole.
No `repr` of a value is computed by `scrub`. Checking a position of the index costs as
much as the text there shares with a pattern: only a text that repeats the beginning of
a long periodic value (a run of one character) without holding it costs more than linear.

This module must not import anything of ours: every other module may import it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import compress, count
from operator import itemgetter, le
from typing import Final, NoReturn

REDACTED: Final = "[redacted]"

# Values shorter than this are not scrubbed from free text: replacing every "a" or
# "1" in a log line would destroy it and protect nothing.
MIN_SCRUB_LENGTH: Final = 4

# Lines of a multi-line value shorter than this are not scrubbed on their own (see (1)).
MIN_FRAGMENT_LENGTH: Final = 16

# Up to this many patterns in a group, one C-speed search per pattern beats the
# position-by-position index lookup (see bench/bench_scrub.py); above it, the index wins.
SEARCH_LIMIT: Final = 1024

_Index = dict[str, str | tuple[str, ...]]
_Step = Callable[[str], str]


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


def _escaped(text: str) -> str:
    return repr(text)[1:-1]


_is_long: Final = partial(le, MIN_FRAGMENT_LENGTH)


def _patterns_of(value: str, *, forms: list[str], lines: list[str]) -> None:
    """(1) Append `value` and its escaped form to `forms`, its long lines to `lines`."""
    escaped = _escaped(value)
    forms += (value, escaped)
    split = value.splitlines()
    if len(split) > 1:
        # C-speed filter: a big value may have a million lines.
        long_lines = list(compress(split, map(_is_long, map(len, split))))
        lines += long_lines
        # Each escape adds at least a character: if the line feeds account for all that
        # repr added, nothing else was escaped, and no line needs a repr of its own.
        if len(escaped) != len(value) + value.count("\n"):
            lines += map(_escaped, long_lines)


def _replace_each(text: str, *, patterns: tuple[str, ...]) -> str:
    """(2) `patterns` longest first, each replaced by one C-speed pass over `text`."""
    for pattern in patterns:
        text = text.replace(pattern, REDACTED)
    return text


def _scan(text: str, *, width: int, index: _Index) -> str:
    """(3) Look up every `width`-character window of `text` in `index`, left to right."""
    if len(text) < width:
        return text
    windows = map(text.__getitem__, map(slice, range(len(text) - width + 1), count(width)))
    pieces: list[str] = []
    done = 0
    for i in compress(count(), map(index.__contains__, windows)):
        if i < done:
            continue
        bucket = index[text[i : i + width]]
        for pattern in (bucket,) if isinstance(bucket, str) else bucket:
            if text.startswith(pattern, i):
                pieces += (text[done:i], REDACTED)
                done = i + len(pattern)
                break
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


class _Group:
    """Patterns of one length class, indexed by their first `width` characters.

    A bucket is the one pattern with its prefix, or a tuple of them, longest first (no
    tuple per pattern: a big multi-line value brings a million lines).
    """

    __slots__ = ("index", "size", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.index: _Index = {}
        self.size = 0

    def __contains__(self, text: str) -> bool:
        bucket = self.index.get(text[: self.width], ())
        return text == bucket if isinstance(bucket, str) else text in bucket

    def add(self, patterns: list[str]) -> None:
        """Index `patterns`: C-speed for those whose prefix is new, one by one for the rest."""
        fresh = dict(zip(map(itemgetter(slice(self.width)), patterns), patterns, strict=True))
        if len(fresh) == len(patterns):
            rest = []
        else:
            kept = set(fresh.values())
            rest = [p for p in patterns if p not in kept]
        for key in fresh.keys() & self.index.keys():
            rest.append(fresh.pop(key))
        self.index.update(fresh)
        self.size += len(fresh)
        for pattern in rest:
            key = pattern[: self.width]
            bucket = self.index.get(key, ())
            bucket = (bucket,) if isinstance(bucket, str) else bucket
            if pattern not in bucket:
                self.index[key] = tuple(sorted((*bucket, pattern), key=len, reverse=True))
                self.size += 1

    def patterns(self) -> Iterator[str]:
        for bucket in self.index.values():
            if isinstance(bucket, str):
                yield bucket
            else:
                yield from bucket

    def step(self) -> _Step | None:
        """How `scrub` finds this group's patterns: (2) one by one, or (3) the index."""
        if not self.size:
            return None
        if self.size > SEARCH_LIMIT:
            return partial(_scan, width=self.width, index=self.index)
        ordered = sorted(self.patterns(), key=len, reverse=True)
        return partial(_replace_each, patterns=tuple(ordered))


class Registry:
    """The set of secret values (and tokens) this process has seen, for `scrub`.

    `add` and `clear` hold a lock; `scrub` takes none: it reads one tuple of steps,
    replaced whole after each change (an index only grows in place, and is complete
    before a step that uses it is published).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._seen: set[str] = set()
        self._long = _Group(MIN_FRAGMENT_LENGTH)
        self._short = _Group(MIN_SCRUB_LENGTH)
        self._steps: tuple[_Step, ...] = ()

    def add(self, values: Iterable[str]) -> None:
        """Remember values to scrub; short ones are ignored (see `MIN_SCRUB_LENGTH`).

        A value already known costs one set lookup, so each pass may add all its values;
        a new one costs one `repr` and one `splitlines` (C speed) and an index entry per
        long line.
        """
        with self._lock:
            forms: list[str] = []
            lines: list[str] = []
            for value in values:
                if len(value) >= MIN_SCRUB_LENGTH and value not in self._seen:
                    self._seen.add(value)
                    _patterns_of(value, forms=forms, lines=lines)
            if forms:
                # One batch per group, lines apart: a value shares its first line's prefix,
                # and a batch without shared prefixes is indexed at C speed.
                self._long.add(lines)
                self._long.add([p for p in forms if len(p) >= MIN_FRAGMENT_LENGTH])
                self._short.add([p for p in forms if len(p) < MIN_FRAGMENT_LENGTH])
                # (4) long patterns first, so a value containing a shorter one goes whole.
                steps = (self._long.step(), self._short.step())
                self._steps = tuple(step for step in steps if step is not None)

    def clear(self) -> None:
        """Forget every value (tests, and nothing else, need this)."""
        with self._lock:
            self._reset()

    def is_known(self, text: str) -> bool:
        """Whether `text` is exactly a known value, its repr form, or a long line of one."""
        if len(text) < MIN_SCRUB_LENGTH:
            return False
        return text in (self._long if len(text) >= MIN_FRAGMENT_LENGTH else self._short)

    def scrub(self, text: str) -> str:
        """Return `text` with every known value (and its repr form) replaced."""
        if len(text) < MIN_SCRUB_LENGTH:
            return text
        for step in self._steps:
            text = step(text)
        return text


# The one process-wide registry: values enter it where they enter the process
# (sources, config for tokens), and `logs` scrubs with it.
known_values: Final = Registry()


def scrub(text: str) -> str:
    """Replace every value this process knows of in `text` with `[redacted]`."""
    return known_values.scrub(text)


def is_known(text: str) -> bool:
    """Whether `text` is exactly a value this process knows of (see `Registry.is_known`)."""
    return known_values.is_known(text)
