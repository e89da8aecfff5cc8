"""A stale instance cannot create a draft, even inside one slow request (issue 13).

Two ``recruitmail run`` instances on one real PostgreSQL share a mailbox of the Graph fake, or
of the Gmail fake. The instance holding the mailbox sends a create; the provider answers 429
with a ``Retry-After`` longer than what is left of its lease, and the connector waits it out
inside the call. Meanwhile that instance cannot renew its lease (its database connection is
cut, or it is frozen): the lease runs out, the other instance takes the mailbox over and creates
the draft. When the first one wakes up, its connector asks the mailbox's ``may_write`` before
sending the create again, is refused, and sends nothing: exactly one draft exists, and the
fake's request record shows no second create from the stale instance.

Each instance is built as the daemon builds it: its own configuration and state directory, its
own ``State`` and ``Fleet`` (a lease of 3 s), the sink opened with the connector context of
``runtime.context_for`` and wrapped in ``FencedSink``, as the scheduler does on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from recruitmail.connectors import google, microsoft
from recruitmail.contracts.errors import FencedOut
from recruitmail.contracts.models import DraftKey, DraftMessage, DraftRef, MailKind, Recipient
from recruitmail.daemon.fleet import FencedSink, Fleet, may_write
from recruitmail.daemon.runtime import context_for
from recruitmail.daemon.settings import Settings, load_settings
from recruitmail.daemon.state import LeaseLost, State
from tests.fakes.google import GoogleFake
from tests.fakes.graph import FakeGraph
from tests.postgres import postgres_fixture, postgres_url_fixture  # noqa: F401
from tests.scenario import two_weeks
from tests.scenario.google_backend import GoogleBackend
from tests.scenario.graph_backend import GraphBackend
from tests.scenario.runner import write_config

NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
INTERVAL = 4.0  # seconds: a lease of 3 s, a safety margin of 1 s
RETRY_AFTER = 4  # seconds: longer than the whole lease
MAILBOX = two_weeks.RECRUITER.address


def draft_message() -> DraftMessage:
    """A welcome to a candidate, as the executor hands it to the sink."""
    return DraftMessage(
        key=DraftKey(MAILBOX, "anna@example.com", MailKind.WELCOME, "intervju-1@nordljus.se"),
        sender=Recipient(MAILBOX, two_weeks.RECRUITER.name),
        to=(Recipient("anna@example.com", "Anna Svensson"),),
        subject="Välkommen till intervjun, Anna!",
        text="Hej Anna!\n\nVälkommen på intervju torsdag kl. 14:00.\n",
        html="<p>Hej Anna!</p><p>Välkommen på intervju torsdag kl. 14:00.</p>",
    )


@dataclass
class Instance:
    """One ``recruitmail run`` of the fleet: its settings, state, fleet and fenced sink."""

    settings: Settings
    state: State
    fleet: Fleet
    sink: Any
    fenced: FencedSink

    def close(self) -> None:
        self.sink.close()
        self.state.close()


def settings_in(workdir: Path, backend: Any, url: str) -> Settings:
    workdir.mkdir()
    config = write_config(backend, workdir)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[service]", f'[service]\nstate = "{url}"', 1))
    return load_settings(config)


def start(workdir: Path, backend: Any, url: str, open_sink: Callable[[Settings], Any]) -> Instance:
    settings = settings_in(workdir, backend, url)
    state = State(url)
    box = settings.mailboxes[0]
    assert box.address == MAILBOX
    fleet = Fleet(state, [box.address], INTERVAL)
    sink = open_sink(settings)
    return Instance(settings, state, fleet, sink, FencedSink(sink, box.address, fleet))


def graph_sink(settings: Settings) -> microsoft.GraphSink:
    box = settings.mailboxes[0]
    options = microsoft.SinkOptions(**box.sink.options())
    return microsoft.open_sink(options, context_for(settings, box))


def meanwhile(action: Callable[[], None]) -> None:
    """``action`` in another thread (the other instance runs elsewhere), waited for."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failed:
        raise failed[0]


def stale_holds_the_mailbox(stale: Instance, other: Instance) -> DraftMessage:
    """Both instances signed in before any lease is timed, then ``stale`` takes the mailbox;
    returns the draft it is about to write."""
    message = draft_message()
    for instance in (stale, other):
        assert instance.sink.find_draft(message.key) is None
    stale.fleet.round(NOW)
    assert stale.fleet.holds(MAILBOX)
    return message


def takes_over_and_drafts(other: Instance, created: list[DraftRef]) -> None:
    """What the other instance does once the stale one's lease ran out: its round claims the
    mailbox, and its pass looks the key up and creates the draft."""
    other.fleet.round(NOW)
    assert other.fleet.holds(MAILBOX)
    message = draft_message()
    assert other.fenced.find_draft(message.key) is None
    created.append(other.fenced.create_draft(message))


@pytest.fixture
def graph(tmp_path: Path) -> Iterator[FakeGraph]:
    directory = tmp_path / "fake-graph"
    directory.mkdir()
    with FakeGraph(directory) as server:
        yield server


