"""The Microsoft 365 connector against the strict fake Graph: the contract suites, then what only
Graph brings (throttling, concurrency, expired delta tokens, token refresh, permissions, ambiguous
creates, sign-in variants, national-cloud endpoints) and a second opinion from the official SDK."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import os
import ssl
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from email.message import Message
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import ValidationError

from recruitmail.connectors.microsoft import (
    GraphCalendarSource,
    GraphSink,
    SinkOptions,
    SourceOptions,
    device_code_login,
    open_sink,
    open_source,
)
from recruitmail.connectors.microsoft.calendar import event_from_graph, html_to_text
from recruitmail.contracts import limits
from recruitmail.contracts.connector import (
    ConnectorContext,
    KnowsLastContact,
    KnowsOutOfOffice,
    KnowsPeople,
)
from recruitmail.contracts.errors import (
    AmbiguousError,
    AuthError,
    CursorExpired,
    PermanentError,
    TransientError,
)
from recruitmail.contracts.models import DraftRef, DraftState, Period
from tests.contract.calendar_source import (
    CONTRACT_WINDOW,
    RECRUITER,
    CalendarSourceContract,
    interview,
    local,
)
from tests.contract.mailbox_sink import MAILBOX, MailboxSinkContract, draft_message
from tests.fakes.graph import FakeGraph
from tests.scenario import two_weeks
from tests.scenario.runner import write_config

assert RECRUITER.address == MAILBOX
STOCKHOLM = "Europe/Stockholm"


def context(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(MAILBOX, "Rut Rekryterare", STOCKHOLM, ("example.se",), tmp_path)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeGraph]:
    directory = tmp_path / "fake-graph"
    directory.mkdir()
    with FakeGraph(directory) as server:
        server.add_mailbox(MAILBOX, "Rut Rekryterare")
        yield server


@dataclass
class Opened:
    """Sources and sinks a test opened, closed at teardown."""

    items: list[Any] = field(default_factory=list)

    def keep(self, item: Any) -> Any:
        self.items.append(item)
        return item

    def close(self) -> None:
        for item in self.items:
            item.close()


@pytest.fixture
def opened() -> Iterator[Opened]:
    tracker = Opened()
    yield tracker
    tracker.close()


def source_of(fake: FakeGraph, tmp_path: Path, opened: Opened, **extra: Any) -> GraphCalendarSource:
    options = SourceOptions(**fake.options(MAILBOX, **extra))
    source: GraphCalendarSource = opened.keep(open_source(options, context(tmp_path)))
    return source


def sink_of(fake: FakeGraph, tmp_path: Path, opened: Opened, **extra: Any) -> GraphSink:
    sink: GraphSink = opened.keep(
        open_sink(SinkOptions(**fake.options(MAILBOX, **extra)), context(tmp_path))
    )
    return sink


# --- the contract suites -------------------------------------------------------------------------


@dataclass
class CalendarBackend:
    fake: FakeGraph
    tmp_path: Path
    opened: Opened

    def put(self, spec: Any) -> None:
        self.fake.put_event(MAILBOX, spec)

    def delete(self, uid: str) -> None:
        self.fake.delete_event(MAILBOX, uid)

    def source(self) -> GraphCalendarSource:
        return source_of(self.fake, self.tmp_path, self.opened)

    def window(self) -> Period:
        return CONTRACT_WINDOW

    def expire_cursor(self, cursor: str) -> str:
        self.fake.expire_delta_tokens("410")
        return cursor


@dataclass
class MailboxBackend:
    fake: FakeGraph
    tmp_path: Path
    opened: Opened

    def sink(self) -> GraphSink:
        return sink_of(self.fake, self.tmp_path, self.opened)

    def drafts(self) -> list[Message]:
        return [
            email.message_from_bytes(self.fake.mime(MAILBOX, m), policy=email.policy.default)
            for m in self.fake.drafts(MAILBOX)
        ]

    def edit(self, ref: DraftRef) -> None:
        self.fake.edit_message(MAILBOX, ref.remote_id)

    def send(self, ref: DraftRef) -> None:
        self.fake.send_message(MAILBOX, ref.remote_id)

    def delete(self, ref: DraftRef) -> None:
        self.fake.delete_message(MAILBOX, ref.remote_id)

    def add_sent(self, to: str, when: dt.datetime) -> None:
        self.fake.add_sent(MAILBOX, to, when)

    def marked_obsolete(self, ref: DraftRef) -> bool:
        return (
            "recruitmail: obsolete" in self.fake.message(MAILBOX, ref.remote_id).data["categories"]
        )


@pytest.fixture
def calendar_backend(fake: FakeGraph, tmp_path: Path, opened: Opened) -> CalendarBackend:
    return CalendarBackend(fake, tmp_path, opened)


@pytest.fixture
def mailbox_backend(fake: FakeGraph, tmp_path: Path, opened: Opened) -> Iterator[MailboxBackend]:
    yield MailboxBackend(fake, tmp_path, opened)
    # Whatever a sink test did, recruitmail never deletes a mail.
    assert not [r for r in fake.graph_requests() if r.method == "DELETE"]


class TestGraphCalendarSource(CalendarSourceContract):
    pass


class TestGraphSink(MailboxSinkContract):
    pass


# --- calendar: what only Graph brings ------------------------------------------------------------


def test_an_idle_mailbox_costs_one_request(fake: FakeGraph, tmp_path: Path, opened: Opened) -> None:
    fake.put_event(MAILBOX, interview())
    source = source_of(fake, tmp_path, opened)
    first = source.sync(None, CONTRACT_WINDOW)
    before = len(fake.graph_requests())
    again = source.sync(first.cursor, CONTRACT_WINDOW)
    assert again.events == () and again.removed == ()
    assert len(fake.graph_requests()) - before == 1


def test_pages_are_followed_and_every_page_repeats_the_prefer_headers(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    for n in range(7):
        start = local((2026, 4, 1 + n), "10:00")
        fake.put_event(
            MAILBOX, interview(f"i{n}@example.se", start=start, end=start + dt.timedelta(hours=1))
        )
    result = source_of(fake, tmp_path, opened, page_size=2).sync(None, CONTRACT_WINDOW)
    assert sorted(e.ical_uid for e in result.events) == sorted(f"i{n}@example.se" for n in range(7))
    pages = [r for r in fake.graph_requests() if r.path.endswith("/calendarView/delta")]
    assert len(pages) == 4
    for page in pages:
        assert 'outlook.timezone="UTC"' in page.prefer
        assert "odata.maxpagesize=2" in page.prefer
        assert 'IdType="ImmutableId"' in page.prefer
    assert fake.violations == []


@pytest.mark.parametrize("form", ["410", "syncStateNotFound", "resyncRequired"])
def test_every_expired_cursor_form_leads_to_a_full_resync(
    fake: FakeGraph, tmp_path: Path, opened: Opened, form: str
) -> None:
    fake.put_event(MAILBOX, interview())
    source = source_of(fake, tmp_path, opened)
    first = source.sync(None, CONTRACT_WINDOW)
    fake.expire_delta_tokens(form)
    with pytest.raises(CursorExpired):
        source.sync(first.cursor, CONTRACT_WINDOW)
    again = source.sync(None, CONTRACT_WINDOW)
    assert again.full and [e.ical_uid for e in again.events] == ["interview-1@example.se"]


def test_an_unreadable_cursor_is_an_expired_one(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    with pytest.raises(CursorExpired):
        source_of(fake, tmp_path, opened).sync("not a cursor", CONTRACT_WINDOW)


def test_the_window_slides_with_a_fresh_full_sync(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    fake.put_event(MAILBOX, interview())
    source = source_of(fake, tmp_path, opened, slide_days=14)
    first = source.sync(None, CONTRACT_WINDOW)
    within = Period(
        CONTRACT_WINDOW.start + dt.timedelta(days=10), CONTRACT_WINDOW.end + dt.timedelta(days=10)
    )
    assert not source.sync(first.cursor, within).full
    beyond = Period(
        CONTRACT_WINDOW.start + dt.timedelta(days=20), CONTRACT_WINDOW.end + dt.timedelta(days=20)
    )
    slid = source.sync(first.cursor, beyond)
    assert slid.full
    initial = [r for r in fake.graph_requests() if "startDateTime" in r.query]
    assert initial[-1].query["endDateTime"] == [
        (beyond.end + dt.timedelta(days=14)).astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ]


def test_series_occurrences_read_their_series_uid_once(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    first = local((2026, 4, 6), "10:00")
    fake.put_event(
        MAILBOX,
        interview(
            "series@example.se",
            start=first,
            end=first + dt.timedelta(hours=1),
            rrule="FREQ=WEEKLY;COUNT=5",
        ),
    )
    result = source_of(fake, tmp_path, opened).sync(None, CONTRACT_WINDOW)
    assert {e.ical_uid for e in result.events} == {"series@example.se"}
    assert len([r for r in fake.graph_requests() if "/events/" in r.path]) == 1


def test_windows_and_iana_zone_names_are_both_understood() -> None:
    item = {
        "id": "x",
        "iCalUId": "u",
        "subject": "Intervju",
        "start": {"dateTime": "2026-07-01T14:00:00.0000000", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2026-07-01T08:00:00.0000000", "timeZone": "Pacific Standard Time"},
        "body": {
            "contentType": "html",
            "content": "<p>Hej&nbsp;Anna</p><script>x()</script><ul><li>Ett</li></ul>",
        },
    }
    event = event_from_graph(item, ZoneInfo(STOCKHOLM), MAILBOX)
    assert event.start.astimezone(dt.UTC) == dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
    assert event.end.astimezone(dt.UTC) == dt.datetime(2026, 7, 1, 15, 0, tzinfo=dt.UTC)
    assert event.body == "Hej Anna\n- Ett"
    item["start"] = {"dateTime": "2026-07-01T14:00:00", "timeZone": "Europe/Stockholm"}
    assert event_from_graph(item, ZoneInfo(STOCKHOLM), MAILBOX).start.astimezone(dt.UTC).hour == 12


def test_html_bodies_become_readable_text() -> None:
    assert html_to_text("<div>Agenda</div><div><br></div><div>- Frågor &amp; svar</div>") == (
        "Agenda\n\n- Frågor & svar"
    )


# --- good citizen: throttling, concurrency, tokens, permissions ----------------------------------


@dataclass
class SleepRecorder:
    """Records every wait the client asks for, and really waits."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        time.sleep(seconds)


