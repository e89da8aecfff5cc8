"""Graph JSON batching: the fake's `$batch` refuses what Graph refuses and runs each request as a
direct one; the calendar source asks many idle mailboxes ahead, 20 to a batch, without missing a
change, with an expired token still leading to a full resync and a throttled request holding only
its own mailbox."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from recruitmail.connectors.microsoft import GraphCalendarSource, SourceOptions, open_source
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import CursorExpired, TransientError
from tests.contract.calendar_source import CONTRACT_WINDOW, interview
from tests.fakes.graph import FakeGraph

STOCKHOLM = "Europe/Stockholm"
BOXES = [f"rekryterare{n:02d}@example.se" for n in range(25)]


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGraph]:
    directory = tmp_path / "fake-graph"
    directory.mkdir()
    with FakeGraph(directory) as server:
        for box in BOXES:
            server.add_mailbox(box, box.split("@")[0])
        yield server


@pytest.fixture
def sources(fake: FakeGraph, tmp_path: Path) -> Iterator[dict[str, GraphCalendarSource]]:
    opened: dict[str, GraphCalendarSource] = {}
    for box in BOXES:
        options = SourceOptions(**fake.options(box))
        context = ConnectorContext(box, "", STOCKHOLM, ("example.se",), tmp_path / "state")
        opened[box] = open_source(options, context)
    yield opened
    for source in opened.values():
        source.close()


@pytest.fixture
def client(fake: FakeGraph, sources: dict[str, GraphCalendarSource]) -> Iterator[httpx.Client]:
    """A raw client with a valid app token, for requests the connector never sends."""
    token = sources[BOXES[0]].client.tokens.token(BOXES[0])
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(fake.ca_file)),
        trust_env=False,
        headers={"Authorization": f"Bearer {token}"},
    ) as raw:
        yield raw


def delta(box: str, **query: str) -> dict[str, Any]:
    window = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"}
    params = "&".join(f"{k}={v}" for k, v in {**window, **query}.items())
    return {"method": "GET", "url": f"/users/{box}/calendarView/delta?{params}"}


def batch(fake: FakeGraph, client: httpx.Client, requests: list[dict[str, Any]]) -> httpx.Response:
    return client.post(f"{fake.base}/v1.0/$batch", json={"requests": requests})


# --- the fake's $batch ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Refused:
    requests: list[dict[str, Any]]
    message: str


GET = delta(BOXES[0])
REFUSED = {
    "more-than-20": Refused([{**GET, "id": str(n)} for n in range(21)], "limited to 20"),
    "an-absolute-url": Refused(
        [{"id": "1", "method": "GET", "url": f"https://graph.microsoft.com/v1.0{GET['url']}"}],
        "Invalid batch payload format",
    ),
    "duplicate-ids": Refused(
        [{**GET, "id": "a"}, {**GET, "id": "b"}, {**GET, "id": "a"}], "unique"
    ),
    "ids-differing-only-in-case": Refused([{**GET, "id": "x"}, {**GET, "id": "X"}], "unique"),
    "an-unknown-method": Refused([{**GET, "id": "1", "method": "FETCH"}], "Invalid batch payload"),
    "a-request-without-an-id": Refused([GET], "Invalid batch payload"),
    "a-body-without-content-type": Refused(
        [{"id": "1", "method": "POST", "url": f"/users/{BOXES[0]}/messages", "body": {}}],
        "Content-Type",
    ),
    "depends-on-a-later-request": Refused(
        [{**GET, "id": "1", "dependsOn": ["2"]}, {**GET, "id": "2"}], "dependsOn"
    ),
    "no-requests": Refused([], "non-empty"),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_malformed_batch_is_refused_whole(
    fake: FakeGraph, client: httpx.Client, case: str
) -> None:
    """Graph refuses the whole batch with 400 (json-batching; "Request Id … has to be unique in a
    batch", case-insensitively; "Invalid batch payload format" for an absolute URL), and none of
    its requests reaches a mailbox."""
    before = len(fake.graph_requests())
    answer = batch(fake, client, REFUSED[case].requests)
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "BadRequest"
    assert REFUSED[case].message in answer.json()["error"]["message"]
    assert [r.path for r in fake.graph_requests()[before:]] == ["/v1.0/$batch"]


def test_each_request_of_a_batch_is_handled_and_recorded_as_a_direct_one(
    fake: FakeGraph, client: httpx.Client
) -> None:
    """The same refusals as a direct request, per request; the batch itself answers 200; each
    request counts against its own mailbox; answers come in any order, matched by id."""
    answer = batch(
        fake,
        client,
        [
            {**delta(BOXES[0]), "id": "ok"},
            {**delta(BOXES[1], **{"$select": "subject"}), "id": "select"},
            {"id": "nested", "method": "POST", "url": "/$batch", "body": {"requests": []},
             "headers": {"Content-Type": "application/json"}},
            {"id": "version", "method": "GET", "url": f"/v1.0/users/{BOXES[2]}/mailboxSettings"},
        ],
    )  # fmt: skip
    assert answer.status_code == 200
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert by_id["ok"]["status"] == 200 and "@odata.deltaLink" in by_id["ok"]["body"]
    assert (by_id["select"]["status"], by_id["select"]["body"]["error"]["code"]) == (
        400,
        "ErrorInvalidUrlQuery",
    )
    assert by_id["nested"]["status"] == 400
    assert by_id["version"]["status"] == 400  # the URL is relative to the version
    inner = [r for r in fake.graph_requests() if r.batched]
    assert {r.mailbox for r in inner} >= {BOXES[0], BOXES[1]}


def test_a_throttled_request_in_a_batch_has_its_own_retry_after(
    fake: FakeGraph, client: httpx.Client
) -> None:
    fake.fail_next(f"/users/{BOXES[1]}/", 429, "ApplicationThrottled", retry_after=30)
    answer = batch(fake, client, [{**delta(box), "id": box} for box in BOXES[:3]])
    assert answer.status_code == 200
    by_id = {r["id"]: r for r in answer.json()["responses"]}
    assert by_id[BOXES[1]]["status"] == 429
    assert by_id[BOXES[1]]["headers"]["Retry-After"] == "30"
    assert by_id[BOXES[0]]["status"] == by_id[BOXES[2]]["status"] == 200
    # Only that mailbox is held: a request to it now is early, one to another is not.
    batch(fake, client, [{**delta(BOXES[1]), "id": "1"}, {**delta(BOXES[2]), "id": "2"}])
    assert {r.mailbox for r in fake.early_requests()} == {BOXES[1]}


def test_a_request_whose_dependency_failed_answers_424(
    fake: FakeGraph, client: httpx.Client
) -> None:
    answer = batch(
        fake,
        client,
        [
            {**delta(BOXES[0], **{"$top": "5"}), "id": "1"},
            {**delta(BOXES[0]), "id": "2", "dependsOn": ["1"]},
        ],
    )
    by_id = {r["id"]: r["status"] for r in answer.json()["responses"]}
    assert by_id == {"1": 400, "2": 424}


# --- the calendar source, asked ahead in batches --------------------------------------------------


def synced(sources: dict[str, GraphCalendarSource]) -> dict[str, str]:
    return {box: source.sync(None, CONTRACT_WINDOW).cursor for box, source in sources.items()}


def direct(fake: FakeGraph, since: int) -> list[str]:
    """Mailboxes asked with a request of their own (not inside a batch) since ``since``."""
    return [r.mailbox for r in fake.graph_requests()[since:] if not r.batched and r.mailbox]


def test_idle_mailboxes_are_asked_twenty_to_a_batch_and_their_syncs_send_nothing(
    fake: FakeGraph, sources: dict[str, GraphCalendarSource]
) -> None:
    cursors = synced(sources)
    fake.put_event(BOXES[3], interview("booked-meanwhile@example.se"))
    before = len(fake.graph_requests())
    counts = GraphCalendarSource.probe_many(list(sources.values()))
    assert counts == {"changed": 1, "unchanged": 24, "refused": 0, "direct": 0}
    batches = [r for r in fake.graph_requests()[before:] if r.path == "/v1.0/$batch"]
    assert len(batches) == 2  # 25 mailboxes: 20 + 5
    asked = len(fake.graph_requests())
    results = {box: sources[box].sync(cursors[box], CONTRACT_WINDOW) for box in BOXES}
    assert direct(fake, asked) == []
    assert [e.ical_uid for e in results[BOXES[3]].events] == ["booked-meanwhile@example.se"]
    assert all(not r.events and not r.removed for b, r in results.items() if b != BOXES[3])


def test_a_change_made_after_the_batch_is_seen_by_the_next_sync(
    fake: FakeGraph, sources: dict[str, GraphCalendarSource]
) -> None:
    """The page asked ahead is what a direct request would have returned then; its delta link
    covers everything after, so nothing falls between the batch and the pass."""
    box = BOXES[0]
    cursor = synced(sources)[box]
    GraphCalendarSource.probe_many([sources[box]])
    fake.put_event(box, interview("after-the-batch@example.se"))
    first = sources[box].sync(cursor, CONTRACT_WINDOW)
    second = sources[box].sync(first.cursor, CONTRACT_WINDOW)
    assert [e.ical_uid for e in first.events + second.events] == ["after-the-batch@example.se"]


def test_an_idle_sync_hands_back_the_cursor_it_was_given(
    fake: FakeGraph, sources: dict[str, GraphCalendarSource], tmp_path: Path
) -> None:
    """Nothing changed, nothing to store; the source follows the newest delta link itself, and a
    change is still found from the cursor that was stored."""
    box = BOXES[0]
    cursor = synced(sources)[box]
    for _ in range(3):
        GraphCalendarSource.probe_many([sources[box]])
        assert sources[box].sync(cursor, CONTRACT_WINDOW).cursor == cursor
    fake.put_event(box, interview("later@example.se"))
    changed = sources[box].sync(cursor, CONTRACT_WINDOW)
    assert [e.ical_uid for e in changed.events] == ["later@example.se"]
    assert changed.cursor != cursor
    # A new process knows only the stored cursor: it replays from there, idempotently.
    options = SourceOptions(**fake.options(box))
    context = ConnectorContext(box, "", STOCKHOLM, ("example.se",), tmp_path / "state")
    fresh = open_source(options, context)
    try:
        replay = fresh.sync(cursor, CONTRACT_WINDOW)
        assert [e.ical_uid for e in replay.events] == ["later@example.se"]
    finally:
        fresh.close()


def test_an_expired_token_answered_in_a_batch_still_leads_to_a_full_resync(
    fake: FakeGraph, sources: dict[str, GraphCalendarSource]
) -> None:
    box = BOXES[0]
    cursor = synced(sources)[box]
    fake.expire_delta_tokens("410")
    counts = GraphCalendarSource.probe_many([sources[box]])
    assert counts["refused"] == 1
    asked = len(fake.graph_requests())
    with pytest.raises(CursorExpired):
        sources[box].sync(cursor, CONTRACT_WINDOW)
    assert direct(fake, asked) == []  # the batch's answer was enough to know
    assert sources[box].sync(None, CONTRACT_WINDOW).full


def test_a_throttled_mailbox_in_a_batch_holds_only_itself(
    fake: FakeGraph, sources: dict[str, GraphCalendarSource]
) -> None:
    cursors = synced(sources)
    held = BOXES[1]
    fake.fail_next(f"/users/{held}/", 429, "ApplicationThrottled", retry_after=120)
    counts = GraphCalendarSource.probe_many([sources[b] for b in BOXES[:3]])
    assert counts == {"changed": 0, "unchanged": 2, "refused": 0, "direct": 1}
    with pytest.raises(TransientError) as raised:
        sources[held].sync(cursors[held], CONTRACT_WINDOW)
    assert raised.value.retry_after is not None and raised.value.retry_after > 60
    for box in (BOXES[0], BOXES[2]):
        assert not sources[box].sync(cursors[box], CONTRACT_WINDOW).events
    # Nothing reached the held mailbox early, and the next batch leaves it out.
    before = len(fake.graph_requests())
    counts = GraphCalendarSource.probe_many([sources[b] for b in BOXES[:3]])
    assert counts["direct"] == 1
    assert held not in {r.mailbox for r in fake.graph_requests()[before:]}
    assert fake.early_requests() == []


def test_a_batch_that_fails_whole_leaves_every_sync_to_ask_itself(
    fake: FakeGraph, sources: dict[str, GraphCalendarSource]
) -> None:
    cursors = synced(sources)
    fake.fail_next("$batch", 503, "ServiceUnavailable")
    counts = GraphCalendarSource.probe_many([sources[b] for b in BOXES[:2]])
    assert counts["direct"] == 2
    fake.put_event(BOXES[0], interview("seen-directly@example.se"))
    asked = len(fake.graph_requests())
    result = sources[BOXES[0]].sync(cursors[BOXES[0]], CONTRACT_WINDOW)
    assert [e.ical_uid for e in result.events] == ["seen-directly@example.se"]
    assert direct(fake, asked) == [BOXES[0]]
