"""End to end through the CLI against the fake Graph: the reference scenario in Outlook, plain,
under throttling with an expired delta token mid-run, and with a create whose answer is lost."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from recruitmail import connectors
from tests.fakes.graph import FakeGraph
from tests.scenario import two_weeks
from tests.scenario.graph_backend import USER, GraphBackend
from tests.scenario.runner import Outcome, assert_consistent, assert_drafted_exactly, replay

pytestmark = pytest.mark.skipif(
    "microsoft" not in connectors.PROVIDERS,
    reason='the provider registry has no "microsoft" line yet (connectors/__init__.py)',
)
__all__ = ["USER", "GraphBackend"]  # the reliability suite imports them from here


@pytest.fixture(scope="module")
def full_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GraphBackend, Outcome, Path]]:
    root = tmp_path_factory.mktemp("e2e-microsoft")
    with FakeGraph(root) as fake:
        backend = GraphBackend(fake)
        yield backend, replay(backend, root), root


def test_the_scenario_drafts_exactly_the_expected_mails(
    full_run: tuple[GraphBackend, Outcome, Path],
) -> None:
    _, outcome, _ = full_run
    assert_drafted_exactly(outcome, two_weeks.EXPECTED)
    assert outcome.obsolete == set(two_weeks.EXPECTED_OBSOLETE)


def test_every_draft_is_an_outlook_draft_with_key_and_category(
    full_run: tuple[GraphBackend, Outcome, Path],
) -> None:
    backend, outcome, _ = full_run
    for key_id, (message,) in outcome.by_key.items():
        if key_id in backend.edited.values():
            continue  # sent after an edit in Outlook on the web: Outlook rebuilt it
        assert message["Message-ID"] == f"<rm-{key_id}@nordljus.se>"
        assert message["To"].addresses[0].addr_spec in two_weeks.CANDIDATES
    for stored in backend.fake.messages(USER):
        if stored.properties:
            assert "recruitmail" in stored.data["categories"]
    dana = [m for m in backend.fake.messages(USER) if two_weeks.DANA in str(m.data["toRecipients"])]
    assert len(dana) == 1 and "recruitmail: obsolete" in dana[0].data["categories"]


def test_a_rerun_creates_nothing_and_nothing_is_ever_deleted_or_sent(
    full_run: tuple[GraphBackend, Outcome, Path],
) -> None:
    backend, before, root = full_run
    posts = len([r for r in backend.fake.graph_requests() if r.method == "POST"])
    again = replay(backend, root, apply_changes=False)  # the calendar as the fortnight left it
    assert_consistent(again)
    assert {k: len(v) for k, v in again.by_key.items()} == {
        k: len(v) for k, v in before.by_key.items()
    }
    assert len([r for r in backend.fake.graph_requests() if r.method == "POST"]) == posts
    assert not [
        r for r in backend.fake.graph_requests() if r.method == "DELETE" or r.path.endswith("/send")
    ]


@pytest.mark.slow
def test_throttling_and_an_expired_delta_token_change_nothing(tmp_path: Path) -> None:
    with FakeGraph(tmp_path) as fake:
        backend = GraphBackend(fake, expire_after_puts=len(two_weeks.CHANGES) // 2)
        fake.throttle(0.10, statuses=(429, 503), retry_after=1, seed=5)
        outcome = replay(backend, tmp_path)
    throttled = [r for r in fake.graph_requests() if r.status in (429, 503)]
    assert throttled
    assert [r for r in fake.graph_requests() if r.early] == []
    assert backend.puts >= backend.expire_after_puts > 0
    assert [r for r in fake.graph_requests() if r.status == 410]
    assert_consistent(outcome)
    assert sorted(outcome.drafts ^ two_weeks.EXPECTED) == []


def test_a_create_whose_answer_is_lost_makes_exactly_one_draft(tmp_path: Path) -> None:
    """The server commits the draft (201) but the connection drops before the ledger hears it,
    as if the process died between the 201 and the ledger commit: the next pass adopts it."""
    with FakeGraph(tmp_path) as fake:
        backend = GraphBackend(fake)
        fake.drop_after_next_post(3)
        outcome = replay(backend, tmp_path)
        dropped = [r for r in fake.graph_requests() if r.status == -1]
    assert len(dropped) == 3
    assert_consistent(outcome)
    assert sorted(outcome.drafts ^ two_weeks.EXPECTED) == []
