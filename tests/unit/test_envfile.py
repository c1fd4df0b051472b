"""envfile: names, refusals and every format read back by its real readers.

Readers used: bash, `bash --posix` and dash (`set -a; . FILE`, read back with
`env -0` in a clean environment); python-dotenv's `dotenv_values`; systemd's own
`load_env_file` from libsystemd-shared (through ctypes, as PID 1 reads
`EnvironmentFile=`); the docker CLI (`docker run --env-file`) talking to a stub daemon
that records the container's `Env`; `json.loads`. Docker compose is not installed, so
compose-go's dotenv parser is checked through a line-by-line port (`compose_go_read`).
A reader that is missing skips its tests rather than passing them.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import http.server
import json
import logging
import re
import shutil
import socketserver
import subprocess
import tempfile
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dotenv
import pytest

from secret_agent.envfile import (
    HEADER,
    RESERVED_NAMES,
    RESERVED_PREFIXES,
    SHELL_SPECIAL_NAMES,
    EnvEntry,
    RenderedEnv,
    check_value,
    render_env,
    validate_env_name,
)
from secret_agent.errors import (
    DuplicateTargetError,
    EnvNameRefusedError,
    UnrepresentableValueError,
)
from secret_agent.model import EnvFormat
from secret_agent.redact import Secret

# --- readers ---------------------------------------------------------------------------

ENV_BIN = shutil.which("env") or "/usr/bin/env"
SHELLS: dict[str, tuple[str, ...]] = {}
for _shell_id, _argv in (
    ("bash", ("bash",)),
    ("bash-posix", ("bash", "--posix")),
    ("dash", ("dash",)),
):
    _exe = shutil.which(_argv[0])
    if _exe:
        SHELLS[_shell_id] = (_exe, *_argv[1:])


def _env0(shell: Sequence[str], script: str, *args: str) -> dict[str, str]:
    """Run `script` in `shell` with an empty environment; parse its `env -0` output."""
    proc = subprocess.run(
        [*shell, "-c", script, "sh", *args], env={}, capture_output=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert proc.stderr == b"", proc.stderr.decode(errors="replace")
    pairs = proc.stdout.split(b"\0")
    assert pairs[-1] == b""
    result: dict[str, str] = {}
    for pair in pairs[:-1]:
        name, sep, value = pair.decode("utf-8").partition("=")
        assert sep, pair
        result[name] = value
    return result


def source_with_shell(shell: Sequence[str], path: Path) -> dict[str, str]:
    """The variables a clean `shell` gains from `set -a; . path`, exactly as exported.

    Compares `env -0` without and with sourcing: any variable that appears or changes
    is returned, and a variable that disappears fails the test.
    """
    before = _env0(shell, f"set -a; exec {ENV_BIN} -0")
    after = _env0(shell, f'set -a; . "$1"; exec {ENV_BIN} -0', str(path))
    assert set(before) <= set(after), "sourcing removed a variable"
    return {k: v for k, v in after.items() if before.get(k) != v}


def _find_libsystemd() -> str | None:
    found = sorted(
        glob.glob("/usr/lib/*/systemd/libsystemd-shared-*.so")
        + glob.glob("/usr/lib/systemd/libsystemd-shared-*.so")
        + glob.glob("/lib/*/systemd/libsystemd-shared-*.so")
    )
    return found[0] if found else None


class SystemdReader:
    """systemd's own env-file parser (src/basic/env-file.c) called through ctypes.

    PID 1 reads `EnvironmentFile=` with `load_env_file` and then drops assignments that
    `env_assignment_is_valid` rejects; this does the same.
    """

    def __init__(self, library: str) -> None:
        self.library = library
        lib = ctypes.CDLL(library)
        self._load = lib.load_env_file
        self._load.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.POINTER(ctypes.c_char_p)),
        ]
        self._load.restype = ctypes.c_int
        self._valid = lib.env_assignment_is_valid
        self._valid.argtypes = [ctypes.c_char_p]
        self._valid.restype = ctypes.c_bool

    def read(self, path: Path) -> dict[str, str]:
        strv = ctypes.POINTER(ctypes.c_char_p)()
        rc = self._load(None, str(path).encode(), ctypes.byref(strv))
        assert rc == 0, f"load_env_file failed: {rc}"
        result: dict[str, str] = {}
        i = 0
        while strv and strv[i] is not None:
            assignment = strv[i]
            assert assignment is not None
            assert self._valid(assignment), "systemd would drop an assignment"
            name, _, value = assignment.decode("utf-8").partition("=")
            result[name] = value
            i += 1
        return result


_LIBSYSTEMD = _find_libsystemd()
SYSTEMD = SystemdReader(_LIBSYSTEMD) if _LIBSYSTEMD else None
needs_systemd = pytest.mark.skipif(SYSTEMD is None, reason="libsystemd-shared not installed")


def dotenv_read(path: Path, caplog: pytest.LogCaptureFixture | None = None) -> dict[str, str]:
    """python-dotenv's reading (interpolation on, as `dotenv_values` defaults)."""
    values = dotenv.dotenv_values(path)
    if caplog is not None:
        assert not [r for r in caplog.records if r.name.startswith("dotenv")], caplog.text
    assert all(v is not None for v in values.values())
    return {k: v for k, v in values.items() if v is not None}


