"""A test run that ends the hard way leaves no server behind (``tests/servers.py``).

Each case starts a child pytest run of a small module whose test asks for the real servers
(Radicale and Dovecot; one missing here is left out, and fails the run under ``CI=true``), waits
until they answer, and then ends that run: SIGKILL (no Python code of the run gets to run), SIGINT
(Ctrl-C), or pytest-timeout in thread mode (``os._exit``: no teardown, no ``atexit``). Afterwards
no process the child run started may be alive, found three ways: the run's mark in its
environment, a server's process group, and a server's own temporary directory on its command line.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.servers import DOVECOT_BINARY, missing, run_mark, spawn, stop

ROOT = Path(__file__).resolve().parent.parent

CHILD_MODULE = """
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.servers import radicale_fixture, run_dovecot, run_mark  # noqa: F401

# Ctrl-C as at a terminal, even when this run was started from a background job (which ignores it).
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(name="dovecot")
def dovecot_for_this_test():
    yield from run_dovecot()


def test_hold_the_servers({servers}):
    started = {{
        "mark": run_mark(),
        "servers": [
            {{"group": server.process.pid, "directory": str(server.directory)}}
            for server in ({servers},)
        ],
    }}
    Path(os.environ["CHILD_READY"]).write_text(json.dumps(started))
    time.sleep(600)
"""


def available_servers() -> list[str]:
    """The servers this machine runs; a missing one is left out (and fails the run under CI)."""
    found = []
    try:
        import radicale  # noqa: F401

        found.append("radicale")
    except ImportError:
        pass
    if Path(DOVECOT_BINARY).exists():
        found.append("dovecot")
    if "radicale" not in found and (not found or os.environ.get("CI") == "true"):
        missing("Radicale (pip install radicale)")
    if "dovecot" not in found and (not found or os.environ.get("CI") == "true"):
        missing(f"Dovecot ({DOVECOT_BINARY}, Debian package dovecot-imapd)")
    return found


def _alive(pid: int) -> tuple[int, bytes, bytes] | None:
    """(process group, environment, command line) of a live process, else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if stat[0] in ("Z", "X"):
        return None  # dead, waiting to be reaped by whoever inherited it
    return int(stat[2]), environ, cmdline


def left_behind(started: dict[str, Any]) -> list[str]:
    """Every live process the child run started, with what gave it away."""
    mark = str(started["mark"]).encode()
    directories = [str(server["directory"]).encode() for server in started["servers"]]
    groups = {int(server["group"]) for server in started["servers"]}
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        seen = _alive(int(entry))
        if seen is None:
            continue
        pgid, environ, cmdline = seen
        why = [
            reason
            for reason, hit in (
                ("the run's mark", mark in environ.split(b"\0")),
                ("a server's process group", pgid in groups),
                ("a server's directory", any(d in cmdline for d in directories)),
            )
            if hit
        ]
        if why:
            command = cmdline.replace(b"\0", b" ").decode(errors="replace")[:120]
            found.append(f"{entry} ({', '.join(why)}): {command}")
    return found


def _wait_for(condition: Callable[[], bool], seconds: float) -> None:
    # A deadline for readiness or for the kernel to finish killing; it asserts nothing about speed.
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not condition():
        time.sleep(0.05)


@pytest.mark.servers
@pytest.mark.parametrize("ending", ["SIGKILL", "SIGINT", "timeout"])
def test_a_run_that_ends_the_hard_way_leaves_no_server(ending: str, tmp_path: Path) -> None:
    servers = available_servers()
    module = tmp_path / "test_child_servers.py"
    module.write_text(CHILD_MODULE.format(servers=", ".join(servers)), encoding="utf-8")
    (tmp_path / "pytest.ini").write_text("[pytest]\n", encoding="utf-8")
    ready = tmp_path / "ready.json"
    options = ["-o", "timeout=0"]
    if ending == "timeout":
        # Thread mode ends the process with os._exit: no teardown and no atexit hook run.
        options = ["-o", "timeout=1", "-o", "timeout_method=thread", "-o", "timeout_func_only=true"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), CHILD_READY=str(ready))
    child = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
         "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), *options, str(module)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # our signals reach the child run only
    )  # fmt: skip
    try:
        _wait_for(lambda: ready.exists() or child.poll() is not None, 120)
        if ending == "SIGKILL":
            child.kill()
        elif ending == "SIGINT":
            child.send_signal(signal.SIGINT)
        output = child.communicate(timeout=120)[0].decode(errors="replace")
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert ready.exists(), f"the child run never had its servers running:\n{output}"
    if ending == "timeout":
        assert "Timeout" in output and child.returncode != 0, output
    if ending == "SIGINT":
        assert "KeyboardInterrupt" in output, output
    started = json.loads(ready.read_text())
    assert len(started["servers"]) == len(servers), started

    _wait_for(lambda: not left_behind(started), 30)
    assert left_behind(started) == [], f"left running after {ending}:\n{output}"


IGNORES_SIGTERM_WITH_A_HELPER = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
print(helper.pid, flush=True)
time.sleep(600)
"""


def test_stop_without_grace_kills_the_process_and_its_group_at_once() -> None:
    """``stop(grace=0)`` (what a test that kills what it started asks for) sends SIGKILL to the
    whole group: a process that ignores SIGTERM and the helper it started are both gone."""
    process = spawn(
        [sys.executable, "-c", IGNORES_SIGTERM_WITH_A_HELPER],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert process.stdout is not None
        helper = int(process.stdout.readline())
        assert _alive(helper) is not None
    finally:
        stop(process, grace=0)
    assert process.returncode == -signal.SIGKILL
    _wait_for(lambda: _alive(helper) is None, 30)
    assert _alive(helper) is None, "the helper in the stopped process's group is still running"


def test_a_child_given_its_own_environment_still_carries_the_runs_mark() -> None:
    """The watchdog finds what a run left by the run's mark: ``spawn`` adds it to an ``env`` of
    the caller's own, as daemons started with a cleaned environment have."""
    mark = run_mark()
    process = spawn(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={"PATH": os.environ.get("PATH", "")},
    )
    try:
        seen = _alive(process.pid)
        assert seen is not None
        assert mark.encode() in seen[1].split(b"\0")
        assert seen[0] == process.pid  # it leads its own process group
    finally:
        stop(process, grace=0)
    assert process.returncode == -signal.SIGKILL
