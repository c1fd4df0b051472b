"""The exit codes have one home (`exit_codes`), and README's table says what it says."""

from __future__ import annotations

import re
from pathlib import Path

from secret_agent import exit_codes

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> list[tuple[int, str]]:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Exit codes", 1)[1].split("\n#", 1)[0]
    return [
        (int(code), meaning.strip())
        for code, meaning in re.findall(r"^\| (\d+) \| (.*) \|$", section, flags=re.MULTILINE)
    ]


def test_readme_table_is_the_table() -> None:
    assert readme_table() == [(code, meaning) for code, _, meaning in exit_codes.TABLE]


def test_every_named_code_is_explained() -> None:
    named = {
        value
        for name, value in vars(exit_codes).items()
        if name.isupper() and isinstance(value, int)
    }
    assert named == {code for code, _, _ in exit_codes.TABLE}


def test_a_child_killed_by_a_signal_is_128_plus_n() -> None:
    assert exit_codes.of_child(-15) == 143
    assert exit_codes.of_child(3) == 3


def test_launch_failures_follow_the_shell() -> None:
    assert exit_codes.launch_failure(FileNotFoundError()) == 127
    assert exit_codes.launch_failure(PermissionError()) == 126


def test_help_lists_every_code() -> None:
    from secret_agent.arguments import build_parser

    epilog = build_parser().epilog or ""
    for code, brief, _ in exit_codes.TABLE:
        assert f"{code} {brief}" in epilog
