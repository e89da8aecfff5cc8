"""The Google connector against the strict fake: the contract suites plus Google's own hazards."""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import Message
from pathlib import Path
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
from google.oauth2 import service_account
from googleapiclient import discovery

from recruitmail.connectors import google, tls
from recruitmail.connectors.google.client import _redacted
from recruitmail.connectors.google.headers import _b64
from recruitmail.contracts import limits
from recruitmail.contracts.connector import KEY_HEADER, ConnectorContext
from recruitmail.contracts.errors import (
    AmbiguousError,
    AuthError,
    CursorExpired,
    PermanentError,
    TransientError,
)
from recruitmail.contracts.models import DraftKey, DraftRef, DraftState, MailKind, Period
from tests.contract.calendar_source import (
    CANDIDATE as CAL_CANDIDATE,
)
from tests.contract.calendar_source import (
    CONTRACT_WINDOW,
    DECLINER,
    PANELIST,
    ROOM,
    CalendarSourceContract,
    interview,
    local,
    only,
    utc,
)
from tests.contract.calendar_source import (
    RECRUITER as CAL_RECRUITER,
)
from tests.contract.mailbox_sink import (
    CANDIDATE,
    MAILBOX,
    MailboxSinkContract,
    draft_message,
    parts,
)
from tests.fakes.google import GoogleFake
from tests.fakes.graph import ThrowawayCA
from tests.scenario import two_weeks
from tests.scenario.spec import Who

GMAIL = "https://www.googleapis.com/auth/"


@pytest.fixture
def fake() -> Iterator[GoogleFake]:
    server = GoogleFake(page_limit=3).start()
    server.add_user(MAILBOX)
    try:
        yield server
    finally:
        server.stop()
    assert server.violations == [], f"forbidden requests reached the fake: {server.violations}"


def context(tmp_path: Path) -> ConnectorContext:
    return ConnectorContext(
        mailbox=MAILBOX,
        mailbox_name="Rut Rekryterare",
        time_zone="Europe/Stockholm",
        company_domains=("example.se",),
        state_dir=tmp_path,
    )


def key_file(fake: GoogleFake, tmp_path: Path, scopes: list[str]) -> tuple[Path, str]:
    """A service account key on disk, with domain-wide delegation of ``scopes``."""
    info, client_id = fake.create_service_account()
    fake.grant_delegation(client_id, scopes)
    path = tmp_path / f"sa-{client_id}.json"
    path.write_text(json.dumps(info))
    path.chmod(0o600)
    return path, client_id


def options(fake: GoogleFake, path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "key_file": path,
        "calendar_endpoint": fake.url,
        "gmail_endpoint": fake.url,
        **extra,
    }


@dataclass
class Sleeps:
    """The injectable sleeper: records the waits instead of waiting."""

    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


# ---------------------------------------------------------------------------------------------
# The calendar contract
# ---------------------------------------------------------------------------------------------


@dataclass
class CalendarBackend:
    fake: GoogleFake
    tmp_path: Path
    sleeps: Sleeps = field(default_factory=Sleeps)

    def __post_init__(self) -> None:
        self.key, _ = key_file(self.fake, self.tmp_path, [google.CALENDAR_EVENTS_READONLY])

    def put(self, spec: Any) -> None:
        self.fake.put(MAILBOX, spec)

    def delete(self, uid: str) -> None:
        self.fake.delete(MAILBOX, uid)

    def source(self) -> google.GoogleCalendarSource:
        opts = google.SourceOptions(**options(self.fake, self.key))
        return google.open_source(opts, context(self.tmp_path), sleep=self.sleeps)

    def window(self) -> Period:
        return CONTRACT_WINDOW

    def expire_cursor(self, cursor: str) -> str | None:
        self.fake.expire_sync_tokens()
        return cursor


@pytest.fixture
def calendar_backend(fake: GoogleFake, tmp_path: Path) -> CalendarBackend:
    return CalendarBackend(fake, tmp_path)


class TestGoogleCalendarSource(CalendarSourceContract):
    def test_full_sync_returns_the_event_with_its_fields(self, calendar_backend: Any) -> None:
        """The contract's test, less categories: Google Calendar events have none."""
        calendar_backend.put(interview())
        _, result = self.full_sync(calendar_backend)
        event = only(result.events, "interview-1@example.se")

        assert event.subject == "Intervju: Anna Svensson"
        assert utc(event.start) == utc(local((2026, 3, 12), "14:00"))
        assert utc(event.end) == utc(local((2026, 3, 12), "15:00"))
        assert event.recurrence_id == "" and event.occasion == "interview-1@example.se"
        assert not event.cancelled and not event.all_day
        assert event.organizer is not None and event.organizer.address == CAL_RECRUITER.address
        people = {a.address: a for a in event.attendees}
        candidate = people[CAL_CANDIDATE.address]
        assert candidate.name == "Svensson, Anna"
        assert candidate.response.value == "needs_action" and not candidate.is_resource
        assert people[PANELIST.address].response.value == "tentative"
        assert people[DECLINER.address].response.value == "declined"
        assert people[ROOM.address].is_resource
        assert event.categories == ()
        # The fake stores the description as Google's web UI does: HTML.
        assert "Agenda" in event.body and "- Frågor" in event.body and "Language: en" in event.body
        assert "<br>" not in event.body
        assert event.location == "Kontoret, Storgatan 1"
        assert event.online_url == "https://meet.example.se/abc-defg-hij"


def test_meet_link_comes_from_hangout_link(calendar_backend: CalendarBackend) -> None:
    calendar_backend.put(interview(online_url="https://meet.google.com/abc-defg-hij"))
    result = calendar_backend.source().sync(None, CONTRACT_WINDOW)
    assert only(result.events, "interview-1@example.se").online_url == (
        "https://meet.google.com/abc-defg-hij"
    )


def test_time_zone_comes_from_the_events_list_answer(calendar_backend: CalendarBackend) -> None:
    calendar_backend.fake.time_zone = "America/New_York"
    source = calendar_backend.source()
    source.sync(None, CONTRACT_WINDOW)
    before = len(calendar_backend.fake.api_requests())
    assert source.time_zone() == "America/New_York"
    assert len(calendar_backend.fake.api_requests()) == before  # known from the sync: no call


def test_time_zone_before_any_sync_is_one_small_request(
    calendar_backend: CalendarBackend,
) -> None:
    calendar_backend.fake.time_zone = "Asia/Tokyo"
    source = calendar_backend.source()
    assert source.time_zone() == "Asia/Tokyo"
    [asked] = calendar_backend.fake.api_requests("calendar")
    assert asked.query["maxResults"] == ["1"]


def test_paging_then_one_request_per_idle_cycle(calendar_backend: CalendarBackend) -> None:
    fake = calendar_backend.fake
    for n in range(7):
        day = local((2026, 4, 1 + n), "10:00")
        calendar_backend.put(interview(f"i{n}@example.se", start=day, end=day + timedelta(hours=1)))
    source = calendar_backend.source()
    result = source.sync(None, CONTRACT_WINDOW)
    assert len(result.events) == 7
    assert len(fake.api_requests("calendar")) == 3  # pages of three; the token on the last only

    before = len(fake.api_requests())
    cursor = result.cursor
    for _ in range(5):
        cursor = source.sync(cursor, CONTRACT_WINDOW).cursor
    assert len(fake.api_requests()) - before == 5
    sync_calls = fake.api_requests("calendar")[-5:]
    assert all("syncToken" in r.query and "timeMin" not in r.query for r in sync_calls)
    assert all(r.query["singleEvents"] == ["true"] for r in sync_calls)


