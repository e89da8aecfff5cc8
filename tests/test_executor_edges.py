"""The executor at its edges, through the real CLI on ICS + Maildir: a template that fails on one
mail's data, what the state database keeps, a provider's Retry-After across processes, and the
keyed pseudonyms of the logs."""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest

from recruitmail.contracts.limits import MAX_RETRY_AFTER
from recruitmail.contracts.models import pseudonym
from recruitmail.daemon.cli import main
from recruitmail.daemon.planner import LedgerState
from recruitmail.daemon.runtime import open_runner, validate
from recruitmail.daemon.settings import load_settings
from recruitmail.daemon.state import State
from tests.reliability.icsserver import FaultyCalendarServer
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.runner import open_state, write_config
from tests.scenario.spec import EventSpec, Who, at, to_ics

ROOT = Path(__file__).resolve().parent.parent
ANNA = Who("anna.svensson@example.com", "Anna Svensson")
BO = Who("bo.ek@example.org", "Bo Ek")
MONDAY = at(date(2026, 12, 7), "09:00")


def booking(uid: str, who: Who, hhmm: str, **extra: object) -> EventSpec:
    start = at(date(2026, 12, 9), hhmm)
    fields: dict[str, object] = {
        "uid": uid,
        "subject": f"Intervju: {who.name}",
        "start": start,
        "end": start + timedelta(hours=1),
        "organizer": two_weeks.RECRUITER,
        "attendees": (two_weeks.RECRUITER, two_weeks.PANEL, who),
    }
    fields.update(extra)
    return EventSpec(**fields)  # type: ignore[arg-type]


def once(config: Path, *, minutes: int = 0) -> int:
    return main(
        [
            "--config",
            str(config),
            "once",
            "--now",
            (MONDAY + timedelta(minutes=minutes)).isoformat(),
        ]
    )


def status(config: Path, *extra: str) -> str:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "recruitmail",
            "--config",
            str(config),
            "status",
            "--offline",
            *extra,
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout


def ledger(config: Path) -> dict[str, LedgerState]:
    state = open_state(config.parent)
    try:
        return {r.entry.key.candidate: r.entry.state for r in state.all_ledger()}
    finally:
        state.close()


def kept_events_and_everything(config: Path) -> tuple[list[str], str]:
    """The stored events' data, and everything the state keeps as text: the SQLite file's bytes
    (what a copied file gives away, free pages included), or every row of every table of the
    PostgreSQL database the configuration names."""
    url = load_settings(config).service.state
    if not url:
        database = config.parent / "state" / "recruitmail.sqlite"
        with sqlite3.connect(database) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            stored = [row[0] for row in db.execute("SELECT data FROM events")]
        return stored, database.read_bytes().decode("utf-8", "replace")
    import psycopg

    with psycopg.connect(url) as db:
        stored = [row[0] for row in db.execute("SELECT data FROM events")]
        tables = [
            row[0]
            for row in db.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        ]
        rows = [str(row[0]) for t in tables for row in db.execute(f'SELECT t::text FROM "{t}" t')]
    return stored, "\n".join(rows)


def test_a_template_failing_on_one_mail_holds_only_that_mail(tmp_path: Path) -> None:
    """A branch only Bo's data reaches raises: Bo's welcome is held (and shown), Anna's is
    drafted; once the template is fixed, the next pass drafts Bo's."""
    backend = IcsMaildirBackend(tmp_path)
    backend.put(booking("anna@nordljus.se", ANNA, "10:00"))
    backend.put(booking("bo@nordljus.se", BO, "13:00"))
    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    welcome = templates / "sv" / "welcome.txt.j2"
    original = welcome.read_text(encoding="utf-8")
    welcome.write_text(
        original.replace(
            "{% block body %}",
            '{% block body %}{% if candidate.first_name == "Bo" %}{{ no_such_thing.x }}{% endif %}',
            1,
        ),
        encoding="utf-8",
    )
    config = write_config(backend, tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[service]\n", f'[service]\ntemplates_dir = "{templates}"\n', 1
        ),
        encoding="utf-8",
    )

    assert once(config) == 0

    assert ledger(config) == {ANNA.address: LedgerState.DRAFTED}
    shown = status(config)
    assert f"! held welcome for {pseudonym(BO.address)}" in shown
    assert "template failed" in shown

    welcome.write_text(original, encoding="utf-8")
    assert once(config, minutes=10) == 0

    assert ledger(config) == {ANNA.address: LedgerState.DRAFTED, BO.address: LedgerState.DRAFTED}
    assert "held welcome" not in status(config)


