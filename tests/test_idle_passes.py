"""Idle passes on both state backends: after an empty plan a kept runner skips planning while
nothing changed, on PostgreSQL as on SQLite, and plans again as soon as anyone — another
process, another instance sharing the database — wrote to what planning reads of its mailbox.

Every test runs on a real ``State`` twice (``state_location``: SQLite, then a real PostgreSQL
server started by the tests), with a real ICS file and a real Maildir; nothing of ours is patched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from recruitmail.contracts.connector import KEY_HEADER
from recruitmail.contracts.models import DraftKey, DraftRef, DraftState, Event, MailKind
from recruitmail.daemon.executor import MailboxRunner
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.runtime import open_runner
from recruitmail.daemon.settings import load_settings
from recruitmail.daemon.state import Finished, SkipRecord, State
from tests.postgres import (  # noqa: F401
    postgres_fixture,
    postgres_url_fixture,
    state_location_fixture,
)
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend, parse
from tests.test_executor_pipeline import ANNA, BO, MONDAY, WEDNESDAY, booking

BOX = two_weeks.RECRUITER.address
OTHER_BOX = "kollega@nordljus.se"
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


class Setup:
    """One configured mailbox (ICS file + Maildir) whose state lives at ``location``."""

    def __init__(self, root: Path, location: Path | str, renderer: Renderer) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.backend = IcsMaildirBackend(root)
        text = two_weeks.CONFIG.replace("{state_dir}", str(root / "state"))
        if isinstance(location, str):
            text = text.replace("[service]\n", f'[service]\nstate = "{location}"\n', 1)
        self.config = root / "recruitmail.toml"
        self.config.write_text(text + self.backend.config(), encoding="utf-8")
        self.settings = load_settings(self.config)
        self.renderer = renderer
        self.states: list[State] = []

    def state(self) -> State:
        """A connection of its own to the mailbox's state, as another process would open."""
        state = State.open(self.settings.service)
        self.states.append(state)
        return state

    def runner(self, state: State) -> Iterator[MailboxRunner]:
        with open_runner(self.settings, 0, state, self.renderer) as runner:
            yield runner

    def drafts(self) -> list[str]:
        return sorted(str(parse(p.read_bytes())[KEY_HEADER]) for p in self.backend.files(".Drafts"))

    def close(self) -> None:
        for state in self.states:
            state.close()


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    return Renderer(None, tmp_path_factory.mktemp("template-cache"))


@pytest.fixture
def setup(tmp_path: Path, state_location: Path | str, renderer: Renderer) -> Iterator[Setup]:
    if isinstance(state_location, Path):
        state_location.parent.mkdir(parents=True, exist_ok=True)
    found = Setup(tmp_path / "box", state_location, renderer)
    found.backend.put(booking("anna@nordljus.se", ANNA, WEDNESDAY, "10:00"))
    try:
        yield found
    finally:
        found.close()


@pytest.fixture
def runner(setup: Setup) -> Iterator[MailboxRunner]:
    yield from setup.runner(setup.state())


def quiet(runner: MailboxRunner) -> datetime:
    """Draft Monday morning's welcome, then plan once more (an empty plan); returns when."""
    assert runner.reconcile(MONDAY).drafted == ["welcome"]
    moment = MONDAY + timedelta(minutes=1)
    settled = runner.reconcile(moment)
    assert settled.planned and settled.drafted == []
    return moment


# -- the runner ----------------------------------------------------------------------------------


def test_an_idle_pass_skips_planning_and_writes_nothing(runner: MailboxRunner) -> None:
    moment = quiet(runner)
    box = runner.box.address
    version, synced = runner.state.events_version(box), runner.state.last_sync(box)

    for minutes in (1, 10, 45):
        idle = runner.reconcile(moment + timedelta(minutes=minutes))
        assert not idle.planned and idle.drafted == [] and idle.synced_events == 0

    # Nothing came from the calendar and nothing was decided: no write transaction at all.
    assert runner.state.events_version(box) == version
    assert runner.state.last_sync(box) == synced


def _close(state: State) -> None:
    assert state.set_closed(BOX, ANNA.address, True) == 1


def _reopen_everywhere(state: State) -> None:
    state.set_closed(None, ANNA.address, False)


def _contact(state: State) -> None:
    state.record_contact(BOX, ANNA.address, MONDAY)


def _forget(state: State) -> None:
    assert state.forget(ANNA.address) > 0


def _obsolete(state: State) -> None:
    welcome = next(r for r in state.ledger(BOX) if r.entry.key.kind is MailKind.WELCOME)
    state.mark_obsolete(welcome.entry.key, "cancelled in another instance", MONDAY)


def _remote_state(state: State) -> None:
    welcome = next(r for r in state.ledger(BOX) if r.entry.key.kind is MailKind.WELCOME)
    state.set_remote_state(welcome.entry.key, DraftState.SENT, MONDAY)


