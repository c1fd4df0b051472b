"""The shipped systemd units pass `systemd-analyze verify` with no complaint at all."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
ANALYZE = shutil.which("systemd-analyze")

if ANALYZE is None:
    # CI installs Debian's systemd package, so there this is a failure, not a skip.
    if os.environ.get("CI"):
        pytest.fail("systemd-analyze is missing; .ci/run installs it", pytrace=False)
    pytest.skip(
        "systemd-analyze is not installed (Debian: apt install systemd)", allow_module_level=True
    )


def _installed(unit: str, tmp_path: Path, exe_in_unit: str) -> Path:
    """The unit with ExecStart= pointing at this checkout's entry point.

    `verify` checks that ExecStart's binary exists; everything else is verified as shipped.
    """
    exe = Path(sys.executable).parent / "secret-agent"
    assert exe.exists(), "install the package first (pip install -e .)"
    text = (UNITS / unit).read_text()
    assert exe_in_unit in text
    out = tmp_path / unit
    out.write_text(text.replace(exe_in_unit, str(exe)))
    return out


def _verify(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
    )


def test_user_unit_verifies_cleanly(tmp_path: Path) -> None:
    """secret-agent.service is a valid user unit: Type=notify, watchdog, restart, hardening."""
    unit = _installed("secret-agent.service", tmp_path, "%h/.local/bin/secret-agent")
    result = _verify("--user", str(unit), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    text = unit.read_text()
    for line in (
        "Type=notify",
        "WatchdogSec=",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "PrivateTmp=yes",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert line in text


def test_system_template_verifies_cleanly_for_an_instance(tmp_path: Path) -> None:
    """secret-agent@alice.service verifies, running as the named user."""
    unit = _installed("secret-agent@.service", tmp_path, "/usr/local/bin/secret-agent")
    result = _verify(str(tmp_path / "secret-agent@alice.service"), tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == ""
    text = unit.read_text()
    for line in (
        "Type=notify",
        "User=%i",
        "WatchdogSec=",
        "Restart=on-failure",
        "ProtectSystem=strict",
        "ReadWritePaths=/home/%i",
        "CapabilityBoundingSet=",
    ):
        assert line in text


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a bad Type= makes verify complain on stderr."""
    unit = _installed("secret-agent.service", tmp_path, "%h/.local/bin/secret-agent")
    unit.write_text(unit.read_text().replace("Type=notify", "Type=notifyy"))
    result = _verify("--user", str(unit), tmp_path=tmp_path)
    assert "notifyy" in result.stderr
