"""A first pass drafts in batches: each batch's intents and the languages decided for its new
candidates are committed together, and its drafts reach the Maildir together (fsynced in tmp/,
then renamed into cur/ by the sink's flush). On both state backends, with a real ICS file and a
real Maildir; nothing of ours is patched."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from recruitmail.contracts.models import MailKind
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.state import State
from tests.postgres import (  # noqa: F401
    postgres_fixture,
    postgres_url_fixture,
    state_location_fixture,
)
from tests.scenario.spec import Who
from tests.test_executor_pipeline import MONDAY, booking
from tests.test_idle_passes import Setup

CANDIDATES = tuple(Who(f"kandidat{n:02d}@example.com", f"Kandidat{n:02d} Berg") for n in range(70))
"""More than one batch of drafts (64)."""
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def renderer(tmp_path_factory: pytest.TempPathFactory) -> Renderer:
    return Renderer(None, tmp_path_factory.mktemp("template-cache"))


@pytest.fixture
def setup(tmp_path: Path, state_location: Path | str, renderer: Renderer) -> Iterator[Setup]:
    if isinstance(state_location, Path):
        state_location.parent.mkdir(parents=True, exist_ok=True)
    found = Setup(tmp_path / "box", state_location, renderer)
    for n, who in enumerate(CANDIDATES):
        day = date(2026, 12, 14) + timedelta(days=n % 4)
        found.backend.put(booking(f"intervju-{n}@nordljus.se", who, day, f"{9 + n % 8:02d}:00"))
    try:
        yield found
    finally:
        found.close()


def test_every_new_candidate_s_language_and_draft_are_kept_across_batches(setup: Setup) -> None:
    with contextmanager(setup.runner)(setup.state()) as runner:
        report = runner.reconcile(MONDAY)
    assert report.drafted == ["welcome"] * len(CANDIDATES)

    # One welcome per candidate in the Maildir, each carrying its own key; nothing left in tmp/.
    assert len(setup.drafts()) == len(CANDIDATES) == len(set(setup.drafts()))
    assert not list((setup.backend.maildir / ".Drafts" / "tmp").iterdir())

    # Every candidate's language was stored, as another process reads it.
    other = setup.state()
    languages = other.languages(runner.box.address)
    assert {who.address for who in CANDIDATES} <= set(languages)
    assert {language for language, _ in languages.values()} == {"sv"}
    rows = [r for r in other.ledger(runner.box.address) if r.entry.key.kind is MailKind.WELCOME]
    assert len(rows) == len(CANDIDATES)
    assert {r.entry.state.value for r in rows} == {"drafted"}


def test_languages_of_a_batch_without_intents_are_still_kept(state_location: Path | str) -> None:
    if isinstance(state_location, Path):
        state_location.parent.mkdir(parents=True, exist_ok=True)
    state = State(state_location)
    try:
        kept = [("box@nordljus.se", "a@x.se", "en", "event text")]
        assert state.begin_attempts([], NOW, languages=kept) == frozenset()
        assert state.languages("box@nordljus.se") == {"a@x.se": ("en", "event text")}
    finally:
        state.close()
