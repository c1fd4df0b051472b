"""Crash consistency (issue 8, "Deliver"): `run --once` SIGKILLed at random points of
passes that rotate several multi-MiB files and the env file, 50 times in a row.

Every pass rotates every secret to a new generation, whose value differs from every
other generation's in every chunk, so a prefix, a mix or a stale generation is seen.
After each kill: each target holds exactly what it held before that pass or the new
value; the env file parses to exactly the old or the new set of variables; the ledger
is valid JSON and never ahead of the disk; a temp file left by an earlier kill is gone
from every directory this pass wrote in; no value is in `state_dir`. The next pass
then meets a half-applied pass and a rotation, as after a real crash. Every
`FULL_EVERY` kills, and after the last, a full pass exits 0 with everything in place,
no temp file anywhere under the home and the ledger in step with the disk, and the
pass after it makes one list request and writes nothing.

The kill points are real: the clock of a kill starts when the pass's last get reaches
the dev server (its fetch is over; a handshake, polled), and its delay is drawn by a
seeded `random.Random` from the time an unkilled rotating pass, measured once at the
start, took from there to its ledger's write (the ledger's mtime), plus a fifth. The
interpreter's start-up and the fetch, 90% of a pass, are left out: a kill there
touches nothing. Every assertion message names the seed, the kill and its delay; the
delay reproduces a landing point only as closely as the machine's timing allows.
Coder caps a value at 24 KiB; the dev server here has its caps lifted.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from secret_agent.devserver import Limits, Store, ThreadedDevServer, validation
from secret_agent.envread import EnvReadError, parse_env
from secret_agent.model import EnvFormat
from tests.conftest import DEV_USER, DevServer, Workspace

SEED = 20261208
KILLS = 50
FULL_EVERY = 10  # a full and a steady pass after every 10th kill: ~60 s on 2 loaded cores
CANARY = "canary-crash-5e1d07"
MIB = 1024 * 1024
# (name, file_path, env_name, smallest and largest value in bytes)
SECRETS = (
    ("big-0", "~/big/zero.bin", "", MIB, 2 * MIB),
    ("big-1", "~/big/one.bin", "", MIB, 2 * MIB),
    ("big-2", "~/.config/app/key.pem", "", MIB, 2 * MIB),
    ("big-3", "~/deep/a/b/c/blob", "", MIB, 2 * MIB),
    # Variables stay under Linux's MAX_ARG_STRLEN (128 KiB), which the env file enforces.
    ("both", "~/both/token", "CRASH_BOTH", 80_000, 120_000),
    ("env", "", "CRASH_ENV", 80_000, 120_000),
)
ENV_NAMES = [env for _name, _path, env, _lo, _hi in SECRETS if env]
LIST = ("GET", "/api/v2/users/me/secrets")
FETCHES = 1 + len(SECRETS)  # a rotating pass: the list, then a get for each secret
TEMP_GLOB = ".*.secret-agent.*.tmp"


@pytest.fixture
def dev_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[DevServer]:
    """The dev server (inline values) with Coder's size caps lifted."""
    monkeypatch.setattr(validation, "MAX_VALUE_BYTES", 4 * MIB)
    store = Store(limits=Limits(max_total_value_bytes=1 << 30, max_env_value_bytes=1 << 30))
    store.add_user(DEV_USER)
    token = store.issue_token(DEV_USER)
    with ThreadedDevServer(store, inline_values=True) as server:
        yield DevServer(url=server.url, token=token, store=store, server=server)


@dataclass(frozen=True)
class Generation:
    """One value per secret: the chunk `CANARY:name:gNNN:` repeated to a random size."""

    number: int
    values: dict[str, str]

    def file_bytes(self, home: Path) -> dict[Path, bytes]:
        return {
            home / path.removeprefix("~/"): self.values[name].encode()
            for name, path, _env, _lo, _hi in SECRETS
            if path
        }

    def env(self) -> dict[str, str]:
        return {env: self.values[name] for name, _path, env, _lo, _hi in SECRETS if env}


