"""The crash harness: the reference scenario through ``python -m recruitmail once`` as a subprocess,
killed with SIGKILL (at the named crash points, or by the parent after a random delay), rerun, and
checked at the end against the mailbox, the ledger and ``two_weeks.EXPECTED``.

A *chain* replays the whole scenario once. At every instant it runs up to ``kills_per_instant``
faulted passes; each faulted pass either dies by SIGKILL (counted) or completes normally (the point
was not reached, or the timer fired too late), and an instant always ends with a completed pass at
the same ``--now``. A kill therefore never changes *when* a mail is drafted, so the final drafts
must equal the expected ones exactly.
"""

from __future__ import annotations

import email
import email.policy
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from random import Random
from typing import Protocol

from recruitmail.contracts.connector import KEY_HEADER
from recruitmail.daemon.faults import POINTS
from recruitmail.daemon.planner import LedgerState
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.runner import (
    ScenarioBackend,
    apply,
    collect,
    open_state,
    write_config,
)
from tests.scenario.spec import at
from tests.servers import spawn, stop

ROOT = Path(__file__).resolve().parents[2]
SYNC_POINTS = ("sync-before-commit", "sync-after-commit")
DRAFT_POINTS = tuple(p for p in POINTS if p not in SYNC_POINTS)
CLEAN_RUN_LIMIT = 180.0  # seconds: a pass that takes longer is hung (a guard, not a measurement)

# The recruiter deletes Carl's welcome draft the morning after it was written: it must never
# come back, whatever is killed afterwards.
DELETION = two_weeks.Change(at(two_weeks.d(8), "08:00"), "delete_draft", candidate=two_weeks.CARL)
CHANGES = (*two_weeks.CHANGES, DELETION)
EXPECTED = two_weeks.EXPECTED - {("welcome", two_weeks.CARL, two_weeks.d(7))}


class RecruiterBackend(ScenarioBackend, Protocol):
    """A connector pair under test: the scenario backend plus the recruiter's Delete."""

    def delete_draft(self, candidate: str) -> str:
        """Delete the newest draft addressed to ``candidate``; returns the key it carried."""


class RecruiterMaildir(IcsMaildirBackend):
    """The embedded default, plus what a mail client does on Delete: the draft file goes away."""

    def delete_draft(self, candidate: str) -> str:
        """Delete the newest draft addressed to ``candidate``; returns the key it carried."""
        mine = [p for p in self.files(".Drafts") if candidate in str(_parse(p.read_bytes())["To"])]
        newest = max(mine, key=lambda p: p.stat().st_mtime_ns)
        key = str(_parse(newest.read_bytes())[KEY_HEADER])
        newest.unlink()
        return key