def test_a_window_sliding_a_day_keeps_the_sync_token(calendar_backend: CalendarBackend) -> None:
    source = calendar_backend.source()
    first = source.sync(None, CONTRACT_WINDOW)
    later = Period(
        CONTRACT_WINDOW.start + timedelta(days=1), CONTRACT_WINDOW.end + timedelta(days=1)
    )
    assert not source.sync(first.cursor, later).full
    much_later = Period(later.start + timedelta(days=30), later.end + timedelta(days=30))
    assert source.sync(first.cursor, much_later).full


def test_expired_token_mid_run_resyncs_without_duplicates(
    calendar_backend: CalendarBackend,
) -> None:
    calendar_backend.put(interview())
    calendar_backend.put(interview("interview-2@example.se", subject="Intervju 2"))
    source = calendar_backend.source()
    first = source.sync(None, CONTRACT_WINDOW)
    calendar_backend.fake.expire_sync_tokens()
    calendar_backend.put(interview("interview-3@example.se", subject="Intervju 3"))
    with pytest.raises(CursorExpired):
        source.sync(first.cursor, CONTRACT_WINDOW)
    again = source.sync(None, CONTRACT_WINDOW)
    assert again.full
    uids = sorted(e.ical_uid for e in again.events)
    assert uids == ["interview-1@example.se", "interview-2@example.se", "interview-3@example.se"]
    assert len({e.event_id for e in again.events}) == 3
    assert source.sync(again.cursor, CONTRACT_WINDOW).events == ()


def test_a_cancelled_occurrence_comes_back_as_removed(calendar_backend: CalendarBackend) -> None:
    first = local((2026, 4, 6), "10:00")
    series = interview(
        "series@example.se",
        start=first,
        end=first + timedelta(hours=1),
        rrule="FREQ=WEEKLY;COUNT=3",
    )
    calendar_backend.put(series)
    source = calendar_backend.source()
    full = source.sync(None, CONTRACT_WINDOW)
    second = sorted(full.events, key=lambda e: e.start)[1]
    calendar_backend.put(
        interview(
            "series@example.se",
            start=first,
            end=first + timedelta(hours=1),
            rrule="FREQ=WEEKLY;COUNT=3",
            exdates=(first + timedelta(days=7),),
        )
    )
    changed = source.sync(full.cursor, CONTRACT_WINDOW)
    assert changed.removed == (second.event_id,)
    assert changed.events == ()


def test_quota_errors_back_off_and_give_the_same_events(calendar_backend: CalendarBackend) -> None:
    for n in range(6):
        day = local((2026, 4, 1 + n), "10:00")
        calendar_backend.put(interview(f"i{n}@example.se", start=day, end=day + timedelta(hours=1)))
    calendar_backend.fake.inject_faults(0.3, seed=3)
    result = calendar_backend.source().sync(None, CONTRACT_WINDOW)
    assert sorted(e.ical_uid for e in result.events) == [f"i{n}@example.se" for n in range(6)]
    assert calendar_backend.fake.faults.injected > 0
    assert len(calendar_backend.sleeps.waits) == calendar_backend.fake.faults.injected
    assert all(0 <= w <= 32 for w in calendar_backend.sleeps.waits)


def test_a_refused_request_is_not_retried(fake: GoogleFake, tmp_path: Path) -> None:
    path, _ = key_file(fake, tmp_path, [google.CALENDAR_EVENTS_READONLY])
    sleeps = Sleeps()
    elsewhere = google.SourceOptions(**options(fake, path, calendar_id="someone@example.se"))
    with pytest.raises(PermanentError, match="404"):
        google.open_source(elsewhere, context(tmp_path), sleep=sleeps).sync(None, CONTRACT_WINDOW)
    source = google.open_source(
        google.SourceOptions(**options(fake, path)), context(tmp_path), sleep=sleeps
    )
    first = source.sync(None, CONTRACT_WINDOW)
    garbled = first.cursor.replace('"token":"st-', '"token":"bogus-')
    with pytest.raises(PermanentError, match="400"):
        source.sync(garbled, CONTRACT_WINDOW)
    assert len(fake.api_requests()) == 3 and sleeps.waits == []


# ---------------------------------------------------------------------------------------------
# The mailbox contract, under three grants
# ---------------------------------------------------------------------------------------------

PROFILES = {
    # gmail.compose only: drafts, nothing else.
    "compose": {},
    # plus gmail.metadata: Sent headers (last contact, sent vs deleted).
    "metadata": {"read_sent": True},
    # plus gmail.modify and gmail.settings.basic: obsolete labels and the vacation responder.
    "modify": {"read_sent": True, "label_obsolete": True, "read_vacation": True},
}


@dataclass
class MailboxBackend:
    fake: GoogleFake
    tmp_path: Path
    profile: str
    sleeps: Sleeps = field(default_factory=Sleeps)

    def __post_init__(self) -> None:
        self.opts = google.SinkOptions(
            **options(self.fake, Path("/nonexistent"), **PROFILES[self.profile])
        )
        self.key, self.client_id = key_file(
            self.fake, self.tmp_path, google.gmail_scopes(self.opts)
        )
        self.opts = google.SinkOptions(**options(self.fake, self.key, **PROFILES[self.profile]))

    def needs(self, *features: str) -> None:
        granted = set(PROFILES[self.profile])
        missing = [f for f in features if f not in granted]
        if missing:
            pytest.skip(f"grant {self.profile!r} lacks {missing}: Gmail refuses that call")

    def sink(self) -> google.GmailSink:
        return google.open_sink(self.opts, context(self.tmp_path), sleep=self.sleeps)

    def drafts(self) -> list[Message]:
        return [
            message_from_bytes(m.raw, policy=policy.default)
            for m in self.fake.draft_messages(MAILBOX)
        ]

    def _draft_id(self, ref: DraftRef) -> str:
        return ref.remote_id.split(":")[0]

    def edit(self, ref: DraftRef) -> None:
        self.fake.edit_draft(MAILBOX, self._draft_id(ref))

    def send(self, ref: DraftRef) -> None:
        self.fake.send_draft(MAILBOX, self._draft_id(ref))

    def delete(self, ref: DraftRef) -> None:
        self.fake.delete_draft(MAILBOX, self._draft_id(ref))

    def add_sent(self, to: str, when: datetime) -> None:
        self.fake.add_sent(MAILBOX, to, when)

    def marked_obsolete(self, ref: DraftRef) -> bool:
        draft_id = self._draft_id(ref)
        message_id = self.fake.drafts[MAILBOX].get(draft_id, "")
        return self.opts.obsolete_label in self.fake.label_names(MAILBOX, message_id)


@pytest.fixture(params=sorted(PROFILES))
def mailbox_backend(request: Any, fake: GoogleFake, tmp_path: Path) -> MailboxBackend:
    return MailboxBackend(fake, tmp_path, request.param)