def test_the_state_keeps_interviews_only_and_never_a_private_event(tmp_path: Path) -> None:
    backend = IcsMaildirBackend(tmp_path)
    lunch = booking("lunch@nordljus.se", ANNA, "12:00", subject="Lunch med Volvo-gänget")
    private = booking(
        "private@nordljus.se", BO, "15:00", subject="Intervju: Läkarbesök – psykiatri"
    )
    interview = booking("anna@nordljus.se", ANNA, "10:00")
    calendar = to_ics([interview, lunch, private]).decode("utf-8")
    marked = calendar.replace(
        "UID:private@nordljus.se\r\n", "UID:private@nordljus.se\r\nCLASS:PRIVATE\r\n"
    )
    assert marked != calendar
    backend.ics.write_text(marked, encoding="utf-8")
    config = write_config(backend, tmp_path)

    assert once(config) == 0

    stored, raw = kept_events_and_everything(config)
    assert len(stored) == 1 and "anna@nordljus.se" in stored[0]
    assert "Läkarbesök" not in raw
    assert "Volvo" not in raw
    assert ledger(config) == {ANNA.address: LedgerState.DRAFTED}


@pytest.mark.parametrize(
    ("asked", "held_at_most"), [("120", 120.0), ("3000000000", MAX_RETRY_AFTER)]
)
def test_a_retry_after_holds_the_next_process_too(
    tmp_path: Path, asked: str, held_at_most: float
) -> None:
    """503 with Retry-After: the next `once`, a new process a moment later, sends no request;
    a Retry-After of 95 years is capped at an hour."""
    backend = IcsMaildirBackend(tmp_path)
    backend.put(booking("anna@nordljus.se", ANNA, "10:00"))
    with FaultyCalendarServer(backend.ics) as server:
        config = write_config(backend, tmp_path)
        text = config.read_text(encoding="utf-8")
        start = text.index("[mailboxes.source]")
        end = text.index("[mailboxes.sink]")
        config.write_text(
            text[:start]
            + f'[mailboxes.source]\ntype = "ics"\nurl = "{server.url}"\n\n'
            + text[end:],
            encoding="utf-8",
        )
        server.inject(f"503+{asked}")

        assert once(config) == 1
        assert once(config, minutes=5) == 1

        assert len(server.requests) == 1
    state = open_state(config.parent)
    try:
        left = state.hold_until(two_weeks.RECRUITER.address) - time.time()
    finally:
        state.close()
    assert 0 < left <= held_at_most
    assert ledger(config) == {}


def test_log_pseudonyms_are_keyed_per_install(tmp_path: Path) -> None:
    """Nobody without the state database can confirm a guessed address against a log line."""
    address = "anna.svensson@example.com"
    plain = "cand-" + hashlib.sha256(address.encode()).hexdigest()[:8]
    first = State.in_dir(tmp_path / "one")
    mine = pseudonym(address)
    first.close()
    second = State.in_dir(tmp_path / "two")
    theirs = pseudonym(address)
    second.close()
    again = State.in_dir(tmp_path / "one")
    same = pseudonym(address)
    again.close()

    assert mine != plain and theirs != plain
    assert mine != theirs
    assert same == mine


def test_a_runner_that_stays_open_sees_what_another_process_changed(tmp_path: Path) -> None:
    """The daemon keeps its runner (and the interviews it recognised) between passes; a
    `recruitmail forget` in another process meanwhile must count on its next pass: the forgotten
    candidate is not drafted again from the runner's memory. And a booking arriving later is
    drafted by the same runner."""
    backend = IcsMaildirBackend(tmp_path)
    backend.put(booking("anna@nordljus.se", ANNA, "10:00"))
    config = write_config(backend, tmp_path)
    settings = load_settings(config)
    state = State.open(settings.service)
    try:
        renderer = validate(settings)
        with open_runner(settings, 0, state, renderer) as runner:
            first = runner.reconcile(MONDAY)
            assert first.drafted == ["welcome"]
            idle = runner.reconcile(MONDAY + timedelta(minutes=1))
            assert idle.drafted == [] and idle.synced_events == 0

            other = State.open(settings.service)  # another process's connection
            assert other.forget(ANNA.address) > 0
            other.close()
            after = runner.reconcile(MONDAY + timedelta(minutes=2))
            assert after.drafted == []
            assert not [r for r in state.all_ledger() if r.entry.key.candidate == ANNA.address]

            backend.put(booking("bo@nordljus.se", BO, "13:00"))
            later = runner.reconcile(MONDAY + timedelta(minutes=3))
            assert later.drafted == ["welcome"]
    finally:
        state.close()
    assert len(backend_drafts(tmp_path)) == 2


def backend_drafts(workdir: Path) -> list[Path]:
    return [p for p in (workdir / "Maildir" / ".Drafts" / "cur").iterdir() if p.is_file()]
