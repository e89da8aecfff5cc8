"""End to end through the CLI on the embedded default: an ICS file in, a Maildir of drafts out."""

from __future__ import annotations

from pathlib import Path

import pytest

from recruitmail.contracts.connector import KEY_HEADER
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.runner import (
    Outcome,
    assert_consistent,
    assert_drafted_exactly,
    replay,
    status_output,
)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[IcsMaildirBackend, Outcome, Path]:
    root = tmp_path_factory.mktemp("e2e")
    backend = IcsMaildirBackend(root)
    return backend, replay(backend, root), root


def test_the_scenario_drafts_exactly_the_expected_mails(
    full_run: tuple[IcsMaildirBackend, Outcome, Path],
) -> None:
    _, outcome, _ = full_run
    assert_drafted_exactly(outcome, two_weeks.EXPECTED)


def test_cancelled_interview_leaves_its_draft_marked_obsolete(
    full_run: tuple[IcsMaildirBackend, Outcome, Path],
) -> None:
    _, outcome, _ = full_run
    assert outcome.obsolete == set(two_weeks.EXPECTED_OBSOLETE)
    dana = [m for msgs in outcome.by_key.values() for m in msgs if two_weeks.DANA in str(m["To"])]
    assert len(dana) == 1 and "recruitmail-obsolete" in str(dana[0]["X-Keywords"])


def test_same_day_mails_are_folded_into_one(
    full_run: tuple[IcsMaildirBackend, Outcome, Path],
) -> None:
    _, outcome, _ = full_run
    assert outcome.folded == set(two_weeks.EXPECTED_FOLDED)
    friday = [
        m
        for msgs in outcome.by_key.values()
        for m in msgs
        if two_weeks.CARL in str(m["To"]) and "helg" in m.get_body(("plain",)).get_content()
    ]
    assert friday, "Carl's Friday thank-you should carry the weekend wish"


def test_every_draft_is_a_valid_two_part_mime_message(
    full_run: tuple[IcsMaildirBackend, Outcome, Path],
) -> None:
    _, outcome, _ = full_run
    for key_id, (message,) in outcome.by_key.items():
        assert message["Message-ID"] == f"<rm-{key_id}@nordljus.se>"
        assert message.get_content_type() == "multipart/alternative"
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert text.strip() and "<html" in html.lower()
        assert "{{" not in text and "None" not in text
        assert message["From"].addresses[0].addr_spec == "lisa.ek@nordljus.se"


def test_bo_is_written_to_in_english_and_sees_the_new_time(
    full_run: tuple[IcsMaildirBackend, Outcome, Path],
) -> None:
    _, outcome, _ = full_run
    to_bo = [m for msgs in outcome.by_key.values() for m in msgs if two_weeks.BO in str(m["To"])]
    notice = [m for m in to_bo if "Thursday 10 December" in m.get_body(("plain",)).get_content()]
    assert notice, "the reschedule notice names the new time in English"
    assert all("Hej" not in m.get_body(("plain",)).get_content() for m in to_bo)


def test_replaying_every_instant_again_creates_nothing_new(
    full_run: tuple[IcsMaildirBackend, Outcome, Path],
) -> None:
    backend, before, root = full_run
    again = replay(backend, root, apply_changes=False)  # the calendar as the fortnight left it
    assert_consistent(again)
    assert {k: len(v) for k, v in again.by_key.items()} == {
        k: len(v) for k, v in before.by_key.items()
    }
    assert again.drafts == before.drafts


def test_an_outage_from_thursday_to_monday_skips_stale_greetings(tmp_path: Path) -> None:
    backend = IcsMaildirBackend(tmp_path)
    outcome = replay(backend, tmp_path, two_weeks.INSTANTS_WITH_OUTAGE)
    assert_consistent(outcome)
    assert sorted(outcome.drafts ^ two_weeks.EXPECTED_WITH_OUTAGE) == []


def test_status_shows_each_candidates_journey(
    full_run: tuple[IcsMaildirBackend, Outcome, Path],
) -> None:
    _, _, root = full_run
    result = status_output(root)
    assert two_weeks.BO in result.stdout
    assert "sent" in result.stdout  # Bo's welcome left Drafts for Sent
    assert "obsolete" in result.stdout
    for line in result.stderr.splitlines():
        assert two_weeks.ANNA not in line  # logs above DEBUG never carry addresses
    assert KEY_HEADER  # the header the mailbox read relies on
