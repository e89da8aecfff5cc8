"""Leases and fencing: several instances on one real PostgreSQL share the mailboxes fairly, a
dead instance's mailboxes are taken over once its leases ran out, a stale instance can neither
record an attempt nor write a draft, a released lease is free at once, and a taken-over pending
attempt waits for the grace period; one ``run`` per SQLite state, and ``status --fleet`` on both.

Each ``Fleet`` here is one instance with its own ``State`` (its own connections), as in
separate processes; leases of three seconds keep the waiting short.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from recruitmail.contracts.errors import ConfigError
from recruitmail.contracts.models import DraftKey, DraftMessage, DraftRef, MailKind, Recipient
from recruitmail.daemon.cli import main
from recruitmail.daemon.fleet import FencedSink, Fleet, NewerSchema
from recruitmail.daemon.state import Finished, LeaseLost, State
from tests.postgres import postgres_fixture, postgres_url_fixture  # noqa: F401
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.runner import write_config

BOXES = [f"rekryterare{n}@nordljus.se" for n in range(7)]
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
INTERVAL = 4.0  # seconds: a lease of 3 s


def key(mailbox: str, candidate: str = "anna@example.com") -> DraftKey:
    return DraftKey(mailbox, candidate, MailKind.WELCOME, "i1")


class Instances:
    """Instances of the fleet opened by a test, each closed at its end."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opened: list[tuple[Fleet, State]] = []

    def start(self, boxes: list[str] = BOXES) -> Fleet:
        state = State(self.url)
        fleet = Fleet(state, boxes, INTERVAL)
        self.opened.append((fleet, state))
        return fleet

    def close(self) -> None:
        for _, state in self.opened:
            state.close()


@pytest.fixture
def instances(postgres_url: str) -> Iterator[Instances]:
    opened = Instances(postgres_url)
    yield opened
    opened.close()


def rounds(*fleets: Fleet, times: int = 3) -> None:
    """Rounds of each instance, each followed by a pass over what it holds (as the daemon's
    jobs do)."""
    for _ in range(times):
        for fleet in fleets:
            fleet.round(NOW)
            for mailbox in fleet.held():
                fleet.reconciled(mailbox)


def wait_out_lease() -> None:
    time.sleep(0.75 * INTERVAL + 0.3)


class RecordingSink:
    """A sink that counts the drafts it was asked to create."""

    def __init__(self) -> None:
        self.created: list[DraftMessage] = []

    def create_draft(self, message: DraftMessage) -> DraftRef:
        self.created.append(message)
        return DraftRef(f"draft-{len(self.created)}", "")

    def find_draft(self, key: DraftKey) -> DraftRef | None:
        return None


def test_the_mailboxes_are_shared_fairly_and_each_is_held_by_one_instance(
    instances: Instances,
) -> None:
    fleets = [instances.start() for _ in range(3)]
    rounds(*fleets)
    held = [set(f.held()) for f in fleets]
    assert sorted(len(h) for h in held) == [2, 2, 3]
    assert set().union(*held) == set(BOXES)
    assert sum(len(h) for h in held) == len(BOXES)  # no mailbox held twice
    tokens = {lease.mailbox: lease.token for lease in fleets[0].state.leases()}
    assert all(tokens[m] >= 1 for m in BOXES)


def test_a_newcomer_gets_its_share_from_the_instances_already_running(
    instances: Instances,
) -> None:
    first, second = instances.start(), instances.start()
    first.round(NOW)  # alone so far: takes every mailbox
    assert len(first.held()) == len(BOXES)
    second.round(NOW)  # says it is alive; nothing is free yet
    assert first.round(NOW)[2] == []  # nothing given back before its first pass here
    for mailbox in first.held():
        first.reconciled(mailbox)
    second.round(NOW)
    gained, lost, given = first.round(NOW)
    assert len(given) == len(BOXES) - math.ceil(len(BOXES) / 2)
    rounds(second, first)
    assert sorted(len(f.held()) for f in (first, second)) == [3, 4]
    assert set(first.held()).isdisjoint(second.held())


def test_a_dead_instances_mailboxes_are_taken_over_under_a_new_token_after_its_lease(
    instances: Instances,
) -> None:
    dead, alive = instances.start(), instances.start()
    rounds(dead, alive)
    theirs = set(dead.held())
    before = {m: dead.token(m) for m in theirs}
    alive.round(NOW)
    assert set(alive.held()).isdisjoint(theirs)  # not while the lease holds
    wait_out_lease()  # the dead instance renews nothing any more
    alive.round(NOW)
    assert set(alive.held()) == set(BOXES)
    assert all((alive.token(m) or 0) > (before[m] or 0) for m in theirs)
    assert alive.takeovers == len(theirs)


