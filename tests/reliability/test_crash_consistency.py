"""Crash consistency: ``recruitmail once`` killed with SIGKILL at every named step of two-phase
draft creation and at random moments, over the whole reference scenario, for every connector
pair: ICS file + Maildir, Microsoft 365 (the Graph fake), Google (the Calendar/Gmail fake) and
CalDAV + IMAP (real Radicale and Dovecot).

After every kill the same instant is run again; at the end each chain must show: one draft per
drafted key, no draft with an unknown key, no row left 'attempting', the draft the recruiter
deleted and the one they sent never re-created, an intact database, and exactly the drafts of an
unkilled run. Sized by RELIABILITY_KILLS (total kills over the connectors, default 200, split
evenly) and RELIABILITY_WORKERS.
"""

from __future__ import annotations

import itertools
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from recruitmail.daemon.faults import POINTS
from tests.reliability import budget
from tests.reliability.backends import CONNECTORS, backend_for
from tests.reliability.harness import EXPECTED, Chain, ChainReport
from tests.scenario import two_weeks

# About three kills per second of wall time on two cores; the guard is generous.
pytestmark = pytest.mark.timeout(budget.timeout(6.0, budget.KILLS))

# A chain with a sync or random kill at every instant dies ~110 times (85 instants, ~25 kills at
# the draft-creation points wherever the scenario drafts); ``rate`` thins the instant kills so
# that one chain per connector meets its share of RELIABILITY_KILLS.
INSTANTS = len(two_weeks.INSTANTS)
DRAFT_KILLS = 15  # a low estimate of the draft-creation kills of one chain (20–45 seen)


def rate_for(kills: int) -> float:
    """The per-instant probability of a sync (or else random) kill for ``kills`` in one chain."""
    share = min(1.0, max(0.05, (kills - DRAFT_KILLS) / INSTANTS))
    # P(sync) + P(no sync) * P(random) = share, both with the same probability r.
    return float(1.0 - (1.0 - share) ** 0.5)


def run_chains(root: Path, targets: dict[str, int]) -> dict[str, list[ChainReport]]:
    """Mixed chains of every connector, ``WORKERS`` at a time, until each has its kills."""
    reports: dict[str, list[ChainReport]] = {connector: [] for connector in targets}
    numbers = itertools.count()

    def one(job: tuple[str, int, float]) -> ChainReport:
        connector, number, rate = job
        with backend_for(connector, root / f"{connector}-{number}") as backend:
            chain = Chain(
                root / f"{connector}-{number}",
                "mixed",
                budget.SEED + number,
                # Inside the sync's transaction, whatever the rate: only a pass whose calendar
                # changed writes in its sync, and the first (full) one always does.
                forced={two_weeks.INSTANTS[0]: "sync-before-commit"},
                backend=backend,
                rate=rate,
                connector=connector,
            )
            return chain.run()

    while True:
        jobs = []
        for connector, target in targets.items():
            missing = target - sum(r.kills for r in reports[connector])
            if missing > 0:
                # One chain gives ~INSTANTS + DRAFT_KILLS kills at most: no more chains than needed.
                chains = -(-missing // (INSTANTS + DRAFT_KILLS))
                jobs += [(connector, next(numbers), rate_for(missing // chains))] * chains
        if not jobs:
            return reports
        with ThreadPoolExecutor(min(budget.WORKERS, len(jobs))) as pool:
            for report in pool.map(one, jobs):
                reports[report.connector].append(report)


@pytest.fixture(scope="module")
def chains() -> Iterator[dict[str, list[ChainReport]]]:
    """Every connector's chains, run side by side once for the module's tests."""
    with tempfile.TemporaryDirectory(prefix="recruitmail-reliability-") as directory:
        share = budget.share(budget.KILLS, len(CONNECTORS))
        reports = run_chains(Path(directory), dict.fromkeys(CONNECTORS, share))
        total = sum(r.kills for rs in reports.values() for r in rs)
        print(f"\nseed {budget.SEED}: {total} SIGKILLs over {len(CONNECTORS)} connectors")
        yield reports


@pytest.mark.parametrize("connector", CONNECTORS)
def test_killed_passes_never_duplicate_lose_or_change_a_draft(
    connector: str, chains: dict[str, list[ChainReport]]
) -> None:
    reports = chains[connector]
    kills = sum(r.kills for r in reports)
    by_point: Counter[str] = Counter()
    for report in reports:
        by_point.update(report.kills_by_point)
    print(
        f"\n{connector}, seed {budget.SEED}: {len(reports)} chains, "
        f"{sum(r.passes for r in reports)} processes, "
        f"{kills} SIGKILLs {dict(sorted(by_point.items()))}"
    )
    for report in reports:
        assert report.verdict is not None
        problems = report.verdict.problems(EXPECTED)
        assert problems == [], f"{connector} chain, seed {report.seed}: {problems}"
        assert report.verdict.obsolete == set(two_weeks.EXPECTED_OBSOLETE)
        assert report.verdict.folded == set(two_weeks.EXPECTED_FOLDED)
        assert len(report.deleted) == 1  # Carl's welcome, deleted by the recruiter
    assert kills >= budget.share(budget.KILLS, len(CONNECTORS))
    # Every named step was died at, and the random kills landed too.
    reached = {p for p in POINTS if p != "skip-before-commit"}
    assert reached <= set(by_point), f"never killed at: {sorted(reached - set(by_point))}"
    assert by_point["random"] > 0


def test_a_stale_mail_is_skipped_not_drafted_when_the_skip_is_killed(scratch: Path) -> None:
    # The outage leaves Thursday's and Friday's mails stale: Monday's first pass records them as
    # skipped. Killing it just before that record must not turn a skip into a late draft.
    monday = two_weeks.DOWN_UNTIL
    chain = Chain(
        scratch,
        "mixed",
        budget.SEED,
        instants=two_weeks.INSTANTS_WITH_OUTAGE,
        forced={monday: "skip-before-commit"},
        rate=0.05,  # the forced kill is the point here; the others are a bonus
    )
    report = chain.run()
    assert report.kills_by_point["skip-before-commit"] >= 1
    assert report.verdict is not None
    expected = two_weeks.EXPECTED_WITH_OUTAGE - {("welcome", two_weeks.CARL, two_weeks.d(7))}
    assert report.verdict.problems(expected) == []
