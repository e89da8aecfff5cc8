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

from connectors.base import ConnectorContext, KnowsLastContact, KnowsOutOfOffice, KnowsPeople
from connectors.microsoft import (
    GraphCalendarSource,
    GraphSink,
    SinkOptions,
    SourceOptions,
    device_code_login,
    open_sink,
    open_source,
)
from connectors.microsoft.calendar import event_from_graph, html_to_text
from daemon.errors import AmbiguousError, AuthError, CursorExpired, TransientError
from daemon.models import DraftRef, DraftState, Period
from tests.contract.calendar_source import (
    CONTRACT_WINDOW,
    RECRUITER,
    CalendarSourceContract,
    interview,
    local,
)
from tests.contract.mailbox_sink import MAILBOX, MailboxSinkContract, draft_message
from tests.fakes.graph import FakeGraph

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


def test_retry_after_is_honoured_exactly(fake: FakeGraph, tmp_path: Path, opened: Opened) -> None:
    fake.put_event(MAILBOX, interview())
    source = source_of(fake, tmp_path, opened)
    sink = sink_of(fake, tmp_path, opened)
    recorder = SleepRecorder()
    source.client.sleep = recorder
    fake.throttle(0.4, statuses=(429, 503), retry_after=1, seed=3)
    result = source.sync(None, CONTRACT_WINDOW)
    for n in range(4):
        sink.create_draft(draft_message(f"occasion-{n}@example.se"))
    fake.throttle(0.0)

    assert [e.ical_uid for e in result.events] == ["interview-1@example.se"]
    assert len(fake.drafts(MAILBOX)) == 4
    throttled = [r for r in fake.graph_requests() if r.status in (429, 503)]
    retried = [r for r in fake.graph_requests() if r.not_before is not None]
    assert throttled and len(retried) == len(throttled)
    assert [r for r in retried if r.early] == []
    assert recorder.waits == [1.0] * len(throttled)


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
    assert sink.time_zone() == "Europe/Berlin"
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
    assert query["$orderby"] == ["sentDateTime desc"] and query["$filter"][0].startswith(
        "sentDateTime"
    )


def test_the_fake_refuses_what_graph_refuses(
    fake: FakeGraph, tmp_path: Path, opened: Opened
) -> None:
    """The fake is only worth its strictness: requests real Graph rejects are rejected."""
    source = source_of(fake, tmp_path, opened)
    token = source.client.tokens.token(MAILBOX)
    users = f"{fake.base}/v1.0/users/{MAILBOX}"
    auth = {"Authorization": f"Bearer {token}"}
    key_id = "String {8f1d6b0e-2c4a-4f57-9a83-6e0c5b7d2a41} Name RecruitmailKey"
    window = {"startDateTime": "2026-03-01T00:00:00Z", "endDateTime": "2026-04-01T00:00:00Z"}
    refused = [
        ("GET", f"{users}/calendarView/delta", {}, window),  # no auth header
        ("GET", f"{users}/calendarView/delta", auth, {}),  # no window on the initial round
        ("GET", f"{users}/calendarView/delta", auth, {**window, "$select": "subject"}),
        ("GET", f"{users}/calendarView/delta", auth, {**window, "$top": "5"}),
        ("POST", f"{users}/calendarView/delta", auth, window),
        (
            "GET",
            f"{users}/messages",
            auth,
            {"$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{key_id}')"},
        ),
        (
            "GET",
            f"{users}/messages",
            auth,
            {"$filter": "isDraft eq true", "$orderby": "sentDateTime desc"},
        ),
        ("GET", f"{users}/messages", auth, {"$search": '"anna"', "$filter": "isDraft eq true"}),
    ]
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(fake.ca_file)), trust_env=False
    ) as client:
        for method, url, headers, params in refused:
            response = client.request(method, url, headers=headers, params=params)
            assert response.status_code >= 400, (method, url, params)
        not_json = client.post(
            f"{users}/messages", headers={**auth, "Content-Type": "text/plain"}, content=b"x"
        )
        assert not_json.status_code >= 400
        allowed = client.get(f"{users}/calendarView/delta()", headers=auth, params=window)
        assert allowed.status_code == 200


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