def test_a_stale_instance_can_neither_record_an_attempt_nor_create_a_draft(
    instances: Instances,
) -> None:
    stale = instances.start(BOXES[:1])
    rounds(stale)
    box = BOXES[0]
    assert stale.holds(box)
    stale.state.begin_attempts([(key(box, "bo@example.org"), NOW, {})], NOW)  # while it holds
    sink = RecordingSink()
    fenced = FencedSink(sink, box, stale)
    wait_out_lease()  # paused (SIGSTOP, a cut network): its lease runs out
    other = instances.start(BOXES[:1])
    rounds(other)
    assert other.holds(box)
    with pytest.raises(LeaseLost):
        stale.state.begin_attempts([(key(box), NOW, {})], NOW)
    assert stale.state.ledger_row(key(box)) is None  # nothing was recorded
    with pytest.raises(LeaseLost):
        stale.state.finish_drafts(
            [Finished(key(box, "bo@example.org"), DraftRef("x", ""), "Hej")], NOW
        )
    with pytest.raises(LeaseLost):
        fenced.create_draft(_message(box))
    assert sink.created == []
    assert stale.state.fenced_writes == 3
    # The holder's writes go through.
    assert other.state.begin_attempts([(key(box), NOW, {})], NOW) == {key(box).id}


def test_a_draft_write_needs_more_than_the_margin_left_on_the_lease(
    instances: Instances,
) -> None:
    clock = [100.0]
    state = State(instances.url)
    instances.opened.append((Fleet(state, [], INTERVAL), state))  # closed at the end
    fleet = Fleet(state, BOXES[:1], 30.0, clock=lambda: clock[0])
    fleet.round(NOW)
    sink = RecordingSink()
    fenced = FencedSink(sink, BOXES[0], fleet)
    fenced.create_draft(_message(BOXES[0]))
    clock[0] += fleet.ttl - fleet.margin + 0.01  # the database still says the lease holds
    with pytest.raises(LeaseLost):
        fenced.create_draft(_message(BOXES[0]))
    assert len(sink.created) == 1
    fleet.lose(BOXES[0])  # what the daemon does with a refused write
    gained, lost, given = fleet.round(NOW)  # the database still had it: renewed and ours again
    assert (gained, lost, given) == ([BOXES[0]], [], [])
    fenced.create_draft(_message(BOXES[0]))
    assert len(sink.created) == 2


def test_a_pending_attempt_of_a_taken_over_mailbox_is_looked_up_only_after_the_grace(
    instances: Instances,
) -> None:
    dead = instances.start(BOXES[:1])
    rounds(dead)
    box = BOXES[0]
    earlier = NOW - timedelta(hours=1)
    dead.state.begin_attempts([(key(box), NOW, {})], earlier)  # then killed before the create
    wait_out_lease()
    heir = instances.start(BOXES[:1])
    heir.round(NOW)
    row = heir.state.ledger_row(key(box))
    assert row is not None and row.ambiguous and row.last_attempt == NOW


def test_a_released_lease_is_free_at_once_and_its_token_keeps_growing(
    instances: Instances,
) -> None:
    leaving, staying = instances.start(), instances.start()
    rounds(leaving, staying)
    theirs = leaving.held()
    tokens = {m: leaving.token(m) or 0 for m in theirs}
    leaving.leave()
    staying.round(NOW)
    assert set(staying.held()) == set(BOXES)
    assert all((staying.token(m) or 0) == tokens[m] + 1 for m in theirs)
    assert staying.takeovers == 0  # given back, not taken over
    assert [i.id for i in staying.state.instances()] == [staying.id]


def test_after_a_reload_with_a_new_interval_the_leases_renewed_last_three_quarters_of_it(
    instances: Instances,
) -> None:
    """A SIGHUP that changes service.interval_seconds changes the lease length from the next
    round on, in the database as in the instance's own deadlines (and with it the margin a
    write needs)."""
    fleet = instances.start()
    rounds(fleet, times=1)
    lengths = {round(lease.expires_at - lease.renewed_at, 1) for lease in fleet.state.leases()}
    assert lengths == {0.75 * INTERVAL}

    fleet.interval(40.0)
    fleet.round(NOW)

    lengths = {round(lease.expires_at - lease.renewed_at, 1) for lease in fleet.state.leases()}
    assert lengths == {30.0}
    assert set(fleet.held()) == set(BOXES)
    assert all(fleet.remaining(box) > 0.75 * INTERVAL for box in BOXES)
    assert fleet.margin == 10.0


