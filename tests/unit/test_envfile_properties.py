"""envfile properties: for any text, each format is exact for its readers or refuses.

Many values go into one file per example (VAR_0..VAR_n) so each subprocess is shared by
up to twenty values. The `envfile-ci` profile (150 examples, derandomised, no deadline)
applies to every test here, without touching the global hypothesis settings.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from secret_agent.envfile import HEADER, EnvEntry, RenderedEnv, render_env
from secret_agent.envread import EnvReadError, parse_env
from secret_agent.errors import UnrepresentableValueError
from secret_agent.model import EnvFormat
from secret_agent.redact import Secret
from tests.unit.test_envfile import (
    SHELLS,
    SYSTEMD,
    DockerStub,
    compose_go_read,
    docker_read,
    dotenv_read,
    running_docker_stub,
    source_with_shell,
)

settings.register_profile(
    "envfile-ci",
    max_examples=150,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
CI = settings.get_profile("envfile-ci")

# Any text a Coder secret can hold: UTF-8 (no surrogates), no NUL.
any_text = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"))
# The characters and fragments every env-file writer has got wrong at least once.
NASTY = [
    "'",
    '"',
    "\\",
    "$",
    "`",
    "\n",
    "\r",
    "\r\n",
    "#",
    " #",
    "=",
    " ",
    "\t",
    "{",
    "}",
    "${",
    "${X}",
    "$(",
    ":-",
    "'\\''",
    "\\'",
    '\\"',
    "\\\\",
    "!",
    "x",
    "EVIL=1",
    "\nEVIL=1",
    "export ",
    "é",
    "🔑",
    "\ufeff",
    "\x85",
]
nasty_text = st.lists(st.sampled_from(NASTY), max_size=12).map("".join)
values = st.one_of(any_text, nasty_text)
value_lists = st.lists(values, min_size=1, max_size=20)


def entries_for(vals: list[str]) -> list[EnvEntry]:
    return [EnvEntry(secret=f"s{i}", name=f"VAR_{i}", value=Secret(v)) for i, v in enumerate(vals)]


def expected_for(vals: list[str]) -> dict[str, str]:
    return {f"VAR_{i}": v for i, v in enumerate(vals)}


def write(tmp_path: Path, rendered: RenderedEnv) -> Path:
    path = tmp_path / "secrets.env"
    path.write_bytes(rendered.content.reveal().encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def docker() -> Iterator[DockerStub]:
    with running_docker_stub() as stub:
        yield stub


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("envfile-properties")


@pytest.mark.parametrize("shell_id", [s for s in ("bash", "dash") if s in SHELLS])
@CI
@given(vals=value_lists)
def test_posix_round_trips_through_the_shell_and_adds_no_variable(
    workdir: Path, shell_id: str, vals: list[str]
) -> None:
    """posix accepts every value without NUL, and `set -a; . FILE` gives exactly those."""
    rendered = render_env(entries_for(vals), EnvFormat.POSIX)
    assert rendered.refused == ()
    assert source_with_shell(SHELLS[shell_id], write(workdir, rendered)) == expected_for(vals)


@CI
@given(vals=value_lists)
def test_dotenv_is_exact_for_python_dotenv_and_compose_or_refuses(
    workdir: Path, vals: list[str]
) -> None:
    """Accepted values are read back exactly by both parsers; the rest are refused by name."""
    rendered = render_env(entries_for(vals), EnvFormat.DOTENV)
    for exc in rendered.refused:
        assert isinstance(exc, UnrepresentableValueError)
    refused = {exc.secret for exc in rendered.refused}
    accepted = {f"VAR_{i}": v for i, v in enumerate(vals) if f"s{i}" not in refused}
    assert set(rendered.variables) == set(accepted)
    # Only values holding `$` can be refused (`${...}`, or `$` with what single quotes lack).
    assert all("$" in vals[int(s[1:])] for s in refused)
    assert dotenv_read(write(workdir, rendered)) == accepted
    assert compose_go_read(rendered.content.reveal()) == accepted


@pytest.mark.skipif(SYSTEMD is None, reason="libsystemd-shared not installed")
@pytest.mark.parametrize("fmt", [EnvFormat.POSIX, EnvFormat.SYSTEMD], ids=str)
@CI
@given(vals=value_lists)
def test_systemd_reads_posix_and_systemd_files_exactly(
    workdir: Path, fmt: EnvFormat, vals: list[str]
) -> None:
    """systemd's load_env_file gives back every value from posix and systemd files."""
    assert SYSTEMD is not None
    rendered = render_env(entries_for(vals), fmt)
    assert rendered.refused == ()
    assert SYSTEMD.read(write(workdir, rendered)) == expected_for(vals)


@settings(CI, max_examples=40)
@given(vals=value_lists)
def test_docker_cli_reads_every_value_without_a_line_break(
    workdir: Path, docker: DockerStub, vals: list[str]
) -> None:
    """docker refuses exactly the values with CR or LF and sends the rest unchanged."""
    rendered = render_env(entries_for(vals), EnvFormat.DOCKER)
    refused = {exc.secret for exc in rendered.refused}
    assert refused == {f"s{i}" for i, v in enumerate(vals) if "\n" in v or "\r" in v}
    accepted = {f"VAR_{i}": v for i, v in enumerate(vals) if f"s{i}" not in refused}
    env = docker_read(docker, write(workdir, rendered))
    assert env == [f"{name}={accepted[name]}" for name in sorted(accepted)]


@CI
@given(vals=value_lists)
def test_json_round_trips_everything(vals: list[str]) -> None:
    rendered = render_env(entries_for(vals), EnvFormat.JSON)
    assert rendered.refused == ()
    assert json.loads(rendered.content.reveal()) == expected_for(vals)


@pytest.mark.parametrize("fmt", list(EnvFormat))
@CI
@given(vals=value_lists)
def test_our_reader_gives_back_exactly_what_each_format_wrote(
    fmt: EnvFormat, vals: list[str]
) -> None:
    """`envread.parse_env` is the exact inverse of `render_env` for every accepted value:
    what `recall` reads back from the env file is byte for byte what was delivered."""
    rendered = render_env(entries_for(vals), fmt)
    refused = {e.secret for e in rendered.refused}
    accepted = {f"VAR_{i}": v for i, v in enumerate(vals) if f"s{i}" not in refused}
    assert parse_env(rendered.content.reveal(), fmt) == accepted


@pytest.mark.parametrize("fmt", [EnvFormat.POSIX, EnvFormat.DOTENV, EnvFormat.SYSTEMD])
@pytest.mark.parametrize(
    "text",
    [
        "",  # no header
        "A='x'\n",  # no header either
        f"{HEADER}A='unterminated\n",
        f"{HEADER}A\n",
        f"{HEADER}A='x'B='y'\n",
    ],
)
def test_our_reader_refuses_text_we_did_not_write(fmt: EnvFormat, text: str) -> None:
    """A file that is not ours in that format is an EnvReadError, never a guess."""
    with pytest.raises(EnvReadError):
        parse_env(text, fmt)


@pytest.mark.parametrize("text", ["", "A=x\n", f"{HEADER}A\n", f"{HEADER}A=no newline"])
def test_our_docker_and_json_readers_refuse_text_we_did_not_write(text: str) -> None:
    with pytest.raises(EnvReadError):
        parse_env(text, EnvFormat.DOCKER)
    with pytest.raises(EnvReadError):
        parse_env(text or "[1]", EnvFormat.JSON)