def _parse(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


@dataclass
class Pass:
    """One ``recruitmail once`` process as the parent saw it."""

    code: int
    stderr: str
    seconds: float

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL

    @property
    def clean(self) -> bool:
        """Completed, or failed with a handled message; never a traceback."""
        return self.code in (0, 1, 2) and "Traceback" not in self.stderr


def run_pass(
    config: Path, now: datetime, *, crash_at: str | None = None, kill_after: float | None = None
) -> Pass:
    """``python -m recruitmail --config CONFIG once --now NOW``; SIGKILLed after ``kill_after`` s."""
    env = {k: v for k, v in os.environ.items() if k != "RECRUITMAIL_CRASH_AT"}
    env["PYTHONPATH"] = str(ROOT)
    if crash_at:
        env["RECRUITMAIL_CRASH_AT"] = crash_at
    started = time.monotonic()
    # Its own process group, stopped with it whatever happens (tests/servers.py).
    process = spawn(
        [
            sys.executable,
            "-m",
            "recruitmail",
            "--config",
            str(config),
            "once",
            "--now",
            now.isoformat(),
        ],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        try:
            _, err = process.communicate(
                timeout=kill_after if kill_after is not None else CLEAN_RUN_LIMIT
            )
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            _, err = process.communicate()
    finally:
        stop(process)
    return Pass(process.returncode, err.decode(errors="replace"), time.monotonic() - started)


@dataclass
class Verdict:
    """What the mailbox and the ledger say after a chain."""

    drafts: set[tuple[str, str, date]]
    obsolete: set[tuple[str, str]]
    folded: set[tuple[str, str, date]]
    duplicates: dict[str, int]
    lost: list[str]
    unknown: list[str]
    unfinished: list[str]
    recreated: list[str]
    integrity: str
    ledger_rows: int

    def problems(self, expected: frozenset[tuple[str, str, date]]) -> list[str]:
        found = []
        if self.duplicates:
            found.append(f"duplicate drafts: {self.duplicates}")
        if self.lost:
            found.append(f"drafted in the ledger but not in the mailbox: {self.lost}")
        if self.unknown:
            found.append(f"drafts the ledger does not know: {self.unknown}")
        if self.unfinished:
            found.append(f"ledger rows left 'attempting': {self.unfinished}")
        if self.recreated:
            found.append(f"drafts the recruiter deleted came back: {self.recreated}")
        if self.integrity != "ok":
            found.append(f"PRAGMA integrity_check: {self.integrity}")
        if self.drafts != expected:
            found.append(
                f"drafts differ from the expected ones: missing {sorted(expected - self.drafts)}, "
                f"extra {sorted(self.drafts - expected)}"
            )
        return found


def inspect(backend: ScenarioBackend, workdir: Path, deleted: set[str]) -> Verdict:
    """Read the mailbox (independently of the sink) and the ledger, and join them by key."""
    outcome = collect(backend, workdir)
    state = open_state(workdir)
    try:
        rows = state.all_ledger()
        backend = state.backend
    finally:
        state.close()
    written = {
        r.entry.key.id for r in rows if r.entry.state in (LedgerState.DRAFTED, LedgerState.OBSOLETE)
    }
    if backend == "sqlite":  # a file a killed process was writing: still whole?
        database = workdir / "state" / "recruitmail.sqlite"
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
            integrity = str(db.execute("PRAGMA integrity_check").fetchone()[0])
    else:  # PostgreSQL: a killed client cannot tear the server's pages
        integrity = "ok"
    return Verdict(
        drafts=outcome.drafts,
        obsolete=outcome.obsolete,
        folded=outcome.folded,
        duplicates={k: len(v) for k, v in outcome.by_key.items() if len(v) > 1},
        lost=sorted(k for k in written - deleted if k not in outcome.by_key),
        unknown=list(outcome.unknown_keys),
        unfinished=list(outcome.unfinished),
        recreated=sorted(k for k in deleted if k in outcome.by_key),
        integrity=integrity,
        ledger_rows=len(rows),
    )


@dataclass
class ChainReport:
    """Figures of one chain."""

    mode: str
    seed: int
    connector: str = "ics"
    passes: int = 0
    kills: int = 0
    kills_by_point: Counter[str] = field(default_factory=Counter)
    completed_despite_fault: int = 0
    clean_seconds: list[float] = field(default_factory=list)
    verdict: Verdict | None = None
    deleted: set[str] = field(default_factory=set)


class Chain:
    """One replay of the scenario with faulted passes at every instant.

    ``mode`` is ``points`` (``RECRUITMAIL_CRASH_AT``: a sync point first, which every pass
    reaches, then the draft-creation points in turn with hit counts 1–3), ``random`` (the
    parent sends SIGKILL after a delay drawn uniformly from 40–110 % of a typical completed
    pass's duration, so that it lands anywhere from the sync to the last draft) or ``mixed``
    (each instant's first faulted pass is a sync point with probability ``rate``, else a random
    kill with probability ``rate``, else a draft point; then the draft points in turn). Mixed
    chains size the kills of one chain by ``rate`` while every instant that drafts still meets
    the draft-creation points.

    ``backend`` is the connector pair under test (default: ICS file + Maildir); it needs the
    scenario backend's methods plus ``delete_draft(candidate)`` returning the deleted key.
    """

    def __init__(
        self,
        root: Path,
        mode: str,
        seed: int,
        kills_per_instant: int | None = None,
        instants: tuple[datetime, ...] = two_weeks.INSTANTS,
        forced: dict[datetime, str] | None = None,
        backend: RecruiterBackend | None = None,
        rate: float = 1.0,
        connector: str = "ics",
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.mode = mode
        self.rng = Random(seed)
        self.kills_per_instant = kills_per_instant or (2 if mode == "random" else 8)
        self.instants = instants
        self.forced = forced or {}
        self.rate = rate
        self.backend = backend if backend is not None else RecruiterMaildir(root)
        self.config = write_config(self.backend, root)
        self.report = ChainReport(mode, seed, connector)
        self._turn = self.rng.randrange(len(DRAFT_POINTS))
        self._syncs = self.rng.randrange(len(SYNC_POINTS))
        self.calendar_changed = True  # at the instant being replayed (set by ``run``)

    def fault(self, attempt: int, index: int) -> tuple[str | None, float | None]:
        mode = self.mode
        if mode == "mixed":
            mode = "points"
            if attempt == 0:
                if self.rng.random() < self.rate:
                    self._syncs += 1  # the two sync points in turn, whichever instants they fall on
                    return self.sync_point(self._syncs), None
                if self.rng.random() < self.rate:
                    mode = "random"
            if attempt == 0 and mode == "points":
                attempt = 1  # no sync kill at this instant: straight to the draft points
        if mode == "points":
            if attempt == 0:
                return self.sync_point(index), None
            # Then the draft-creation points in turn, until one is not reached: each kill
            # leaves the pass one step further, so an instant with n drafts sees ~n kills here.
            point = DRAFT_POINTS[self._turn % len(DRAFT_POINTS)]
            self._turn += 1
            return f"{point}:{self.rng.choice((1, 1, 2))}", None
        typical = statistics.median(self.report.clean_seconds[-20:] or [0.8])
        # The first ~40 % of a pass is the interpreter importing modules, where a kill tests nothing.
        return None, self.rng.uniform(0.4 * typical, 1.1 * typical)

    def sync_point(self, turn: int) -> str:
        """The sync points in turn; but a pass whose calendar did not change writes nothing in
        its sync (no transaction to die in), so it is killed right after the sync instead."""
        if not self.calendar_changed:
            return "sync-after-commit"
        return SYNC_POINTS[turn % len(SYNC_POINTS)]

    def run(self) -> ChainReport:
        pending = sorted(CHANGES, key=lambda c: c.at)
        for index, instant in enumerate(self.instants):
            # The first pass is a full sync: it writes whatever the calendar holds.
            self.calendar_changed = index == 0
            while pending and pending[0].at <= instant:
                change = pending.pop(0)
                if change.action == "delete_draft":
                    self.report.deleted.add(self.backend.delete_draft(change.candidate))
                else:
                    apply(self.backend, change)
                self.calendar_changed |= change.action in ("put", "delete")
            self.instant(index, instant)
        self.report.verdict = inspect(self.backend, self.root, self.report.deleted)
        return self.report

    def instant(self, index: int, instant: datetime) -> None:
        if instant in self.forced:
            result = run_pass(self.config, instant, crash_at=self.forced[instant])
            self.report.passes += 1
            if not result.killed:
                raise AssertionError(f"{self.forced[instant]} was not reached at {instant}")
            self.report.kills += 1
            self.report.kills_by_point[self.forced[instant].split(":")[0]] += 1
        for attempt in range(self.kills_per_instant):
            crash_at, kill_after = self.fault(attempt, index)
            result = run_pass(self.config, instant, crash_at=crash_at, kill_after=kill_after)
            self.report.passes += 1
            if result.killed:
                self.report.kills += 1
                self.report.kills_by_point[(crash_at or "random").split(":")[0]] += 1
                continue
            self.expect_clean(
                result, instant, f"with {crash_at or f'a kill after {kill_after:.2f}s'}"
            )
            self.report.completed_despite_fault += 1
            return
        result = run_pass(self.config, instant)
        self.report.passes += 1
        self.expect_clean(result, instant, "after the kills")

    def expect_clean(self, result: Pass, instant: datetime, what: str) -> None:
        if result.code != 0 or "Traceback" in result.stderr:
            raise AssertionError(
                f"{self.mode} chain (seed {self.report.seed}), pass at {instant.isoformat()} {what} "
                f"exited {result.code}:\n{result.stderr[-3000:]}"
            )
        self.report.clean_seconds.append(result.seconds)
