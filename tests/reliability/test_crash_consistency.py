"""Crash consistency: ``recruitmail once`` killed with SIGKILL at every named step of two-phase
draft creation and at random moments, over the whole reference scenario (ICS file + Maildir).

After every kill the same instant is run again; at the end each chain must show: one draft per
drafted key, no draft with an unknown key, no row left 'attempting', the draft the recruiter
deleted and the one they sent never re-created, an intact database, and exactly the drafts of an
unkilled run. Sized by RELIABILITY_KILLS (total kills, default 200) and RELIABILITY_WORKERS.
"""

from __future__ import annotations

import itertools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from daemon.faults import POINTS
from tests.reliability import budget
from tests.reliability.harness import EXPECTED, Chain, ChainReport
from tests.scenario import two_weeks

# About three kills per second of wall time on two cores; the guard is generous.
pytestmark = pytest.mark.timeout(budget.timeout(6.0, budget.KILLS))


def run_chains(root: Path, target_kills: int) -> list[ChainReport]:
    """Chains alternating the two kill modes, ``WORKERS`` at a time, until enough kills."""
    reports: list[ChainReport] = []
    numbers = itertools.count()
    modes = itertools.cycle(("points", "random"))
    while sum(r.kills for r in reports) < target_kills:
        batch = [
            Chain(root / f"chain-{n}", mode, budget.SEED + n)
            for n, mode in zip((next(numbers) for _ in range(budget.WORKERS)), modes, strict=False)
        ]
        with ThreadPoolExecutor(len(batch)) as pool:
            reports.extend(pool.map(lambda chain: chain.run(), batch))
    return reports


def test_killed_passes_never_duplicate_lose_or_change_a_draft(scratch: Path) -> None:
    reports = run_chains(scratch, budget.KILLS)
    kills = sum(r.kills for r in reports)
    by_point: Counter[str] = Counter()
    for report in reports:
        by_point.update(report.kills_by_point)
    print(
        f"\nseed {budget.SEED}: {len(reports)} chains, {sum(r.passes for r in reports)} processes, "
        f"{kills} SIGKILLs {dict(sorted(by_point.items()))}"
    )
    for report in reports:
        assert report.verdict is not None
        problems = report.verdict.problems(EXPECTED)
        assert problems == [], f"{report.mode} chain, seed {report.seed}: {problems}"
        assert report.verdict.obsolete == set(two_weeks.EXPECTED_OBSOLETE)
        assert report.verdict.folded == set(two_weeks.EXPECTED_FOLDED)
        assert len(report.deleted) == 1  # Carl's welcome, deleted by the recruiter
    assert kills >= budget.KILLS
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
        "points",
        budget.SEED,
        instants=two_weeks.INSTANTS_WITH_OUTAGE,
        forced={monday: "skip-before-commit"},
    )
    report = chain.run()
    assert report.kills_by_point["skip-before-commit"] >= 1
    assert report.verdict is not None
    expected = two_weeks.EXPECTED_WITH_OUTAGE - {("welcome", two_weeks.CARL, two_weeks.d(7))}
    assert report.verdict.problems(expected) == []
