"""The registry scrubs whole values, their repr forms and long lines, and nothing shorter."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secret_agent import redact
from secret_agent.redact import (
    MIN_FRAGMENT_LENGTH,
    MIN_SCRUB_LENGTH,
    REDACTED,
    SEARCH_LIMIT,
    Registry,
)

PEM = "[default]\n" + "\n".join(f"canary-redact-{i:04}-{'x' * 40}" for i in range(8))


def many_line_value(lines: int) -> str:
    """A value with more long lines than the registry searches one by one."""
    return "\n".join(f"line {i:05} of a long canary-redact value" for i in range(lines))


@pytest.fixture(params=["searched", "indexed"])
def registry(request: pytest.FixtureRequest) -> Registry:
    """A registry in each of its two modes: few patterns, or more than `SEARCH_LIMIT`."""
    reg = Registry()
    if request.param == "indexed":
        reg.add([many_line_value(SEARCH_LIMIT + 10)])
        reg.add([f"short{i:03}" for i in range(SEARCH_LIMIT + 10)])
    return reg


def test_whole_value_and_its_repr_form_are_replaced(registry: Registry) -> None:
    """Any occurrence of a value, or of its repr-escaped form, becomes `[redacted]`."""
    value = "pa'ss\"word\twith-canary-redact\\n"
    registry.add([value])
    assert registry.scrub(f"a {value} b") == f"a {REDACTED} b"
    assert registry.scrub(f"error: {value!r}") == f"error: '{REDACTED}'"
    assert registry.scrub(repr([value, value])) == f"['{REDACTED}', '{REDACTED}']"


def test_short_values_are_found_anywhere(registry: Registry) -> None:
    """A value of `MIN_SCRUB_LENGTH` characters or more is replaced inside words too."""
    registry.add(["hunter2", "abc"])
    assert registry.scrub("xhunter2y abc") == f"x{REDACTED}y abc"


def test_long_lines_are_scrubbed_alone_short_lines_are_not(registry: Registry) -> None:
    """A multi-line value's lines of `MIN_FRAGMENT_LENGTH` or more are secrets on their own."""
    registry.add([PEM])
    line = PEM.splitlines()[3]
    assert len(line) >= MIN_FRAGMENT_LENGTH > len("event")
    assert registry.scrub(line) == REDACTED
    assert registry.scrub(f"bad line {line!r} here") == f"bad line '{REDACTED}' here"
    assert registry.scrub(PEM) == REDACTED
    assert registry.scrub("[default] event level") == "[default] event level"


def test_every_line_sharing_a_prefix_is_found(registry: Registry) -> None:
    """Lines that begin alike (a config file's `export X_...=`) are each scrubbed."""
    value = "\n".join(f"export SECRET_KEY_{i}=canary-redact-{i * 7919}" for i in range(40))
    registry.add([value])
    for line in value.splitlines():
        assert registry.scrub(f"[{line}]") == f"[{REDACTED}]"


def test_value_containing_another_is_replaced_whole(registry: Registry) -> None:
    """Longest first: a value that holds another known value leaves no tail behind."""
    inner = "inner-canary-redact-0001"
    registry.add([inner, f"{inner}-and-more-of-the-outer-one"])
    assert registry.scrub(f"<{inner}-and-more-of-the-outer-one>") == f"<{REDACTED}>"
    assert registry.scrub(f"<{inner}>") == f"<{REDACTED}>"


def test_text_without_values_is_returned_unchanged(registry: Registry) -> None:
    """Scrubbing changes nothing where no value is."""
    registry.add([PEM])
    text = "sync_done secrets=3 path=~/.ssh/id_ed25519 " * 50
    assert registry.scrub(text) == text


def test_is_known_answers_for_values_their_forms_and_long_lines(registry: Registry) -> None:
    """`is_known` is exact: a value, its repr form or a long line; never a part of one."""
    registry.add([PEM])
    assert registry.is_known(PEM)
    assert registry.is_known(repr(PEM)[1:-1])
    assert registry.is_known(PEM.splitlines()[2])
    assert not registry.is_known(PEM[:30])
    assert not registry.is_known("[default]")


def test_clear_forgets_every_value() -> None:
    """After `clear`, nothing is scrubbed."""
    reg = Registry()
    reg.add([PEM, many_line_value(SEARCH_LIMIT + 1)])
    reg.clear()
    assert reg.scrub(PEM) == PEM


def count_calls(monkeypatch: pytest.MonkeyPatch, name: str, real: Callable[..., Any]) -> list[int]:
    """Count the calls `redact` makes to `name` (a builtin it uses, or one of its own)."""
    calls = [0]

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(redact, name, counting, raising=False)
    return calls


def test_scrub_computes_no_repr_of_the_values(monkeypatch: pytest.MonkeyPatch) -> None:
    """Escaped forms are computed once, when a value is added, never per scrubbed text."""
    calls = count_calls(monkeypatch, "repr", builtins.repr)
    reg = Registry()
    reg.add([PEM, "tab\tand\nnew line canary-redact-77", "x" * (1 << 20)])
    assert calls[0] > 0
    calls[0] = 0
    for _ in range(100):
        reg.scrub("an ordinary log line without a value in it")
    assert calls[0] == 0


def test_adding_known_values_again_does_no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each pass registers its values again: a value already known is not taken apart again."""
    calls = count_calls(monkeypatch, "_patterns_of", redact._patterns_of)
    reg = Registry()
    values = [PEM, many_line_value(SEARCH_LIMIT + 10)]
    reg.add(values)
    reg.add(list(values))
    reg.add(v[:] for v in values)
    assert calls[0] == 2


@settings(max_examples=300, derandomize=True, deadline=None)
@given(
    lines=st.lists(
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))
        # Printable ASCII, quotes and backslash included: the fast path of `add`.
        | st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=12),
        min_size=1,
        max_size=4,
    ),
    breaks=st.sampled_from(["\n", "\r\n"]),
)
def test_any_value_and_its_long_lines_leave_their_repr(lines: list[str], breaks: str) -> None:
    """For any text, the repr of the value and of each long line prints as `[redacted]`."""
    value = breaks.join(lines)
    reg = Registry()
    reg.add([value])
    if len(value) >= MIN_SCRUB_LENGTH:
        assert reg.scrub(repr(value))[1:-1] == REDACTED
        assert reg.scrub(value) == REDACTED
    for line in value.splitlines() if len(value.splitlines()) > 1 else ():
        if len(line) >= MIN_FRAGMENT_LENGTH:
            assert reg.scrub(repr(line))[1:-1] == REDACTED
            assert reg.scrub(line) == REDACTED
