"""The executor's pass, step by step: sync → settled snapshot → plan → carry out → remember an
empty plan; and the idle rule that skips snapshot and planning while nothing changed.

Each step runs alone on a real state database in a temporary directory, a real ICS file and a
real Maildir; nothing of ours is patched.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from recruitmail.contracts.connector import KEY_HEADER
from recruitmail.daemon.executor import REPLAN_AFTER, MailboxRunner, Pass, PassReport
from recruitmail.daemon.planner import LedgerState, plan
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.runtime import open_runner
from recruitmail.daemon.settings import Settings, load_settings
from recruitmail.daemon.state import State
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend, parse
from tests.scenario.runner import write_config
from tests.scenario.spec import EventSpec, Who, at

ANNA = Who("anna.svensson@example.com", "Anna Svensson")
BO = Who("bo.ek@example.org", "Bo Ek")
MONDAY = at(date(2026, 12, 7), "09:00")
WEDNESDAY = date(2026, 12, 9)


def booking(uid: str, who: Who, day: date, hhmm: str) -> EventSpec:
    start = at(day, hhmm)
    return EventSpec(
        uid=uid,
        subject=f"Intervju: {who.name}",
        start=start,
        end=start + timedelta(hours=1),
        organizer=two_weeks.RECRUITER,
        attendees=(two_weeks.RECRUITER, two_weeks.PANEL, who),
    )


class Mailbox:
    """One configured mailbox (ICS file + Maildir) and its state database on disk."""

    def __init__(self, root: Path, renderer: Renderer) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self.backend = IcsMaildirBackend(root)
        self.config = write_config(self.backend, root)
        self.settings: Settings = load_settings(self.config)
        self.state = State.open(self.settings.service)
        self.renderer = renderer

    def runner(self) -> Iterator[MailboxRunner]:
        with open_runner(self.settings, 0, self.state, self.renderer) as runner:
            yield runner

    def drafts(self) -> list[str]:
        """The keys of the drafts in the Maildir, sorted."""
        return sorted(str(parse(p.read_bytes())[KEY_HEADER]) for p in self.backend.files(".Drafts"))

    def ledger(self) -> dict[str, LedgerState]:
        return {r.entry.key.id: r.entry.state for r in self.state.all_ledger()}


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    """The default templates, compiled once for the module (``recruitmail check`` proves them)."""
    return Renderer(None, tmp_path_factory.mktemp("template-cache"))


@pytest.fixture
def mailbox(tmp_path: Path, renderer: Renderer) -> Iterator[Mailbox]:
    box = Mailbox(tmp_path / "box", renderer)
    box.backend.put(booking("anna@nordljus.se", ANNA, WEDNESDAY, "10:00"))
    try:
        yield box
    finally:
        box.state.close()


@pytest.fixture
def runner(mailbox: Mailbox) -> Iterator[MailboxRunner]:
    yield from mailbox.runner()


def start(runner: MailboxRunner, now: datetime) -> Pass:
    return Pass(now, runner.calendar(now), PassReport(runner.box.address))


# -- each step alone ---------------------------------------------------------------------------


def test_sync_stores_the_interviews_and_says_how_many_events_came(
    mailbox: Mailbox, runner: MailboxRunner
) -> None:
    report = PassReport(runner.box.address)
    before = mailbox.state.events_version(runner.box.address)

    runner.sync(MONDAY, report)

    assert report.synced_events == 1 and report.full_sync
    assert [e.event_id for e in mailbox.state.events(runner.box.address)] != []
    assert mailbox.state.events_version(runner.box.address) != before
    assert mailbox.ledger() == {}  # syncing drafts nothing


def test_the_settled_snapshot_holds_the_interviews_and_the_ledger(runner: MailboxRunner) -> None:
    run = start(runner, MONDAY)
    runner.sync(MONDAY, run.report)

    snapshot = runner.settled_snapshot(run)

    assert [i.candidate.address for i in snapshot.interviews] == [ANNA.address]
    assert snapshot.ledger == ()
    assert run.version is not None and not run.refreshed


def test_carrying_out_a_plan_drafts_into_the_mailbox_and_records_it(
    mailbox: Mailbox, runner: MailboxRunner
) -> None:
    run = start(runner, MONDAY)
    runner.sync(MONDAY, run.report)
    snapshot = runner.settled_snapshot(run)
    decided = plan(snapshot, MONDAY, runner.settings, run.calendar)
    assert [m.kind.value for m in decided.drafts] == ["welcome"]

    runner.carry_out(decided, snapshot, run)

    assert run.report.drafted == ["welcome"]
    assert mailbox.drafts() == [decided.drafts[0].key.id]
    assert mailbox.ledger() == {decided.drafts[0].key.id: LedgerState.DRAFTED}


def test_a_moved_interview_makes_the_snapshot_ask_the_mailbox_first(
    mailbox: Mailbox, runner: MailboxRunner
) -> None:
    runner.reconcile(MONDAY)  # the welcome is drafted
    mailbox.backend.put(booking("anna@nordljus.se", ANNA, WEDNESDAY, "15:00"))
    run = start(runner, MONDAY + timedelta(hours=1))
    runner.sync(run.now, run.report)

    snapshot = runner.settled_snapshot(run)

    assert run.refreshed  # the draft's state was asked: the ledger may have changed
    assert [e.remote_state.value for e in snapshot.ledger if e.remote_state] == ["pending"]


# -- remembering an empty plan -----------------------------------------------------------------


def quiet_runner(runner: MailboxRunner) -> datetime:
    """Draft what is due on Monday morning, then plan once more (an empty plan); returns when."""
    assert runner.reconcile(MONDAY).drafted == ["welcome"]
    moment = MONDAY + timedelta(minutes=1)
    settled = runner.reconcile(moment)
    assert settled.planned and settled.drafted == []
    return moment


def test_after_an_empty_plan_nothing_is_planned_until_something_changes(
    runner: MailboxRunner,
) -> None:
    moment = quiet_runner(runner)

    for minutes in (2, 30, 59):
        idle = runner.reconcile(moment + timedelta(minutes=minutes))
        assert not idle.planned and idle.drafted == [] and idle.synced_events == 0


def test_the_next_due_time_of_the_empty_plan_ends_the_skipping(runner: MailboxRunner) -> None:
    """Monday's empty plan is good until Monday's local midnight at the latest, bounded by
    REPLAN_AFTER; each later plan is good until its own next due time."""
    moment = quiet_runner(runner)
    runner.reconcile(moment + timedelta(minutes=5))
    replanned = runner.reconcile(moment + REPLAN_AFTER)
    assert replanned.planned and replanned.drafted == []
    assert not runner.reconcile(moment + REPLAN_AFTER + timedelta(minutes=1)).planned


def test_a_clock_going_back_plans_again(runner: MailboxRunner) -> None:
    moment = quiet_runner(runner)
    assert runner.reconcile(moment - timedelta(minutes=30)).planned


def test_a_calendar_change_plans_again_and_drafts_what_it_brings(
    mailbox: Mailbox, runner: MailboxRunner
) -> None:
    moment = quiet_runner(runner)
    mailbox.backend.put(booking("bo@nordljus.se", BO, WEDNESDAY, "13:00"))

    report = runner.reconcile(moment + timedelta(minutes=1))

    assert report.planned and report.drafted == ["welcome"]


def test_a_write_by_another_process_plans_again(mailbox: Mailbox, runner: MailboxRunner) -> None:
    """`recruitmail close` in another process: the next pass plans (and so sees it)."""
    moment = quiet_runner(runner)
    other = State.open(mailbox.settings.service)
    try:
        assert other.set_closed(runner.box.address, ANNA.address, True) > 0
    finally:
        other.close()

    assert runner.reconcile(moment + timedelta(minutes=1)).planned
    assert not runner.reconcile(moment + timedelta(minutes=2)).planned


def test_a_runner_kept_open_drafts_what_a_runner_per_pass_drafts(
    tmp_path: Path, renderer: Renderer
) -> None:
    """Over a working week polled every 40 minutes, the daemon's runner (kept open: it skips the passes
    with nothing to plan) and `recruitmail once`'s (a new runner each pass: it plans every time)
    leave the same drafts and the same ledger: welcomes, thank-yous, Friday's weekend greeting,
    a booking that arrives on Tuesday and a cancellation."""
    kept, fresh = Mailbox(tmp_path / "kept", renderer), Mailbox(tmp_path / "fresh", renderer)
    changes = [
        (MONDAY, booking("anna@nordljus.se", ANNA, WEDNESDAY, "10:00")),
        (MONDAY + timedelta(days=1, hours=2), booking("bo@nordljus.se", BO, WEDNESDAY, "14:00")),
        (
            MONDAY + timedelta(days=1, hours=5),
            booking("carl@nordljus.se", Who("carl@example.net", "Carl Berg"), WEDNESDAY, "16:00"),
        ),
    ]
    cancel = ("carl@nordljus.se", MONDAY + timedelta(days=1, hours=7))
    skipped = passes = 0
    try:
        with open_runner(kept.settings, 0, kept.state, kept.renderer) as daemon:
            moment = MONDAY
            while moment < MONDAY + timedelta(days=4, hours=1):
                for box in (kept, fresh):
                    for when, spec in changes:
                        if when <= moment and spec.uid not in box.backend.events:
                            box.backend.put(spec)
                    if cancel[1] <= moment and cancel[0] in box.backend.events:
                        box.backend.delete(cancel[0])
                skipped += not daemon.reconcile(moment).planned
                passes += 1
                for runner in fresh.runner():
                    assert runner.reconcile(moment).planned
                moment += timedelta(minutes=40)
        assert kept.drafts() == fresh.drafts()
        assert kept.ledger() == fresh.ledger()
        kinds = {r.entry.key.kind.value for r in kept.state.all_ledger()}
        assert {"welcome", "thank_you", "weekend_greeting"} <= kinds
        # Each empty plan holds for an hour at most (REPLAN_AFTER): every other pass is skipped.
        assert skipped > passes // 3
    finally:
        kept.state.close()
        fresh.state.close()


# -- what a pass says ------------------------------------------------------------------------


def stale_lines(
    tmp_path: Path, renderer: Renderer, candidates: int, caplog: pytest.LogCaptureFixture
) -> tuple[PassReport, list[logging.LogRecord]]:
    """A first pass over a calendar whose ``candidates`` interviews were a month ago (each welcome
    and thank-you past its time), its report and what it logged about skipping."""
    box = Mailbox(tmp_path / "history", renderer)
    month_ago = WEDNESDAY - timedelta(days=30)
    for n in range(candidates):
        who = Who(f"candidate{n}@example.net", f"Kandidat {n}")
        box.backend.put(booking(f"old-{n}@nordljus.se", who, month_ago, f"{9 + n % 8:02d}:00"))
    try:
        with caplog.at_level(logging.DEBUG, logger="recruitmail"):
            for runner in box.runner():
                report = runner.run_pass(MONDAY)
    finally:
        box.state.close()
    return report, [r for r in caplog.records if "skipped" in r.getMessage()]


def test_a_pass_with_a_few_stale_mails_names_each_at_info(
    tmp_path: Path, renderer: Renderer, caplog: pytest.LogCaptureFixture
) -> None:
    report, lines = stale_lines(tmp_path, renderer, 2, caplog)
    assert 1 < len(report.skipped) <= 10
    assert [r.levelno for r in lines] == [logging.INFO] * len(report.skipped)


def test_a_first_pass_over_months_of_history_sums_its_stale_mails_up_in_one_info_line(
    tmp_path: Path, renderer: Renderer, caplog: pytest.LogCaptureFixture
) -> None:
    report, lines = stale_lines(tmp_path, renderer, 12, caplog)
    assert len(report.skipped) > 10
    info = [r.getMessage() for r in lines if r.levelno == logging.INFO]
    each = [r for r in lines if r.levelno == logging.DEBUG]
    assert len(each) == len(report.skipped)  # every mail still has its line, at DEBUG
    kinds = Counter(kind for kind, _ in report.skipped)
    assert info == [
        f"{report.mailbox} {len(report.skipped)} mails past their time skipped ("
        + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        + "); each is in `recruitmail status`"
    ]
