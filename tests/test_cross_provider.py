"""One scenario, every provider, the same mails.

The reference fortnight (``tests.scenario.two_weeks``: a move, a cancel, a draft sent after an
edit in the web editor, the recruiter's own mails in Sent, one with the candidate in Cc, and on
Microsoft 365 the Windows zone "W. Europe Standard Time") is replayed once through each pair of
connectors: ICS + Maildir, Microsoft 365, Google, CalDAV + IMAP. Every pair must draft the same
(kind, candidate, local day) set, the scenario's ``EXPECTED``, and each of those mails must name
the same local times in the same zone on every provider.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator
from contextlib import ExitStack
from datetime import date
from email.message import Message
from pathlib import Path
from typing import cast

import pytest

from tests.scenario import two_weeks
from tests.scenario.runner import Outcome, ScenarioBackend, replay
from tests.servers import radicale_fixture  # noqa: F401

ICS, MICROSOFT, GOOGLE, CALDAV = "ics+maildir", "microsoft", "google", "caldav+imap"
PAIRS = (ICS, MICROSOFT, GOOGLE, CALDAV)

Draft = tuple[str, str, date]

# "kl. 14:00", "14:00", "2:00 PM": a time of day as the Swedish and English templates write it.
TIME = re.compile(r"(?:kl\. )?\d{1,2}[:.]\d{2}(?: ?[AaPp]\.? ?[Mm]\.?)?")
# "svensk tid (CET)", "Swedish time (CET)", and any other name a zone could be given: Babel's
# "Sverigetid (CET)", "Tyskland (Berlin)tid (CET)", "Central European Time (CET)".
ZONE = re.compile(
    r"(?:[A-Za-zÅÄÖåäö][^\s,:;()]*(?: \([^()\n]*\))?(?:tid| Time)|[A-Za-zåäö]+ (?:tid|time))"
    r" \([A-Z][A-Za-z0-9+−-]{1,8}\)"
)
# The zone every time must be named in: the company's own name for its zone, whatever the provider
# called it (Microsoft 365 says "W. Europe Standard Time").
SWEDISH_ZONE = {"sv": "svensk tid (CET)", "en": "Swedish time (CET)"}
# Mails that exist to tell the candidate when the interview is.
NAMES_THE_TIME = ("welcome", "interview_details", "reschedule_notice")


class Replays:
    """Each pair's replay of the scenario, run once (on first use) for the whole module."""

    def __init__(
        self, request: pytest.FixtureRequest, tmp: pytest.TempPathFactory, stack: ExitStack
    ) -> None:
        self.request, self.tmp, self.stack = request, tmp, stack
        self.done: dict[str, Outcome] = {}
        self.failed: dict[str, BaseException] = {}

    def __getitem__(self, pair: str) -> Outcome:
        if pair in self.failed:
            raise AssertionError(f"the {pair} replay failed: {self.failed[pair]!r}")
        if pair not in self.done:
            root = self.tmp.mktemp(pair.replace("+", "-"))
            backend = self.backend(pair, root)
            try:
                self.done[pair] = replay(backend, root)
            except Exception as exc:
                self.failed[pair] = exc
                raise
        return self.done[pair]

    def backend(self, pair: str, root: Path) -> ScenarioBackend:
        if pair == ICS:
            from tests.scenario.default_backend import IcsMaildirBackend

            return IcsMaildirBackend(root)
        if pair == MICROSOFT:
            from tests.fakes.graph import FakeGraph
            from tests.scenario.graph_backend import GraphBackend

            return GraphBackend(self.stack.enter_context(FakeGraph(root)))
        if pair == GOOGLE:
            from tests.fakes.google import GoogleFake
            from tests.scenario.google_backend import GoogleBackend

            google = GoogleFake(page_limit=5).start()
            self.stack.callback(google.stop)
            return GoogleBackend(google, root)
        from tests.scenario.caldav_imap_backend import RadicaleDovecotBackend
        from tests.servers import DovecotServer, run_dovecot

        radicale = self.request.getfixturevalue("radicale")
        dovecots = cast(Generator[DovecotServer, None, None], run_dovecot(uidplus=True))
        dovecot = next(dovecots)
        self.stack.callback(dovecots.close)
        return RadicaleDovecotBackend(radicale, dovecot, root)


@pytest.fixture(scope="module")
def replays(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replays]:
    with ExitStack() as stack:
        yield Replays(request, tmp_path_factory, stack)


def problems(outcome: Outcome) -> list[str]:
    """What a user would find wrong with one pair's fortnight, in words (empty when all is well)."""
    found = []
    failed = [
        i.isoformat()
        for i, code in zip(two_weeks.INSTANTS, outcome.exit_codes, strict=True)
        if code
    ]
    if failed:
        found.append(f"passes that failed: {failed}")
    for kind, candidate, day in sorted(two_weeks.EXPECTED - outcome.drafts):
        why = outcome.skipped.get((kind, candidate, day), "never drafted")
        found.append(f"missing {kind} to {candidate} on {day}: {why}")
    for kind, candidate, day in sorted(outcome.drafts - two_weeks.EXPECTED):
        found.append(f"extra {kind} to {candidate} on {day}")
    duplicates = {k: len(v) for k, v in outcome.by_key.items() if len(v) != 1}
    if duplicates:
        found.append(f"keys with more than one mail: {duplicates}")
    if outcome.unknown_keys:
        found.append(f"mails the ledger does not know: {outcome.unknown_keys}")
    if outcome.unfinished:
        found.append(f"ledger rows left attempting: {outcome.unfinished}")
    return found


