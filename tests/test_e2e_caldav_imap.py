"""End to end through the CLI on standards servers: the two-week scenario written into Radicale,
``recruitmail once --now …`` at every instant, the drafts read back from Dovecot independently."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.scenario import two_weeks
from tests.scenario.caldav_imap_backend import RadicaleDovecotBackend
from tests.scenario.runner import (
    Outcome,
    assert_consistent,
    assert_drafted_exactly,
    replay,
    status_output,
)
from tests.servers import (  # noqa: F401
    DovecotServer,
    RadicaleServer,
    radicale_fixture,
    run_dovecot,
)

pytestmark = [pytest.mark.servers, pytest.mark.slow]
__all__ = ["RadicaleDovecotBackend"]  # the reliability suite imports it from here


@pytest.fixture(scope="module")
def dovecot() -> Iterator[DovecotServer]:
    yield from run_dovecot(uidplus=True)


@pytest.fixture(scope="module")
def full_run(
    radicale: RadicaleServer, dovecot: DovecotServer, tmp_path_factory: pytest.TempPathFactory
) -> tuple[RadicaleDovecotBackend, Outcome, Path]:
    root = tmp_path_factory.mktemp("e2e-caldav-imap")
    backend = RadicaleDovecotBackend(radicale, dovecot, root)
    return backend, replay(backend, root), root


def test_the_scenario_drafts_exactly_the_expected_mails(
    full_run: tuple[RadicaleDovecotBackend, Outcome, Path],
) -> None:
    _, outcome, _ = full_run
    assert_drafted_exactly(outcome, two_weeks.EXPECTED)
    assert outcome.obsolete == set(two_weeks.EXPECTED_OBSOLETE)


def test_dovecot_holds_valid_two_part_mails_read_by_its_own_tool(
    full_run: tuple[RadicaleDovecotBackend, Outcome, Path],
) -> None:
    backend, outcome, _ = full_run
    listing = backend.dovecot.doveadm(
        "fetch", "-u", backend.imap_user, "hdr.message-id", "mailbox", "Drafts", "all"
    )
    drafted_ids = {f"<rm-{key_id}@nordljus.se>" for key_id in outcome.by_key}
    in_drafts = {line.split(":", 1)[1].strip() for line in listing.splitlines() if ":" in line}
    assert in_drafts and in_drafts <= drafted_ids
    for key_id, (message,) in outcome.by_key.items():
        assert message["Message-ID"] == f"<rm-{key_id}@nordljus.se>"
        assert message.get_content_type() == "multipart/alternative"
        assert not message.defects
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert text.strip() and "<html" in html.lower()
        assert message["From"].addresses[0].addr_spec == "lisa.ek@nordljus.se"


def test_status_reports_the_draft_the_client_sent(
    full_run: tuple[RadicaleDovecotBackend, Outcome, Path],
) -> None:
    _, _, root = full_run
    result = status_output(root)
    assert two_weeks.BO in result.stdout
    assert "sent" in result.stdout  # Bo's welcome left Drafts for Sent
    for line in result.stderr.splitlines():
        assert two_weeks.ANNA not in line


def test_replaying_every_instant_again_creates_nothing_new(
    full_run: tuple[RadicaleDovecotBackend, Outcome, Path],
) -> None:
    backend, before, root = full_run
    again = replay(backend, root, apply_changes=False)  # the calendar as the fortnight left it
    assert_consistent(again)
    assert {k: len(v) for k, v in again.by_key.items()} == {
        k: len(v) for k, v in before.by_key.items()
    }
    assert again.drafts == before.drafts