class TestGmailSink(MailboxSinkContract):
    def test_sent_draft_is_sent(self, mailbox_backend: Any) -> None:
        mailbox_backend.needs("read_sent")
        super().test_sent_draft_is_sent(mailbox_backend)

    def test_sent_draft_is_still_found_by_its_key(self, mailbox_backend: Any) -> None:
        mailbox_backend.needs("read_sent")
        super().test_sent_draft_is_still_found_by_its_key(mailbox_backend)

    def test_obsolete_draft_is_kept_and_marked(self, mailbox_backend: Any) -> None:
        mailbox_backend.needs("label_obsolete")
        super().test_obsolete_draft_is_kept_and_marked(mailbox_backend)

    def test_marking_obsolete_twice_is_harmless(self, mailbox_backend: Any) -> None:
        mailbox_backend.needs("label_obsolete")
        super().test_marking_obsolete_twice_is_harmless(mailbox_backend)

    def test_last_contact_is_the_newest_sent_mail_to_the_address(
        self, mailbox_backend: Any
    ) -> None:
        mailbox_backend.needs("read_sent")
        super().test_last_contact_is_the_newest_sent_mail_to_the_address(mailbox_backend)

    def test_deleted_draft_is_deleted(self, mailbox_backend: Any) -> None:
        """Under gmail.compose alone a draft that left Drafts is taken as sent (see below)."""
        mailbox_backend.needs("read_sent")
        super().test_deleted_draft_is_deleted(mailbox_backend)


@pytest.fixture
def backend(fake: GoogleFake, tmp_path: Path) -> MailboxBackend:
    return MailboxBackend(fake, tmp_path, "modify")


@pytest.fixture
def compose_only(fake: GoogleFake, tmp_path: Path) -> MailboxBackend:
    return MailboxBackend(fake, tmp_path, "compose")


def test_compose_only_never_concludes_deleted_and_does_not_label(
    compose_only: MailboxBackend,
) -> None:
    """Without a scope that reads Sent mail a draft that left Drafts may have been sent: it is
    taken as sent (a reschedule notice is a reviewable draft; silence is worse)."""
    sink = compose_only.sink()
    ref = sink.create_draft(draft_message())
    sink.mark_obsolete(ref)  # logged, not done: no gmail.modify
    assert not compose_only.marked_obsolete(ref)
    compose_only.send(ref)
    assert sink.draft_state(ref) is DraftState.SENT
    deleted = sink.create_draft(draft_message("interview-2@example.se"))
    compose_only.delete(deleted)
    assert sink.draft_state(deleted) is DraftState.SENT
    assert sink.last_contact(CANDIDATE, datetime(2026, 1, 1, tzinfo=UTC)) is None
    paths = [r.path for r in compose_only.fake.api_requests()]
    assert not any(p.startswith(("/gmail/v1/users/me/messages", "/gmail/v1/users/me/labels",
                                 "/gmail/v1/users/me/threads")) for p in paths)  # fmt: skip


def test_least_scopes_are_asked_for(fake: GoogleFake, tmp_path: Path) -> None:
    compose = MailboxBackend(fake, tmp_path, "compose")
    compose.sink().find_draft(draft_message().key)
    assert [t.scopes for t in fake.tokens.values()] == [frozenset({google.GMAIL_COMPOSE})]
    fake.tokens.clear()
    CalendarBackend(fake, tmp_path).source().sync(None, CONTRACT_WINDOW)
    assert [t.scopes for t in fake.tokens.values()] == [
        frozenset({google.CALENDAR_EVENTS_READONLY})
    ]
    assert google.gmail_scopes(google.SinkOptions(key_file=Path("k"), read_sent=True)) == [
        google.GMAIL_COMPOSE,
        google.GMAIL_METADATA,
    ]


def test_drafts_are_created_as_raw_json_never_uploaded(backend: MailboxBackend) -> None:
    sink = backend.sink()
    ref = sink.create_draft(draft_message())
    sink.update_draft(ref, draft_message(subject="Ny tid"))
    writes = [r for r in backend.fake.requests if r.method in ("POST", "PUT")]
    assert [r.path for r in writes if r.api == "gmail"] == [
        "/gmail/v1/users/me/drafts",
        f"/gmail/v1/users/me/drafts/{ref.remote_id.split(':')[0]}",
    ]
    assert not any("upload" in r.path or r.path.endswith("/send") for r in backend.fake.requests)


def test_the_fake_fails_a_test_that_sends(backend: MailboxBackend) -> None:
    """The guard is real: a send request is recorded as a violation (then cleared here)."""
    ref = backend.sink().create_draft(draft_message())
    info = json.loads(backend.key.read_text())
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=[google.GMAIL_COMPOSE]
    ).with_subject(MAILBOX)
    service = discovery.build(
        "gmail", "v1", credentials=creds, static_discovery=True,
        client_options={"api_endpoint": backend.fake.url},
    )  # fmt: skip
    with pytest.raises(Exception, match="403"):
        service.users().drafts().send(
            userId="me", body={"id": ref.remote_id.split(":")[0]}
        ).execute()
    assert backend.fake.violations == ["send request: POST /gmail/v1/users/me/drafts/send"]
    backend.fake.violations.clear()


@pytest.mark.parametrize("mode", ["fin", "rst"])
def test_dropped_connection_after_create_gives_exactly_one_draft(
    backend: MailboxBackend, mode: str
) -> None:
    sink = backend.sink()
    message = draft_message()
    backend.fake.drop_after_create(1, mode)
    with pytest.raises(AmbiguousError):
        sink.create_draft(message)
    creates = [r for r in backend.fake.requests if r.method == "POST" and r.api == "gmail"]
    assert len(creates) == 1
    # What the executor does next: look the key up before any retry.
    found = backend.sink().find_draft(message.key)
    assert found is not None
    assert len(backend.drafts()) == 1
    assert sink.draft_state(found) is DraftState.PENDING


def test_the_drop_duplicates_with_httplib2s_default_retry(backend: MailboxBackend) -> None:
    """Why the connector needs its own HTTP object: the default one re-sends the POST."""
    info = json.loads(backend.key.read_text())
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=[google.GMAIL_COMPOSE]
    ).with_subject(MAILBOX)
    http = google_auth_httplib2.AuthorizedHttp(creds, http=httplib2.Http())
    service = discovery.build(
        "gmail", "v1", http=http, static_discovery=True,
        client_options={"api_endpoint": backend.fake.url},
    )  # fmt: skip
    backend.fake.drop_after_create(1, "fin")
    raw = _b64(b"To: a@candidate.example\r\nSubject: x\r\n\r\nhej\r\n")
    service.users().drafts().create(userId="me", body={"message": {"raw": raw}}).execute()
    assert len(backend.drafts()) == 2


def test_quota_errors_back_off_and_give_the_same_drafts(backend: MailboxBackend) -> None:
    backend.fake.inject_faults(0.25, seed=11)
    sink = backend.sink()
    messages = [draft_message(f"interview-{n}@example.se") for n in range(8)]
    for message in messages:
        # The executor's two-phase step, as it will run it.
        if sink.find_draft(message.key) is None:
            sink.create_draft(message)
    injected = backend.fake.faults.injected
    backend.fake.inject_faults(0.0)
    assert sorted(m["Message-ID"] for m in backend.drafts()) == sorted(
        m.key.message_id() for m in messages
    )
    assert injected > 0
    assert len(backend.sleeps.waits) == injected


def test_follow_up_joins_the_thread_of_the_earlier_mail(backend: MailboxBackend) -> None:
    sink = backend.sink()
    first = draft_message()
    first_ref = sink.create_draft(first)
    later_key = DraftKey(MAILBOX, CANDIDATE, MailKind.THANK_YOU, "interview-1@example.se")
    follow_up = draft_message(subject="Välkommen till intervjun, Anna!")
    follow_up = type(follow_up)(
        **{**follow_up.__dict__, "key": later_key, "in_reply_to": first.message_id}
    )
    ref = sink.create_draft(follow_up)
    assert ref.remote_id.split(":")[1] == first_ref.remote_id.split(":")[1]
    mail = next(m for m in backend.drafts() if m["Message-ID"] == later_key.message_id())
    assert mail["In-Reply-To"] == first.message_id and mail["References"] == first.message_id


