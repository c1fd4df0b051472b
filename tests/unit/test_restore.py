"""The watcher's restores: from memory only, one at a time, requests coalesced.

Real files in a temporary home; no server at all, which is the point: a restore needs
no network. The watchfiles side is seen in the e2e daemon tests.
"""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from secret_agent.config import Config, load_config
from secret_agent.converge import apply_state
from secret_agent.daemon.feed import Current, Feed
from secret_agent.daemon.watcher import Watcher
from secret_agent.gate import Gate
from secret_agent.model import DesiredSecret, DesiredState
from secret_agent.recall import LastGood
from secret_agent.redact import Secret

VALUE = "restore-test-value-7f3a"


def setup(tmp_path: Path) -> tuple[Config, Path, LastGood]:
    home = tmp_path / "home"
    home.mkdir()
    config_file = tmp_path / "config.toml"
    config_file.write_text(f'[sync]\nstate_dir = "{tmp_path / "state"}"\n[env_file]\npath = ""\n')
    env = {"HOME": str(home), "CODER_URL": "http://c.example", "CODER_SESSION_TOKEN": "t"}
    config = load_config(path=str(config_file), env=env)
    target = home / ".tok"
    desired = DesiredState(
        secrets=(
            DesiredSecret(name="tok", env_name="", file_path=str(target), value=Secret(VALUE)),
        )
    )
    memory = LastGood()
    apply_state(config, desired, keep=memory)
    assert target.read_text() == VALUE
    return config, target, memory


def watcher(config: Config, memory: LastGood, gate: Gate | None = None) -> Watcher:
    return Watcher(Current(config, lambda: config), memory=memory, gate=gate or Gate(), feed=Feed())


def test_a_changed_or_removed_file_is_put_back_from_memory(tmp_path: Path) -> None:
    config, target, memory = setup(tmp_path)
    w = watcher(config, memory)

    target.write_text("someone else's edit")
    assert asyncio.run(w.restore()) is True
    assert target.read_text() == VALUE

    target.unlink()
    assert asyncio.run(w.restore()) is True
    assert target.read_text() == VALUE
    assert stat.S_IMODE(target.stat().st_mode) == 0o600

    assert asyncio.run(w.restore()) is False  # nothing to put back: nothing written


def test_no_restore_once_the_gate_has_closed(tmp_path: Path) -> None:
    config, target, memory = setup(tmp_path)
    gate = Gate()
    w = watcher(config, memory, gate)
    target.unlink()
    gate.close()
    assert asyncio.run(w.restore()) is False
    assert not target.exists()


def test_nothing_in_memory_restores_nothing(tmp_path: Path) -> None:
    config, target, _ = setup(tmp_path)
    target.unlink()
    assert asyncio.run(watcher(config, LastGood()).restore()) is False
    assert not target.exists()


class FailingOnce(LastGood):
    """Memory whose first read fails (as a broken disk would fail the apply)."""

    def __init__(self, inner: LastGood) -> None:
        super().__init__(inner.state)
        self.reads = 0

    @property
    def state(self) -> DesiredState | None:
        self.reads += 1
        if self.reads == 1:
            raise OSError(5, "Input/output error")
        return super().state


def test_a_failed_restore_is_logged_and_the_next_one_works(tmp_path: Path) -> None:
    config, target, memory = setup(tmp_path)
    w = watcher(config, FailingOnce(memory))
    target.unlink()
    assert asyncio.run(w.restore()) is False
    assert not target.exists()  # and nothing else was touched
    assert asyncio.run(w.restore()) is True
    assert target.read_text() == VALUE


def test_requests_during_a_restore_coalesce_into_one_more(tmp_path: Path) -> None:
    """Ten changes seen while a restore runs cause one more restore, not ten."""
    config, _, memory = setup(tmp_path)
    w = watcher(config, memory)
    calls = 0
    running, finish = asyncio.Event(), asyncio.Event()

    async def restore() -> bool:
        nonlocal calls
        calls += 1
        running.set()
        await finish.wait()
        return False

    w.restore = restore  # type: ignore[method-assign]  # fake I/O: count, hold

    async def main() -> None:
        loop = asyncio.create_task(w._restore_loop())
        w.want_restore()
        await asyncio.wait_for(running.wait(), 5)
        for _ in range(10):
            w.want_restore()
        finish.set()
        for _ in range(20):
            await asyncio.sleep(0)
        loop.cancel()

    asyncio.run(main())
    assert calls == 2
