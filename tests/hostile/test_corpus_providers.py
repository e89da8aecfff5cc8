"""The corpus entries that a provider's JSON can carry, through the Microsoft Graph fake and the
Google fake and the real CLI: the same expectations as on ICS. The ordinary interview is stored the
way each fake stores any event; the hostile one as a raw resource from ``translate``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from recruitmail import connectors
from tests.fakes.google import GoogleFake
from tests.fakes.graph import FakeGraph
from tests.hostile.corpus import ENTRIES
from tests.hostile.model import Entry, Ev
from tests.hostile.runner import finish, run_passes, verdict, write_config
from tests.hostile.translate import google_event, graph_event, ordinary
from tests.scenario.google_backend import USER, GoogleBackend
from tests.scenario.graph_backend import GraphBackend
from tests.scenario.spec import EventSpec


def spec(ev: Ev) -> EventSpec:
    """The ordinary interview as the fakes' own event description."""
    assert ev.organizer is not None
    return EventSpec(
        uid=ev.uid,
        subject=ev.subject,
        start=datetime.fromisoformat(ev.start + "+00:00"),
        end=datetime.fromisoformat(ev.end + "+00:00"),
        organizer=ev.organizer,
        attendees=ev.attendees,
        body=ev.body,
        location=ev.location,
    )


@contextmanager
def microsoft(root: Path) -> Iterator[tuple[Any, Callable[[Ev], object]]]:
    with FakeGraph(root) as fake:
        backend = GraphBackend(fake)
        yield backend, lambda ev: fake.put_raw_event(USER, graph_event(ev, USER))


@contextmanager
def google(root: Path) -> Iterator[tuple[Any, Callable[[Ev], object]]]:
    fake = GoogleFake().start()
    try:
        backend = GoogleBackend(fake, root)
        yield backend, lambda ev: fake.put_raw_event(USER, google_event(ev, USER))
    finally:
        fake.stop()


PROVIDERS: dict[
    str, Callable[[Path], AbstractContextManager[tuple[Any, Callable[[Ev], object]]]]
] = {
    "microsoft": microsoft,
    "google": google,
}
CASES = [(p, e) for e in ENTRIES for p in PROVIDERS if p in e.providers]


@pytest.mark.parametrize(("provider", "entry"), CASES, ids=[f"{p}-{e.name}" for p, e in CASES])
def test_hostile_event(provider: str, entry: Entry, tmp_path: Path) -> None:
    if provider not in connectors.PROVIDERS:
        pytest.skip(f"the provider registry has no {provider!r} line")
    hostile = entry.hostile_event()
    assert hostile is not None
    with PROVIDERS[provider](tmp_path) as (backend, put_raw):
        backend.put(spec(ordinary(entry.now)))
        put_raw(hostile)
        config = write_config(entry, tmp_path, backend.config())
        result = run_passes(entry, tmp_path, config, entry.passes)
        drafts: list[EmailMessage] = backend.messages()
        result = finish(entry, tmp_path, config, result, drafts)
    assert verdict(entry, result) == [], entry.what