def test_an_instance_steps_down_when_a_newer_one_upgraded_the_schema(
    instances: Instances,
) -> None:
    old = instances.start()
    rounds(old)
    with old.state.transaction() as db:  # what a newer recruitmail's migration leaves behind
        db.execute("UPDATE schema_version SET version = version + 1")
    with pytest.raises(NewerSchema, match="upgrade it"):
        old.round(NOW)
    with pytest.raises(ConfigError, match="written by a newer recruitmail"):
        State(instances.url)  # and it would not start again


def test_a_second_run_on_one_sqlite_state_is_refused_and_the_first_holds_every_mailbox(
    tmp_path: Path,
) -> None:
    first = State(tmp_path / "recruitmail.sqlite")
    second = State(tmp_path / "recruitmail.sqlite")
    try:
        fleet = Fleet(first, BOXES, INTERVAL)
        with pytest.raises(ConfigError, match="another `recruitmail run` already uses"):
            Fleet(second, BOXES, INTERVAL)
        fleet.round(NOW)
        assert fleet.held() == sorted(BOXES)
        wait_out_lease()
        fleet.round(NOW)  # however late, nobody else can have taken anything
        assert fleet.held() == sorted(BOXES)
        fleet.leave()
        Fleet(second, BOXES, INTERVAL).leave()  # the first left: the lock is free
    finally:
        first.close()
        second.close()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_status_fleet_names_the_instances_and_who_holds_which_mailbox(
    backend: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: Any
) -> None:
    config = write_config(IcsMaildirBackend(tmp_path), tmp_path)
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
        config.write_text(config.read_text().replace("[service]", f'[service]\nstate = "{url}"', 1))
        state: State = State(url)
    else:
        state = State.in_dir(tmp_path / "state")
    try:
        fleet = Fleet(state, [two_weeks.RECRUITER.address], 60)
        fleet.round(NOW)
        assert main(["--config", str(config), "status", "--fleet"]) == 0
        shown = capsys.readouterr().out
        assert f"State: {backend}" in shown
        assert fleet.id in shown and "live" in shown and "holds 1 mailbox(es)" in shown
        token = fleet.token(two_weeks.RECRUITER.address)
        assert f"{two_weeks.RECRUITER.address}" in shown and f"token {token} " in shown
        assert "expires in" in shown
        fleet.leave()
        assert main(["--config", str(config), "status", "--fleet"]) == 0
        assert "nobody (free)" in capsys.readouterr().out
    finally:
        state.close()


def _message(mailbox: str) -> DraftMessage:
    return DraftMessage(
        key=key(mailbox),
        sender=Recipient(mailbox, "Rekryterare"),
        to=(Recipient("anna@example.com", "Anna"),),
        subject="Välkommen",
        text="Hej Anna!",
        html="<p>Hej Anna!</p>",
    )


def test_the_metrics_endpoint_shows_the_instance_and_the_mailboxes_it_holds(
    tmp_path: Path,
) -> None:
    import httpx

    from recruitmail.daemon.runtime import validate
    from recruitmail.daemon.scheduler import Service
    from recruitmail.daemon.service import Notifier, PrometheusMetrics
    from recruitmail.daemon.settings import load_settings

    config = write_config(IcsMaildirBackend(tmp_path), tmp_path)
    settings = load_settings(config)
    metrics = PrometheusMetrics()
    port = metrics.serve("127.0.0.1", 0)
    service = Service(config, settings, validate(settings), Notifier(None), metrics)
    try:
        service.fleet_round()
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    finally:
        service.fleet.leave()
        service.state.close()
        metrics.close()
    assert f'recruitmail_fleet_instance_info{{id="{service.fleet.id}"}} 1.0' in scraped
    assert "recruitmail_fleet_mailboxes_held 1.0" in scraped
    assert "recruitmail_fleet_takeovers 0.0" in scraped
    assert "recruitmail_fleet_fenced_writes 0.0" in scraped


def test_once_refuses_to_write_beside_running_instances_on_postgresql(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(IcsMaildirBackend(tmp_path), tmp_path)
    config.write_text(
        config.read_text().replace("[service]", f'[service]\nstate = "{postgres_url}"', 1)
    )
    state = State(postgres_url)
    try:
        fleet = Fleet(state, [two_weeks.RECRUITER.address], 60)
        fleet.round(NOW)  # a running instance has just said it is alive
        assert main(["--config", str(config), "once", "--now", NOW.isoformat()]) == 2
        said = capsys.readouterr().err
        assert "1 instance(s) of `recruitmail run` share this state" in said
        assert "recruitmail preview" in said
        assert not list((tmp_path).rglob("Drafts/new/*")) and not list(
            (tmp_path).rglob(".Drafts/new/*")
        )
        fleet.leave()  # stopped: now `once` may run
        assert main(["--config", str(config), "once", "--now", NOW.isoformat()]) == 0
    finally:
        state.close()
