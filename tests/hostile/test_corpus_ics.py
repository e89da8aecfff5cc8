"""Every corpus entry through the real CLI on ICS + Maildir: the hostile event is skipped, ignored
or drafted as its entry states, the ordinary interview next to it is always drafted, and no draft,
log line or state file carries what the attacker wanted it to."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from recruitmail.connectors.ics import SourceOptions, open_source
from recruitmail.contracts import limits
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import TransientError
from recruitmail.contracts.models import Period
from tests.hostile.corpus import ENTRIES, by_name
from tests.hostile.model import Entry
from tests.hostile.runner import Feed, run_entry, verdict
from tests.hostile.translate import calendar


@pytest.mark.parametrize("entry", ENTRIES, ids=[e.name for e in ENTRIES])
def test_hostile_calendar(entry: Entry, tmp_path: Path) -> None:
    result = run_entry(entry, tmp_path)
    assert verdict(entry, result) == [], entry.what


def test_a_retry_after_of_95_years_is_capped_at_an_hour(tmp_path: Path) -> None:
    entry = by_name("retry-after-95-years")
    feed = Feed(entry, calendar(entry, entry.now), b"").start()
    try:
        source = open_source(
            SourceOptions(url=feed.url),
            ConnectorContext(
                mailbox="lisa.ek@nordljus.se",
                mailbox_name="Lisa Ek",
                time_zone="Europe/Stockholm",
                company_domains=("nordljus.se",),
                state_dir=tmp_path,
            ),
        )
        window = Period(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC))
        with pytest.raises(TransientError) as raised:
            source.sync(None, window)
        source.close()
    finally:
        feed.stop()
    assert raised.value.retry_after is not None
    assert raised.value.retry_after <= limits.MAX_RETRY_AFTER