# compose-go v2.13 dotenv/parser.go, ported line by line for the shapes a dotenv reader
# can meet (there is no Go toolchain here). Interpolation is not ported: a `$` left in a
# double-quoted or unquoted value raises, since compose would substitute it or fail.
_COMPOSE_ESCAPE_RE = re.compile(r'\\(?:[abcfnrtv$"\\]|0[0-9]{0,3})')
_COMPOSE_SIMPLE = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    '"': '"',
    "\\": "\\",
}
_GO_IS_SPACE = " \t\n\v\f\r\x85\xa0"
_COMPOSE_IS_SPACE = " \t\v\f\r\x85\xa0"  # parser.go isSpace: no newline


def _compose_expand_escapes(text: str) -> str:
    def one(match: re.Match[str]) -> str:
        seq = match.group(0)
        if seq == "\\$":
            return "$$"
        if seq.startswith("\\0"):
            digits = seq[2:]
            if len(digits) == 3 and all(c in "01234567" for c in digits):
                code = int(digits, 8)
                return chr(code) if code <= 255 else seq
            return seq
        return _COMPOSE_SIMPLE.get(seq[1], seq)

    return _COMPOSE_ESCAPE_RE.sub(one, text)


def compose_go_read(text: str) -> dict[str, str]:
    """What compose-go's dotenv parser (v2.13) makes of `text`; raises where it would."""
    out: dict[str, str] = {}
    src = text.removeprefix("\ufeff")
    while True:
        src = src.lstrip(_GO_IS_SPACE)
        if not src:
            return out
        if src[0] == "#":
            pos = src.find("\n")
            if pos == -1:
                return out
            src = src[pos:]
            continue
        if re.match(r"export\s", src):
            src = src.removeprefix("export").lstrip(_COMPOSE_IS_SPACE)
        end = -1
        for index, char in enumerate(src):
            if char in _COMPOSE_IS_SPACE:
                continue
            if char in "=:\n":
                end = index
                break
            if not (char in "_.-[]" or char.isalpha() or char.isdigit()):
                raise ValueError(f"unexpected character {char!r} in variable name")
        if end == -1:
            raise ValueError("no '=' after a key")
        if src[end] == "\n":
            raise ValueError("inherited variable")
        key = src[:end].rstrip(_GO_IS_SPACE)
        if " " in key:
            raise ValueError("key cannot contain a space")
        rest = src[end + 1 :].lstrip(_COMPOSE_IS_SPACE)
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            chars: list[str] = []
            escaped = False
            for j in range(1, len(rest)):
                char = rest[j]
                if escaped:
                    escaped = False
                    if char != quote:
                        chars.append("\\")
                    chars.append(char)
                    continue
                if char == "\\":
                    escaped = True
                elif char == quote:
                    break
                else:
                    chars.append(char)
            else:
                raise ValueError("unterminated quoted value")
            value = "".join(chars)
            src = rest[j + 1 :]
            if quote == '"':
                value = _compose_expand_escapes(value)
                if "$" in value:
                    raise ValueError("compose would interpolate a double-quoted value")
        else:
            line, _, src = rest.partition("\n")
            value = line.split(" #", 1)[0].rstrip(_GO_IS_SPACE)
            if "$" in value:
                raise ValueError("compose would interpolate an unquoted value")
        out[key] = value


# The docker CLI parses --env-file itself and sends the result as the container's Env;
# this stub daemon answers the ping, records the create request and fails it.
@dataclass
class DockerStub:
    socket_path: str
    created: list[dict[str, object]] = field(default_factory=list, repr=False)


