"""Fault injection: the reference scenario with a calendar link that throttles, fails, resets,
hangs and lies, and a Maildir whose Drafts folder breaks, pass after pass.

Every pass goes through ``daemon.runtime.run_once`` (what ``recruitmail once`` runs after parsing
its arguments); the connectors are opened anew for each pass. A fault must end a pass as a handled
failure with a message (never an exception of another kind), and the next clean pass carries on.
At the end: no duplicate and no lost draft, exactly the expected drafts. Sized by ICS's share of
RELIABILITY_FAULTS (default 2000, split over the connectors by ``budget.FAULT_SHARES``; the
provider connectors' faults are in ``test_connector_faults.py``) and RELIABILITY_FAULT_SECONDS.

The ``run`` daemon is checked separately against ``Retry-After``: it must not poll a calendar
server again before the server's wait is over.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from random import Random

import pytest

from recruitmail.daemon.runtime import run_once, validate
from recruitmail.daemon.settings import load_settings
from recruitmail.daemon.state import State
from tests.reliability import budget
from tests.reliability.harness import (
    CHANGES,
    EXPECTED,
    ROOT,
    RecruiterMaildir,
    inspect,
)
from tests.reliability.icsserver import STATUS_FAULTS, FaultyCalendarServer
from tests.scenario import two_weeks
from tests.scenario.runner import apply, wait_out_retry_after, write_config
from tests.servers import spawn, stop

# Up to this many faulted passes before the clean one, at each of the scenario's 85 instants.
MAX_FAULTS_PER_INSTANT = 16
CLIENT_TIMEOUT = 0.3  # seconds; the server hangs for longer

pytestmark = pytest.mark.timeout(budget.timeout(0.2, budget.FAULTS) + budget.FAULT_SECONDS * 2)


class HttpCalendarMaildir(RecruiterMaildir):
    """The scenario's calendar published over HTTP by a misbehaving server; drafts in a Maildir."""

    def __init__(self, root: Path, url: str) -> None:
        super().__init__(root)
        self.url = url

    def config(self) -> str:
        return (
            f'\n[mailboxes.source]\ntype = "ics"\nurl = "{self.url}"\n'
            f"timeout_seconds = {CLIENT_TIMEOUT}\n"
            f'\n[mailboxes.sink]\ntype = "maildir"\npath = "{self.maildir}"\n'
        )

    def break_drafts(self, part: str) -> None:
        """Make ``.Drafts/<part>`` (``tmp`` or ``cur``) unwritable while the sink is open."""
        folder = self.maildir / ".Drafts" / part
        folder.mkdir(parents=True, exist_ok=True)  # before the first pass, nothing exists yet
        freeze(folder, True)

    def repair_drafts(self, part: str) -> None:
        freeze(self.maildir / ".Drafts" / part, False)


def freeze(directory: Path, frozen: bool) -> None:
    """No new entries in ``directory``: mode 0500, or for root (whom modes do not stop) the
    immutable attribute."""
    if os.geteuid() != 0:
        directory.chmod(0o500 if frozen else 0o700)
    else:
        done = subprocess.run(
            ["chattr", "+i" if frozen else "-i", str(directory)], capture_output=True, text=True
        )
        if done.returncode != 0:
            raise OSError(f"chattr on {directory}: {done.stderr.strip()}")


def can_freeze(scratch: Path) -> bool:
    """Whether this machine lets the suite make a directory unwritable (not on every file system)."""
    probe = scratch / "freeze-probe"
    probe.mkdir()
    try:
        freeze(probe, True)
    except OSError:
        return False
    try:
        (probe / "x").write_bytes(b"")
    except OSError:
        return True
    finally:
        with contextlib.suppress(OSError):
            freeze(probe, False)
    return False


def _choose(rng: Random) -> str:
    """A calendar-server fault: mostly throttling and outages, some broken connections."""
    roll = rng.random()
    if roll < 0.62:
        status, wait = rng.choice(STATUS_FAULTS)
        return f"{status}+{wait}" if wait is not None else str(status)
    if roll < 0.74:
        return "reset"
    if roll < 0.80:
        return "truncated"
    if roll < 0.84:
        return "html"
    if roll < 0.87:
        return "empty"
    if roll < 0.98:
        return "reset"
    return "hang"


@dataclass
class FaultReport:
    seed: int
    passes: int = 0
    faults: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    requests_per_pass: int = 0


def fault_replay(root: Path, seed: int, maildir_faults: bool = True) -> FaultReport:
    """The whole scenario once, with faulted passes before the clean pass of every instant."""
    rng = Random(seed)
    report = FaultReport(seed)
    root.mkdir(parents=True)
    backend = HttpCalendarMaildir(root, "")
    with FaultyCalendarServer(backend.ics, hang_seconds=CLIENT_TIMEOUT * 4) as server:
        backend.url = server.url
        settings = load_settings(write_config(backend, root))
        renderer = validate(settings)
        state = State.open(settings.service)
        deleted: set[str] = set()
        pending = sorted(CHANGES, key=lambda c: c.at)
        try:
            for instant in two_weeks.INSTANTS:
                while pending and pending[0].at <= instant:
                    change = pending.pop(0)
                    if change.action == "delete_draft":
                        deleted.add(backend.delete_draft(change.candidate))
                    else:
                        apply(backend, change)
                kinds = [_choose(rng) for _ in range(rng.randint(0, MAX_FAULTS_PER_INSTANT))]
                if maildir_faults and rng.random() < 0.5:
                    # First, so that it meets the instant's drafts (a later fault would not).
                    kinds.insert(0, rng.choice(("maildir-tmp", "maildir-cur")))
                for fault in kinds:
                    wait_out_retry_after(state)
                    faulted_pass(backend, server, settings, renderer, state, instant, fault, report)
                wait_out_retry_after(state)
                before = len(server.requests)
                outcome = run_once(settings, state, renderer, instant)
                report.passes += 1
                assert outcome.failures == {}, (
                    f"a clean pass failed at {instant}: {outcome.failures}"
                )
                report.requests_per_pass = max(
                    report.requests_per_pass, len(server.requests) - before
                )
        finally:
            state.close()
        assert server.max_in_flight() <= 1  # one mailbox, one calendar request at a time (≤ 4)
    verdict = inspect(backend, root, deleted)
    assert verdict.problems(EXPECTED) == [], f"seed {seed}: {verdict.problems(EXPECTED)}"
    assert verdict.obsolete == set(two_weeks.EXPECTED_OBSOLETE)
    assert verdict.folded == set(two_weeks.EXPECTED_FOLDED)
    return report