def text_of(message: Message) -> str:
    part = message.get_body(("plain",))  # type: ignore[attr-defined]
    assert part is not None, "every mail has a text part"
    return str(part.get_content()).replace("\u00a0", " ").replace("\u202f", " ")


def when_phrases(message: Message) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The times of day and the zone names the mail's text part names, each sorted."""
    text = text_of(message)
    return tuple(sorted(set(TIME.findall(text)))), tuple(sorted(set(ZONE.findall(text))))


@pytest.mark.parametrize(
    "pair", [ICS, MICROSOFT, GOOGLE, pytest.param(CALDAV, marks=pytest.mark.servers)]
)
def test_the_pair_drafts_the_scenarios_mails(replays: Replays, pair: str) -> None:
    found = problems(replays[pair])
    assert found == [], f"{pair}:\n" + "\n".join(found)


@pytest.mark.servers
def test_all_four_pairs_draft_the_same_mails(replays: Replays) -> None:
    """The same (kind, candidate, local day) set on every provider, and it is ``EXPECTED``:
    weekend and holiday greetings and status updates included."""
    differences = []
    for pair in PAIRS:
        outcome = replays[pair]
        for draft in sorted(two_weeks.EXPECTED - outcome.drafts):
            why = outcome.skipped.get(draft, "never drafted")
            differences.append(f"{pair}: missing {draft} ({why})")
        for draft in sorted(outcome.drafts - two_weeks.EXPECTED):
            differences.append(f"{pair}: extra {draft}")
    assert differences == [], "\n".join(differences)
    kinds = {kind for kind, _, _ in two_weeks.EXPECTED}
    assert {"weekend_greeting", "status_update", "reschedule_notice", "vacation_notice"} <= kinds


@pytest.mark.servers
def test_each_mail_names_the_same_time_and_zone_on_every_pair(replays: Replays) -> None:
    outcomes = {pair: replays[pair] for pair in PAIRS}
    disagreements = {}
    for draft in sorted(two_weeks.EXPECTED):
        named = {
            pair: when_phrases(outcome.mails[draft])
            for pair, outcome in outcomes.items()
            if draft in outcome.mails
        }
        if len(set(named.values())) > 1:
            disagreements[draft] = named
    assert disagreements == {}, "\n".join(
        f"{draft}: " + "; ".join(f"{pair} {named}" for pair, named in by_pair.items())
        for draft, by_pair in disagreements.items()
    )


@pytest.mark.parametrize(
    "pair", [ICS, MICROSOFT, GOOGLE, pytest.param(CALDAV, marks=pytest.mark.servers)]
)
def test_interview_times_are_named_in_swedish_time(replays: Replays, pair: str) -> None:
    """The recruiter's zone is Europe/Stockholm on every provider: on Microsoft 365 it is given
    as "W. Europe Standard Time", which for a Swedish company is Stockholm, not Berlin."""
    outcome = replays[pair]
    wrong = {}
    for draft, message in sorted(outcome.mails.items()):
        kind = draft[0]
        times, zones = when_phrases(message)
        language = "en" if draft[1] == two_weeks.BO else "sv"
        swedish = zones == (SWEDISH_ZONE[language],)
        # Mails about the interview must name its time in Swedish time; others may name none.
        if (kind in NAMES_THE_TIME and not (times and swedish)) or (zones and not swedish):
            wrong[draft] = (times, zones)
    assert wrong == {}, "\n".join(f"{pair} {draft}: {named}" for draft, named in wrong.items())


@pytest.mark.parametrize(
    "pair", [ICS, MICROSOFT, GOOGLE, pytest.param(CALDAV, marks=pytest.mark.servers)]
)
def test_the_moved_interview_after_a_web_edited_send_gets_a_reschedule_notice(
    replays: Replays, pair: str
) -> None:
    """Gustav's welcome was edited in the web editor and sent; then his interview moved from
    Monday 14 to Tuesday 15 December: he gets a notice with the new time, not a second welcome."""
    outcome = replays[pair]
    to_gustav = sorted(d for d in outcome.drafts if d[1] == two_weeks.GUSTAV)
    assert [d for d in to_gustav if d[0] == "welcome"] == [
        ("welcome", two_weeks.GUSTAV, two_weeks.d(8))
    ]
    notice = outcome.mails.get(("reschedule_notice", two_weeks.GUSTAV, two_weeks.d(9)))
    assert notice is not None, f"no reschedule notice; Gustav got {to_gustav}"
    assert "tisdag 15 december kl. 14:00" in text_of(notice)
