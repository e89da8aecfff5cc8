"""Three ``recruitmail run`` instances on one real PostgreSQL share the Graph fake's mailboxes
while they are SIGKILLed (and restarted) and SIGSTOPped (and resumed once their leases ran out)
at random, and bookings keep arriving: every booking gets exactly one welcome draft (0
duplicates, 0 lost), no attempt is left pending, and after each failure every mailbox is
reconciled within two pass intervals (read from the fake's own request records).

Sized by ``RELIABILITY_INSTANCE_KILLS`` (failures, SIGKILL and SIGSTOP together; 200 when
``CI=true``, 8 otherwise). The instances run with the shortest pass interval the configuration
allows (10 s, so a 7.5 s lease) and a 4 s look-up grace (more than the lease's 2.5 s
safety margin, docs/RELIABILITY.md "Several instances").
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from random import Random

import pytest

from recruitmail.daemon.planner import LedgerState
from recruitmail.daemon.state import State
from tests.fakes.graph import FakeGraph
from tests.postgres import PostgresServer, postgres_fixture  # noqa: F401
from tests.reliability import budget
from tests.scenario import two_weeks
from tests.scenario.spec import STOCKHOLM, EventSpec, Who
from tests.servers import spawn, stop

ROOT = Path(__file__).resolve().parents[2]
FAILURES = budget._int("RELIABILITY_INSTANCE_KILLS", 200 if os.environ.get("CI") == "true" else 8)
INSTANCES = 3
INTERVAL = 10.0  # seconds: the shortest service.interval_seconds, and the lease
GRACE = 4  # service.lookup_grace_seconds: more than a third of the lease (the safety margin)
BOXES = [Who(f"rekryterare{n:02d}@nordljus.se", f"Rekryterare {n}") for n in range(9)]
SETTLE = 120.0  # seconds the fleet gets to draft the last bookings (a guard, not a measurement)

pytestmark = pytest.mark.timeout(budget.timeout(8.0, FAILURES))


def booking(owner: Who, serial: int) -> EventSpec:
    day = datetime.now(STOCKHOLM).date() + timedelta(days=3)
    start = datetime(day.year, day.month, day.day, 13, 0, tzinfo=STOCKHOLM)
    return EventSpec(
        uid=f"bokad-{serial}@nordljus.se",
        subject="Intervju: Nora Nybokad",
        start=start,
        end=start + timedelta(hours=1),
        organizer=owner,
        attendees=(owner, two_weeks.PANEL, Who(candidate(serial), "Nybokad, Nora")),
    )


def candidate(serial: int) -> str:
    return f"nora{serial}@example.org"


def write_config(fake: FakeGraph, directory: Path, url: str) -> Path:
    company = two_weeks.CONFIG.split("[[mailboxes]]")[0]
    company = company.replace("{state_dir}", str(directory / "state"))
    company = company.replace("lookup_grace_seconds = 0", f"lookup_grace_seconds = {GRACE}")
    options = fake.options("")
    options.pop("user", None)
    table = "\n".join(f'{k} = "{v}"' for k, v in options.items())
    lines = [
        company.rstrip(),
        f'state = "{url}"',
        f"interval_seconds = {int(INTERVAL)}",
        "workers = 4",
        "batch_requests = false",
    ]
    for box in BOXES:
        lines += [
            "[[mailboxes]]",
            f'address = "{box.address}"',
            f'name = "{box.name}"',
            "[mailboxes.source]",
            'type = "microsoft"',
            table,
            "[mailboxes.sink]",
            'type = "microsoft"',
            table,
        ]
    path = directory / "recruitmail.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Slot:
    """One of the three instances: its current process, and what happened to it."""

    number: int
    process: subprocess.Popen[bytes] | None = None
    stopped_until: float = 0.0  # monotonic; 0 when running
    logs: list[Path] = field(default_factory=list)


class Fleet:
    """The instances, started with ``tests/servers.spawn`` (always stopped at the end)."""

    def __init__(self, config: Path, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self.slots = [Slot(n) for n in range(INSTANCES)]
        self.starts = 0

    def start(self, slot: Slot) -> None:
        self.starts += 1
        log = self.directory / f"instance-{slot.number}-{self.starts}.log"
        slot.logs.append(log)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RECRUITMAIL_")}
        env["PYTHONPATH"] = str(ROOT)
        with log.open("wb") as out:
            slot.process = spawn(
                [sys.executable, "-m", "recruitmail", "--config", str(self.config), "run"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=out,
            )
        slot.stopped_until = 0.0

    def healthy(self) -> list[Slot]:
        return [
            s
            for s in self.slots
            if s.process is not None and s.process.poll() is None and not s.stopped_until
        ]

    def kill(self, slot: Slot) -> None:
        assert slot.process is not None
        os.killpg(slot.process.pid, signal.SIGKILL)
        slot.process.wait()
        stop(slot.process)
        slot.process = None

    def pause(self, slot: Slot, seconds: float) -> None:
        assert slot.process is not None
        os.killpg(slot.process.pid, signal.SIGSTOP)
        slot.stopped_until = time.monotonic() + seconds

    def resume_due(self) -> None:
        for slot in self.slots:
            if slot.stopped_until and time.monotonic() >= slot.stopped_until:
                assert slot.process is not None
                os.killpg(slot.process.pid, signal.SIGCONT)
                slot.stopped_until = 0.0

    def stop_all(self) -> list[int | None]:
        codes: list[int | None] = []
        for slot in self.slots:
            if slot.process is None:
                codes.append(None)
                continue
            os.killpg(slot.process.pid, signal.SIGCONT)
            stop(slot.process)  # SIGTERM: a clean stop releases the leases
            codes.append(slot.process.returncode)
        return codes


@pytest.fixture
def fake(scratch: Path) -> Iterator[FakeGraph]:
    directory = scratch / "fake-graph"
    directory.mkdir()
    with FakeGraph(directory) as graph:
        for box in BOXES:
            graph.add_mailbox(box.address, box.name)
        yield graph


def test_three_instances_killed_and_stopped_at_random_never_duplicate_or_lose_a_draft(
    fake: FakeGraph, scratch: Path, postgres: PostgresServer
) -> None:
    rng = Random(budget.SEED)
    url = postgres.new_database()
    config = write_config(fake, scratch, url)
    fleet = Fleet(config, scratch)
    booked: dict[str, str] = {}  # candidate → mailbox
    lock = threading.Lock()
    done = threading.Event()

    def book() -> None:
        serial = 0
        while not done.wait(rng.uniform(0.3, 1.5)):
            serial += 1
            owner = BOXES[serial % len(BOXES)]
            with lock:
                fake.put_event(owner.address, booking(owner, serial))
                booked[candidate(serial)] = owner.address

    # (monotonic time, SIGKILL | SIGSTOP, the mailboxes the victim held)
    failures: list[tuple[float, str, frozenset[str]]] = []
    booker = threading.Thread(target=book, name="booker")
    try:
        for slot in fleet.slots:
            fleet.start(slot)
        booker.start()
        time.sleep(INTERVAL)  # every instance up, the mailboxes shared
        while len(failures) < FAILURES:
            fleet.resume_due()
            for slot in fleet.slots:
                if slot.process is None:
                    fleet.start(slot)  # restarted, as systemd would
            healthy = fleet.healthy()
            if len(healthy) < 2:  # one must stay to take the mailboxes over
                time.sleep(0.2)
                continue
            # A holder of mailboxes, so that the failure has something to take over.
            holders = holding(url)
            victim = rng.choice(
                [s for s in healthy if s.process and s.process.pid in holders] or healthy
            )
            assert victim.process is not None
            held = frozenset(holders.get(victim.process.pid, ()))
            # At least one of each kind, then a quarter of them SIGSTOP.
            if len(failures) == 1 or (len(failures) > 1 and rng.random() < 0.25):
                fleet.pause(victim, 0.75 * INTERVAL + rng.uniform(0.5, 4.0))  # past its lease
                failures.append((time.monotonic(), "SIGSTOP", held))
            else:
                fleet.kill(victim)
                failures.append((time.monotonic(), "SIGKILL", held))
            time.sleep(rng.uniform(0.3, 1.5))
        # Every instance back; the last failure gets its two intervals; the last bookings drafted.
        deadline = time.monotonic() + 2 * INTERVAL
        while time.monotonic() < deadline:
            fleet.resume_due()
            for slot in fleet.slots:
                if slot.process is None:
                    fleet.start(slot)
            time.sleep(0.2)
        done.set()
        booker.join()
        settle = time.monotonic() + SETTLE
        while time.monotonic() < settle:
            fleet.resume_due()
            if all(len(drafts_for(fake, c, b)) >= 1 for c, b in booked.items()) and not pending(
                url
            ):
                break
            time.sleep(1.0)
    finally:
        done.set()
        if booker.is_alive():
            booker.join()
        codes = fleet.stop_all()

    kinds = [kind for _, kind, _ in failures]
    print(
        f"\nseed {budget.SEED}: {len(failures)} failures ({kinds.count('SIGKILL')} SIGKILL, "
        f"{kinds.count('SIGSTOP')} SIGSTOP), {fleet.starts} instance starts, "
        f"{len(booked)} bookings"
    )
    duplicates = {c: n for c, b in booked.items() if (n := len(drafts_for(fake, c, b))) > 1}
    lost = sorted(c for c, b in booked.items() if not drafts_for(fake, c, b))
    assert duplicates == {}, f"seed {budget.SEED}: duplicate drafts {duplicates}"
    assert lost == [], f"seed {budget.SEED}: bookings without a draft {lost}"
    assert pending(url) == [], "ledger rows left 'attempting'"
    state = State(url)
    try:
        drafted = {
            r.entry.key.candidate
            for r in state.all_ledger()
            if r.entry.state is LedgerState.DRAFTED and r.entry.key.kind.value == "welcome"
        }
    finally:
        state.close()
    assert drafted == set(booked)
    assert len(failures) >= FAILURES
    if FAILURES >= 4:
        assert {"SIGKILL", "SIGSTOP"} <= set(kinds)
    # A clean stop (SIGTERM) of every instance still running, and no traceback in any log.
    ended = [
        f"{slot.logs[-1].name} (exit {code}):\n{slot.logs[-1].read_text(errors='replace')[-3000:]}"
        for slot, code in zip(fleet.slots, codes, strict=True)
        if code not in (0, None)
    ]
    assert not ended, "\n".join(ended)
    takeovers = 0
    said: list[str] = []
    for slot in fleet.slots:
        for log in slot.logs:
            text = log.read_text(errors="replace")
            assert "Traceback" not in text, log
            takeovers += text.count(" taken over from ")
            said += [f"{log.name}: {line}" for line in text.splitlines() if "fleet" in line]
    print(f"{takeovers} mailboxes taken over from a dead or stopped instance")
    if "SIGKILL" in kinds:
        assert takeovers > 0, "no takeover; the instances said:\n" + "\n".join(said[-60:])
    # Every mailbox reconciled within two intervals of each failure (its calendar asked).
    asked: dict[str, list[float]] = {}
    for record in fake.graph_requests():
        if record.path.endswith("/calendarView/delta"):
            asked.setdefault(record.mailbox, []).append(record.arrived)
    # The clock restarts when the instance that took a mailbox over fails too before its pass.
    slowest = (0.0, "", "")
    for moment, kind, _ in failures:
        for box in BOXES:
            after = [t for t in asked.get(box.address.lower(), []) if t > moment]
            assert after, f"{box.address} never reconciled after the {kind} at {moment:.1f}"
            start = max(
                [moment]
                + [m for m, _, held in failures if moment < m < min(after) and box.address in held]
            )
            slowest = max(slowest, (min(after) - start, kind, box.address))
    print(
        f"slowest first pass after a failure: {slowest[0]:.1f} s (limit {2 * INTERVAL:.0f} s), "
        f"{slowest[2]} after a {slowest[1]}"
    )
    if slowest[0] > 2 * INTERVAL:
        story = [
            f"{log.name}: {line}"
            for slot in fleet.slots
            for log in slot.logs
            for line in log.read_text(errors="replace").splitlines()
            if slowest[2] in line or "gave" in line or "fleet" in line
        ]
        raise AssertionError(
            f"seed {budget.SEED}: {slowest[2]} waited {slowest[0]:.1f} s after a {slowest[1]}; "
            "the instances said:\n" + "\n".join(story[-80:])
        )


def drafts_for(fake: FakeGraph, address: str, mailbox: str) -> list[object]:
    return [m for m in fake.drafts(mailbox) if address in str(m.data.get("toRecipients"))]


def pending(url: str) -> list[str]:
    state = State(url)
    try:
        return [r.entry.key.id for r in state.all_ledger() if r.entry.state.value == "attempting"]
    finally:
        state.close()


def holding(url: str) -> dict[int, set[str]]:
    """Pid → the mailboxes whose unexpired lease it holds (an instance id is host-pid-random)."""
    state = State(url)
    try:
        now = state.database_time()
        held: dict[int, set[str]] = {}
        for lease in state.leases():
            if lease.holder and lease.expires_at > now:
                held.setdefault(int(lease.holder.rsplit("-", 2)[1]), set()).add(lease.mailbox)
        return held
    finally:
        state.close()