def generation(number: int, rng: random.Random) -> Generation:
    values = {}
    for name, _path, _env, lo, hi in SECRETS:
        chunk = f"{CANARY}:{name}:g{number:03d}:"
        size = rng.randint(lo, hi)
        values[name] = (chunk * (size // len(chunk) + 1))[:size]
    return Generation(number=number, values=values)


def files_under(root: Path) -> set[Path]:
    return {Path(d, n) for d, _dirs, names in os.walk(root) for n in names}


def temps_under(root: Path) -> set[Path]:
    return {p for p in files_under(root) if fnmatch.fnmatchcase(p.name, TEMP_GLOB)}


def wait_until(predicate: Callable[[], bool], timeout: float) -> None:
    """Poll `predicate` every 0.5 ms (a pass writes within ~50 ms), up to `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s")
        time.sleep(0.0005)


def signature(path: Path) -> tuple[int, int, int]:
    st = os.lstat(path)
    return st.st_ino, st.st_mtime_ns, st.st_size


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def which(data: bytes, old: bytes, new: bytes) -> str:
    """Whether `data` is the `old` or the `new` bytes, or else what it is (a message)."""
    if data == old:
        return "old"
    if data == new:
        return "new"
    prefix = next((n for n, v in (("old", old), ("new", new)) if v.startswith(data)), "")
    head = data[: len(CANARY) + 24].decode(errors="replace").removeprefix(CANARY)
    of = f", a prefix of the {prefix} value" if prefix else ""
    return f"TORN ({len(data)} bytes starting {head!r}{of})"


def bash_env(env_file: Path, names: list[str]) -> dict[str, str]:
    script = 'set -a; . "$1"; shift; for n in "$@"; do printf "%s\\0" "${!n-__UNSET__}"; done'
    out = subprocess.run(
        ["/usr/bin/env", "-i", "bash", "-c", script, "bash", str(env_file), *names],
        capture_output=True,
        check=True,
    ).stdout.decode()
    return dict(zip(names, out.split("\0")[:-1], strict=True))


class CrashRun:
    """The workspace under test, what the test knows is on disk, and what kills did."""

    def __init__(self, ws: Workspace, server: DevServer, logs: Path) -> None:
        self.ws = ws
        self.server = server
        self.logs = logs
        self.rng = random.Random(SEED)
        self.number = 0
        self.gen = generation(0, self.rng)
        self.ledger = ws.state_dir / "ledger.json"
        # What the disk holds now, as last checked.
        self.disk: dict[Path, bytes] = {}
        self.env: dict[str, str] = {}
        self.ledger_bytes = b""
        self.temps: set[Path] = set()
        self.outcomes: Counter[str] = Counter()
        self.started = 0.0  # when the last pass started (wall clock, as mtimes are)

    def create(self) -> None:
        for name, path, env, _lo, _hi in SECRETS:
            self.server.store.create_secret(
                DEV_USER, name=name, value=self.gen.values[name], file_path=path, env_name=env
            )

    def rotate(self) -> Generation:
        self.number += 1
        self.gen = generation(self.number, self.rng)
        for name, value in self.gen.values.items():
            self.server.store.update_secret(DEV_USER, name, value=value)
        return self.gen

    def full_pass(self, why: str) -> None:
        """`run --once` to its end: exit 0, no value in its output, everything in place."""
        self.started = time.time()
        result = self.ws.run("run", "--once", timeout=120)
        assert result.returncode == 0, f"{why}: rc {result.returncode}: {result.stderr[-3000:]}"
        assert CANARY not in result.stdout + result.stderr, f"{why}: a value in the output"
        self.check_in_place(why)

    @contextlib.contextmanager
    def fetched_pass(self, log: Path) -> Iterator[tuple[subprocess.Popen[bytes], float]]:
        """`run --once` started, and the wall-clock time its last get reached the server
        (its fetch is over, its writes are next); the process is gone after the block."""
        self.server.request_log.clear()
        self.started = time.time()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "secret_agent", "run", "--once"],
                env=self.ws.env,
                cwd=self.ws.home,
                stdout=out,
                stderr=out,
            )

            def fetched() -> bool:
                return len(self.server.request_log) >= FETCHES or proc.poll() is not None

            try:
                wait_until(fetched, timeout=60)
                yield proc, time.time()
            finally:
                if proc.poll() is None:
                    proc.kill()
                proc.wait(timeout=30)

    def measured_pass(self) -> float:
        """An unkilled rotating pass: the seconds from its fetch's end to its ledger's
        write (its mtime), after checking it left everything in place."""
        log = self.logs / "measured.log"
        with self.fetched_pass(log) as (proc, fetched):
            rc = proc.wait(timeout=120)
        text = log.read_text(errors="replace")
        assert rc == 0, f"measured pass: rc {rc}: {text[-3000:]}"
        assert CANARY not in text, "measured pass: a value in the output"
        self.check_in_place("measured pass")
        return os.lstat(self.ledger).st_mtime - fetched

    def killed_pass(self, delay: float, why: str) -> None:
        """`run --once` SIGKILLed `delay` s after its fetch ended (if still running)."""
        log = self.logs / f"{self.number:03d}.log"
        with self.fetched_pass(log) as (proc, _fetched):
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
            rc = proc.wait(timeout=30)
        text = log.read_text(errors="replace")
        assert rc in (-signal.SIGKILL, 0), f"{why}: the pass ended with {rc}: {text[-3000:]}"
        assert CANARY not in text, f"{why}: a value in the killed pass's output"

    def check_after_kill(self, new: Generation, why: str) -> None:
        """Each target old or new, the env file one whole set, the ledger never ahead of
        the disk, earlier temps gone where this pass wrote, no value in state_dir."""
        new_files = new.file_bytes(self.ws.home)
        states, disk = {}, {}
        for path, before in self.disk.items():
            disk[path] = path.read_bytes()
            states[path] = which(disk[path], before, new_files[path])
        assert all(s in ("old", "new") for s in states.values()), f"{why}: {states}"
        try:
            env = parse_env(self.ws.env_file.read_text(), EnvFormat.POSIX)
        except EnvReadError as exc:
            raise AssertionError(f"{why}: the env file does not parse: {exc}") from None
        if env != self.env:
            each = {
                n: which(env.get(n, "").encode(), self.env[n].encode(), v.encode())
                for n, v in new.env().items()
            }
            assert env == new.env(), f"{why}: env file neither the old nor the new set: {each}"
        states[self.ws.env_file] = "old" if env == self.env else "new"
        ledger = self.ledger.read_bytes()
        try:
            doc = json.loads(ledger)
        except ValueError as exc:
            raise AssertionError(f"{why}: ledger.json is not JSON ({exc})") from None
        rewritten = ledger != self.ledger_bytes
        if rewritten:  # by the killed pass, which writes it only after every target
            shas = {Path(e["path"]): e["sha"] for e in doc["entries"]}
            assert set(shas) == set(states), f"{why}: ledger paths {sorted(shas)}"
            assert set(states.values()) == {"new"}, f"{why}: ledger ahead of the disk: {states}"
            for path, sha in shas.items():
                assert sha256(path.read_bytes()) == sha, f"{why}: ledger out of step at {path}"
        # A pass sweeps a directory before it writes there (files.py, "Sweeping").
        wrote_in = {p.parent for p, s in states.items() if s == "new"}
        if rewritten:
            wrote_in.add(self.ledger.parent)
        temps = temps_under(self.ws.home)
        survived = [t for t in self.temps & temps if t.parent in wrote_in]
        assert survived == [], f"{why}: earlier temp files survived a write beside them"
        self.outcomes["empty temp left"] += sum(t.stat().st_size == 0 for t in temps - self.temps)
        self.check_no_stray_file(temps, why)
        self.check_no_value_in_state_dir(why)
        kind = set(states.values())
        if rewritten:
            self.outcomes["ledger written"] += 1
        elif kind == {"old"} and not temps - self.temps:
            self.outcomes["nothing written"] += 1
        else:
            self.outcomes["mid-pass"] += 1
        self.disk, self.env, self.ledger_bytes, self.temps = disk, env, ledger, temps

    def check_in_place(self, why: str) -> None:
        """Every target holds the current generation, 0600; nothing else is under the
        home, no temp file; the ledger names exactly the targets, at their shas."""
        wanted = self.gen.file_bytes(self.ws.home)
        for path, content in wanted.items():
            assert which(path.read_bytes(), b"", content) == "new", f"{why}: {path}"
            assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600, f"{why}: mode of {path}"
        env = parse_env(self.ws.env_file.read_text(), EnvFormat.POSIX)
        assert env == self.gen.env(), f"{why}: env file is not generation {self.gen.number}"
        temps = temps_under(self.ws.home)
        left = sorted(temps)
        assert left == [], f"{why}: temp files left after a full pass"
        self.check_no_stray_file(temps, why)
        targets = {*wanted, self.ws.env_file}
        ledger = self.ledger.read_bytes()
        shas = {Path(e["path"]): e["sha"] for e in json.loads(ledger)["entries"]}
        assert set(shas) == targets, f"{why}: ledger paths {sorted(shas)}"
        for path, sha in shas.items():
            assert sha256(path.read_bytes()) == sha, f"{why}: ledger out of step at {path}"
        self.check_no_value_in_state_dir(why)
        self.disk = {p: p.read_bytes() for p in wanted}
        self.env, self.ledger_bytes, self.temps = env, ledger, temps

    def check_steady(self, why: str) -> None:
        """The pass after a full one: one list request, not one file written (sweeping
        an empty temp file that has just come of age is no write)."""
        before = {p: signature(p) for p in files_under(self.ws.home) - self.temps}
        self.server.request_log.clear()
        result = self.ws.run("run", "--once", timeout=120)
        assert result.returncode == 0, f"{why}: steady pass rc {result.returncode}: {result.stderr}"
        assert CANARY not in result.stdout + result.stderr, f"{why}: a value in the output"
        assert self.server.request_log == [LIST], f"{why}: steady pass requests"
        after = {p: signature(p) for p in files_under(self.ws.home) - self.temps}
        assert after == before, f"{why}: the steady pass wrote something"

    def check_no_stray_file(self, temps: set[Path], why: str) -> None:
        """Outside state_dir, only the targets, the config file and `temps`: no backup
        (`NAME.secret-agent-orig`) or other copy of a value."""
        outside = files_under(self.ws.home) - files_under(self.ws.state_dir) - temps
        extra = sorted(
            outside - {*self.gen.file_bytes(self.ws.home), self.ws.env_file, self.ws.config_path}
        )
        assert extra == [], f"{why}: files nobody asked for"

    def check_no_value_in_state_dir(self, why: str) -> None:
        """No file in state_dir holds a value: not the canary every value is made of, and
        not any value of this generation or the one on disk."""
        values = [*self.disk.values(), *(v.encode() for v in self.env.values())]
        values += [v.encode() for v in self.gen.values.values()]
        for path in files_under(self.ws.state_dir):
            data = path.read_bytes()
            assert CANARY.encode() not in data, f"{why}: a value in {path}"
            assert not any(v in data for v in values), f"{why}: a value in {path}"


@pytest.mark.timeout(300)
def test_sigkilled_passes_leave_no_torn_file_no_temp_and_a_clean_next_pass(
    dev_server: DevServer, workspace: Workspace, tmp_path: Path
) -> None:
    """50 `run --once` SIGKILLed at seeded random points while they write: no torn file,
    no temp file after the next pass, a ledger never ahead of the disk, no value in
    state_dir, and a clean full pass every few kills and at the end."""
    workspace.write_config('[log]\nformat = "json"\nlevel = "warning"\n')
    run = CrashRun(workspace, dev_server, tmp_path / "logs")
    run.logs.mkdir()
    run.create()
    run.full_pass("first pass")
    run.rotate()
    to_ledger = run.measured_pass()
    assert 0 < to_ledger < 30, f"measured pass: ledger written {to_ledger}s after the fetch"
    run.check_steady("measured pass")
    high = to_ledger * 1.2  # a sixth of the kills land after the ledger's write

    for kill in range(KILLS):
        delay = run.rng.uniform(0.0, high)
        why = (
            f"seed {SEED}, kill {kill} at {delay * 1000:.1f} ms after the fetch (of a measured"
            f" {to_ledger * 1000:.1f} ms to the ledger), generation {run.number + 1}"
        )
        new = run.rotate()
        run.killed_pass(delay, why)
        run.check_after_kill(new, why)
        if kill % FULL_EVERY == FULL_EVERY - 1:
            run.full_pass(f"{why}: the next full pass")
            run.check_steady(why)

    assert bash_env(workspace.env_file, ENV_NAMES) == run.gen.env()
    mid = run.outcomes["mid-pass"]
    assert mid >= KILLS // 10, f"seed {SEED}: only {mid} kills landed mid-pass: {run.outcomes}"


def test_a_first_write_killed_before_the_ledger_is_still_known_as_ours(
    dev_server: DevServer, workspace: Workspace
) -> None:
    """SIGKILL right after a pass renamed a target it writes for the first time: the next
    pass knows that file is its own (write-ahead ledger), so a rotation overwrites it
    without taking it for the user's (no `.secret-agent-orig` holding a value), and a
    deletion removes it."""
    workspace.write_config('[log]\nformat = "json"\n')
    rng = random.Random(SEED)
    first = generation(0, rng)
    for name, path, env, _lo, _hi in SECRETS:
        dev_server.store.create_secret(
            DEV_USER, name=name, value=first.values[name], file_path=path, env_name=env
        )
    target = workspace.home / "big/zero.bin"
    proc = subprocess.Popen(
        [sys.executable, "-m", "secret_agent", "run", "--once"],
        env=workspace.env,
        cwd=workspace.home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_until(lambda: target.exists() or proc.poll() is not None, timeout=60)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert target.read_bytes() == first.values["big-0"].encode()
    second = generation(1, rng)
    for name, value in second.values.items():
        dev_server.store.update_secret(DEV_USER, name, value=value)
    again = workspace.run("run", "--once", timeout=120)
    assert again.returncode == 0, again.stderr[-2000:]
    assert '"original_kept"' not in again.stderr
    assert not [p for p in files_under(workspace.home) if p.name.endswith(".secret-agent-orig")]
    assert target.read_bytes() == second.values["big-0"].encode()
    dev_server.store.delete_secret(DEV_USER, "big-0")
    gone = workspace.run("run", "--once", timeout=120)
    assert gone.returncode == 0, gone.stderr[-2000:]
    assert not target.exists()