def create_as_the_executor_does(sink: GraphSink, message: Any) -> DraftRef:
    """Two-phase creation: an unclear create is looked up by key before it is tried again."""
    while True:
        found = sink.find_draft(message.key)
        if found is not None:
            return found
        try:
            return sink.create_draft(message)
        except AmbiguousError:
            continue


def test_retry_after_is_honoured_exactly(fake: FakeGraph, tmp_path: Path, opened: Opened) -> None:
    fake.put_event(MAILBOX, interview())
    source = source_of(fake, tmp_path, opened)
    sink = sink_of(fake, tmp_path, opened)
    recorder = SleepRecorder()
    source.client.sleep = recorder
    fake.throttle(0.4, statuses=(429, 503), retry_after=1, seed=3)
    result = source.sync(None, CONTRACT_WINDOW)
    for n in range(4):
        create_as_the_executor_does(sink, draft_message(f"occasion-{n}@example.se"))
    fake.throttle(0.0)

    assert [e.ical_uid for e in result.events] == ["interview-1@example.se"]
    assert len(fake.drafts(MAILBOX)) == 4
    throttled = [r for r in fake.graph_requests() if r.status in (429, 503)]
    assert throttled
    assert fake.early_requests() == []
    # Each wait is what was left of the Retry-After when the next request was due.
    assert recorder.waits and all(0 < wait <= 1.0 for wait in recorder.waits)