def faulted_pass(
    backend: HttpCalendarMaildir,
    server: FaultyCalendarServer,
    settings: object,
    renderer: object,
    state: State,
    instant: datetime,
    fault: str,
    report: FaultReport,
) -> None:
    broken = fault.removeprefix("maildir-") if fault.startswith("maildir-") else None
    if broken:
        backend.break_drafts(broken)
    else:
        server.inject(fault)
    before = len(server.requests)
    try:
        outcome = run_once(settings, state, renderer, instant)  # type: ignore[arg-type]
    finally:
        if broken:
            backend.repair_drafts(broken)
    report.passes += 1
    made = len(server.requests) - before
    report.requests_per_pass = max(report.requests_per_pass, made)
    if broken:
        if outcome.failures:  # the pass had something to write, and could not
            report.faults[fault] += 1
            (problem,) = outcome.failures.values()
            assert problem.startswith("TransientError") and "cannot write the draft" in problem, (
                problem
            )
            report.failures[problem.split(":")[0]] += 1
        return
    assert server.pending() == 0 and made == 1, "one request per pass, no blind retry"
    report.faults[fault.split("+")[0] if fault[0].isdigit() else fault] += 1
    assert outcome.failures, f"{fault} went unnoticed at {instant}"
    (problem,) = outcome.failures.values()
    assert problem.split(":")[0] in ("TransientError", "PermanentError"), problem
    assert server.url not in problem  # the link is a secret: never in a message
    report.failures[problem.split(":")[0]] += 1


def test_faults_never_duplicate_lose_or_crash(scratch: Path) -> None:
    maildir_faults = can_freeze(scratch)
    started = time.monotonic()
    reports: list[FaultReport] = []
    # Replays run side by side, each in its own process with its own server and directory.
    with ProcessPoolExecutor(
        budget.WORKERS, mp_context=multiprocessing.get_context("fork")
    ) as pool:
        while (
            sum(sum(r.faults.values()) for r in reports) < budget.fault_share("ics")
            or time.monotonic() - started < budget.FAULT_SECONDS
        ):
            numbers = range(len(reports), len(reports) + budget.WORKERS)
            reports.extend(
                pool.map(
                    fault_replay,
                    [scratch / f"replay-{n}" for n in numbers],
                    [budget.SEED + n for n in numbers],
                    [maildir_faults] * budget.WORKERS,
                )
            )
    faults: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    for report in reports:
        faults.update(report.faults)
        failures.update(report.failures)
    total = sum(faults.values())
    print(
        f"\nseed {budget.SEED}: {len(reports)} replays, {sum(r.passes for r in reports)} passes, "
        f"{total} faults {dict(sorted(faults.items()))}, handled as {dict(failures)}"
    )
    assert total >= budget.fault_share("ics")
    assert max(r.requests_per_pass for r in reports) == 1
    assert {"429", "503", "500", "502", "504", "reset", "hang", "truncated"} <= set(faults)
    if maildir_faults:
        assert {"maildir-tmp", "maildir-cur"} <= set(faults)
    else:
        print("this file system cannot make a directory unwritable: no Maildir faults injected")


# --- Retry-After and the running daemon ---------------------------------------------------------


def test_the_daemon_waits_for_retry_after_before_polling_again(scratch: Path) -> None:
    """``recruitmail run`` polls every 10 s; a 503 asking for 15 s must push the next poll back."""
    backend = HttpCalendarMaildir(scratch, "")
    with FaultyCalendarServer(backend.ics) as server:
        backend.url = server.url
        config = write_config(backend, scratch)
        config.write_text(
            config.read_text(encoding="utf-8").replace(
                "lookup_grace_seconds = 0", "lookup_grace_seconds = 0\ninterval_seconds = 10"
            ),
            encoding="utf-8",
        )
        server.inject("503+15")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RECRUITMAIL_", "NOTIFY_"))}
        env["PYTHONPATH"] = str(ROOT)
        log = scratch / "daemon.log"
        with log.open("wb") as out:
            daemon = spawn(
                [sys.executable, "-m", "recruitmail", "run", "--config", str(config)],
                cwd=scratch,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            # Wait (a guard, not a measurement) for the poll after the throttled one.
            deadline = time.monotonic() + 90
            while (
                len(server.requests) < 2 and time.monotonic() < deadline and daemon.poll() is None
            ):
                time.sleep(0.2)
        finally:
            try:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
            finally:
                stop(daemon)  # still running only if SIGTERM did not end it
        output = log.read_text(encoding="utf-8", errors="replace")
        assert len(server.requests) >= 2, output
        first, second = server.requests[0], server.requests[1]
        assert first.fault == "503+15"
        assert not second.early, (
            f"polled again {second.arrived - first.arrived:.1f}s after a 503 with Retry-After: 15"
        )
        assert "Traceback" not in output
