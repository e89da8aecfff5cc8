"""Microsoft 365 sign-in: the access token is kept between Graph requests exactly as long as msal
would serve it from its cache (until five minutes before it expires), and a 401 replaces it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from recruitmail.connectors.microsoft import GraphCalendarSource, SourceOptions, open_source
from recruitmail.contracts.connector import ConnectorContext
from tests.contract.calendar_source import CONTRACT_WINDOW
from tests.fakes.graph import FakeGraph

MAILBOXES = ("rut@example.se", "per@example.se", "ada@example.se")


class TokensOfALifetime(FakeGraph):
    """The fake Graph, its sign-in endpoint issuing access tokens valid for ``lifetime`` seconds."""

    lifetime = 3600

    def _issue(self, user: str | None, scope: str) -> dict[str, Any]:
        answer = super()._issue(user, scope)
        answer["expires_in"] = self.lifetime
        return answer


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[TokensOfALifetime]:
    directory = tmp_path / "fake-graph"
    directory.mkdir()
    with TokensOfALifetime(directory) as server:
        for address in MAILBOXES:
            server.add_mailbox(address, address.split("@")[0].title())
        yield server


@pytest.fixture
def sources(fake: TokensOfALifetime, tmp_path: Path) -> Iterator[list[GraphCalendarSource]]:
    opened = [
        open_source(
            SourceOptions(**fake.options(address)),
            ConnectorContext(address, "Recruiter", "Europe/Stockholm", ("example.se",), tmp_path),
        )
        for address in MAILBOXES
    ]
    yield opened
    for source in opened:
        source.close()


def sync_all(sources: list[GraphCalendarSource], rounds: int) -> None:
    cursors: list[str | None] = [None] * len(sources)
    for _ in range(rounds):
        for index, source in enumerate(sources):
            cursors[index] = source.sync(cursors[index], CONTRACT_WINDOW).cursor


def test_one_token_serves_every_mailbox_of_the_app_while_it_is_valid(
    fake: TokensOfALifetime, sources: list[GraphCalendarSource]
) -> None:
    sync_all(sources, rounds=4)
    asked = fake.graph_requests()
    assert len(asked) >= 12
    assert {r.status for r in asked} == {200}
    assert fake.token_requests == 1


def test_a_token_within_five_minutes_of_its_expiry_is_not_used_again(
    fake: TokensOfALifetime, sources: list[GraphCalendarSource]
) -> None:
    fake.lifetime = 299  # msal would not serve it from its cache either
    sync_all(sources, rounds=2)
    asked = fake.graph_requests()
    assert {r.status for r in asked} == {200}
    assert fake.token_requests == len(asked)


def test_a_token_with_more_than_five_minutes_left_is_used_again(
    fake: TokensOfALifetime, sources: list[GraphCalendarSource]
) -> None:
    fake.lifetime = 420
    sync_all(sources, rounds=2)
    assert {r.status for r in fake.graph_requests()} == {200}
    assert fake.token_requests == 1


def test_a_revoked_token_is_replaced_once_and_the_new_one_kept(
    fake: TokensOfALifetime, sources: list[GraphCalendarSource]
) -> None:
    sync_all(sources, rounds=1)
    fake.revoke_tokens()
    sync_all(sources, rounds=2)
    statuses = [r.status for r in fake.graph_requests()]
    assert statuses.count(401) == 1
    assert statuses[-6:] == [200] * 6
    assert fake.token_requests == 2
