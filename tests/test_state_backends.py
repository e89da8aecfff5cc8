"""One ``State``, two databases: the same operations give the same answers on SQLite and on a
real PostgreSQL server; ``recruitmail state migrate`` copies a real state over losslessly; two
processes racing for one key leave exactly one winner; ``service.state`` takes only a URL whose
password is a secret reference.

PostgreSQL is started by the tests (``tests/postgres.py``); without it these tests skip, or fail
under ``CI=true``. ``STATE_RACE_KEYS`` sizes the race (default 40 keys);
``STATE_BACKENDS_SCENARIO=1`` also replays the whole two-week scenario on PostgreSQL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from recruitmail.contracts.connector import KEY_HEADER
from recruitmail.contracts.errors import ConfigError
from recruitmail.contracts.models import (
    Attendee,
    DraftKey,
    DraftRef,
    DraftState,
    Event,
    MailKind,
    Response,
    SkippedEvent,
    pseudonym,
)
from recruitmail.daemon import demo
from recruitmail.daemon.cli import main
from recruitmail.daemon.planner import LedgerState
from recruitmail.daemon.settings import load_settings
from recruitmail.daemon.state import Finished, SkipRecord, State, event_from_json, event_to_json
from tests.postgres import (  # noqa: F401
    postgres_fixture,
    postgres_url_fixture,
    state_location_fixture,
)
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.runner import STATE_VARIABLE, write_config
from tests.servers import spawn, stop

ROOT = Path(__file__).resolve().parent.parent
BOX = "rekryterare@nordljus.se"
ANNA = "anna.svensson@example.com"
BO = "bo.ek@example.org"
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
RACE_KEYS = int(os.environ.get("STATE_RACE_KEYS", "40"))


def key(candidate: str, kind: MailKind, occasion: str = "i1") -> DraftKey:
    return DraftKey(BOX, candidate, kind, occasion)


def event(event_id: str, candidate: str, hour: int, subject: str = "Intervju") -> Event:
    start = datetime(2026, 12, 9, hour, 0, tzinfo=UTC)
    return Event(
        event_id=event_id,
        ical_uid=f"{event_id}@nordljus.se",
        subject=f"{subject}: åäö “citat” 100%?",
        start=start,
        end=start + timedelta(hours=1),
        organizer=Attendee(BOX, "Rekryterare", Response.ACCEPTED, is_organizer=True),
        attendees=(Attendee(candidate, "Kandidat", Response.ACCEPTED),),
    )


def seen(value: Any) -> Any:
    """What an operation answered, in plain values that compare across backends."""
    if isinstance(value, list):
        return [seen(v) for v in value]
    if isinstance(value, frozenset | set):
        return sorted(value)
    if isinstance(value, dict):
        return {str(k): seen(v) for k, v in value.items()}
    if hasattr(value, "entry"):  # a LedgerRow
        return {
            "key": value.entry.key.text,
            "state": value.entry.state.value,
            "due": value.entry.due.isoformat(),
            "done": value.entry.done_at.isoformat() if value.entry.done_at else None,
            "remote_state": value.entry.remote_state,
            "context": value.entry.context,
            "reason": value.reason,
            "remote": (value.remote.remote_id, value.remote.fingerprint) if value.remote else None,
            "subject": value.subject,
            "folded_into": value.folded_into,
            "attempts": value.attempts,
            "last_attempt": value.last_attempt.isoformat() if value.last_attempt else None,
            "ambiguous": value.ambiguous,
        }
    if hasattr(value, "topic"):  # a Problem
        return (value.topic, value.message, value.permanent, value.first_seen.isoformat())
    if isinstance(value, Event):
        return (value.event_id, value.subject, value.start.isoformat(), value.attendees)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def ledger(state: State) -> list[Any]:
    return sorted(seen(state.all_ledger()), key=lambda r: r["key"])


# (what, operation): run in this order on a fresh state; each answer is kept and compared.
OPERATIONS: list[tuple[str, Callable[[State], Any]]] = [
    ("no cursor yet", lambda s: s.cursor(BOX)),
    (
        "a full sync",
        lambda s: s.apply_sync(
            BOX,
            (event("e1", ANNA, 10), event("e2", BO, 13)),
            (),
            "cursor-1",
            True,
            NOW,
            skipped=(SkippedEvent("x1", "too long"), SkippedEvent("x2", "too long")),
            basis="b1",
        ),
    ),
    ("the cursor under its basis", lambda s: s.cursor(BOX, "b1")),
    ("no cursor under another basis", lambda s: s.cursor(BOX, "b2")),
    ("the events", lambda s: sorted(seen(s.events(BOX)))),
    ("events left out, by reason", lambda s: s.skipped_events(BOX)),
    ("last sync", lambda s: s.last_sync(BOX)),
    (
        "an incremental sync removes one, brings one back",
        lambda s: s.apply_sync(
            BOX, (event("x1", ANNA, 15, "Uppföljning"),), ("e2",), "cursor-2", False, NOW
        ),
    ),
    ("the events after it", lambda s: sorted(seen(s.events(BOX)))),
    ("events left out after it", lambda s: s.skipped_events(BOX)),
    ("a problem", lambda s: s.record_problem(BOX, "last contact", "403", True, NOW)),
    (
        "the problem again, later",
        lambda s: s.record_problem(BOX, "last contact", "403 again", True, NOW + timedelta(1)),
    ),
    ("problems", lambda s: s.problems(BOX)),
    ("a hold", lambda s: s.hold(BOX, 1_900_000_000.25)),
    ("an earlier hold does not shorten it", lambda s: s.hold(BOX, 1_800_000_000.5)),
    ("the hold", lambda s: s.hold_until(BOX)),
    ("a contact", lambda s: s.record_contact(BOX, ANNA, NOW + timedelta(hours=2))),
    ("an older contact does not move it back", lambda s: s.record_contact(BOX, ANNA, NOW)),
    (
        "a contact with microseconds",
        lambda s: s.record_contact(BOX, BO, NOW + timedelta(microseconds=5)),
    ),
    ("contacts", lambda s: s.contacts(BOX)),
    ("close Bo", lambda s: s.set_closed(BOX, BO, True)),
    ("closed", lambda s: s.closed(BOX)),
    (
        "attempt Anna's welcome",
        lambda s: seen(s.begin_attempt(key(ANNA, MailKind.WELCOME), NOW, {"n": 1}, NOW)),
    ),
    (
        "attempt it again",
        lambda s: seen(s.begin_attempt(key(ANNA, MailKind.WELCOME), NOW, {"n": 1}, NOW)),
    ),
    (
        "a batch of intents: which are fresh",
        lambda s: s.begin_attempts(
            [
                (key(ANNA, MailKind.WELCOME), NOW, {}),
                (key(ANNA, MailKind.THANK_YOU), NOW, {"x": "ä"}),
                (key(BO, MailKind.WELCOME), NOW, {}),
                (key(BO, MailKind.STATUS_UPDATE), NOW, {}),
            ],
            NOW,
        ),
    ),
    (
        "Anna's welcome drafted, carrying the weekend greeting",
        lambda s: s.finish_drafts(
            [
                Finished(
                    key(ANNA, MailKind.WELCOME),
                    DraftRef("remote-1", "fp"),
                    "Välkommen, Anna!",
                    (key(ANNA, MailKind.WEEKEND_GREETING, "w50"),),
                    {"first_name": "Anna"},
                )
            ],
            NOW,
            skips=[SkipRecord(key(BO, MailKind.WELCOME), NOW, "stale")],
            ambiguous=[key(ANNA, MailKind.THANK_YOU)],
        ),
    ),
    (
        "a skip with what it carried",
        lambda s: s.record_skips(
            [
                SkipRecord(
                    key(BO, MailKind.HOLIDAY_GREETING, "jul"),
                    NOW,
                    "closed",
                    (key(BO, MailKind.WEEKEND_GREETING, "w51"),),
                )
            ],
            NOW,
        ),
    ),
    ("an unclear create", lambda s: s.mark_ambiguous(key(BO, MailKind.STATUS_UPDATE), NOW)),
    (
        "the recruiter sent it",
        lambda s: s.set_remote_state(key(ANNA, MailKind.WELCOME), DraftState.SENT, NOW),
    ),
    ("an obsolete mail", lambda s: s.mark_obsolete(key(ANNA, MailKind.THANK_YOU), "moved", NOW)),
    ("intents never handed over", lambda s: s.abandon_attempts([key(BO, MailKind.STATUS_UPDATE)])),
    ("Anna's row", lambda s: seen(s.ledger_row(key(ANNA, MailKind.WELCOME)))),
    ("the ledger", ledger),
    ("the mailbox's ledger", lambda s: len(s.ledger(BOX))),
    ("forget Anna", lambda s: s.forget(ANNA)),
    ("the ledger after", ledger),
    ("the events after", lambda s: sorted(seen(s.events(BOX)))),
    ("contacts after", lambda s: s.contacts(BOX)),
    ("forget the cursor", lambda s: s.forget_cursor(BOX)),
    ("no cursor", lambda s: s.cursor(BOX, "b1")),
    ("clear the problem", lambda s: s.clear_problem(BOX, "last contact")),
    ("no problem", lambda s: s.problems(BOX)),
    ("integrity", lambda s: s.integrity_ok()),
]


def answers(location: Path | str) -> list[tuple[str, Any]]:
    state = State(location)
    try:
        return [(what, seen(operation(state))) for what, operation in OPERATIONS]
    finally:
        state.close()


@pytest.mark.parametrize("private", [False, True])
def test_a_stored_event_reads_back_as_it_was_written(private: bool) -> None:
    """The stored form of an event loses nothing a reader of it decides on (a private event read
    back stays private, so it can never become an interview)."""
    stockholm = ZoneInfo("Europe/Stockholm")
    event = Event(
        event_id="e1",
        ical_uid="u1",
        subject="Intervju: Anna Svensson",
        start=datetime(2026, 12, 8, 10, 0, tzinfo=stockholm),
        end=datetime(2026, 12, 8, 11, 0, tzinfo=stockholm),
        body="Agenda",
        location="Kontoret",
        attendees=(Attendee("anna@example.com", "Anna Svensson", Response.ACCEPTED),),
        categories=("Rekrytering",),
        private=private,
    )

    assert event_from_json(event_to_json(event)) == event


def test_every_state_operation_answers_the_same_on_sqlite_and_postgresql(
    tmp_path: Path, postgres_url: str
) -> None:
    on_sqlite = answers(tmp_path / "recruitmail.sqlite")
    on_postgresql = answers(postgres_url)

    assert on_postgresql == on_sqlite
    table = dict(on_sqlite)
    # …and the answers are the right ones, not merely equal.
    assert table["the cursor under its basis"] == "cursor-1"
    assert table["no cursor under another basis"] is None
    assert table["events left out, by reason"] == {"too long": 2}
    assert table["events left out after it"] == {"too long": 1}
    assert [e[0] for e in table["the events after it"]] == ["e1", "x1"]
    assert table["the hold"] == 1_900_000_000.25
    assert table["contacts"] == {
        ANNA: (NOW + timedelta(hours=2)).isoformat(),
        BO: (NOW + timedelta(microseconds=5)).isoformat(),
    }
    assert table["closed"] == [BO]
    assert table["attempt Anna's welcome"]["attempts"] == 1
    assert table["attempt it again"]["attempts"] == 2
    assert table["a batch of intents: which are fresh"] == sorted(
        key(c, k).id
        for c, k in (
            (ANNA, MailKind.THANK_YOU),
            (BO, MailKind.WELCOME),
            (BO, MailKind.STATUS_UPDATE),
        )
    )
    assert table["Anna's row"]["state"] == "drafted"
    assert table["Anna's row"]["remote_state"] == "sent"
    states = {r["key"]: r["state"] for r in table["the ledger"]}
    assert states[key(ANNA, MailKind.WEEKEND_GREETING, "w50").text] == "folded"
    assert states[key(BO, MailKind.WELCOME).text] == "skipped"
    assert states[key(BO, MailKind.WEEKEND_GREETING, "w51").text] == "skipped"
    assert key(BO, MailKind.STATUS_UPDATE).text not in states  # abandoned
    assert table["forget Anna"] > 0
    assert all(ANNA not in r["key"] for r in table["the ledger after"])
    assert table["the events after"] == []
    assert table["no problem"] == []
    assert table["integrity"] is True


def test_a_fresh_state_opens_on_either_backend_and_keeps_its_key(
    state_location: Path | str,
) -> None:
    first = State(state_location)
    name = pseudonym(ANNA)
    first.record_contact(BOX, ANNA, NOW)
    first.close()

    again = State(state_location)
    try:
        assert pseudonym(ANNA) == name  # the install's key is read back, not made anew
        assert again.contacts(BOX) == {ANNA: NOW}
        assert again.backend == ("sqlite" if isinstance(state_location, Path) else "postgresql")
    finally:
        again.close()


# -- recruitmail state migrate ------------------------------------------------------------


def demo_state(out: Path) -> Path:
    """A state made by real ``once`` passes over the first days of the demo fortnight."""
    monday = date(2026, 12, 7)
    code = demo.run(
        out, monday, until=demo.local(monday + timedelta(days=3), "18:00"), times=("09:30", "15:30")
    )
    assert code == 0
    return out / "recruitmail.toml"


def everything(state: State) -> dict[str, Any]:
    """What ``status`` and the passes read, mailbox by mailbox."""
    boxes = sorted({r.entry.key.mailbox for r in state.all_ledger()})
    return {
        "ledger": ledger(state),
        "per mailbox": {
            box: {
                "events": sorted(seen(state.events(box))),
                "contacts": seen(state.contacts(box)),
                "closed": sorted(state.closed(box)),
                "problems": seen(state.problems(box)),
                "skipped": state.skipped_events(box),
                "hold": state.hold_until(box),
                "cursor": state.last_sync(box),
            }
            for box in boxes
        },
        "pseudonym": pseudonym(ANNA),
    }


def status(config: Path) -> str:
    return subprocess.run(
        [sys.executable, "-m", "recruitmail", "--config", str(config), "status", "--offline"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def drafts_by_key(maildir: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for message in demo.drafts(maildir):
        key_id = str(message.get(KEY_HEADER, ""))
        found[key_id] = found.get(key_id, 0) + 1
    return found


def test_migrate_copies_a_real_state_to_postgresql_and_verifies_it(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_state(tmp_path / "demo")
    assert main(["--config", str(config), "close", ANNA]) == 0
    capsys.readouterr()
    source = State.in_dir(load_settings(config).service.state_dir)
    before = everything(source)
    source.close()
    assert before["ledger"], "the demo drafted nothing"
    assert any(r["state"] == "drafted" for r in before["ledger"])
    journeys = status(config)
    assert ANNA in journeys and "drafted" in journeys

    assert main(["--config", str(config), "state", "migrate", "--to", postgres_url]) == 0

    shown = capsys.readouterr().out
    assert "verified" in shown
    for table in ("ledger", "cursors", "events", "candidates", "secrets"):
        assert f"{table} " in shown and "DIFFERS" not in shown
    copied = State(postgres_url)
    try:
        assert everything(copied) == before  # same journeys, same contacts, same pseudonyms
    finally:
        copied.close()
    on_postgresql = tmp_path / "demo" / "postgresql.toml"
    on_postgresql.write_text(
        config.read_text(encoding="utf-8").replace(
            "[service]\n", f"[service]\nstate = {json.dumps(postgres_url)}\n", 1
        ),
        encoding="utf-8",
    )
    assert status(on_postgresql) == journeys

    # The next pass runs on PostgreSQL and carries on where SQLite left off: nothing twice.
    later = demo.local(date(2026, 12, 11), "09:30").isoformat()
    assert main(["--config", str(on_postgresql), "once", "--now", later]) == 0
    assert set(drafts_by_key(tmp_path / "demo" / "Maildir").values()) == {1}


def test_migrate_refuses_a_target_that_holds_a_state_unless_forced(
    tmp_path: Path, postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "recruitmail.toml"
    config.write_text(
        (ROOT / "config" / "recruitmail.example.toml")
        .read_text(encoding="utf-8")
        .replace('state_dir = "/var/lib/recruitmail"', f'state_dir = "{tmp_path / "state"}"'),
        encoding="utf-8",
    )
    assert f'state_dir = "{tmp_path / "state"}"' in config.read_text(encoding="utf-8")
    local = State.in_dir(tmp_path / "state")
    local.record_contact(BOX, BO, NOW)
    local.close()
    other = State(postgres_url)
    other.record_contact(BOX, ANNA, NOW)
    other.close()

    assert main(["--config", str(config), "state", "migrate", "--to", postgres_url]) == 1
    assert "already holds a state" in capsys.readouterr().err
    target = State(postgres_url)
    assert target.contacts(BOX) == {ANNA: NOW}  # untouched
    target.close()

    assert main(["--config", str(config), "state", "migrate", "--to", postgres_url, "--force"]) == 0
    target = State(postgres_url)
    try:
        assert target.contacts(BOX) == {BO: NOW}
    finally:
        target.close()


def test_a_pass_on_postgresql_keeps_its_compiled_templates_in_the_state_directory(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the state in PostgreSQL the state directory still keeps this machine's files: the
    compiled templates the next process loads instead of compiling them all again. (The whole
    scenario, and the suite's other scenarios, run on PostgreSQL under
    ``RECRUITMAIL_TEST_STATE=postgresql``, which ``make test`` does.)"""
    monkeypatch.setenv(STATE_VARIABLE, postgres_url)
    monkeypatch.delenv("CACHE_DIRECTORY", raising=False)
    backend = IcsMaildirBackend(tmp_path)
    config = write_config(backend, tmp_path)

    for instant in two_weeks.INSTANTS[:2]:  # the first pass makes the state directory
        assert main(["--config", str(config), "once", "--now", instant.isoformat()]) == 0

    assert not (tmp_path / "state" / "recruitmail.sqlite").exists()  # it ran on PostgreSQL
    compiled = list((tmp_path / "state" / "template-cache").glob("*.cache"))
    assert len(compiled) >= 12  # every kind's templates, in the text and the HTML environment


