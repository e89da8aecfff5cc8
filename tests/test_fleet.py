"""The daemon over a fleet of Microsoft 365 mailboxes: when every pass comes due together, the
waiting passes' calendars are asked ahead in JSON batches and no pass asks again; a booking made
meanwhile is still drafted; with batching off every pass asks on its own; a pass that waited
longer than an interval for a worker still runs."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recruitmail.daemon.runtime import validate
from recruitmail.daemon.scheduler import Service
from recruitmail.daemon.service import Metrics, Notifier
from recruitmail.daemon.settings import load_settings
from tests.fakes.graph import FakeGraph
from tests.scenario import two_weeks
from tests.scenario.spec import STOCKHOLM, EventSpec, Who

BOXES = [Who(f"rekryterare{n:02d}@nordljus.se", f"Rekryterare {n}") for n in range(25)]
WAIT = 120.0


def booked(owner: Who, serial: int) -> EventSpec:
    day = datetime.now(STOCKHOLM).date() + timedelta(days=3)
    start = datetime(day.year, day.month, day.day, 13, 0, tzinfo=STOCKHOLM)
    return EventSpec(
        uid=f"bokad-{serial}@nordljus.se",
        subject="Intervju: Nora Nybokad",
        start=start,
        end=start + timedelta(hours=1),
        organizer=owner,
        attendees=(owner, two_weeks.PANEL, Who(f"nora{serial}@example.org", "Nybokad, Nora")),
    )


@dataclass
class Passes(Metrics):
    """The daemon's metrics interface: which mailboxes finished a pass, and when."""

    done: list[tuple[str, float]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def pass_finished(self, mailbox: str, seconds: float, ok: bool) -> None:
        with self.changed:
            self.done.append((mailbox, time.monotonic()))
            self.changed.notify_all()

    def round_after(self, moment: float) -> set[str]:
        """Wait until every mailbox finished a pass after ``moment``."""
        deadline = time.monotonic() + WAIT
        with self.changed:
            while True:
                seen = {m for m, at in self.done if at >= moment}
                if len(seen) >= len(BOXES) or time.monotonic() > deadline:
                    return seen
                self.changed.wait(1.0)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGraph]:
    directory = tmp_path / "fake-graph"
    directory.mkdir()
    with FakeGraph(directory) as server:
        for box in BOXES:
            server.add_mailbox(box.address, box.name)
        yield server


def config(fake: FakeGraph, tmp_path: Path, *, batch: bool) -> Path:
    company = two_weeks.CONFIG.split("[[mailboxes]]")[0]
    company = company.replace("{state_dir}", str(tmp_path / "state"))
    options = fake.options("")
    options.pop("user", None)
    table = "\n".join(f'{k} = "{v}"' for k, v in options.items())
    lines = [company.rstrip(), "interval_seconds = 3600", f"batch_requests = {str(batch).lower()}"]
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
    path = tmp_path / "recruitmail.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Daemon:
    service: Service
    thread: threading.Thread
    passes: Passes

    def all_due_now(self) -> float:
        """Every mailbox's pass comes due at once, as each interval brings them in a daemon."""
        moment = time.monotonic()
        now = datetime.now(UTC)
        for job in self.service.scheduler.get_jobs():
            job.modify(next_run_time=now)
        return moment


@pytest.fixture
def daemon(fake: FakeGraph, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Daemon]:
    path = config(fake, tmp_path, batch=getattr(request, "param", True))
    settings = load_settings(path)
    passes = Passes()
    service = Service(path, settings, validate(settings), Notifier(None), passes)
    thread = threading.Thread(target=service.serve_forever)
    thread.start()
    try:
        assert passes.round_after(0.0) == {b.address for b in BOXES}  # the first (full) passes
        yield Daemon(service, thread, passes)
    finally:
        service.stop.set()
        thread.join()


def delta_requests(fake: FakeGraph, since: int) -> list[tuple[str, bool]]:
    return [
        (r.mailbox, r.batched)
        for r in fake.graph_requests()[since:]
        if r.path.endswith("/calendarView/delta")
    ]


def test_passes_due_together_have_their_calendars_asked_in_batches(
    fake: FakeGraph, daemon: Daemon
) -> None:
    fake.put_event(BOXES[7].address, booked(BOXES[7], 1))
    since = len(fake.graph_requests())
    moment = daemon.all_due_now()
    assert daemon.passes.round_after(moment) == {b.address for b in BOXES}
    asked = delta_requests(fake, since)
    # Every calendar asked once; a pass that started before it could be claimed asks itself.
    assert sorted(m for m, _ in asked) == sorted(b.address for b in BOXES)
    batched = sum(1 for _, inside in asked if inside)
    assert batched >= len(BOXES) // 2
    batches = [r for r in fake.graph_requests()[since:] if r.path == "/v1.0/$batch"]
    assert 1 <= len(batches) <= batched
    # The booking made before the round is drafted, exactly once.
    drafts = [m for m in fake.drafts(BOXES[7].address) if "nora1@" in str(m.data["toRecipients"])]
    assert len(drafts) == 1
    assert fake.early_requests() == []


@pytest.mark.parametrize("daemon", [False], indirect=True)
def test_with_batching_off_every_pass_asks_on_its_own(fake: FakeGraph, daemon: Daemon) -> None:
    since = len(fake.graph_requests())
    moment = daemon.all_due_now()
    assert daemon.passes.round_after(moment) == {b.address for b in BOXES}
    asked = delta_requests(fake, since)
    assert sorted(asked) == sorted((b.address, False) for b in BOXES)


def test_a_pass_that_waited_longer_than_an_interval_still_runs(
    fake: FakeGraph, daemon: Daemon
) -> None:
    """A daemon whose workers fell behind (or a machine that slept) runs every mailbox's pass
    once it can, in turn, rather than dropping the late ones."""
    late = datetime.now(UTC) - timedelta(hours=5)  # five intervals ago
    moment = time.monotonic()
    for job in daemon.service.scheduler.get_jobs():
        job.modify(next_run_time=late)
    assert daemon.passes.round_after(moment) == {b.address for b in BOXES}