def test_sent_follow_up_is_told_apart_from_earlier_sent_mail_in_the_thread(
    backend: MailboxBackend,
) -> None:
    sink = backend.sink()
    first = draft_message()
    first_ref = sink.create_draft(first)
    backend.send(first_ref)
    later_key = DraftKey(MAILBOX, CANDIDATE, MailKind.THANK_YOU, "interview-1@example.se")
    follow_up = draft_message()
    follow_up = type(follow_up)(
        **{**follow_up.__dict__, "key": later_key, "in_reply_to": first.message_id}
    )
    ref = sink.create_draft(follow_up)
    assert ref.remote_id.split(":")[1] == first_ref.remote_id.split(":")[1]
    backend.delete(ref)
    assert sink.draft_state(ref) is DraftState.DELETED
    assert sink.draft_state(first_ref) is DraftState.SENT


def test_drafts_are_parseable_rfc822(backend: MailboxBackend) -> None:
    message = draft_message()
    backend.sink().create_draft(message)
    [mail] = backend.drafts()
    assert mail["To"].addresses[0].addr_spec == CANDIDATE
    assert str(mail["Subject"]) == message.subject
    assert mail["Message-ID"] == message.key.message_id() and mail[KEY_HEADER] == message.key.id
    assert set(parts(mail)) == {"text/plain", "text/html"}
    assert mail["Date"] is not None


def test_vacation_responder_becomes_a_period(backend: MailboxBackend) -> None:
    start, end = datetime(2026, 7, 1, tzinfo=UTC), datetime(2026, 7, 20, tzinfo=UTC)
    backend.fake.set_vacation(
        MAILBOX,
        {
            "enableAutoReply": True,
            "responseSubject": "Semester",
            "startTime": str(int(start.timestamp() * 1000)),
            "endTime": str(int(end.timestamp() * 1000)),
        },
    )
    assert backend.sink().out_of_office() == [Period(start, end)]
    backend.fake.set_vacation(MAILBOX, {"enableAutoReply": False})
    assert backend.sink().out_of_office() == []


def test_vacation_without_its_scope_is_an_auth_error_naming_it(
    fake: GoogleFake, tmp_path: Path
) -> None:
    path, client_id = key_file(fake, tmp_path, [google.GMAIL_COMPOSE])
    opts = google.SinkOptions(**options(fake, path, read_vacation=True))
    with pytest.raises(AuthError) as caught:
        google.open_sink(opts, context(tmp_path)).out_of_office()
    assert "unauthorized_client" in str(caught.value)
    assert client_id in str(caught.value) and "gmail.settings.basic" in str(caught.value)


def test_revoked_service_account_grant_tells_what_to_regrant(backend: MailboxBackend) -> None:
    backend.fake.revoke()
    with pytest.raises(AuthError) as caught:
        backend.sink().find_draft(draft_message().key)
    text = str(caught.value)
    assert "invalid_grant" in text and "Domain-wide delegation" in text
    assert backend.client_id in text and "gmail.modify" in text
    assert CANDIDATE not in text