class _DockerHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    stub: DockerStub

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("Api-Version", "1.41")
        self.send_header("Ostype", "linux")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_HEAD(self) -> None:
        self._reply(200)

    def do_GET(self) -> None:
        self._reply(200, b"OK")

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if "/containers/create" in self.path:
            self.stub.created.append(json.loads(body))
        self._reply(500, b'{"message": "stub daemon: not creating containers"}')

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def running_docker_stub() -> Iterator[DockerStub]:
    """A stub docker daemon on a unix socket, for as long as the block runs."""
    if shutil.which("docker") is None:
        pytest.skip("docker CLI not installed")
    with tempfile.TemporaryDirectory(prefix="sa-docker-", dir="/tmp") as tmp:
        stub = DockerStub(socket_path=f"{tmp}/docker.sock")
        handler = type("Handler", (_DockerHandler,), {"stub": stub})
        server = socketserver.ThreadingUnixStreamServer(stub.socket_path, handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield stub
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def docker_stub() -> Iterator[DockerStub]:
    with running_docker_stub() as stub:
        yield stub


def docker_read(stub: DockerStub, path: Path) -> list[str]:
    """The Env list `docker run --env-file path` sends to the daemon, in order."""
    home = Path(stub.socket_path).parent
    before = len(stub.created)
    proc = subprocess.run(
        [
            *(shutil.which("docker") or "docker", "run", "--pull=never"),
            *("--env-file", str(path), "secret-agent-test-image", "true"),
        ],
        env={
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": str(home),
            "DOCKER_HOST": f"unix://{stub.socket_path}",
            "DOCKER_CONFIG": str(home / "docker-config"),
        },
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert len(stub.created) == before + 1, proc.stderr.decode(errors="replace")
    env = stub.created[-1]["Env"] or []  # null when the file sets nothing
    assert isinstance(env, list)
    return [str(item) for item in env]


# --- helpers ---------------------------------------------------------------------------


def entry(name: str, value: str, secret: str | None = None) -> EnvEntry:
    return EnvEntry(secret=secret or f"secret-{name.lower()}", name=name, value=Secret(value))


def write(tmp_path: Path, rendered: RenderedEnv, filename: str = "secrets.env") -> Path:
    path = tmp_path / filename
    path.write_bytes(rendered.content.reveal().encode("utf-8"))
    return path


# --- hostile values --------------------------------------------------------------------

# (case id, value). Names are derived from the id: V_<index>.
HOSTILE: list[tuple[str, str]] = [
    ("single-quote", "it's"),
    ("only-single-quote", "'"),
    ("double-quote", 'say "hi"'),
    ("both-quotes", "'\"'\"'"),
    ("dollar", "$"),
    ("dollar-home", "$HOME"),
    ("dollar-brace", "${X}"),
    ("dollar-brace-default", "${X:-default}"),
    ("dollar-dollar", "$$"),
    ("dollar-digit", "$1 costs $2"),
    ("backticks", "`id`"),
    ("command-substitution", "$(id)"),
    ("backslash", "a\\b"),
    ("two-backslashes", "a\\\\b"),
    ("trailing-backslash", "abc\\"),
    ("only-backslash", "\\"),
    ("backslash-single-quote", "\\'"),
    ("backslash-double-quote", '\\"'),
    ("backslash-n-literal", "\\n"),
    ("backslash-dollar", "\\$HOME"),
    ("newline", "a\nb"),
    ("trailing-newline", "line\n"),
    ("crlf", "a\r\nb"),
    ("cr", "a\rb"),
    ("injection-newline", "x\nEVIL=1"),
    ("injection-single-quote", "x'\nEVIL=1\n'"),
    ("injection-double-quote", 'x"\nEVIL=1\n"'),
    ("injection-quote-dance", "x'\\''\nEVIL=1\n'"),
    ("injection-export", "x\nexport EVIL=1"),
    ("equals", "a=b=c"),
    ("hash", "#"),
    ("space-hash-comment", "value #comment"),
    ("leading-hash", "#not a comment"),
    ("unicode", "héllo wörld ☃"),
    ("emoji", "🔑🦀"),
    ("leading-trailing-spaces", "  padded  "),
    ("leading-trailing-tabs", "\tx\t"),
    ("empty", ""),
    ("exclamation", "!!"),
    ("semicolon", "a; rm -rf /"),
    ("unicode-line-breaks", "a\u2028b\x85c\x0bd\x0ce"),
    ("control-chars", "\x01\x1b[0m\x7f"),
    ("json-like", '{"a": 1}'),
    ("pem", "-----BEGIN KEY-----\nMIIB+/=\n-----END KEY-----\n"),
    ("dollar-and-quote", "it's $HOME"),
    ("dollar-and-newline", "$x\ny"),
    ("dollar-and-cr", "$x\r"),
    ("dollar-two-backslashes", "$x\\\\"),
    ("dollar-trailing-backslash", "$x\\"),
    ("dollar-backslash-quote", "$x\\'"),
    ("bom", "\ufeffx"),
]
HOSTILE_IDS = [case_id for case_id, _ in HOSTILE]
HOSTILE_NAMES = {case_id: f"V_{i}" for i, (case_id, _) in enumerate(HOSTILE)}
HOSTILE_VALUES = dict(HOSTILE)

# What each format refuses among HOSTILE, and why.
DOTENV_REFUSED = {
    "dollar-brace",  # python-dotenv interpolates ${...} in every quoting
    "dollar-brace-default",
    "dollar-and-cr",  # $ needs single quotes; CR cannot be in them for python-dotenv
    "dollar-two-backslashes",
    "dollar-trailing-backslash",
    "dollar-backslash-quote",
}
DOCKER_REFUSED = {case_id for case_id, value in HOSTILE if "\n" in value or "\r" in value}


def hostile_entries(case_ids: Sequence[str] = HOSTILE_IDS) -> list[EnvEntry]:
    return [entry(HOSTILE_NAMES[c], HOSTILE_VALUES[c], secret=c) for c in case_ids]


def expected_values(refused: Collection[str] = ()) -> dict[str, str]:
    return {HOSTILE_NAMES[c]: v for c, v in HOSTILE if c not in refused}


def refused_secrets(rendered: RenderedEnv) -> set[str]:
    return {exc.secret for exc in rendered.refused}


# --- posix -----------------------------------------------------------------------------


@pytest.mark.parametrize("shell_id", sorted(SHELLS))
def test_posix_file_sourced_by_shell_gives_back_every_value_exactly(
    tmp_path: Path, shell_id: str
) -> None:
    """Every hostile value comes back byte for byte from `set -a; . FILE`, nothing else."""
    rendered = render_env(hostile_entries(), EnvFormat.POSIX)
    assert rendered.refused == ()
    gained = source_with_shell(SHELLS[shell_id], write(tmp_path, rendered))
    assert gained == expected_values()
    assert "EVIL" not in gained


@pytest.mark.parametrize(("case_id", "value"), HOSTILE, ids=HOSTILE_IDS)
def test_posix_single_value_round_trips_through_bash(
    tmp_path: Path, case_id: str, value: str
) -> None:
    """Each hostile value alone in a posix file is read back exactly by bash."""
    if "bash" not in SHELLS:
        pytest.skip("bash not installed")
    rendered = render_env([entry("X", value)], EnvFormat.POSIX)
    assert source_with_shell(SHELLS["bash"], write(tmp_path, rendered)) == {"X": value}


@pytest.mark.parametrize(
    ("value", "line"),
    [
        pytest.param("plain", "X='plain'", id="plain-single-quoted"),
        pytest.param("a\nb", "X='a\nb'", id="newline-literal"),
        pytest.param("$HOME `x` \\", "X='$HOME `x` \\'", id="no-quote-stays-single"),
        pytest.param("it's", 'X="it\'s"', id="quote-goes-double"),
        pytest.param("'$`\\\"", 'X="\'\\$\\`\\\\\\""', id="double-escapes-four"),
    ],
)
def test_posix_quoting_is_the_documented_form(value: str, line: str) -> None:
    """Single quotes unless the value has one; then double quotes escaping \\ \" $ `."""
    rendered = render_env([entry("X", value)], EnvFormat.POSIX)
    assert rendered.content.reveal() == HEADER + line + "\n"


@needs_systemd
@pytest.mark.parametrize("fmt", [EnvFormat.POSIX, EnvFormat.SYSTEMD], ids=str)
def test_systemd_load_env_file_reads_every_value_exactly(tmp_path: Path, fmt: EnvFormat) -> None:
    """systemd's own parser gives back every hostile value from posix and systemd files."""
    assert SYSTEMD is not None
    rendered = render_env(hostile_entries(), fmt)
    assert rendered.refused == ()
    assert SYSTEMD.read(write(tmp_path, rendered)) == expected_values()


@needs_systemd
def test_systemd_misreads_the_quote_idiom_posix_avoids(tmp_path: Path) -> None:
    """Why posix double-quotes values with `'`: systemd reads `'\\''` differently."""
    assert SYSTEMD is not None
    path = tmp_path / "idiom.env"
    path.write_text("A='it'\\''s'\nB='x'\\''\nEVIL=1\n'\n")
    read = SYSTEMD.read(path)
    assert read["A"] == "it''s'"
    assert "EVIL" in read


@pytest.mark.parametrize("name", sorted(SHELL_SPECIAL_NAMES))
def test_shell_special_names_really_do_not_survive_sourcing(tmp_path: Path, name: str) -> None:
    """Each name posix refuses as shell-special is misread by bash when sourced."""
    if "bash" not in SHELLS:
        pytest.skip("bash not installed")
    path = tmp_path / "special.env"
    path.write_text(f"{name}='canary-value-1'\n")
    bash = SHELLS["bash"]
    reads = []
    for tail in (f"{ENV_BIN} -0; :", f"exec {ENV_BIN} -0"):
        proc = subprocess.run(
            [*bash, "-c", f'set -a; . "$1"; {tail}', "sh", str(path)],
            env={},
            capture_output=True,
            timeout=30,
            check=False,
        )
        reads.append(f"{name}=canary-value-1".encode() in proc.stdout.split(b"\0"))
    assert not all(reads)


def test_posix_refuses_shell_special_names_and_other_formats_keep_them() -> None:
    """RANDOM is refused for posix (bash replaces it) but written for systemd."""
    entries = [entry("RANDOM", "v", secret="rnd"), entry("OK", "v")]
    posix = render_env(entries, EnvFormat.POSIX)
    assert posix.variables == ("OK",)
    assert [type(e) for e in posix.refused] == [EnvNameRefusedError]
    assert posix.refused[0].secret == "rnd"
    assert "special variable in bash" in str(posix.refused[0])
    assert render_env(entries, EnvFormat.SYSTEMD).variables == ("OK", "RANDOM")


# --- dotenv ----------------------------------------------------------------------------


def test_dotenv_refuses_exactly_the_values_no_quoting_serves(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """python-dotenv reads every accepted value exactly; the refused ones are named."""
    caplog.set_level(logging.DEBUG)
    rendered = render_env(hostile_entries(), EnvFormat.DOTENV)
    assert refused_secrets(rendered) == DOTENV_REFUSED
    assert all(isinstance(e, UnrepresentableValueError) for e in rendered.refused)
    assert dotenv_read(write(tmp_path, rendered), caplog) == expected_values(DOTENV_REFUSED)


def test_dotenv_file_is_read_the_same_by_compose_go(tmp_path: Path) -> None:
    """compose-go's parser (ported) reads the accepted values exactly as well."""
    rendered = render_env(hostile_entries(), EnvFormat.DOTENV)
    assert compose_go_read(rendered.content.reveal()) == expected_values(DOTENV_REFUSED)


@pytest.mark.parametrize(("case_id", "value"), HOSTILE, ids=HOSTILE_IDS)
def test_dotenv_single_value_is_exact_or_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, case_id: str, value: str
) -> None:
    """Alone in a file, each value is read back exactly by both parsers, or refused."""
    caplog.set_level(logging.DEBUG)
    rendered = render_env([entry("X", value, secret=case_id)], EnvFormat.DOTENV)
    if case_id in DOTENV_REFUSED:
        assert rendered.variables == ()
        assert refused_secrets(rendered) == {case_id}
        with pytest.raises(UnrepresentableValueError):
            check_value(Secret(value), EnvFormat.DOTENV, secret=case_id, name="X")
        return
    assert rendered.refused == ()
    check_value(Secret(value), EnvFormat.DOTENV, secret=case_id, name="X")
    assert dotenv_read(write(tmp_path, rendered), caplog) == {"X": value}
    assert compose_go_read(rendered.content.reveal()) == {"X": value}


@pytest.mark.parametrize(
    ("value", "line"),
    [
        pytest.param("plain $x", "X='plain $x'", id="single-quoted"),
        pytest.param("it's", 'X="it\'s"', id="quote-goes-double"),
        pytest.param("a\nb\rc", 'X="a\\nb\\rc"', id="newlines-escaped-in-double"),
        pytest.param('\\\\"', 'X="\\\\\\\\\\""', id="backslashes-double"),
        pytest.param("it's $x\n", "X='it\\'s $x\n'", id="dollar-and-quote-single-escaped"),
    ],
)
def test_dotenv_quoting_is_the_documented_form(value: str, line: str) -> None:
    """The first of single, double, single-with-\\' that serves both parsers is used."""
    rendered = render_env([entry("X", value)], EnvFormat.DOTENV)
    assert rendered.content.reveal() == HEADER + line + "\n"


# --- docker ----------------------------------------------------------------------------


def test_docker_refuses_newlines_and_writes_the_rest_raw() -> None:
    """Values with newline or CR are refused; every other one is written as NAME=value."""
    rendered = render_env(hostile_entries(), EnvFormat.DOCKER)
    assert refused_secrets(rendered) == DOCKER_REFUSED
    assert all(isinstance(e, UnrepresentableValueError) for e in rendered.refused)
    expected = expected_values(DOCKER_REFUSED)
    lines = [f"{name}={expected[name]}" for name in sorted(expected)]
    assert rendered.content.reveal() == HEADER + "".join(line + "\n" for line in lines)


def test_docker_cli_reads_every_accepted_value_exactly(
    tmp_path: Path, docker_stub: DockerStub
) -> None:
    """`docker run --env-file` sends exactly the accepted values, and nothing else."""
    rendered = render_env(hostile_entries(), EnvFormat.DOCKER)
    expected = expected_values(DOCKER_REFUSED)
    env = docker_read(docker_stub, write(tmp_path, rendered))
    assert env == [f"{name}={expected[name]}" for name in sorted(expected)]


def test_docker_refuses_a_line_longer_than_its_scanner_takes() -> None:
    """A line of 64 KiB would fail docker's whole file, so that variable is refused."""
    ok = "x" * (64 * 1024 - 1 - len("X="))
    assert render_env([entry("X", ok)], EnvFormat.DOCKER).refused == ()
    too_long = render_env([entry("X", ok + "x")], EnvFormat.DOCKER)
    assert [type(e) for e in too_long.refused] == [UnrepresentableValueError]


def test_docker_cli_reads_the_longest_line_allowed(tmp_path: Path, docker_stub: DockerStub) -> None:
    """The longest accepted docker line is still read by the docker CLI."""
    value = "y" * (64 * 1024 - 1 - len("X="))
    rendered = render_env([entry("X", value)], EnvFormat.DOCKER)
    assert docker_read(docker_stub, write(tmp_path, rendered)) == [f"X={value}"]


# --- json ------------------------------------------------------------------------------


def test_json_round_trips_every_value() -> None:
    """json.loads gives back every hostile value; keys sorted, one line, newline-ended."""
    rendered = render_env(hostile_entries(), EnvFormat.JSON)
    text = rendered.content.reveal()
    assert rendered.refused == ()
    assert json.loads(text) == expected_values()
    assert text.endswith("}\n")
    assert text.count("\n") == 1
    assert list(json.loads(text)) == sorted(expected_values())
    assert "☃" in text  # ensure_ascii=False


def test_json_of_nothing_is_an_empty_object() -> None:
    assert render_env([], EnvFormat.JSON).content.reveal() == "{}\n"


# --- values every format refuses -------------------------------------------------------

ALL_FORMATS = list(EnvFormat)


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
@pytest.mark.parametrize(
    "value",
    [
        pytest.param("canary\x00secret", id="nul-inside"),
        pytest.param("\x00", id="nul-alone"),
        pytest.param("canary-\ud800-secret", id="lone-surrogate"),
    ],
)
def test_nul_and_non_utf8_are_refused_in_every_format(fmt: EnvFormat, value: str) -> None:
    """NUL (and text that is not UTF-8) is refused for that variable only."""
    rendered = render_env([entry("BAD", value, secret="bad"), entry("GOOD", "fine")], fmt)
    assert rendered.variables == ("GOOD",)
    assert [type(e) for e in rendered.refused] == [UnrepresentableValueError]
    assert rendered.refused[0].secret == "bad"
    assert "BAD" in str(rendered.refused[0])
    with pytest.raises(UnrepresentableValueError):
        check_value(Secret(value), fmt, secret="bad", name="BAD")


@pytest.mark.parametrize("fmt", [f for f in ALL_FORMATS if f is not EnvFormat.JSON], ids=str)
def test_values_too_long_for_an_environment_are_refused(fmt: EnvFormat) -> None:
    """NAME=value over 128 KiB cannot be passed to any process, so it is refused."""
    rendered = render_env([entry("BIG", "z" * (128 * 1024))], fmt)
    assert rendered.variables == ()
    assert [type(e) for e in rendered.refused] == [UnrepresentableValueError]
    assert "MAX_ARG_STRLEN" in str(rendered.refused[0])


def test_json_carries_long_values() -> None:
    assert render_env([entry("BIG", "z" * (128 * 1024))], EnvFormat.JSON).refused == ()


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_error_messages_never_contain_the_value(fmt: EnvFormat) -> None:
    """Every refusal names the secret and variable, never the value."""
    canary = "CANARY-7f3a-"
    entries = [
        entry(HOSTILE_NAMES[c], canary + HOSTILE_VALUES[c], secret=c) for c in HOSTILE_IDS
    ] + [
        entry("NUL", canary + "\x00", secret="nul"),
        entry("LD_PRELOAD", canary, secret="reserved"),
        entry("NUL", canary + "dup", secret="dup"),
    ]
    rendered = render_env(entries, fmt)
    assert rendered.refused
    for exc in rendered.refused:
        for text in (str(exc), repr(exc), exc.reason):
            assert canary not in text
    assert canary not in repr(rendered)
    assert canary not in str(rendered.content)


# --- names -----------------------------------------------------------------------------

NAME_ROWS: list[tuple[str, str, Sequence[str], str | None]] = [
    # (id, name, allow_reserved, fragment of the refusal or None when accepted)
    ("leading-digit", "1ABC", (), "must match"),
    ("dash", "A-B", (), "must match"),
    ("space", "A B", (), "must match"),
    ("empty", "", (), "empty"),
    ("newline-suffix", "A\n", (), "must match"),
    ("dot", "A.B", (), "must match"),
    ("non-ascii-letter", "ÄBC", (), "must match"),
    ("non-ascii-digit", "A\u0661", (), "must match"),
    ("equals", "A=B", (), "must match"),
    ("too-long", "A" * 257, (), "256"),
    ("longest", "A" * 256, (), None),
    ("path-lower", "path", (), "reserved"),
    ("path", "PATH", (), "reserved"),
    ("home-mixed-case", "Home", (), "reserved"),
    ("coder", "CODER", (), "reserved"),
    ("coder-lower", "coder", (), "reserved"),
    ("coder-prefix", "CODER_FOO", (), "reserved"),
    ("coder-prefix-lower", "coder_agent_token", (), "reserved"),
    ("ld-preload", "LD_PRELOAD", (), "reserved"),
    ("dyld", "DYLD_INSERT_LIBRARIES", (), "reserved"),
    ("lc", "LC_ALL", (), "reserved"),
    ("git", "GIT_X", (), "reserved"),
    ("git-allowed-by-prefix", "GIT_X", ("GIT_*",), None),
    ("git-allowed-lowercase-pattern", "GIT_X", ("git_*",), None),
    ("git-allowed-exact", "GIT_AUTHOR_NAME", ("GIT_AUTHOR_NAME",), None),
    ("git-exact-not-other", "GIT_X", ("GIT_AUTHOR_NAME",), "reserved"),
    ("prefix-pattern-not-other-prefix", "LD_PRELOAD", ("GIT_*",), "reserved"),
    ("path-allowed", "path", ("PATH",), None),
    ("not-reserved-coderx", "CODERX", (), None),
    ("not-reserved-github", "GITHUB_TOKEN", (), None),
    ("underscore", "_", (), None),
    ("lower", "api_key", (), None),
]


@pytest.mark.parametrize(
    ("name", "allow", "fragment"),
    [pytest.param(n, a, f, id=i) for i, n, a, f in NAME_ROWS],
)
def test_env_name_rules(name: str, allow: Sequence[str], fragment: str | None) -> None:
    """Invalid and reserved names are refused with the rule named; the rest pass."""
    if fragment is None:
        validate_env_name(name, secret="s", allow_reserved=allow)
        rendered = render_env([entry(name, "v", secret="s")], EnvFormat.JSON, allow_reserved=allow)
        assert rendered.variables == (name,)
        return
    with pytest.raises(EnvNameRefusedError) as info:
        validate_env_name(name, secret="the-secret", allow_reserved=allow)
    assert info.value.secret == "the-secret"
    assert "the-secret" in str(info.value)
    assert fragment in str(info.value)
    rendered = render_env(
        [entry(name, "v", secret="the-secret"), entry("FINE", "v")],
        EnvFormat.POSIX,
        allow_reserved=allow,
    )
    assert rendered.variables == ("FINE",)
    assert [type(e) for e in rendered.refused] == [EnvNameRefusedError]


def test_reserved_lists_match_coder() -> None:
    """The reserved names and prefixes are Coder's list, upper-case."""
    assert len(RESERVED_NAMES) == 32
    assert {"PATH", "HOME", "CODER", "XDG_STATE_HOME", "BASH_ENV", "IFS"} <= RESERVED_NAMES
    assert set(RESERVED_PREFIXES) == {"CODER_", "GIT_", "LC_", "LD_", "DYLD_"}
    assert all(n == n.upper() for n in RESERVED_NAMES)


def test_every_reserved_name_is_refused_in_any_case() -> None:
    for name in RESERVED_NAMES:
        for variant in (name, name.lower(), name.title()):
            with pytest.raises(EnvNameRefusedError):
                validate_env_name(variant, secret="s")


def test_allow_reserved_must_not_be_a_bare_string() -> None:
    """A bare string would be iterated as characters ('*' would allow everything)."""
    with pytest.raises(TypeError):
        validate_env_name("GIT_X", secret="s", allow_reserved="GIT_*")
    with pytest.raises(TypeError):
        render_env([], EnvFormat.POSIX, allow_reserved="GIT_*")


# --- duplicates, order, determinism ----------------------------------------------------


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_duplicate_name_keeps_the_first_and_refuses_the_second(fmt: EnvFormat) -> None:
    """Two secrets claiming one variable: the first in input order wins."""
    rendered = render_env(
        [entry("TOKEN", "first", "alpha"), entry("OTHER", "x"), entry("TOKEN", "second", "beta")],
        fmt,
    )
    assert rendered.variables == ("OTHER", "TOKEN")
    assert [type(e) for e in rendered.refused] == [DuplicateTargetError]
    exc = rendered.refused[0]
    assert exc.secret == "beta"
    assert "alpha" in str(exc)
    assert "TOKEN" in str(exc)
    assert "first" in rendered.content.reveal()
    assert "second" not in rendered.content.reveal()


def test_duplicate_of_a_refused_value_is_still_a_duplicate() -> None:
    """The first entry with a valid name claims it even if its value is refused."""
    rendered = render_env(
        [entry("TOKEN", "a\nb", "alpha"), entry("TOKEN", "fine", "beta")], EnvFormat.DOCKER
    )
    assert rendered.variables == ()
    assert [(type(e), e.secret) for e in rendered.refused] == [
        (UnrepresentableValueError, "alpha"),
        (DuplicateTargetError, "beta"),
    ]


def test_an_invalid_name_does_not_claim_it() -> None:
    """Case matters for variables: `Path` is reserved, `path_x` and `PATH_X` differ."""
    rendered = render_env(
        [entry("PATH_X", "1", "a"), entry("path_x", "2", "b"), entry("Path", "3", "c")],
        EnvFormat.POSIX,
    )
    assert rendered.variables == ("PATH_X", "path_x")
    assert [(type(e), e.secret) for e in rendered.refused] == [(EnvNameRefusedError, "c")]


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=str)
def test_output_is_sorted_and_independent_of_input_order(fmt: EnvFormat) -> None:
    """Same secrets in any order give byte-identical files, variables sorted by name."""
    entries = [entry("ZED", "z"), entry("ALPHA", "a"), entry("MID", "it's"), entry("_U", "")]
    first = render_env(entries, fmt)
    second = render_env(list(reversed(entries)), fmt)
    assert first.content.reveal().encode() == second.content.reveal().encode()
    assert first.variables == ("ALPHA", "MID", "ZED", "_U")
    assert first.content == second.content


@pytest.mark.parametrize("fmt", [f for f in ALL_FORMATS if f is not EnvFormat.JSON], ids=str)
def test_text_formats_start_with_the_header_and_end_with_a_newline(fmt: EnvFormat) -> None:
    assert render_env([], fmt).content.reveal() == HEADER
    text = render_env([entry("A", "1")], fmt).content.reveal()
    assert text.startswith(HEADER)
    assert text.endswith("\n")


def test_refused_entries_never_stop_the_others(tmp_path: Path) -> None:
    """Bad names, duplicates and bad values are reported; all good entries are written."""
    if "bash" not in SHELLS:
        pytest.skip("bash not installed")
    entries = [
        entry("GOOD_1", "one"),
        entry("1BAD", "x", "bad-name"),
        entry("PATH", "/evil", "reserved"),
        entry("GOOD_2", "two\nlines"),
        entry("GOOD_1", "again", "duplicate"),
        entry("NUL", "a\x00b", "nul"),
        entry("UID", "x", "readonly"),
        entry("GOOD_3", "it's $HOME"),
    ]
    rendered = render_env(entries, EnvFormat.POSIX)
    assert [(type(e).__name__, e.secret) for e in rendered.refused] == [
        ("EnvNameRefusedError", "bad-name"),
        ("EnvNameRefusedError", "reserved"),
        ("DuplicateTargetError", "duplicate"),
        ("UnrepresentableValueError", "nul"),
        ("EnvNameRefusedError", "readonly"),
    ]
    assert rendered.variables == ("GOOD_1", "GOOD_2", "GOOD_3")
    gained = source_with_shell(SHELLS["bash"], write(tmp_path, rendered))
    assert gained == {"GOOD_1": "one", "GOOD_2": "two\nlines", "GOOD_3": "it's $HOME"}


def test_rendered_env_shows_no_values() -> None:
    """The rendered file is a Secret: repr and str of the result are redacted."""
    rendered = render_env([entry("A", "canary-value-xyz")], EnvFormat.JSON)
    assert "canary-value-xyz" not in repr(rendered)
    assert "canary-value-xyz" not in f"{rendered.content}"


def test_check_value_accepts_what_render_writes() -> None:
    """check_value and render_env agree for every hostile value and format."""
    for fmt in ALL_FORMATS:
        for case_id, value in HOSTILE:
            rendered = render_env([entry("X", value, secret=case_id)], fmt)
            try:
                check_value(Secret(value), fmt, secret=case_id, name="X")
            except UnrepresentableValueError:
                assert rendered.variables == ()
            else:
                assert rendered.variables == ("X",)


def test_entries_mapping_helpers_are_consistent() -> None:
    """Sanity for the tables: every refused id is a real row."""
    assert set(DOTENV_REFUSED) <= set(HOSTILE_IDS)
    assert len(set(HOSTILE_IDS)) == len(HOSTILE_IDS)
    assert isinstance(expected_values(), Mapping)
