"""End to end through the CLI against the Google fake: the reference scenario in Calendar and Gmail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recruitmail import connectors
from tests.fakes.google import GoogleFake
from tests.scenario import two_weeks
from tests.scenario.google_backend import USER, GoogleBackend
from tests.scenario.runner import Outcome, assert_consistent, assert_drafted_exactly, replay

pytestmark = pytest.mark.skipif(
    "google" not in connectors.PROVIDERS,
    reason='the provider registry has no "google" line yet (connectors/__init__.py)',
)
__all__ = ["USER", "GoogleBackend"]  # the reliability suite imports them from here


@pytest.fixture(scope="module")
def full_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GoogleBackend, Outcome, Path]]:
    root = tmp_path_factory.mktemp("e2e-google")
    fake = GoogleFake(page_limit=5).start()
    try:
        backend = GoogleBackend(fake, root)
        yield backend, replay(backend, root), root
    finally:
        fake.stop()
    assert fake.violations == []


def test_the_scenario_drafts_exactly_the_expected_mails(
    full_run: tuple[GoogleBackend, Outcome, Path],
) -> None:
    _, outcome, _ = full_run
    assert_drafted_exactly(outcome, two_weeks.EXPECTED)


def test_every_draft_is_a_parseable_two_part_mail(
    full_run: tuple[GoogleBackend, Outcome, Path],
) -> None:
    backend, outcome, _ = full_run
    for key_id, (message,) in outcome.by_key.items():
        if key_id in backend.edited.values():
            continue  # sent from Gmail's web editor, which rebuilt it
        assert message["Message-ID"] == f"<rm-{key_id}@nordljus.se>"
        assert message["To"].addresses[0].addr_spec in two_weeks.CANDIDATES
        assert str(message["Subject"]).strip()
        assert message.get_content_type() == "multipart/alternative"
        assert message.get_body(("plain",)).get_content().strip()
        assert "<html" in message.get_body(("html",)).get_content().lower()


def test_bo_is_written_to_in_english(full_run: tuple[GoogleBackend, Outcome, Path]) -> None:
    _, outcome, _ = full_run
    to_bo = [m for msgs in outcome.by_key.values() for m in msgs if two_weeks.BO in str(m["To"])]
    assert any("Thursday 10 December" in m.get_body(("plain",)).get_content() for m in to_bo)


def test_the_cancelled_interviews_draft_carries_the_obsolete_label(
    full_run: tuple[GoogleBackend, Outcome, Path],
) -> None:
    backend, outcome, _ = full_run
    assert outcome.obsolete == set(two_weeks.EXPECTED_OBSOLETE)
    with backend.fake.lock:
        dana = [
            m for m in backend.fake.messages[USER].values() if two_weeks.DANA in str(m.parsed["To"])
        ]
    assert len(dana) == 1
    assert "recruitmail/obsolete" in backend.fake.label_names(USER, dana[0].id)


def test_no_send_request_and_a_rerun_creates_nothing(
    full_run: tuple[GoogleBackend, Outcome, Path],
) -> None:
    backend, before, root = full_run
    again = replay(backend, root, apply_changes=False)  # the calendar as the fortnight left it
    assert_consistent(again)
    assert {k: len(v) for k, v in again.by_key.items()} == {
        k: len(v) for k, v in before.by_key.items()
    }
    assert not any(r.path.endswith("/send") for r in backend.fake.requests)


@pytest.mark.slow
def test_quota_errors_and_an_expired_sync_token_change_nothing(tmp_path: Path) -> None:
    fake = GoogleFake(page_limit=5).start()
    try:
        backend = GoogleBackend(fake, tmp_path, expire_after_puts=len(two_weeks.CHANGES) // 2)
        fake.inject_faults(0.10, seed=5)
        outcome = replay(backend, tmp_path)
    finally:
        fake.stop()
    assert fake.faults.injected > 0 and fake.violations == []
    assert backend.puts >= backend.expire_after_puts > 0
    assert_consistent(outcome)
    assert sorted(outcome.drafts ^ two_weeks.EXPECTED) == []
