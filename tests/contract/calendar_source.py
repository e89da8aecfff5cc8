"""The contract every ``CalendarSource`` keeps, as a test class each connector's tests inherit.

A test module provides one fixture, ``calendar_backend`` (function scope: a fresh, empty calendar
per test), returning an object with:

- ``put(spec: EventSpec) -> None`` — create the event, or replace the one with the same ``uid``
  (including its recurrence overrides), the way the provider's own clients would;
- ``delete(uid: str) -> None`` — remove the event (all its occurrences);
- ``source() -> CalendarSource`` — a source reading that calendar for the recruiter whose zone is
  ``Europe/Stockholm`` (``ConnectorContext.time_zone``); each call may return a new instance;
- ``window() -> Period`` — the window to sync; it must contain ``CONTRACT_WINDOW``;
- ``expire_cursor(cursor: str) -> str | None`` — a cursor the source must refuse with
  ``CursorExpired`` (made from the given valid one, or by expiring it on the server), or ``None``
  when the provider has no such notion (the test is then skipped).

Then ``class TestMySource(CalendarSourceContract): ...``. A backend that cannot do something the
suite checks overrides that test with a ``pytest.skip`` saying why.

Times are compared as instants (converted to UTC): two datetimes with the same ``tzinfo`` compare
by wall clock in Python, which hides DST mistakes.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from recruitmail.contracts.errors import CursorExpired
from recruitmail.contracts.models import Event, Period, Response
from tests.scenario.spec import STOCKHOLM, EventSpec, Moved, Who

CONTRACT_WINDOW = Period(
    start=datetime(2026, 3, 1, tzinfo=STOCKHOLM),
    end=datetime(2026, 11, 1, tzinfo=STOCKHOLM),
)
"""Every date the suite uses lies in here (it spans both Stockholm DST changes of 2026)."""

RECRUITER = Who("rekryterare@example.se", "Rut Rekryterare")
CANDIDATE = Who("anna.svensson@candidate.example", "Svensson, Anna", response="needs_action")
PANELIST = Who("per@example.se", "Per Persson", response="tentative")
DECLINER = Who("lisa@example.se", "Lisa Larsson", response="declined")
ROOM = Who("rum-ada@example.se", "Rum Ada", resource=True)


def utc(moment: datetime) -> datetime:
    """The same instant in UTC; refuses naive datetimes."""
    assert moment.tzinfo is not None and moment.utcoffset() is not None, f"naive time {moment!r}"
    return moment.astimezone(UTC)


def local(day: tuple[int, int, int], hhmm: str) -> datetime:
    hours, minutes = (int(p) for p in hhmm.split(":"))
    return datetime(*day, hours, minutes, tzinfo=STOCKHOLM)


def interview(uid: str = "interview-1@example.se", **changes: Any) -> EventSpec:
    """A first interview with one candidate, two colleagues and a room."""
    spec = EventSpec(
        uid=uid,
        subject="Intervju: Anna Svensson",
        start=local((2026, 3, 12), "14:00"),
        end=local((2026, 3, 12), "15:00"),
        organizer=RECRUITER,
        attendees=(CANDIDATE, PANELIST, DECLINER, ROOM),
        body="Hej!\n\nAgenda\n- Presentation\n- Frågor\n\nLanguage: en",
        location="Kontoret, Storgatan 1",
        online_url="https://meet.example.se/abc-defg-hij",
        categories=("Rekrytering", "EN"),
    )
    return replace(spec, **changes)


def by_uid(events: tuple[Event, ...], uid: str) -> list[Event]:
    return [e for e in events if e.ical_uid == uid]


def only(events: tuple[Event, ...], uid: str) -> Event:
    found = by_uid(events, uid)
    assert len(found) == 1, f"expected one event {uid}, got {found}"
    return found[0]


class CalendarSourceContract:
    """Behaviour every calendar source shows, whatever the provider."""

    def full_sync(self, backend: Any) -> tuple[Any, Any]:
        source = backend.source()
        result = source.sync(None, backend.window())
        assert result.full
        assert isinstance(result.cursor, str) and result.cursor
        return source, result

    def test_full_sync_returns_the_event_with_its_fields(self, calendar_backend: Any) -> None:
        calendar_backend.put(interview())
        _, result = self.full_sync(calendar_backend)
        event = only(result.events, "interview-1@example.se")

        assert event.subject == "Intervju: Anna Svensson"
        assert utc(event.start) == utc(local((2026, 3, 12), "14:00"))
        assert utc(event.end) == utc(local((2026, 3, 12), "15:00"))
        assert event.recurrence_id == ""
        assert event.occasion == "interview-1@example.se"
        assert not event.cancelled and not event.all_day
        assert event.organizer is not None and event.organizer.address == RECRUITER.address
        people = {a.address: a for a in event.attendees}
        candidate = people[CANDIDATE.address]
        assert candidate.name == "Svensson, Anna"
        assert candidate.response is Response.NEEDS_ACTION
        assert not candidate.is_resource
        assert people[PANELIST.address].response is Response.TENTATIVE
        assert people[DECLINER.address].response is Response.DECLINED
        assert people[ROOM.address].is_resource
        assert set(event.categories) == {"Rekrytering", "EN"}
        assert "Agenda" in event.body and "- Frågor" in event.body and "Language: en" in event.body
        assert event.location == "Kontoret, Storgatan 1"
        assert event.online_url == "https://meet.example.se/abc-defg-hij"

    def test_addresses_are_normalised(self, calendar_backend: Any) -> None:
        shouting = Who("Anna.Svensson@Candidate.EXAMPLE", "Anna")
        calendar_backend.put(interview(attendees=(shouting,)))
        _, result = self.full_sync(calendar_backend)
        event = only(result.events, "interview-1@example.se")
        assert [a.address for a in event.attendees if not a.is_organizer] == [CANDIDATE.address]

    def test_events_outside_the_window_are_left_out(self, calendar_backend: Any) -> None:
        calendar_backend.put(interview())
        calendar_backend.put(
            interview(
                "far-future@example.se",
                start=local((2028, 1, 10), "10:00"),
                end=local((2028, 1, 10), "11:00"),
            )
        )
        _, result = self.full_sync(calendar_backend)
        assert [e.ical_uid for e in result.events] == ["interview-1@example.se"]

    def test_incremental_sync_after_no_change_returns_nothing(self, calendar_backend: Any) -> None:
        calendar_backend.put(interview())
        calendar_backend.put(interview("interview-2@example.se", subject="Intervju 2"))
        source, first = self.full_sync(calendar_backend)
        again = source.sync(first.cursor, calendar_backend.window())
        assert not again.full
        assert again.events == ()
        assert again.removed == ()
        assert again.cursor

    def test_incremental_sync_returns_exactly_the_changed_event(
        self, calendar_backend: Any
    ) -> None:
        calendar_backend.put(interview())
        calendar_backend.put(interview("interview-2@example.se", subject="Intervju 2"))
        source, first = self.full_sync(calendar_backend)

        moved_start = local((2026, 3, 13), "09:00")
        calendar_backend.put(
            interview(start=moved_start, end=moved_start + timedelta(hours=1), sequence=1)
        )
        changed = source.sync(first.cursor, calendar_backend.window())
        assert not changed.full
        assert [e.ical_uid for e in changed.events] == ["interview-1@example.se"]
        assert utc(changed.events[0].start) == utc(moved_start)
        assert changed.removed == ()

        settled = source.sync(changed.cursor, calendar_backend.window())
        assert settled.events == () and settled.removed == ()

    def test_incremental_sync_returns_a_new_event(self, calendar_backend: Any) -> None:
        calendar_backend.put(interview())
        source, first = self.full_sync(calendar_backend)
        calendar_backend.put(interview("interview-2@example.se", subject="Intervju 2"))
        result = source.sync(first.cursor, calendar_backend.window())
        assert [e.ical_uid for e in result.events] == ["interview-2@example.se"]

    def test_a_fresh_source_accepts_an_earlier_cursor(self, calendar_backend: Any) -> None:
        """Cursors are stored between runs: a restarted daemon continues where it stopped."""
        calendar_backend.put(interview())
        _, first = self.full_sync(calendar_backend)
        calendar_backend.put(interview("interview-2@example.se", subject="Intervju 2"))
        result = calendar_backend.source().sync(first.cursor, calendar_backend.window())
        assert [e.ical_uid for e in result.events] == ["interview-2@example.se"]

    def test_incremental_sync_reports_a_deleted_event(self, calendar_backend: Any) -> None:
        calendar_backend.put(interview())
        calendar_backend.put(interview("interview-2@example.se", subject="Intervju 2"))
        source, first = self.full_sync(calendar_backend)
        gone = only(first.events, "interview-1@example.se")

        calendar_backend.delete("interview-1@example.se")
        result = source.sync(first.cursor, calendar_backend.window())
        reported_cancelled = [e for e in by_uid(result.events, gone.ical_uid) if e.cancelled]
        assert gone.event_id in result.removed or reported_cancelled
        assert by_uid(result.events, "interview-2@example.se") == []

    def test_cancelled_event_is_marked_cancelled(self, calendar_backend: Any) -> None:
        calendar_backend.put(interview(cancelled=True))
        _, result = self.full_sync(calendar_backend)
        # A provider may leave cancelled events out; when it shows them, they say so.
        assert all(e.cancelled for e in by_uid(result.events, "interview-1@example.se"))

    def test_recurring_series_with_a_moved_and_a_cancelled_occurrence(
        self, calendar_backend: Any
    ) -> None:
        first = local((2026, 4, 6), "10:00")  # a Monday; weekly, four times
        week = timedelta(days=7)
        moved_to = local((2026, 4, 14), "15:00")  # the 2nd occurrence moves to Tuesday
        calendar_backend.put(
            interview(
                "series@example.se",
                subject="Intervjuserie",
                start=first,
                end=first + timedelta(hours=1),
                rrule="FREQ=WEEKLY;COUNT=4",
                exdates=(first + 2 * week,),
                moved=(Moved(first + week, moved_to, moved_to + timedelta(hours=1)),),
            )
        )
        _, result = self.full_sync(calendar_backend)
        occurrences = [e for e in by_uid(result.events, "series@example.se") if not e.cancelled]

        starts = sorted(utc(e.start) for e in occurrences)
        assert starts == [utc(first), utc(moved_to), utc(first + 3 * week)]
        assert len({e.event_id for e in occurrences}) == 3
        originals = {datetime.fromisoformat(e.recurrence_id): e for e in occurrences}
        assert sorted(utc(o) for o in originals) == [
            utc(first),
            utc(first + week),
            utc(first + 3 * week),
        ]
        moved = next(e for o, e in originals.items() if utc(o) == utc(first + week))
        assert utc(moved.start) == utc(moved_to)
        assert utc(moved.end) == utc(moved_to + timedelta(hours=1))
        assert all(e.occasion == f"series@example.se/{e.recurrence_id}" for e in occurrences)

    def test_all_day_event_spans_local_midnights(self, calendar_backend: Any) -> None:
        calendar_backend.put(
            interview(
                "all-day@example.se",
                subject="Rekryteringsdag",
                start=local((2026, 5, 20), "00:00"),
                end=local((2026, 5, 21), "00:00"),
                all_day=True,
            )
        )
        _, result = self.full_sync(calendar_backend)
        event = only(result.events, "all-day@example.se")
        assert event.all_day
        assert utc(event.start) == utc(local((2026, 5, 20), "00:00"))
        assert utc(event.end) == utc(local((2026, 5, 21), "00:00"))

    def test_expired_cursor_raises_cursor_expired(self, calendar_backend: Any) -> None:
        calendar_backend.put(interview())
        source, first = self.full_sync(calendar_backend)
        expired = calendar_backend.expire_cursor(first.cursor)
        if expired is None:
            pytest.skip("this source has no cursor that can expire")
        with pytest.raises(CursorExpired):
            source.sync(expired, calendar_backend.window())
        # After the refusal a full sync works again.
        again = source.sync(None, calendar_backend.window())
        assert again.full and by_uid(again.events, "interview-1@example.se")

    @pytest.mark.parametrize(
        ("day", "start", "end", "hours"),
        [
            # Spring forward: 02:00 does not exist on 29 March; 01:30–03:30 lasts one hour.
            ((2026, 3, 29), "01:30", "03:30", 1),
            # Fall back: 02:30 happens twice on 25 October; the first (summer time) is meant.
            ((2026, 10, 25), "02:30", "03:30", 2),
        ],
    )
    def test_stockholm_dst_edges_round_trip(
        self,
        calendar_backend: Any,
        day: tuple[int, int, int],
        start: str,
        end: str,
        hours: int,
    ) -> None:
        begins, ends = local(day, start), local(day, end)
        calendar_backend.put(interview("dst@example.se", start=begins, end=ends))
        _, result = self.full_sync(calendar_backend)
        event = only(result.events, "dst@example.se")
        assert utc(event.start) == utc(begins)
        assert utc(event.end) == utc(ends)
        assert utc(event.end) - utc(event.start) == timedelta(hours=hours)
