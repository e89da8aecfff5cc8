"""Auxiliary look-ups never cost a mail (issue: providers as the real services behave).

Last contact (Sent Items), mailbox settings (time zone, automatic replies) and the directory
(job titles) are side look-ups. Through the real CLI against the Graph fake: when every one of
them is refused for good, every mail that does not depend on them is still drafted and `status`
names each failing call; when one fails for now, the mail that needs it waits for the next pass
and is drafted then, never skipped for good.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from recruitmail import connectors
from recruitmail.daemon.cli import main
from recruitmail.daemon.planner import LedgerState
from recruitmail.daemon.state import State
from tests.fakes.graph import FakeGraph
from tests.scenario import two_weeks
from tests.scenario.graph_backend import GraphBackend
from tests.scenario.runner import write_config
from tests.scenario.spec import STOCKHOLM, EventSpec, Who, at

pytestmark = pytest.mark.skipif(
    "microsoft" not in connectors.PROVIDERS, reason="the microsoft connector is not registered"
)

CANDIDATE = Who("nora.lund@example.com", "Nora Lund")
# A colleague the configuration does not know: her role can only come from the directory.
COLLEAGUE = Who("maja.berg@nordljus.se", "Maja Berg")
TUESDAY = date(2026, 12, 8)

# Booked on Monday for Tuesday; thank-you on Tuesday; weekend greeting on Friday; the status
# update five working days after the interview (Tuesday the 15th).
INSTANTS = (
    at(date(2026, 12, 7), "09:00"),
    at(TUESDAY, "11:30"),
    at(date(2026, 12, 11), "09:30"),
    at(date(2026, 12, 15), "11:00"),
)
EXPECTED = {
    ("welcome", date(2026, 12, 7)),
    ("thank_you", TUESDAY),
    ("weekend_greeting", date(2026, 12, 11)),
    ("status_update", date(2026, 12, 15)),
}

# The calls a pass makes besides the calendar and the drafts, refused as real Graph refuses a
# missing permission.
REFUSALS = {
    "/mailFolders/sentitems/messages": (403, "ErrorAccessDenied"),
    "/mailboxSettings": (403, "ErrorAccessDenied"),
    f"/users/{COLLEAGUE.address}": (403, "Authorization_RequestDenied"),
}


def interview() -> EventSpec:
    start = at(TUESDAY, "10:00")
    return EventSpec(
        uid="lookups-1@nordljus.se",
        subject="Intervju: Nora Lund",
        start=start,
        end=start + timedelta(hours=1),
        organizer=two_weeks.RECRUITER,
        attendees=(two_weeks.RECRUITER, COLLEAGUE, CANDIDATE),
        location="Storgatan 1, Umeå",
    )


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[tuple[FakeGraph, Path]]:
    with FakeGraph(tmp_path) as fake:
        backend = GraphBackend(fake)
        fake.add_person(COLLEAGUE.address, COLLEAGUE.name, "Designchef")
        backend.put(interview())
        config = write_config(backend, tmp_path)
        with config.open("a", encoding="utf-8") as file:  # the sink's table is the last one
            file.write("directory_titles = true\n")
        yield fake, config


def run(config: Path, instant: datetime) -> int:
    return main(["--config", str(config), "once", "--now", instant.isoformat()])


def drafted(config: Path) -> dict[tuple[str, date], LedgerState]:
    state = State.in_dir(config.parent / "state")
    try:
        rows = state.all_ledger()
    finally:
        state.close()
    return {
        (r.entry.key.kind.value, r.entry.due.astimezone(STOCKHOLM).date()): r.entry.state
        for r in rows
    }


def status(config: Path) -> str:
    return subprocess.run(
        [sys.executable, "-m", "recruitmail", "--config", str(config), "status", "--offline"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def test_every_look_up_refused_for_good_still_drafts_every_mail(
    graph: tuple[FakeGraph, Path],
) -> None:
    fake, config = graph
    for path, (code, error) in REFUSALS.items():
        fake.fail_always(path, code, error)

    codes = [run(config, instant) for instant in INSTANTS]

    assert codes == [0] * len(INSTANTS)
    ledger = drafted(config)
    assert {k for k, v in ledger.items() if v is LedgerState.DRAFTED} == EXPECTED
    assert [k for k, v in ledger.items() if v is LedgerState.SKIPPED] == []
    refused = [r for r in fake.graph_requests() if r.status == 403]
    assert {p for p in REFUSALS if any(p in r.path for r in refused)} == set(REFUSALS)
    shown = status(config)
    for topic in ("last contact", "out of office", "directory", "time zone"):
        assert f"! {topic} (refused since" in shown
    assert "Mail.Read" in shown  # the permission to grant is named
    assert "MailboxSettings.Read" in shown


def test_a_look_up_failing_for_now_holds_the_mail_for_the_next_pass(
    graph: tuple[FakeGraph, Path],
) -> None:
    fake, config = graph
    for instant in INSTANTS[:2]:
        assert run(config, instant) == 0
    friday = INSTANTS[2]
    fake.fail_always("/mailFolders/sentitems/messages", 503, "ServiceUnavailable")

    run(config, friday)

    assert ("weekend_greeting", friday.date()) not in drafted(config)
    assert "! last contact (failing since" in status(config)

    fake.fail_always("/mailFolders/sentitems/messages", 0, "")
    assert run(config, friday + timedelta(minutes=20)) == 0

    assert drafted(config)[("weekend_greeting", friday.date())] is LedgerState.DRAFTED
    assert "last contact" not in status(config)