def test_throttling_that_does_not_end_becomes_a_transient_error(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    source = source_of(fake, tmp_path, opened, max_attempts=2)
    source.client.sleep = SleepRecorder()
    fake.throttle(1.0, statuses=(429,), retry_after=1)
    with pytest.raises(TransientError) as caught:
        source.sync(None, CONTRACT_WINDOW)
    assert caught.value.retry_after == 1.0
    assert len(fake.graph_requests()) == 2


def test_at_most_four_requests_are_in_flight_per_mailbox(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    sink = sink_of(fake, tmp_path, opened)
    ref = sink.create_draft(draft_message())
    fake.latency = 0.2
    with ThreadPoolExecutor(max_workers=10) as pool:
        states = list(pool.map(lambda _: sink.draft_state(ref), range(20)))
    assert states == [DraftState.PENDING] * 20
    assert 2 <= fake.max_in_flight() <= 4


def test_a_revoked_token_is_refreshed_once(fake: FakeGraph, tmp_path: Path, opened: Opened) -> None:
    source = source_of(fake, tmp_path, opened)
    source.sync(None, CONTRACT_WINDOW)
    tokens = fake.token_requests
    fake.revoke_tokens()
    source.sync(None, CONTRACT_WINDOW)
    assert fake.token_requests == tokens + 1
    assert [r.status for r in fake.graph_requests()][-2:] == [401, 200]


def test_a_second_401_is_an_auth_error(fake: FakeGraph, tmp_path: Path, opened: Opened) -> None:
    source = source_of(fake, tmp_path, opened)
    fake.fail_next("calendarView", 401, "InvalidAuthenticationToken")
    fake.fail_next("calendarView", 401, "InvalidAuthenticationToken")
    with pytest.raises(AuthError, match="401"):
        source.sync(None, CONTRACT_WINDOW)


@pytest.mark.parametrize(
    ("permission", "call"),
    [
        ("Calendars.Read", lambda source, sink: source.sync(None, CONTRACT_WINDOW)),
        ("Mail.ReadWrite", lambda source, sink: sink.create_draft(draft_message())),
        ("MailboxSettings.Read", lambda source, sink: sink.time_zone()),
    ],
)
def test_a_403_names_the_missing_permission(
    fake: FakeGraph, tmp_path: Path, opened: Opened, permission: str, call: Any
) -> None:
    fake.granted.discard(permission)
    with pytest.raises(AuthError, match=permission.replace(".", r"\.")):
        call(source_of(fake, tmp_path, opened), sink_of(fake, tmp_path, opened))


def test_a_mailbox_outside_the_access_policy_is_named(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    fake.blocked.add(MAILBOX)
    with pytest.raises(AuthError, match="Application Access Policy") as caught:
        source_of(fake, tmp_path, opened).sync(None, CONTRACT_WINDOW)
    assert MAILBOX in str(caught.value)


# --- drafts ---------------------------------------------------------------------------------------


def test_a_lost_answer_to_a_create_is_ambiguous_and_the_draft_is_found(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    sink = sink_of(fake, tmp_path, opened)
    message = draft_message()
    fake.drop_after_next_post()
    with pytest.raises(AmbiguousError):
        sink.create_draft(message)
    assert len([r for r in fake.graph_requests() if r.method == "POST"]) == 1  # never re-sent
    found = sink.find_draft(message.key)
    assert found is not None
    assert sink.draft_state(found) is DraftState.PENDING
    assert len(fake.drafts(MAILBOX)) == 1


def test_the_draft_carries_key_property_category_and_message_id(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    message = draft_message()
    ref = sink_of(fake, tmp_path, opened).create_draft(message)
    stored = fake.message(MAILBOX, ref.remote_id)
    assert list(stored.properties.values()) == [message.key.id]
    assert stored.data["categories"] == ["recruitmail"]
    assert stored.data["body"]["contentType"] == "HTML"
    assert stored.data["internetMessageHeaders"] == [
        {"name": "X-Recruitmail-Key", "value": message.key.id}
    ]


def test_our_obsolete_mark_is_not_mistaken_for_an_edit(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    sink = sink_of(fake, tmp_path, opened)
    ref = sink.create_draft(draft_message())
    sink.mark_obsolete(ref)
    assert sink.draft_state(ref) is DraftState.PENDING
    fake.edit_message(MAILBOX, ref.remote_id, "<p>Hej Anna, vi ses!</p>")
    assert sink.draft_state(ref) is DraftState.EDITED


def test_a_draft_deleted_for_good_is_deleted(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    sink = sink_of(fake, tmp_path, opened)
    ref = sink.create_draft(draft_message())
    fake.delete_message(MAILBOX, ref.remote_id, hard=True)
    assert sink.draft_state(ref) is DraftState.DELETED
    sink.mark_obsolete(ref)  # nothing to mark, nothing raised


# --- mailbox knowledge ----------------------------------------------------------------------------


def test_time_zone_and_scheduled_absence_come_from_mailbox_settings(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    fake.add_mailbox(
        MAILBOX,
        "Rut Rekryterare",
        time_zone="W. Europe Standard Time",
        automatic_replies={
            "status": "Scheduled",
            "scheduledStartDateTime": {
                "dateTime": "2026-07-06T00:00:00.0000000",
                "timeZone": "UTC",
            },
            "scheduledEndDateTime": {"dateTime": "2026-07-27T00:00:00.0000000", "timeZone": "UTC"},
        },
    )
    sink = sink_of(fake, tmp_path, opened)
    assert isinstance(sink, KnowsOutOfOffice)
    assert sink.time_zone() == "Europe/Stockholm"  # W. Europe Standard Time, in Sweden
    assert sink.out_of_office() == [
        Period(dt.datetime(2026, 7, 6, tzinfo=dt.UTC), dt.datetime(2026, 7, 27, tzinfo=dt.UTC))
    ]
    assert len([r for r in fake.graph_requests() if r.path.endswith("/mailboxSettings")]) == 1


def test_job_titles_come_from_the_directory_only_when_enabled(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    fake.add_person("per@example.se", "Per Persson", "Tech Lead")
    quiet = sink_of(fake, tmp_path, opened)
    assert isinstance(quiet, KnowsPeople)
    assert quiet.lookup_person("per@example.se") is None
    assert fake.graph_requests() == []
    sink = sink_of(fake, tmp_path, opened, directory_titles=True)
    person = sink.lookup_person("Per@Example.se")
    assert person is not None and (person.name, person.role) == ("Per Persson", "Tech Lead")
    assert sink.lookup_person("nobody@example.se") is None
    fake.granted.discard("User.Read.All")
    with pytest.raises(AuthError, match=r"User\.Read\.All"):
        sink_of(fake, tmp_path, opened, directory_titles=True).lookup_person("lisa@example.se")


def test_last_contact_uses_a_query_graph_accepts(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    sink = sink_of(fake, tmp_path, opened)
    assert isinstance(sink, KnowsLastContact)
    when = dt.datetime(2026, 3, 9, 8, 0, tzinfo=dt.UTC)
    fake.add_sent(MAILBOX, "o'brien@candidate.example", when)
    assert sink.last_contact("O'Brien@candidate.example", when - dt.timedelta(days=1)) == when
    query = [r for r in fake.graph_requests() if r.path.endswith("/sentitems/messages")][-1].query
    assert query["$search"] == ['"recipients:o\'brien@candidate.example"']
    assert "$filter" not in query and "$orderby" not in query


def test_last_contact_counts_cc_and_bcc_and_only_mail_after_since(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    sink = sink_of(fake, tmp_path, opened)
    since = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    anna, bo, cia = "anna@candidate.example", "bo@candidate.example", "cia@candidate.example"
    fake.add_sent(MAILBOX, anna, since - dt.timedelta(days=2))  # before since: not contact
    copied = fake.message(
        MAILBOX, fake.add_sent(MAILBOX, "per@example.se", since + dt.timedelta(1))
    )
    copied.data["ccRecipients"] = [{"emailAddress": {"address": bo, "name": "Bo"}}]
    hidden = fake.message(
        MAILBOX, fake.add_sent(MAILBOX, "per@example.se", since + dt.timedelta(2))
    )
    hidden.data["bccRecipients"] = [{"emailAddress": {"address": cia, "name": "Cia"}}]
    fake.add_sent(MAILBOX, "anna@candidate.example.evil", since + dt.timedelta(days=3))
    assert sink.last_contact(anna, since) is None
    assert sink.last_contact(bo, since) == since + dt.timedelta(days=1)
    assert sink.last_contact(cia, since) == since + dt.timedelta(days=2)


# --- auxiliary look-ups: the error contract --------------------------------------------------------

AUX_CALLS = {
    "last_contact": (
        "sentitems",
        lambda sink: sink.last_contact(
            "anna@candidate.example", dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        ),
        "Mail.ReadWrite",
    ),
    "time_zone": ("mailboxSettings", lambda sink: sink.time_zone(), "MailboxSettings.Read"),
    "out_of_office": ("mailboxSettings", lambda sink: sink.out_of_office(), "MailboxSettings.Read"),
    "lookup_person": (
        "users/per@example.se",
        lambda sink: sink.lookup_person("per@example.se"),
        "User.Read.All",
    ),
}


@pytest.mark.parametrize("call", sorted(AUX_CALLS))
@pytest.mark.parametrize(
    ("status", "code", "retry_after", "raised"),
    [
        (403, "ErrorAccessDenied", None, AuthError),
        (400, "ErrorInvalidUrlQueryFilter", None, PermanentError),
        (429, "TooManyRequests", 7200, TransientError),
        (503, "ServiceUnavailable", None, TransientError),
        (504, "GatewayTimeout", None, TransientError),
    ],
)
def test_auxiliary_look_ups_follow_the_error_contract(
    fake: FakeGraph,
    tmp_path: Path,
    opened: Opened,
    call: str,
    status: int,
    code: str,
    retry_after: int | None,
    raised: type[Exception],
) -> None:
    path_part, look_up, permission = AUX_CALLS[call]
    fake.add_person("per@example.se", "Per Persson", "Tech Lead")
    sink = sink_of(fake, tmp_path, opened, directory_titles=True, max_attempts=1)
    fake.fail_always(path_part, status, code, retry_after=retry_after)
    with pytest.raises(raised) as caught:
        look_up(sink)
    assert type(caught.value) is raised
    message = str(caught.value)
    assert "anna@candidate.example" not in message
    if raised is AuthError:
        assert permission in message
    if raised is PermanentError:
        assert f"400 {code}" in message and path_part in message and "GET /users/" in message
    if retry_after is not None:  # capped at an hour, and no request before it is over
        assert isinstance(caught.value, TransientError) and caught.value.retry_after == 3600
        fake.fail_always(path_part, 0, "")
        with pytest.raises(TransientError):
            look_up(sink)
        assert fake.early_requests() == []


def test_an_unclear_create_is_followed_by_no_early_request(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    """A create answered 503 with Retry-After may have landed: the look-up that must follow
    waits for the Retry-After like every other request to the mailbox."""
    sink = sink_of(fake, tmp_path, opened)
    recorder = SleepRecorder()
    sink.client.sleep = recorder
    message = draft_message()
    fake.fail_next("/messages", 503, "ServiceUnavailable", retry_after=1)
    with pytest.raises(AmbiguousError) as caught:
        sink.create_draft(message)
    assert caught.value.retry_after == 1
    found = create_as_the_executor_does(sink, message)
    assert sink.draft_state(found) is DraftState.PENDING
    assert len(fake.drafts(MAILBOX)) == 1
    assert fake.early_requests() == []
    assert len(recorder.waits) == 1


def test_a_create_answered_429_is_sent_again_after_the_wait(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    """Graph documents a throttled request as failed: after the wait, the same create is sent
    again (no look-up needed), and exactly one draft exists."""
    sink = sink_of(fake, tmp_path, opened)
    sink.client.sleep = SleepRecorder()
    fake.fail_next("/messages", 429, "TooManyRequests", retry_after=1)
    ref = sink.create_draft(draft_message())
    posts = [r for r in fake.graph_requests() if r.method == "POST"]
    assert [r.status for r in posts] == [429, 201]
    assert [m.immutable_id for m in fake.drafts(MAILBOX)] == [ref.remote_id]
    assert fake.early_requests() == []


def test_a_long_retry_after_ends_the_call_without_a_request(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    source = source_of(fake, tmp_path, opened)
    sink = sink_of(fake, tmp_path, opened)
    fake.fail_next("calendarView", 429, "TooManyRequests", retry_after=600)
    with pytest.raises(TransientError) as caught:
        source.sync(None, CONTRACT_WINDOW)
    assert caught.value.retry_after == 600
    served = len(fake.graph_requests())
    with pytest.raises(TransientError) as again:  # the sink's calls wait too: same mailbox
        sink.create_draft(draft_message())
    assert not isinstance(again.value, AmbiguousError)
    assert 0 < (again.value.retry_after or 0) <= 600
    assert len(fake.graph_requests()) == served
    assert fake.early_requests() == []


# --- the recruiter's hand ------------------------------------------------------------------------


def test_an_edited_draft_gets_no_obsolete_mark(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    sink = sink_of(fake, tmp_path, opened)
    ref = sink.create_draft(draft_message())
    fake.edit_message(MAILBOX, ref.remote_id, "<p>Hej Anna, vi ses på torsdag!</p>")
    with pytest.raises(PermanentError, match="edited by the recruiter; left as it is"):
        sink.mark_obsolete(ref)
    assert fake.message(MAILBOX, ref.remote_id).data["categories"] == ["recruitmail"]
    assert not [r for r in fake.graph_requests() if r.method == "PATCH"]


def test_a_draft_sent_after_an_edit_on_the_web_is_sent_not_deleted(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    sink = sink_of(fake, tmp_path, opened)
    message = draft_message()
    ref = sink.create_draft(message)
    fake.send_message(MAILBOX, ref.remote_id, web_edit=True)
    assert sink.draft_state(ref) is DraftState.SENT
    assert sink.find_draft(message.key) is None  # the key property did not survive the edit
    sink.mark_obsolete(ref)  # a sent mail is left alone, nothing raised
    assert "recruitmail: obsolete" not in fake.message(MAILBOX, ref.remote_id).data["categories"]


# --- time zones with the country -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("country", "zone"),
    [
        ("SE", "Europe/Stockholm"),
        ("NO", "Europe/Oslo"),
        ("DE", "Europe/Berlin"),
        ("US", "Europe/Berlin"),
    ],
)
def test_windows_zone_names_resolve_with_the_country(
    fake: FakeGraph, tmp_path: Path, country: str, zone: str
) -> None:
    ctx = ConnectorContext(MAILBOX, "Rut", STOCKHOLM, ("example.se",), tmp_path, country)
    sink = open_sink(SinkOptions(**fake.options(MAILBOX)), ctx)
    try:
        assert sink.time_zone() == zone
    finally:
        sink.close()
    item = {
        "id": "x",
        "iCalUId": "u",
        "subject": "Intervju",
        "start": {"dateTime": "2026-07-01T14:00:00.0000000", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2026-07-01T15:00:00.0000000", "timeZone": "W. Europe Standard Time"},
    }
    event = event_from_graph(item, ZoneInfo(STOCKHOLM), MAILBOX, country=country)
    assert str(event.start.tzinfo) == zone


def test_a_swedish_mailbox_yields_stockholm_for_events_and_settings(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    fake.put_raw_event(MAILBOX, raw_event("windows-zone", zone="W. Europe Standard Time"))
    result = source_of(fake, tmp_path, opened).sync(None, CONTRACT_WINDOW)
    assert [str(e.start.tzinfo) for e in result.events] == ["Europe/Stockholm"]
    assert sink_of(fake, tmp_path, opened).time_zone() == "Europe/Stockholm"


# --- one sign-in ---------------------------------------------------------------------------------


def test_a_mailboxs_source_and_sink_sign_in_once(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    fake.put_event(MAILBOX, interview())
    source_of(fake, tmp_path, opened).sync(None, CONTRACT_WINDOW)
    sink_of(fake, tmp_path, opened).create_draft(draft_message())
    assert fake.token_requests == 1


# --- hostile calendars: one bad event never costs the others --------------------------------------


def raw_event(event_id: str, zone: str = "UTC", **extra: Any) -> dict[str, Any]:
    """A Graph event resource as calendarView returns it, on 2026-04-01 10:00–11:00."""
    return {
        "id": event_id,
        "iCalUId": f"{event_id}@example.se",
        "type": "singleInstance",
        "subject": "Intervju",
        "start": {"dateTime": "2026-04-01T10:00:00.0000000", "timeZone": zone},
        "end": {"dateTime": "2026-04-01T11:00:00.0000000", "timeZone": zone},
        "organizer": {"emailAddress": {"name": "Rut", "address": MAILBOX}},
        "attendees": [
            {
                "type": "required",
                "status": {"response": "accepted"},
                "emailAddress": {"name": "Anna", "address": "anna@candidate.example"},
            }
        ],
        "body": {"contentType": "html", "content": "<p>Hej</p>"},
        **extra,
    }


def test_hostile_events_are_skipped_and_the_others_come_through(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    crowd = [
        {"type": "required", "emailAddress": {"address": f"p{n}@example.com"}}
        for n in range(50_000)
    ]
    hostile = {
        "bad-datetime": raw_event("bad-datetime")
        | {"start": {"dateTime": "not a time", "timeZone": "UTC"}},
        "unknown-zone": raw_event("unknown-zone", zone="Mars Standard Time"),
        "year-9999": raw_event("year-9999")
        | {"end": {"dateTime": "9999-12-31T00:00:00.0000000", "timeZone": "UTC"}},
        "crowd": raw_event("crowd", attendees=crowd),
        "huge-body": raw_event(
            "huge-body", body={"contentType": "html", "content": "<p>x</p>" * 1_300_000}
        ),
        "no-start": {k: v for k, v in raw_event("no-start").items() if k != "start"},
        "wrong-types": raw_event("wrong-types", attendees="everyone", organizer=7),
    }
    for resource in hostile.values():
        fake.put_raw_event(MAILBOX, resource)
    fake.put_raw_event(MAILBOX, ["not", "an", "object"])  # type: ignore[arg-type]
    fake.put_raw_event(MAILBOX, raw_event("private", sensitivity="private"))
    fake.put_event(MAILBOX, interview())
    source = source_of(fake, tmp_path, opened, page_size=3)
    result = source.sync(None, CONTRACT_WINDOW)
    by_id = {e.event_id: e for e in result.events}
    assert "interview-1@example.se" in {e.ical_uid for e in result.events}
    assert by_id["private"].private is True
    reasons = {s.event_id: s.reason for s in result.skipped}
    assert set(reasons) == set(hostile)
    assert reasons["crowd"] == limits.REASON_TOO_MANY_ATTENDEES
    assert reasons["year-9999"] == limits.REASON_OUT_OF_RANGE
    assert reasons["huge-body"] == limits.REASON_TOO_BIG
    again = source.sync(result.cursor, CONTRACT_WINDOW)  # the cursor still works
    assert again.events == () and again.skipped == ()


def test_long_fields_are_cut_to_their_budgets(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    fake.put_raw_event(
        MAILBOX,
        raw_event(
            "long",
            subject="Intervju " + "x" * 5000,
            body={"contentType": "text", "content": "y" * 100_000},
        ),
    )
    (event,) = source_of(fake, tmp_path, opened).sync(None, CONTRACT_WINDOW).events
    assert len(event.subject) == limits.MAX_SUBJECT_CHARS
    assert len(event.body) == limits.MAX_BODY_CHARS


KEY_ID = "String {8f1d6b0e-2c4a-4f57-9a83-6e0c5b7d2a41} Name RecruitmailKey"
WINDOW = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"}
SENT = "/mailFolders/sentitems/messages"
JSON = {"Content-Type": "application/json"}
BATCH_GET = {"method": "GET", "url": f"/users/{MAILBOX}/mailboxSettings"}


@dataclass(frozen=True)
class Refusal:
    """A request shape real Graph refuses, and the answer it gives (status, error code)."""

    method: str
    path: str  # after /v1.0/users/{mailbox}, or from /v1.0 when it starts with "$"
    params: dict[str, str]
    status: int
    code: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    auth: bool = True


# Each row is one line of the table in docs/providers/microsoft.md.
REFUSALS = {
    "to-recipients-lambda-filter": Refusal(
        "GET",
        SENT,
        {"$filter": "toRecipients/any(r: r/emailAddress/address eq 'anna@candidate.example')"},
        400,
        "ErrorInvalidUrlQueryFilter",
    ),
    "cc-recipients-lambda-filter": Refusal(
        "GET",
        "/messages",
        {"$filter": "ccRecipients/any(r: r/emailAddress/address eq 'anna@candidate.example')"},
        400,
        "ErrorInvalidUrlQueryFilter",
    ),
    "search-with-filter": Refusal(
        "GET", SENT, {"$search": '"recipients:anna@x.example"', "$filter": "isDraft eq false"},
        400, "ErrorInvalidUrlQuery",
    ),
    "search-with-orderby": Refusal(
        "GET", SENT, {"$search": '"recipients:anna@x.example"', "$orderby": "sentDateTime desc"},
        400, "ErrorInvalidUrlQuery",
    ),
    "search-with-skip": Refusal(
        "GET", SENT, {"$search": '"recipients:anna@x.example"', "$skip": "10"},
        400, "ErrorInvalidUrlQuery",
    ),
    "orderby-not-leading-the-filter": Refusal(
        "GET", "/messages", {"$filter": "isDraft eq true", "$orderby": "sentDateTime desc"},
        400, "InefficientFilter",
    ),
    "extended-property-filter-without-value": Refusal(
        "GET", "/messages",
        {"$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{KEY_ID}')"},
        400, "ErrorInvalidUrlQueryFilter",
    ),
    "top-over-1000": Refusal("GET", "/messages", {"$top": "1001"}, 400, "ErrorInvalidUrlQuery"),
    "delta-without-window": Refusal("GET", "/calendarView/delta", {}, 400, "ErrorInvalidParameter"),
    "delta-with-select": Refusal(
        "GET", "/calendarView/delta", {**WINDOW, "$select": "subject"}, 400, "ErrorInvalidUrlQuery"
    ),
    "delta-with-filter": Refusal(
        "GET", "/calendarView/delta", {**WINDOW, "$filter": "isCancelled eq false"},
        400, "ErrorInvalidUrlQuery",
    ),
    "delta-with-expand": Refusal(
        "GET", "/calendarView/delta", {**WINDOW, "$expand": "attachments"},
        400, "ErrorInvalidUrlQuery",
    ),
    "delta-with-orderby": Refusal(
        "GET", "/calendarView/delta", {**WINDOW, "$orderby": "start/dateTime"},
        400, "ErrorInvalidUrlQuery",
    ),
    "delta-with-top": Refusal(
        "GET", "/calendarView/delta", {**WINDOW, "$top": "5"}, 400, "ErrorInvalidUrlQuery"
    ),
    "delta-by-post": Refusal("POST", "/calendarView/delta", WINDOW, 405, "Request_BadRequest"),
    "no-bearer-token": Refusal(
        "GET", "/calendarView/delta", WINDOW, 401, "InvalidAuthenticationToken", auth=False
    ),
    "create-without-json": Refusal(
        "POST", "/messages", {}, 415, "UnsupportedMediaType", {"Content-Type": "text/plain"}, "x"
    ),
    "create-with-a-non-x-header": Refusal(
        "POST", "/messages", {}, 400, "InvalidInternetMessageHeader", JSON,
        {"subject": "Hej", "internetMessageHeaders": [{"name": "Bcc", "value": "evil@x"}]},
    ),
    "create-with-a-malformed-property-id": Refusal(
        "POST", "/messages", {}, 400, "ErrorInvalidProperty", JSON,
        {"subject": "Hej", "singleValueExtendedProperties": [{"id": "RecruitmailKey", "value": "k"}]},
    ),
    "batch-over-20": Refusal(
        "POST", "$batch", {}, 400, "BadRequest", JSON,
        {"requests": [{**BATCH_GET, "id": str(n)} for n in range(21)]},
    ),
    "batch-body-without-content-type": Refusal(
        "POST", "$batch", {}, 400, "BadRequest", JSON,
        {"requests": [{"id": "1", "method": "POST", "url": f"/users/{MAILBOX}/messages",
                       "body": {"subject": "Hej"}}]},
    ),
}  # fmt: skip


@pytest.fixture
def raw_graph(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> Iterator[tuple[httpx.Client, str]]:
    """An httpx client with a valid app token, as a test sends raw requests to the fake."""
    token = source_of(fake, tmp_path, opened).client.tokens.token(MAILBOX)
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(fake.ca_file)),
        trust_env=False,
        headers={"Authorization": f"Bearer {token}"},
    ) as client:
        yield client, token


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_the_fake_refuses_what_graph_refuses(
    fake: FakeGraph, raw_graph: tuple[httpx.Client, str], case: str
) -> None:
    """The fake is only worth its strictness: requests real Graph rejects are rejected, with the
    status and error code Graph gives."""
    client, _ = raw_graph
    refusal = REFUSALS[case]
    base = f"{fake.base}/v1.0/"
    url = (
        base + refusal.path
        if refusal.path.startswith("$")
        else f"{base}users/{MAILBOX}{refusal.path}"
    )
    headers = dict(refusal.headers)
    if not refusal.auth:
        client.headers.pop("Authorization")
    content = refusal.body if isinstance(refusal.body, str) or refusal.body is None else None
    response = client.request(
        refusal.method,
        url,
        params=refusal.params,
        headers=headers,
        content=content,
        json=None if content is not None or refusal.body is None else refusal.body,
    )
    assert (response.status_code, response.json()["error"]["code"]) == (
        refusal.status,
        refusal.code,
    )


def test_the_fake_accepts_the_shapes_the_connector_uses(
    fake: FakeGraph, raw_graph: tuple[httpx.Client, str]
) -> None:
    client, _ = raw_graph
    users = f"{fake.base}/v1.0/users/{MAILBOX}"
    assert client.get(f"{users}/calendarView/delta()", params=WINDOW).status_code == 200
    search = {"$search": '"recipients:anna@x.example"', "$select": "sentDateTime", "$top": "25"}
    assert client.get(f"{users}{SENT}", params=search).status_code == 200
    led = {"$filter": "sentDateTime ge 2026-01-01T00:00:00Z", "$orderby": "sentDateTime desc"}
    assert client.get(f"{users}{SENT}", params=led).status_code == 200
    batch = client.post(
        f"{fake.base}/v1.0/$batch",
        json={"requests": [{**BATCH_GET, "id": str(n)} for n in range(20)]},
    )
    assert batch.status_code == 200
    assert sorted(int(r["id"]) for r in batch.json()["responses"]) == list(range(20))


def test_a_delta_page_without_the_rounds_time_zone_is_recorded(
    fake: FakeGraph, raw_graph: tuple[httpx.Client, str]
) -> None:
    """Graph does not refuse a follow-up page without the time-zone Prefer; it silently answers
    in UTC. The fake records it, and the connector never does it."""
    client, _ = raw_graph
    for n in range(3):
        start = local((2026, 3, 10 + n), "10:00")
        fake.put_event(
            MAILBOX, interview(f"z{n}@example.se", start=start, end=start + dt.timedelta(hours=1))
        )
    prefer = {"Prefer": 'outlook.timezone="W. Europe Standard Time", odata.maxpagesize=1'}
    first = client.get(
        f"{fake.base}/v1.0/users/{MAILBOX}/calendarView/delta", params=WINDOW, headers=prefer
    )
    client.get(first.json()["@odata.nextLink"], headers={"Prefer": "odata.maxpagesize=1"})
    assert len(fake.violations) == 1 and "outlook.timezone" in fake.violations[0]


# --- sign-in variants and endpoints ---------------------------------------------------------------


def test_options_refuse_secrets_in_the_file_and_plain_http() -> None:
    base = {"tenant": "t", "client_id": "c"}
    with pytest.raises(ValidationError, match="reference"):
        SourceOptions(**base, client_secret="hunter2")
    with pytest.raises(ValidationError, match="exactly one"):
        SourceOptions(**base)
    with pytest.raises(ValidationError, match="https"):
        SourceOptions(**base, client_secret="env:X", graph_endpoint="http://graph.example")
    defaults = SinkOptions(**base, client_secret="env:X")
    assert defaults.authority_host == "https://login.microsoftonline.com"
    assert defaults.graph_endpoint == "https://graph.microsoft.com"
    assert (defaults.category, defaults.obsolete_category) == (
        "recruitmail",
        "recruitmail: obsolete",
    )


def test_a_national_cloud_authority_host_is_used(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    fake.put_event(MAILBOX, interview())
    authority = f"https://localhost:{fake.port}"
    source = source_of(fake, tmp_path, opened, authority_host=authority)
    assert source.sync(None, CONTRACT_WINDOW).events
    assert source.client.tokens.authority == f"{authority}/{fake.tenant}"
    assert fake.token_requests == 1


def test_a_certificate_signs_the_app_in(fake: FakeGraph, tmp_path: Path, opened: Opened) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recruitmail")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_file = tmp_path / "app.key"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    thumbprint = cert.fingerprint(hashes.SHA1()).hex().upper()
    fake.app_public_key, fake.app_thumbprint = key.public_key(), thumbprint
    source = source_of(
        fake, tmp_path, opened, client_secret=None, key_file=str(key_file), thumbprint=thumbprint
    )
    assert source.sync(None, CONTRACT_WINDOW).full


def test_a_wrong_secret_is_an_auth_error(fake: FakeGraph, tmp_path: Path, opened: Opened) -> None:
    wrong = tmp_path / "wrong-secret"
    wrong.write_text("not the secret")
    source = source_of(fake, tmp_path, opened, client_secret=f"file:{wrong}")
    with pytest.raises(AuthError, match="invalid_client"):
        source.sync(None, CONTRACT_WINDOW)


def test_device_code_login_stores_a_private_cache_the_daemon_uses(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    fake.put_event(MAILBOX, interview())
    fake.device_user = MAILBOX
    cache = tmp_path / "state" / "msal.cache"
    delegated = {"auth": "delegated", "client_secret": None, "token_cache": str(cache)}
    shown: list[str] = []
    device_code_login(SourceOptions(**fake.options(MAILBOX, **delegated)), shown.append)
    assert "FAKE-CODE" in shown[0]
    if cache.exists():  # the 0600 file (no Secret Service on this machine)
        assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    result = source_of(fake, tmp_path, opened, **delegated).sync(None, CONTRACT_WINDOW)
    assert [e.ical_uid for e in result.events] == ["interview-1@example.se"]


def test_delegated_without_a_sign_in_says_to_log_in(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    delegated = {
        "auth": "delegated",
        "client_secret": None,
        "token_cache": str(tmp_path / "none.cache"),
    }
    with pytest.raises(AuthError, match="recruitmail login microsoft"):
        source_of(fake, tmp_path, opened, **delegated).sync(None, CONTRACT_WINDOW)


# --- second opinion: the official SDK's models parse what the fake says --------------------------


def test_the_official_sdk_parses_the_fakes_json(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    pytest.importorskip("msgraph")
    from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
    from msgraph.generated.models.message import Message as GraphMessage
    from msgraph.generated.users.item.calendar_view.delta.delta_get_response import DeltaGetResponse

    first = local((2026, 4, 6), "10:00")
    fake.put_event(
        MAILBOX,
        interview(
            "series@example.se",
            start=first,
            end=first + dt.timedelta(hours=1),
            rrule="FREQ=WEEKLY;COUNT=2",
        ),
    )
    sink = sink_of(fake, tmp_path, opened)
    ref = sink.create_draft(draft_message())
    token = sink.client.tokens.token(MAILBOX)
    users = f"{fake.base}/v1.0/users/{MAILBOX}"
    headers = {"Authorization": f"Bearer {token}", "Prefer": 'IdType="ImmutableId"'}
    factory = JsonParseNodeFactory()
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(fake.ca_file)), trust_env=False
    ) as client:
        delta = client.get(
            f"{users}/calendarView/delta()",
            headers=headers,
            params={"startDateTime": "2026-04-01T00:00:00Z", "endDateTime": "2026-05-01T00:00:00Z"},
        ).content
        message = client.get(f"{users}/messages/{ref.remote_id}", headers=headers).content
    page = factory.get_root_parse_node("application/json", delta).get_object_value(DeltaGetResponse)
    assert page.odata_delta_link and len(page.value) == 2
    occurrence = page.value[0]
    assert occurrence.type.value == "occurrence" and occurrence.series_master_id
    assert occurrence.attendees[0].email_address.address == "anna.svensson@candidate.example"
    assert occurrence.start.time_zone == "UTC"
    parsed = factory.get_root_parse_node("application/json", message).get_object_value(GraphMessage)
    assert parsed.is_draft is True and parsed.id == ref.remote_id
    assert parsed.to_recipients[0].email_address.address == "anna.svensson@candidate.example"


# --- across processes: `recruitmail once` twice ---------------------------------------------------


class CliMailbox:
    """The scenario's recruiter in the fake tenant, configured for the CLI."""

    def __init__(self, fake: FakeGraph) -> None:
        self.fake = fake
        fake.add_mailbox(two_weeks.RECRUITER.address, two_weeks.RECRUITER.name)
        fake.put_event(two_weeks.RECRUITER.address, two_weeks.ANNA_1)

    def config(self) -> str:
        options = self.fake.options(two_weeks.RECRUITER.address)
        table = "\n".join(f'{k} = "{v}"' for k, v in options.items())
        return (
            f'\n[mailboxes.source]\ntype = "microsoft"\n{table}\n'
            f'\n[mailboxes.sink]\ntype = "microsoft"\n{table}\n'
        )


def once(config: Path, now: dt.datetime) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "recruitmail",
            "--config",
            str(config),
            "once",
            "--now",
            now.isoformat(),
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        timeout=120,
    )


def test_two_once_runs_sign_in_once_and_keep_the_cache_private(
    fake: FakeGraph, tmp_path: Path
) -> None:
    config = write_config(CliMailbox(fake), tmp_path)
    first = once(config, two_weeks.INSTANTS[0])
    assert first.returncode == 0, first.stderr
    second = once(config, two_weeks.INSTANTS[1])
    assert second.returncode == 0, second.stderr
    assert fake.token_requests == 1
    (cache,) = (tmp_path / "state").glob("msal-app-*.cache")
    assert stat.S_IMODE(os.stat(cache).st_mode) == 0o600
    assert fake.client_secret not in cache.read_text()


def test_a_retry_after_holds_in_the_next_process(fake: FakeGraph, tmp_path: Path) -> None:
    config = write_config(CliMailbox(fake), tmp_path)
    fake.fail_next("calendarView", 429, "TooManyRequests", retry_after=600)
    first = once(config, two_weeks.INSTANTS[0])
    assert "TooManyRequests" in first.stderr + first.stdout
    asked = len(fake.graph_requests())
    second = once(config, two_weeks.INSTANTS[1])  # a new process, ten minutes not yet over
    assert len(fake.graph_requests()) == asked, second.stderr
    assert fake.early_requests() == []
    waits = tmp_path / "state" / "graph-waits.json"
    assert stat.S_IMODE(os.stat(waits).st_mode) == 0o600
