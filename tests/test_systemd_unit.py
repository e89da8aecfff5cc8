"""The shipped unit passes systemd's own checks: a clean verify and a low exposure score."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import missing

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "recruitmail.service"
INSTALLED_BINARY = "/opt/recruitmail/bin/recruitmail"
MAX_EXPOSURE = 1.5


def analyze() -> str:
    program = shutil.which("systemd-analyze")
    if program is None:
        missing("systemd-analyze")
    assert program is not None
    return program


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


@pytest.fixture
def checkable_unit(tmp_path: Path) -> Path:
    """The shipped unit, with only ExecStart's program swapped for one that exists here.

    ``systemd-analyze verify`` checks that ExecStart's program exists, and /opt/recruitmail is
    only there after an installation. The copy runs this test's Python instead, with the same
    arguments; every other line is the shipped one, byte for byte.
    """
    text = UNIT.read_text()
    assert f"ExecStart={INSTALLED_BINARY} " in text
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(f"ExecStart={INSTALLED_BINARY} ", f"ExecStart={sys.executable} "))
    return copy


def test_verify_is_clean(checkable_unit: Path) -> None:
    result = subprocess.run(
        [analyze(), "verify", str(checkable_unit)], capture_output=True, text=True, timeout=120
    )
    # A misspelt key or a bad value only warns: nothing at all on stderr is the real check.
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_exposure_is_at_most_one_and_a_half(checkable_unit: Path) -> None:
    result = subprocess.run(
        [analyze(), "security", "--offline=true", str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout[-500:]
    exposure = float(match.group(1))
    assert exposure <= MAX_EXPOSURE, result.stdout

    # The threshold option takes ten times the score and fails the command above it.
    strict = subprocess.run(
        [analyze(), "security", "--offline=true", f"--threshold={int(MAX_EXPOSURE * 10)}"]
        + [str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert strict.returncode == 0, strict.stdout[-2000:]


def test_the_hardening_checks_all_pass_where_the_daemon_needs_nothing(checkable_unit: Path) -> None:
    result = subprocess.run(
        [analyze(), "security", "--offline=true", "--json=short", str(checkable_unit)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    failing = {item["name"] for item in json.loads(result.stdout) if item["set"] is False}
    # What the daemon really needs: the network (providers), a local socket (sd_notify), the
    # host's file tree (Python) and the real-time clock device that ProtectClock leaves readable.
    needed = {
        "PrivateNetwork=",
        "IPAddressDeny=",
        "RestrictAddressFamilies=~AF_(INET|INET6)",
        "RestrictAddressFamilies=~AF_UNIX",
        "RootDirectory=/RootImage=",
        "DeviceAllow=",
    }
    assert failing <= needed, failing - needed


def test_the_unit_is_a_notify_service_with_watchdog_reload_and_restart() -> None:
    settings = unit_settings()
    assert settings["Type"] == ["notify"]
    assert settings["NotifyAccess"] == ["main"]
    assert settings["ExecStart"] == [
        f"{INSTALLED_BINARY} run --config /etc/recruitmail/recruitmail.toml"
    ]
    assert settings["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    assert settings["Restart"] == ["on-failure"]
    assert "WatchdogSec" in settings and "RestartSec" in settings
    assert "StartLimitIntervalSec" in settings and "StartLimitBurst" in settings
    assert settings["DynamicUser"] == ["yes"]
    assert settings["StateDirectory"] == ["recruitmail"]
    assert settings["StateDirectoryMode"] == ["0700"]
    assert settings["ConfigurationDirectory"] == ["recruitmail"]
    assert settings["CapabilityBoundingSet"] == [""]
    assert settings["UMask"] == ["0077"]
    assert settings["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