def test_a_graph_create_throttled_past_the_lease_is_not_sent_again_by_the_stale_instance(
    graph: FakeGraph, tmp_path: Path, postgres_url: str
) -> None:
    backend = GraphBackend(graph)
    stale = start(tmp_path / "a", backend, postgres_url, graph_sink)
    other = start(tmp_path / "b", backend, postgres_url, graph_sink)
    try:
        message = stale_holds_the_mailbox(stale, other)
        created: list[DraftRef] = []
        posts_after_takeover: list[int] = []
        waits: list[float] = []

        def wait(seconds: float) -> None:
            # The stale instance sleeps through Graph's Retry-After inside its create and renews
            # nothing meanwhile; the other instance takes the mailbox over and drafts.
            waits.append(seconds)
            time.sleep(seconds)
            meanwhile(lambda: takes_over_and_drafts(other, created))
            posts_after_takeover.append(len(creates(graph)))

        stale.sink.client.sleep = wait
        graph.fail_next("/messages", 429, "TooManyRequests", retry_after=RETRY_AFTER)
        with pytest.raises(FencedOut) as refused:
            stale.fenced.create_draft(message)
        assert isinstance(refused.value, LeaseLost)  # the scheduler drops the mailbox
        assert len(waits) == 1 and waits[0] > stale.fleet.ttl
        # The stale instance's throttled create, then the other instance's; nothing after.
        assert [r.status for r in creates(graph)] == [429, 201]
        assert posts_after_takeover == [2]
        drafts = graph.drafts(MAILBOX)
        assert [d.immutable_id for d in drafts] == [created[0].remote_id]
        assert stale.state.fenced_writes == 1 and other.state.fenced_writes == 0
        assert graph.early_requests() == []
    finally:
        stale.close()
        other.close()


def creates(graph: FakeGraph) -> list[Any]:
    return [
        r for r in graph.graph_requests() if r.method == "POST" and r.path.endswith("/messages")
    ]


@pytest.fixture
def gmail() -> Iterator[GoogleFake]:
    server = GoogleFake(page_limit=3).start()
    try:
        yield server
    finally:
        server.stop()
    assert server.violations == [], f"forbidden requests reached the fake: {server.violations}"


def test_a_gmail_create_throttled_past_the_lease_is_not_sent_again_by_the_stale_instance(
    gmail: GoogleFake, tmp_path: Path, postgres_url: str
) -> None:
    backend = GoogleBackend(gmail, tmp_path)
    waits: list[float] = []
    created: list[DraftRef] = []
    instances: dict[str, Instance] = {}
    posts_after_takeover: list[int] = []

    def wait(seconds: float) -> None:
        # The stale instance sleeps through Gmail's Retry-After inside its create and renews
        # nothing meanwhile; the throttling ends and the other instance takes over and drafts.
        waits.append(seconds)
        time.sleep(seconds)
        gmail.clear_failures()
        meanwhile(lambda: takes_over_and_drafts(instances["other"], created))
        posts_after_takeover.append(len(gmail_creates(gmail)))

    def gmail_sink(sleep: Callable[[float], None]) -> Callable[[Settings], google.GmailSink]:
        def opened(settings: Settings) -> google.GmailSink:
            box = settings.mailboxes[0]
            options = google.SinkOptions(**box.sink.options())
            return google.open_sink(options, context_for(settings, box), sleep=sleep)

        return opened

    stale = instances["stale"] = start(tmp_path / "a", backend, postgres_url, gmail_sink(wait))
    other = instances["other"] = start(
        tmp_path / "b", backend, postgres_url, gmail_sink(time.sleep)
    )
    try:
        message = stale_holds_the_mailbox(stale, other)
        gmail.fail_always("/drafts", 429, "rateLimitExceeded", retry_after=RETRY_AFTER)
        with pytest.raises(FencedOut) as refused:
            stale.fenced.create_draft(message)
        assert isinstance(refused.value, LeaseLost)
        assert len(waits) == 1 and waits[0] > stale.fleet.ttl
        # The stale instance's throttled create, then the other instance's; nothing after.
        assert len(gmail_creates(gmail)) == 2 and posts_after_takeover == [2]
        assert list(gmail.drafts[MAILBOX]) == [created[0].remote_id.split(":")[0]]
        assert stale.state.fenced_writes == 1 and other.state.fenced_writes == 0
        assert gmail.early_requests == 0
    finally:
        stale.close()
        other.close()


def gmail_creates(gmail: GoogleFake) -> list[Any]:
    return [
        r for r in gmail.api_requests("gmail") if r.method == "POST" and r.path.endswith("/drafts")
    ]


class CheckingSink:
    """A sink that asks ``may_write`` before its (pretended) request, as every client does."""

    def __init__(self, check: Callable[[], None]) -> None:
        self.check = check
        self.sent = 0

    def create_draft(self, message: Any) -> DraftRef:
        self.check()
        self.sent += 1
        return DraftRef(f"draft-{self.sent}", "")


def test_the_check_is_the_fleets_inside_a_fenced_write_only(postgres_url: str) -> None:
    """Inside a ``FencedSink`` call the context's check is the fleet's (refused with less than
    the margin left, on the fleet's monotonic clock); outside one (SQLite, ``once``,
    ``check --online``) it allows every write."""
    clock = [100.0]
    state = State(postgres_url)
    try:
        fleet = Fleet(state, [MAILBOX], 30.0, clock=lambda: clock[0])
        fleet.round(NOW)
        check = may_write(MAILBOX)
        sink = CheckingSink(check)
        fenced = FencedSink(sink, MAILBOX, fleet)
        fenced.create_draft(draft_message())
        assert sink.sent == 1

        def slow_request(message: Any) -> DraftRef:
            clock[0] += fleet.ttl - fleet.margin + 0.01  # a long wait inside the call
            return CheckingSink.create_draft(sink, message)

        sink.create_draft = slow_request  # type: ignore[method-assign]
        with pytest.raises(FencedOut):
            fenced.create_draft(draft_message())
        assert sink.sent == 1 and state.fenced_writes == 1
        check()  # outside a fenced call: allowed, however little is left on the lease
    finally:
        state.close()