def test_single_user_login_stores_a_private_refresh_token(
    fake: GoogleFake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # oauthlib refuses a plain-http token endpoint; the fake is loopback http.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    client = tmp_path / "client.json"
    client.write_text(json.dumps(fake.add_oauth_client()))
    fake.consenting_user = MAILBOX
    token_file = tmp_path / "token.json"
    opts = google.SinkOptions(
        auth="oauth",
        key_file=client,
        token_file=token_file,
        token_uri=fake.token_uri,
        calendar_endpoint=fake.url,
        gmail_endpoint=fake.url,
    )
    printed: list[str] = []

    def browser(text: str) -> None:
        printed.append(text)
        if "http" in text and "Open this address" in text:
            url = next(w for w in text.split() if w.startswith("http") and "auth" in w)
            # The recruiter's browser: the consent screen redirects to the loopback listener.
            threading.Thread(target=urllib.request.urlopen, args=(url,), daemon=True).start()

    google.installed_app_login(opts, browser, context(tmp_path), wait_seconds=30)
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    stored = json.loads(token_file.read_text())
    assert stored["refresh_token"] and set(stored["scopes"]) == set(google.all_scopes(opts))
    assert "0600" in printed[-1]

    sink = google.open_sink(
        google.SinkOptions(**{**opts.model_dump(), "key_file": None}), context(tmp_path)
    )
    ref = sink.create_draft(draft_message())
    assert sink.draft_state(ref) is DraftState.PENDING

    fake.revoke()
    with pytest.raises(AuthError, match="recruitmail login google"):
        google.open_sink(
            google.SinkOptions(**{**opts.model_dump(), "key_file": None}), context(tmp_path)
        ).find_draft(draft_message().key)


def test_oauth_without_a_stored_token_says_to_log_in(tmp_path: Path) -> None:
    opts = google.SinkOptions(auth="oauth", token_file=tmp_path / "missing.json")
    with pytest.raises(AuthError, match="recruitmail login google"):
        google.open_sink(opts, context(tmp_path))


def test_options_need_the_key_for_a_service_account() -> None:
    with pytest.raises(ValueError, match="key_file"):
        google.SinkOptions()


def test_description_html_becomes_text() -> None:
    html = 'Hej &amp; välkommen!<br><br><b>Agenda</b><ul><li>Intro</li><li>Case</li></ul><a href="https://x.example/a">länk</a>'
    assert (
        google.html_to_text(html)
        == "Hej & välkommen!\n\nAgenda\n- Intro\n- Case\nlänk <https://x.example/a>"
    )
    assert google.html_to_text("a < b and 3 > 2") == "a < b and 3 > 2"


# ---------------------------------------------------------------------------------------------
# Headers go through the one writer (daemon.mime)
# ---------------------------------------------------------------------------------------------


def test_a_long_non_ascii_subject_reads_back_identical(backend: MailboxBackend) -> None:
    subject = (
        "Välkommen till Nordljus AB – måndag 14 december kl. 10:00, Storgatan 1 i Umeå "
        "(första intervjun för tjänsten som systemutvecklare, Öberg & Ågren)"
    )
    assert len(subject) > 78
    backend.sink().create_draft(draft_message(subject=subject, to_name="Öberg, Åsa"))
    [mail] = backend.drafts()
    assert str(mail["Subject"]) == subject
    assert mail["To"].addresses[0].display_name == "Öberg, Åsa"


# ---------------------------------------------------------------------------------------------
# Threading: Gmail joins a thread only when threadId, the references and the subject agree
# ---------------------------------------------------------------------------------------------


def follow_up(first: Any, subject: str, kind: MailKind = MailKind.RESCHEDULE_NOTICE) -> Any:
    key = DraftKey(MAILBOX, CANDIDATE, kind, "interview-1@example.se")
    message = draft_message(subject=subject)
    return type(message)(**{**message.__dict__, "key": key, "in_reply_to": first.message_id})


@pytest.mark.parametrize("profile", ["compose", "metadata", "modify"])
def test_a_follow_up_keeps_its_own_subject_and_starts_its_own_thread(
    fake: GoogleFake, tmp_path: Path, profile: str
) -> None:
    box = MailboxBackend(fake, tmp_path, profile)
    sink = box.sink()
    first = draft_message()
    first_ref = sink.create_draft(first)
    if profile != "compose":
        box.send(first_ref)
    later = follow_up(first, "Ny tid för din intervju, Anna")
    ref = sink.create_draft(later)
    assert ref.remote_id.split(":")[1] != first_ref.remote_id.split(":")[1]
    mail = next(m for m in box.drafts() if m["Message-ID"] == later.key.message_id())
    assert str(mail["Subject"]) == "Ny tid för din intervju, Anna"
    # The candidate's own mail client still threads it under the earlier mail.
    assert mail["In-Reply-To"] == first.message_id and mail["References"] == first.message_id


def test_the_fake_joins_a_thread_only_when_subject_and_references_match(
    backend: MailboxBackend,
) -> None:
    """Gmail's rule ("Managing threads"), enforced by the fake: a threadId alone is not enough."""
    thread = backend.sink().create_draft(draft_message()).remote_id.split(":")[1]
    service = gmail_client(backend)

    def create(subject: str, reply: bool) -> str:
        head = f"To: {CANDIDATE}\r\nSubject: {subject}\r\n"
        if reply:
            head += "In-Reply-To: <rm-x@example.se>\r\nReferences: <rm-x@example.se>\r\n"
        raw = _b64((head + "\r\nhej\r\n").encode())
        body = {"message": {"raw": raw, "threadId": thread}}
        return str(
            service.users().drafts().create(userId="me", body=body).execute()["message"]["threadId"]
        )

    assert create("Något annat", reply=True) != thread
    assert create("Välkommen till intervjun, Anna!", reply=False) != thread
    assert create("Re: Välkommen till intervjun, Anna!", reply=True) == thread


def gmail_client(box: MailboxBackend, scopes: list[str] | None = None) -> Any:
    """Google's own client library on the fake, signed in as the service account."""
    info = json.loads(box.key.read_text())
    creds = service_account.Credentials.from_service_account_info(
        info, scopes=scopes or google.gmail_scopes(box.opts)
    ).with_subject(MAILBOX)
    return discovery.build(
        "gmail", "v1", credentials=creds, static_discovery=True,
        client_options={"api_endpoint": box.fake.url},
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# Sent from Gmail's web editor: our header gone, a new Message-ID; still "sent", never "deleted"
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", ["compose", "metadata", "modify"])
def test_a_draft_sent_from_the_web_editor_is_sent(
    fake: GoogleFake, tmp_path: Path, profile: str
) -> None:
    box = MailboxBackend(fake, tmp_path, profile)
    sink = box.sink()
    ref = sink.create_draft(draft_message())
    sent = fake.send_draft(MAILBOX, ref.remote_id.split(":")[0], web_edit=True)
    assert KEY_HEADER not in sent.parsed and sent.message_id != draft_message().message_id
    assert sink.draft_state(ref) is DraftState.SENT


@pytest.mark.parametrize("profile", ["metadata", "modify"])
def test_a_draft_sent_with_a_new_subject_in_a_new_thread_is_sent(
    fake: GoogleFake, tmp_path: Path, profile: str
) -> None:
    """The worst case: nothing of ours left and a new thread; recipient and time decide."""
    box = MailboxBackend(fake, tmp_path, profile)
    box.add_sent(CANDIDATE, datetime(2026, 1, 5, 9, tzinfo=UTC))  # older mail: not evidence
    sink = box.sink()
    ref = sink.create_draft(draft_message())
    deleted = sink.create_draft(draft_message("interview-2@example.se"))
    box.delete(deleted)
    assert sink.draft_state(deleted) is DraftState.DELETED
    sent = fake.send_draft(MAILBOX, ref.remote_id.split(":")[0], new_subject="Vi ses på måndag")
    assert sent.thread_id != ref.remote_id.split(":")[1]
    assert box.sink().draft_state(ref) is DraftState.SENT


def test_a_deleted_draft_stays_deleted_when_our_other_mail_was_sent(
    backend: MailboxBackend,
) -> None:
    sink = backend.sink()
    welcome = sink.create_draft(draft_message())
    thanks = sink.create_draft(draft_message(kind=MailKind.THANK_YOU, subject="Tack, Anna!"))
    backend.delete(welcome)
    backend.send(thanks)  # our own mail to the same candidate, after the welcome was written
    assert sink.draft_state(welcome) is DraftState.DELETED
    assert sink.draft_state(thanks) is DraftState.SENT


def cli_config(fake: GoogleFake, root: Path, read_sent: bool) -> Path:
    user = two_weeks.RECRUITER.address
    fake.add_user(user)
    info, client_id = fake.create_service_account()
    sink = google.SinkOptions(key_file=Path("k"), read_sent=read_sent)
    fake.grant_delegation(client_id, google.all_scopes(sink))
    key = root / "key.json"
    key.write_text(json.dumps(info))
    config = root / "recruitmail.toml"
    config.write_text(
        two_weeks.CONFIG.replace("{state_dir}", str(root / "state"))
        + f'\n[mailboxes.source]\ntype = "google"\nkey_file = "{key}"\n'
        f'calendar_endpoint = "{fake.url}"\n'
        f'\n[mailboxes.sink]\ntype = "google"\nkey_file = "{key}"\n'
        f'gmail_endpoint = "{fake.url}"\nread_sent = {str(read_sent).lower()}\n',
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize(
    ("read_sent", "new_subject"),
    [(False, None), (True, None), (True, "Hej Anna, vi ses!")],
    ids=["compose", "metadata", "metadata-new-subject"],
)
def test_a_candidate_whose_welcome_was_sent_from_the_web_editor_hears_of_the_move(
    fake: GoogleFake, tmp_path: Path, read_sent: bool, new_subject: str | None
) -> None:
    from recruitmail.daemon.cli import main

    user = two_weeks.RECRUITER.address
    config = cli_config(fake, tmp_path, read_sent)
    anna = Who(two_weeks.ANNA, "Svensson, Anna")
    fake.put(user, two_weeks.interview("anna-1@nordljus.se", anna, 9, "10:00"))
    monday = datetime(2026, 12, 7, 9, tzinfo=UTC)
    assert main(["--config", str(config), "once", "--now", monday.isoformat()]) == 0
    [draft_id] = list(fake.drafts[user])  # the welcome
    fake.send_draft(user, draft_id, web_edit=True, new_subject=new_subject)

    fake.put(user, two_weeks.interview("anna-1@nordljus.se", anna, 10, "13:00", sequence=1))
    later = monday + timedelta(days=1)  # one mail a day per candidate: the next morning
    assert main(["--config", str(config), "once", "--now", later.isoformat()]) == 0
    [notice] = fake.draft_messages(user)
    assert two_weeks.ANNA in str(notice.parsed["To"])
    text = notice.parsed.get_body(("plain",)).get_content()
    assert "10 december" in text and "13:00" in text, text


# ---------------------------------------------------------------------------------------------
# TLS: the one trust store (SSL_CERT_FILE and REQUESTS_CA_BUNDLE honoured alike)
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def tls_fake(tmp_path: Path) -> Iterator[tuple[GoogleFake, ThrowawayCA]]:
    ca = ThrowawayCA.create(tmp_path)
    server = GoogleFake(page_limit=3, tls=(str(ca.cert_file), str(ca.key_file))).start()
    server.add_user(MAILBOX)
    try:
        yield server, ca
    finally:
        server.stop()


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_the_ca_bundle_variables_are_honoured(
    tls_fake: tuple[GoogleFake, ThrowawayCA],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    fake, ca = tls_fake
    assert fake.url.startswith("https://")
    for name in tls.BUNDLE_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    path, _ = key_file(fake, tmp_path, [google.CALENDAR_EVENTS_READONLY, google.GMAIL_COMPOSE])
    source_options = google.SourceOptions(**options(fake, path))
    # Without the variable the fake's certificate is not trusted: the sign-in fails.
    with pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
        google.open_source(source_options, context(tmp_path)).sync(None, CONTRACT_WINDOW)
    monkeypatch.setenv(variable, str(ca.ca_file))
    fake.put(MAILBOX, interview())
    result = google.open_source(source_options, context(tmp_path)).sync(None, CONTRACT_WINDOW)
    assert [e.ical_uid for e in result.events] == ["interview-1@example.se"]
    sink = google.open_sink(google.SinkOptions(**options(fake, path)), context(tmp_path))
    assert sink.draft_state(sink.create_draft(draft_message())) is DraftState.PENDING


def test_a_configured_ca_file_wins_over_the_variables(
    tls_fake: tuple[GoogleFake, ThrowawayCA], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake, ca = tls_fake
    (tmp_path / "other").mkdir()
    other = ThrowawayCA.create(tmp_path / "other")
    monkeypatch.setenv("SSL_CERT_FILE", str(other.ca_file))
    path, _ = key_file(fake, tmp_path, [google.CALENDAR_EVENTS_READONLY])
    opts = google.SourceOptions(**options(fake, path, ca_file=ca.ca_file))
    assert google.open_source(opts, context(tmp_path)).sync(None, CONTRACT_WINDOW).full


# ---------------------------------------------------------------------------------------------
# Auxiliary look-ups follow the error contract
# ---------------------------------------------------------------------------------------------


@dataclass
class VirtualTime:
    """The sleeper and the fake's clock in one: sleeping advances time, nobody waits."""

    now: float = 1_000_000.0
    waits: list[float] = field(default_factory=list)

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def sink_with(fake: GoogleFake, tmp_path: Path, time_: VirtualTime, **extra: Any) -> Any:
    opts = google.SinkOptions(**options(fake, Path("/nonexistent"), **extra))
    path, _ = key_file(fake, tmp_path, google.gmail_scopes(opts))
    opts = google.SinkOptions(**options(fake, path, **extra))
    return google.open_sink(opts, context(tmp_path), sleep=time_, monotonic=time_.clock)


LOOKUPS = {
    # name: (path part the fake fails, options, call, scope the message must name)
    "last_contact": (
        "/messages",
        {"read_sent": True},
        lambda sink: sink.last_contact(CANDIDATE, datetime(2026, 1, 1, tzinfo=UTC)),
        "messages.list",
        "gmail.metadata",
    ),
    "vacation": (
        "/settings/vacation",
        {"read_vacation": True},
        lambda sink: sink.out_of_office(),
        "settings.getVacation",
        "gmail.settings.basic",
    ),
}


@pytest.mark.parametrize("lookup", sorted(LOOKUPS))
def test_a_missing_scope_is_an_auth_error_naming_scope_and_call(
    fake: GoogleFake, tmp_path: Path, lookup: str
) -> None:
    part, extra, call, what, scope = LOOKUPS[lookup]
    fake.fail_always(part, 403, "insufficientPermissions")
    with pytest.raises(AuthError) as caught:
        call(sink_with(fake, tmp_path, VirtualTime(), **extra))
    text = str(caught.value)
    assert what in text and google.SCOPE_PREFIX + scope in text and CANDIDATE not in text


@pytest.mark.parametrize("lookup", sorted(LOOKUPS))
def test_a_refused_request_shape_is_permanent_and_names_the_call(
    fake: GoogleFake, tmp_path: Path, lookup: str
) -> None:
    part, extra, call, what, _ = LOOKUPS[lookup]
    fake.fail_always(part, 400, "invalidArgument")
    time_ = VirtualTime()
    with pytest.raises(PermanentError) as caught:
        call(sink_with(fake, tmp_path, time_, **extra))
    assert what in str(caught.value) and "400" in str(caught.value)
    assert CANDIDATE not in str(caught.value)
    assert time_.waits == []  # a refusal is not retried


@pytest.mark.parametrize("lookup", sorted(LOOKUPS))
@pytest.mark.parametrize(
    ("status", "reason"),
    [(429, "rateLimitExceeded"), (403, "rateLimitExceeded"), (503, "backendError")],
)
def test_throttling_and_outages_are_transient_with_the_capped_retry_after(
    fake: GoogleFake, tmp_path: Path, lookup: str, status: int, reason: str
) -> None:
    part, extra, call, what, _ = LOOKUPS[lookup]
    time_ = VirtualTime()
    fake.clock = time_.clock
    sink = sink_with(fake, tmp_path, time_, **extra)
    fake.fail_always(part, status, reason, retry_after=400 * 86400)  # "come back next year"
    before = len(fake.api_requests())
    with pytest.raises(TransientError) as caught:
        call(sink)
    assert caught.value.retry_after == 3600.0  # capped at an hour
    assert len(fake.api_requests()) - before == 1  # not retried in-process for so long
    assert fake.early_requests == 0


def test_the_calendar_time_zone_follows_the_error_contract(
    fake: GoogleFake, tmp_path: Path
) -> None:
    path, _ = key_file(fake, tmp_path, [google.CALENDAR_EVENTS_READONLY])
    time_ = VirtualTime()
    fake.clock = time_.clock

    def zone() -> str | None:
        opts = google.SourceOptions(**options(fake, path, max_attempts=2))
        return google.open_source(opts, context(tmp_path), sleep=time_).time_zone()

    fake.fail_always("/events", 403, "insufficientPermissions")
    with pytest.raises(AuthError, match="calendar.events.readonly"):
        zone()
    fake.fail_always("/events", 400, "badRequest")
    with pytest.raises(PermanentError, match="events.list"):
        zone()
    fake.fail_always("/events", 503, "backendError", retry_after=2)
    with pytest.raises(TransientError) as caught:
        zone()
    assert caught.value.retry_after == 2 and fake.early_requests == 0
    fake.clear_failures()
    assert zone() == "Europe/Stockholm"


# ---------------------------------------------------------------------------------------------
# Retry-After: read first, waited in full, never a request before it elapsed
# ---------------------------------------------------------------------------------------------


def test_a_short_retry_after_is_waited_and_nothing_arrives_early(
    calendar_backend: CalendarBackend,
) -> None:
    fake = calendar_backend.fake
    time_ = VirtualTime()
    fake.clock = time_.clock
    for n in range(6):
        day = local((2026, 4, 1 + n), "10:00")
        calendar_backend.put(interview(f"i{n}@example.se", start=day, end=day + timedelta(hours=1)))
    fake.inject_faults(0.4, seed=3, retry_after=20)
    opts = google.SourceOptions(**options(fake, calendar_backend.key, max_backoff_seconds=30))
    result = google.open_source(opts, context(calendar_backend.tmp_path), sleep=time_).sync(
        None, CONTRACT_WINDOW
    )
    assert len(result.events) == 6 and fake.faults.injected > 0
    assert len(time_.waits) == fake.faults.injected and min(time_.waits) >= 20
    assert fake.early_requests == 0


@pytest.mark.parametrize("retry_after", [5, 7200])
def test_an_unclear_drafts_create_waits_for_retry_after_before_looking(
    fake: GoogleFake, tmp_path: Path, retry_after: int
) -> None:
    """A 503 on drafts.create may have created the draft: look up, but only after Retry-After;
    when Google asks for more than the backoff allows, hand back AmbiguousError with it."""
    time_ = VirtualTime()
    fake.clock = time_.clock
    sink = sink_with(fake, tmp_path, time_, max_attempts=3)
    fake.fail_always("/drafts", 503, "backendError", retry_after=retry_after)
    with pytest.raises(AmbiguousError) as caught:
        sink.create_draft(draft_message())
    assert caught.value.retry_after == min(retry_after, 3600)
    assert fake.early_requests == 0
    assert all(w >= retry_after for w in time_.waits)
    fake.clear_failures()
    if retry_after > 32:  # longer than the backoff cap: the look-up is refused, nothing is sent
        with pytest.raises(TransientError) as waiting:
            sink.find_draft(draft_message().key)
        assert waiting.value.retry_after is not None and waiting.value.retry_after > 32
    else:
        assert sink.find_draft(draft_message().key) is None  # the fake refused it: nothing there
    assert fake.early_requests == 0


# ---------------------------------------------------------------------------------------------
# One hostile event never fails the sync
# ---------------------------------------------------------------------------------------------


def raw_event(event_id: str, **fields: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "kind": "calendar#event",
        "id": event_id,
        "status": "confirmed",
        "iCalUID": f"{event_id}@example.se",
        "summary": "Intervju",
        "start": {"dateTime": "2026-03-12T14:00:00+01:00"},
        "end": {"dateTime": "2026-03-12T15:00:00+01:00"},
        "attendees": [{"email": CAL_CANDIDATE.address, "responseStatus": "accepted"}],
    }
    item.update(fields)
    return item


HOSTILE = {
    "no-start": raw_event("nostart", start=None),
    "start-is-a-number": raw_event("number", start=5),
    "garbage-time": raw_event("garbage", start={"dateTime": "tomorrow at ten"}),
    "year-one": raw_event(
        "yearone",
        start={"dateTime": "0001-01-01T00:00:00Z"},
        end={"dateTime": "0001-01-01T01:00:00Z"},
    ),
    "ends-in-9999": raw_event("forever", end={"dateTime": "9999-12-31T23:59:59Z"}),
    "too-many-attendees": raw_event(
        "crowd", attendees=[{"email": f"p{n}@example.com"} for n in range(limits.MAX_ATTENDEES + 1)]
    ),
    "too-big": raw_event("big", description="x" * (limits.MAX_EVENT_BYTES + 1)),
    "attendees-are-numbers": raw_event("numbers", attendees=[1, 2, 3]),
    "bad-zone": raw_event(
        "zone", start={"dateTime": "2026-03-12T14:00:00", "timeZone": "../../etc/passwd"}
    ),
    "no-id": {k: v for k, v in raw_event("x").items() if k != "id"},
}


def test_hostile_events_are_skipped_with_a_reason_and_the_rest_is_read(
    calendar_backend: CalendarBackend,
) -> None:
    fake = calendar_backend.fake
    source = calendar_backend.source()
    first = source.sync(None, CONTRACT_WINDOW)
    calendar_backend.put(interview())
    for item in HOSTILE.values():
        fake.put_raw_event(MAILBOX, item)
    fake.put_raw_event(MAILBOX, raw_event("longsubject", summary="Å" * 20_000))
    # By sync token Google returns every changed event, whatever its dates.
    result = source.sync(first.cursor, CONTRACT_WINDOW)

    uids = sorted(e.ical_uid for e in result.events)
    # "bad-zone": an unknown zone name falls back to the calendar's zone: read, not skipped.
    assert uids == ["interview-1@example.se", "longsubject@example.se", "zone@example.se"]
    long = only(result.events, "longsubject@example.se")
    assert len(long.subject) == limits.MAX_SUBJECT_CHARS
    reasons = {s.event_id: s.reason for s in result.skipped}
    assert reasons["yearone"] == limits.REASON_OUT_OF_RANGE
    assert reasons["forever"] == limits.REASON_OUT_OF_RANGE
    assert reasons["crowd"] == limits.REASON_TOO_MANY_ATTENDEES
    assert reasons["big"] == limits.REASON_TOO_BIG
    for unreadable in ("nostart", "number", "garbage", "numbers"):
        assert reasons[unreadable] == google.REASON_UNREADABLE
    assert reasons[""] == google.REASON_NO_ID
    assert len(result.skipped) == len(HOSTILE) - 1
    # Reasons are ours: no calendar text in them.
    assert all("Intervju" not in s.reason and "@" not in s.reason for s in result.skipped)


def test_a_full_sync_over_hostile_events_reads_the_rest(
    calendar_backend: CalendarBackend,
) -> None:
    calendar_backend.put(interview())
    for item in HOSTILE.values():
        calendar_backend.fake.put_raw_event(MAILBOX, item)
    result = calendar_backend.source().sync(None, CONTRACT_WINDOW)
    assert sorted(e.ical_uid for e in result.events) == [
        "interview-1@example.se",
        "zone@example.se",
    ]
    assert {s.event_id for s in result.skipped} >= {"garbage", "crowd", "big", "forever"}


@pytest.mark.parametrize(("visibility", "private"), [("private", True), ("confidential", True),
                                                       ("default", False), ("public", False)])  # fmt: skip
def test_private_and_confidential_events_are_marked_private(
    calendar_backend: CalendarBackend, visibility: str, private: bool
) -> None:
    calendar_backend.fake.put_raw_event(MAILBOX, raw_event("secret", visibility=visibility))
    [event] = calendar_backend.source().sync(None, CONTRACT_WINDOW).events
    assert event.private is private


def test_a_series_with_too_many_occurrences_is_cut(calendar_backend: CalendarBackend) -> None:
    fake = calendar_backend.fake
    start = datetime(2026, 3, 2, 8, tzinfo=UTC)
    for n in range(limits.MAX_OCCURRENCES_PER_SERIES + 3):
        moment = start + timedelta(minutes=15 * n)
        fake.put_raw_event(
            MAILBOX,
            raw_event(
                f"flood_{n}",
                recurringEventId="flood",
                start={"dateTime": moment.isoformat()},
                end={"dateTime": (moment + timedelta(minutes=10)).isoformat()},
            ),
        )
    opts = google.SourceOptions(**options(fake, calendar_backend.key, page_size=2500))
    fake.page_limit = 2500
    result = google.open_source(opts, context(calendar_backend.tmp_path)).sync(
        None, CONTRACT_WINDOW
    )
    assert len(result.events) == limits.MAX_OCCURRENCES_PER_SERIES
    assert {s.reason for s in result.skipped} == {limits.REASON_TOO_MANY_OCCURRENCES}
    assert len(result.skipped) == 3


# ---------------------------------------------------------------------------------------------
# The fake refuses what Google refuses (docs/providers/google.md, "Every call and its refusals")
# ---------------------------------------------------------------------------------------------

CAL = "/calendar/v3/calendars/primary/events"
GM = "/gmail/v1/users/me"
COMPOSE = [google.GMAIL_COMPOSE]
METADATA = [google.GMAIL_COMPOSE, google.GMAIL_METADATA]
CALENDAR = [google.CALENDAR_EVENTS_READONLY]


def ask(
    fake: GoogleFake,
    tmp_path: Path,
    scopes: list[str],
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: Any = None,
) -> tuple[int, str, dict[str, Any]]:
    """One request to the fake with a token for ``scopes`` got from its token endpoint;
    returns (status, the first error reason or "", the JSON answer)."""
    path_key, _ = key_file(fake, tmp_path, scopes)
    info = json.loads(path_key.read_text())
    creds = service_account.Credentials.from_service_account_info(info, scopes=scopes).with_subject(
        MAILBOX
    )
    creds.refresh(google_auth_httplib2.Request(httplib2.Http()))
    url = fake.url.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Authorization", f"Bearer {creds.token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, "", json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        payload = json.loads(exc.read())
        return exc.code, payload["error"]["errors"][0]["reason"], payload


def sync_token(fake: GoogleFake, tmp_path: Path) -> str:
    _, _, answer = ask(fake, tmp_path, CALENDAR, "GET", CAL, {"singleEvents": "true"})
    return str(answer["nextSyncToken"])


@pytest.mark.parametrize("mixed", ["timeMin", "timeMax", "q", "orderBy", "updatedMin", "iCalUID"])
def test_fake_refuses_sync_token_with_a_filter(
    fake: GoogleFake, tmp_path: Path, mixed: str
) -> None:
    values = {"timeMin": "2026-01-01T00:00:00Z", "timeMax": "2026-12-01T00:00:00Z", "q": "x",
              "orderBy": "updated", "updatedMin": "2026-01-01T00:00:00Z", "iCalUID": "a@b"}  # fmt: skip
    query = {"singleEvents": "true", "syncToken": sync_token(fake, tmp_path), mixed: values[mixed]}
    assert ask(fake, tmp_path, CALENDAR, "GET", CAL, query)[:2] == (400, "invalid")


def test_fake_refuses_an_expired_sync_token_with_410(fake: GoogleFake, tmp_path: Path) -> None:
    token = sync_token(fake, tmp_path)
    fake.expire_sync_tokens()
    query = {"singleEvents": "true", "syncToken": token}
    assert ask(fake, tmp_path, CALENDAR, "GET", CAL, query)[:2] == (410, "fullSyncRequired")


def test_fake_refuses_a_sync_token_under_other_parameters(fake: GoogleFake, tmp_path: Path) -> None:
    query = {"singleEvents": "false", "syncToken": sync_token(fake, tmp_path)}
    assert ask(fake, tmp_path, CALENDAR, "GET", CAL, query)[0] == 400


def test_fake_refuses_order_by_start_time_without_single_events(
    fake: GoogleFake, tmp_path: Path
) -> None:
    query = {"orderBy": "startTime", "timeMin": "2026-01-01T00:00:00Z"}
    assert ask(fake, tmp_path, CALENDAR, "GET", CAL, query)[:2] == (400, "invalid")
    query["singleEvents"] = "true"
    assert ask(fake, tmp_path, CALENDAR, "GET", CAL, query)[0] == 200


def test_fake_refuses_a_time_bound_without_an_offset(fake: GoogleFake, tmp_path: Path) -> None:
    query = {"singleEvents": "true", "timeMin": "2026-01-01T00:00:00"}
    assert ask(fake, tmp_path, CALENDAR, "GET", CAL, query)[:2] == (400, "badRequest")


def test_fake_refuses_max_results_below_one_and_caps_above_the_maximum(
    fake: GoogleFake, tmp_path: Path
) -> None:
    assert ask(fake, tmp_path, CALENDAR, "GET", CAL, {"maxResults": "0"})[:2] == (400, "invalid")
    assert ask(fake, tmp_path, CALENDAR, "GET", CAL, {"maxResults": "9999"})[0] == 200
    for n in range(3):
        fake.add_sent(MAILBOX, CANDIDATE, datetime(2026, 1, 1 + n, tzinfo=UTC))
    status, _, answer = ask(fake, tmp_path, METADATA, "GET", f"{GM}/messages",
                            {"labelIds": "SENT", "maxResults": "1000"})  # fmt: skip
    assert status == 200 and len(answer["messages"]) == 3


def test_fake_refuses_the_calendar_without_a_calendar_scope(
    fake: GoogleFake, tmp_path: Path
) -> None:
    assert ask(fake, tmp_path, COMPOSE, "GET", CAL)[:2] == (403, "insufficientPermissions")


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", f"{GM}/messages", None),
        ("GET", f"{GM}/messages/m1", None),
        ("GET", f"{GM}/threads/t1", None),
        ("GET", f"{GM}/labels", None),
        ("POST", f"{GM}/labels", {"name": "recruitmail/obsolete"}),
        ("POST", f"{GM}/messages/m1/modify", {"addLabelIds": ["STARRED"]}),
        ("GET", f"{GM}/settings/vacation", None),
    ],
    ids=[
        "messages.list",
        "messages.get",
        "threads.get",
        "labels.list",
        "labels.create",
        "messages.modify",
        "settings.getVacation",
    ],  # fmt: skip
)
def test_fake_refuses_under_gmail_compose_alone(
    fake: GoogleFake, tmp_path: Path, method: str, path: str, body: Any
) -> None:
    assert ask(fake, tmp_path, COMPOSE, method, path, body=body)[:2] == (
        403,
        "insufficientPermissions",
    )


def test_fake_refuses_q_and_bodies_under_gmail_metadata(fake: GoogleFake, tmp_path: Path) -> None:
    sent = fake.add_sent(MAILBOX, CANDIDATE, datetime(2026, 1, 5, tzinfo=UTC))
    query = {"q": "in:sent"}
    assert ask(fake, tmp_path, METADATA, "GET", f"{GM}/messages", query)[:2] == (403, "forbidden")
    for fmt in ("raw", "full"):
        where = f"{GM}/messages/{sent.id}"
        assert ask(fake, tmp_path, METADATA, "GET", where, {"format": fmt})[0] == 403
        where = f"{GM}/threads/{sent.thread_id}"
        assert ask(fake, tmp_path, METADATA, "GET", where, {"format": fmt})[0] == 403
    allowed = {"format": "metadata", "metadataHeaders": "To"}
    assert ask(fake, tmp_path, METADATA, "GET", f"{GM}/messages/{sent.id}", allowed)[0] == 200


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"message": {"raw": "not+base64/url"}}, (400, "invalidArgument")),
        ({"message": {}}, (400, "invalidArgument")),
        ({"message": {"raw": _b64(b"To: a@b.example\r\nSubject: x\r\n\r\nx"),
                      "threadId": "18c0000000000001"}}, (404, "notFound")),
    ],
    ids=["raw-not-base64url", "no-raw", "unknown-thread"],
)  # fmt: skip
def test_fake_refuses_malformed_drafts(
    fake: GoogleFake, tmp_path: Path, body: Any, expected: tuple[int, str]
) -> None:
    assert ask(fake, tmp_path, COMPOSE, "POST", f"{GM}/drafts", body=body)[:2] == expected
    assert fake.drafts[MAILBOX] == {}


def test_addresses_in_googles_messages_are_not_repeated() -> None:
    text = _redacted("Invalid query term 'to:anna.svensson@candidate.example' near x")
    assert CANDIDATE not in text and "anna" not in text and "<address>" in text


@pytest.mark.parametrize("profile", ["compose", "metadata", "modify"])
def test_a_draft_saved_by_the_web_editor_under_a_new_id_is_edited_not_gone(
    fake: GoogleFake, tmp_path: Path, profile: str
) -> None:
    box = MailboxBackend(fake, tmp_path, profile)
    sink = box.sink()
    other = sink.create_draft(draft_message("interview-2@example.se"))  # another draft of ours
    ref = sink.create_draft(draft_message())
    new_id = fake.edit_draft(MAILBOX, ref.remote_id.split(":")[0], web_edit=True)
    assert new_id != ref.remote_id.split(":")[0]
    assert sink.draft_state(ref) is DraftState.EDITED
    assert sink.draft_state(other) is DraftState.PENDING
    fake.send_draft(MAILBOX, new_id, web_edit=True)
    assert sink.draft_state(ref) is DraftState.SENT