@pytest.mark.parametrize(
    "write",
    [_close, _reopen_everywhere, _contact, _forget, _obsolete, _remote_state],
    ids=["close", "reopen", "contact", "forget", "obsolete", "sent"],
)
def test_a_write_through_another_connection_plans_again(
    setup: Setup, runner: MailboxRunner, write: Callable[[State], None]
) -> None:
    """``close``, ``forget``, another instance's ledger writes: each is seen by the next pass of
    a runner kept open in another process, whichever backend holds the state."""
    moment = quiet(runner)
    assert not runner.reconcile(moment + timedelta(minutes=1)).planned

    write(setup.state())

    assert runner.reconcile(moment + timedelta(minutes=2)).planned


def test_two_instances_on_one_state_draft_a_new_booking_once(setup: Setup) -> None:
    """A quiet runner of one instance, and a runner of another instance (its own connection)
    that drafts a new booking first: the quiet one plans again and drafts nothing twice."""
    first = setup.runner(setup.state())
    kept = next(first)
    moment = quiet(kept)
    setup.backend.put(booking("bo@nordljus.se", BO, WEDNESDAY, "13:00"))

    second = setup.runner(setup.state())
    other = next(second)
    assert other.reconcile(moment + timedelta(minutes=1)).drafted == ["welcome"]
    second.close()

    again = kept.reconcile(moment + timedelta(minutes=2))
    assert again.planned and again.drafted == []
    assert len(setup.drafts()) == 2, setup.drafts()  # Anna's welcome and Bo's, once each
    assert not kept.reconcile(moment + timedelta(minutes=3)).planned
    first.close()


# -- the change counters ---------------------------------------------------------------------------


def _key(candidate: str = ANNA.address, mailbox: str = BOX) -> DraftKey:
    return DraftKey(mailbox, candidate, MailKind.WELCOME, "occasion-1")


def _event(event_id: str) -> Event:
    start = NOW + timedelta(days=2)
    return Event(
        event_id=event_id,
        ical_uid=event_id,
        subject="Intervju: Anna",
        start=start,
        end=start + timedelta(hours=1),
    )


WRITES: dict[str, Callable[[State], object]] = {
    "sync with events": lambda s: s.apply_sync(BOX, (_event("e1"),), (), "c2", False, NOW),
    "full sync": lambda s: s.apply_sync(BOX, (), (), "c2", True, NOW),
    "dropped events": lambda s: s.drop_events(BOX, ["e0"]),
    "attempt": lambda s: s.begin_attempt(_key(), NOW, {}, NOW),
    "attempts": lambda s: s.begin_attempts([(_key(BO.address), NOW, {})], NOW),
    "abandoned": lambda s: s.abandon_attempts([_key()]),
    "ambiguous": lambda s: s.mark_ambiguous(_key(), NOW),
    "drafted": lambda s: s.finish_drafts([Finished(_key(), DraftRef("r1", "f"), "Hej")], NOW),
    "skipped": lambda s: s.record_skips([SkipRecord(_key(BO.address), NOW, "stale")], NOW),
    "obsolete": lambda s: s.mark_obsolete(_key(), "moved", NOW),
    "remote state": lambda s: s.set_remote_state(_key(), DraftState.EDITED, NOW),
    "contact": lambda s: s.record_contact(BOX, ANNA.address, NOW),
    "closed": lambda s: s.set_closed(BOX, ANNA.address, True),
    "forget": lambda s: s.forget(ANNA.address),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_every_write_planning_reads_raises_its_mailbox_version_for_every_connection(
    state_location: Path | str, name: str
) -> None:
    writer = State(state_location)
    reader = State(state_location)  # another process or instance
    try:
        writer.apply_sync(BOX, (_event("e0"),), (), "c1", True, NOW)
        writer.begin_attempt(_key(), NOW, {}, NOW)
        writer.apply_sync(OTHER_BOX, (), (), "c1", True, NOW)
        before = reader.events_version(BOX), reader.events_version(OTHER_BOX)

        WRITES[name](writer)

        assert reader.events_version(BOX) != before[0], f"{name} went unseen"
        if reader.backend == "postgresql" and name != "forget":
            # Per mailbox: the other mailbox's runners go on skipping (SQLite's data_version
            # changes with any commit; ``forget`` may touch every mailbox).
            assert reader.events_version(OTHER_BOX) == before[1]
    finally:
        writer.close()
        reader.close()


def test_reads_and_a_quiet_sync_leave_the_version_as_it_was(state_location: Path | str) -> None:
    state = State(state_location)
    try:
        state.apply_sync(BOX, (_event("e0"),), (), "c1", True, NOW)
        version = state.events_version(BOX)
        state.events(BOX), state.ledger(BOX), state.contacts(BOX), state.closed(BOX)
        state.cursor(BOX), state.hold_until(BOX)
        state.record_problem(BOX, "last contact", "refused", True, NOW)  # not read by planning
        assert state.events_version(BOX) == version
    finally:
        state.close()