# -- two processes, one key ---------------------------------------------------------------

RACER = textwrap.dedent(
    """
    import json, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from recruitmail.daemon.state import State
    from recruitmail.contracts.models import DraftKey, MailKind

    location = sys.argv[1]
    state = State(location if location.startswith("postgresql://") else Path(location))
    now = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    keys = [DraftKey("rekryterare@nordljus.se", f"c{n}@example.com", MailKind.WELCOME, "i1")
            for n in range(int(sys.argv[2]))]
    print("ready", flush=True)
    sys.stdin.readline()  # both start at once
    won = []
    for n, key in enumerate(keys):
        if n % 2:
            won += sorted(state.begin_attempts([(key, now, {})], now))
        elif state.begin_attempt(key, now, {}, now).attempts == 1:
            won.append(key.id)
    state.close()
    print(json.dumps(won), flush=True)
    """
)


def test_two_processes_attempting_the_same_keys_leave_exactly_one_winner_each(
    state_location: Path | str,
) -> None:
    State(state_location).close()  # the schema exists before the race
    racers = [
        spawn(
            [sys.executable, "-c", RACER, str(state_location), str(RACE_KEYS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        outputs = [racer.communicate(timeout=120)[0] for racer in racers]
    finally:
        for racer in racers:
            stop(racer, grace=0)  # SIGKILL if still running
    assert [racer.returncode for racer in racers] == [0, 0]
    won = [json.loads(out.strip().splitlines()[-1]) for out in outputs]

    assert sorted(won[0] + won[1]) == sorted(set(won[0] + won[1]))  # nobody won a key twice over
    assert len(won[0]) + len(won[1]) == RACE_KEYS  # and every key has its one winner
    state = State(state_location)
    try:
        rows = state.ledger("rekryterare@nordljus.se")
    finally:
        state.close()
    assert len(rows) == RACE_KEYS
    assert {r.attempts for r in rows} == {2}
    assert {r.entry.state for r in rows} == {LedgerState.ATTEMPTING}


# -- service.state --------------------------------------------------------------------------


def configured(tmp_path: Path, state: str) -> Path:
    config = tmp_path / "recruitmail.toml"
    text = (ROOT / "config" / "recruitmail.example.toml").read_text(encoding="utf-8")
    config.write_text(text.replace("[service]\n", f"[service]\nstate = {json.dumps(state)}\n", 1))
    assert "state = " in config.read_text(encoding="utf-8")
    return config


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://rm:hunter2@db.example/rm", "holds a password"),
        ("postgresql://rm@db.example/rm?password=hunter2", "secret reference"),
        ("mysql://rm@db.example/rm", "postgresql://"),
    ],
)
def test_service_state_takes_a_postgresql_url_with_its_password_by_reference_only(
    tmp_path: Path, url: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_settings(configured(tmp_path, url))
    assert problem in str(refused.value)
    assert "hunter2" not in str(refused.value)


def test_service_state_opens_postgresql_with_the_password_from_its_reference(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test server trusts local connections, so any password passes: what this shows is
    # that the reference is read (a missing variable is a configuration error) and never shown.
    url = f"{postgres_url}&password=env:RECRUITMAIL_TEST_PG_PASSWORD"
    settings = load_settings(configured(tmp_path, url))
    assert settings.service.state == url

    with pytest.raises(ConfigError, match="RECRUITMAIL_TEST_PG_PASSWORD is not set"):
        State.open(settings.service)

    monkeypatch.setenv("RECRUITMAIL_TEST_PG_PASSWORD", "s3cret")
    state = State.open(settings.service)
    try:
        assert state.backend == "postgresql"
        assert "s3cret" not in str(state.path) and "password" not in str(state.path)
    finally:
        state.close()
