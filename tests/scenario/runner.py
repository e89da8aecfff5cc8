"""Replay the reference scenario through the real CLI against any pair of connectors.

A connector's end-to-end test supplies a ``ScenarioBackend``; ``replay`` applies the calendar
changes in time order, runs ``recruitmail once --now <instant>`` at every instant, and returns what
ended up in the mailbox, read independently of the sink and joined with the ledger by key.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import io
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from email.message import Message
from pathlib import Path
from typing import Protocol

from recruitmail.contracts.connector import KEY_HEADER
from recruitmail.daemon.cli import main
from recruitmail.daemon.planner import LedgerState
from recruitmail.daemon.settings import load_settings
from recruitmail.daemon.state import State
from tests.postgres import scenario_state_line
from tests.scenario import two_weeks
from tests.scenario.spec import STOCKHOLM, EventSpec


class ScenarioBackend(Protocol):
    def put(self, spec: EventSpec) -> None:
        """Create or replace the event ``spec.uid`` in the recruiter's calendar."""

    def delete(self, uid: str) -> None:
        """Remove the event from the calendar (as a cancellation does)."""

    def send_to(self, candidate: str, when: datetime, web_edit: bool = False) -> None:
        """Send the newest draft addressed to ``candidate`` as the recruiter's client would, dated
        ``when``; with ``web_edit``, after editing it in a client that rebuilds the message."""

    def write_personal_mail(self, to: tuple[str, ...], cc: tuple[str, ...], when: datetime) -> None:
        """A mail the recruiter wrote herself, in Sent, dated ``when``."""

    def config(self) -> str:
        """The ``[mailboxes.source]`` and ``[mailboxes.sink]`` TOML tables for this backend."""

    def messages(self) -> list[Message]:
        """Every message recruitmail wrote (drafts, and drafts since sent), read independently;
        not the recruiter's own mails. A draft sent from a client that dropped our key header
        gets it back from the backend, which remembers what it sent."""


@dataclass
class Outcome:
    drafts: set[tuple[str, str, date]] = field(default_factory=set)
    obsolete: set[tuple[str, str]] = field(default_factory=set)
    folded: set[tuple[str, str, date]] = field(default_factory=set)
    by_key: dict[str, list[Message]] = field(default_factory=dict)
    mails: dict[tuple[str, str, date], Message] = field(default_factory=dict)
    skipped: dict[tuple[str, str, date], str] = field(default_factory=dict)  # (…, due day): why
    unknown_keys: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)


def assert_consistent(outcome: Outcome) -> None:
    """Exactly one mail per drafted key, no mail the ledger does not know, nothing half-done."""
    failed = [number for number, code in enumerate(outcome.exit_codes) if code != 0]
    assert failed == [], f"passes that failed (instant numbers): {failed}"
    assert outcome.unknown_keys == [], f"mails the ledger does not know: {outcome.unknown_keys}"
    assert outcome.unfinished == [], f"ledger rows left attempting: {outcome.unfinished}"
    duplicates = {k: len(v) for k, v in outcome.by_key.items() if len(v) != 1}
    assert duplicates == {}, f"keys with more than one mail: {duplicates}"


def assert_drafted_exactly(outcome: Outcome, expected: frozenset[tuple[str, str, date]]) -> None:
    """Consistent (see above), and the drafts are ``expected``: nothing missing, nothing extra."""
    assert_consistent(outcome)
    missing = [
        (d, outcome.skipped.get(d, "never drafted")) for d in sorted(expected - outcome.drafts)
    ]
    extra = sorted(outcome.drafts - expected)
    assert (missing, extra) == ([], []), f"missing (with why): {missing}; extra: {extra}"


def status_output(workdir: Path) -> subprocess.CompletedProcess[str]:
    """``recruitmail status`` for the scenario's configuration, run as a new process."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "recruitmail",
            "--config",
            str(workdir / "recruitmail.toml"),
            "status",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path.cwd())},
    )


def write_config(backend: ScenarioBackend, workdir: Path) -> Path:
    """The scenario's configuration for ``backend`` in ``workdir``: its state in SQLite under
    ``workdir/state``, or in a fresh PostgreSQL database when the suite runs on PostgreSQL
    (``RECRUITMAIL_TEST_STATE``, see ``tests/postgres.py``). Written once per workdir: a chain
    that writes it again keeps the database it had."""
    state_dir = workdir / "state"
    path = workdir / "recruitmail.toml"
    text = two_weeks.CONFIG.replace("{state_dir}", str(state_dir))
    line = database_line(workdir) or scenario_state_line()
    text = text.replace("[service]\n", f"[service]\n{line}", 1)
    path.write_text(text + backend.config(), encoding="utf-8")
    return path


def database_line(workdir: Path) -> str:
    """The ``state = "postgresql://…"`` line (with its newline) of ``workdir``'s configuration,
    or "" when it has none (its state is SQLite, or it was not written yet)."""
    config = workdir / "recruitmail.toml"
    if not config.exists():
        return ""
    text = config.read_text(encoding="utf-8")
    if "\nstate = " not in text:
        return ""
    return "state = " + text.split("\nstate = ", 1)[1].split("\n", 1)[0] + "\n"


def replay(
    backend: ScenarioBackend,
    workdir: Path,
    instants: tuple[datetime, ...] = two_weeks.INSTANTS,
    *,
    apply_changes: bool = True,
) -> Outcome:
    """Run ``once`` at every instant, applying the calendar changes as their time comes (or,
    with ``apply_changes=False``, against the calendar as it already is: a pure rerun)."""
    config = write_config(backend, workdir)
    changes = sorted(two_weeks.CHANGES, key=lambda c: c.at)
    pending = list(changes) if apply_changes else []
    outcome = Outcome()
    for instant in instants:
        while pending and pending[0].at <= instant:
            apply(backend, pending.pop(0))
        if outcome.exit_codes or os.environ.get(STATE_VARIABLE) or state_kept(workdir):
            state = open_state(workdir)
            try:
                wait_out_retry_after(state)
            finally:
                state.close()
        # A pass that deferred a mail (a look-up or a write the provider refused for now) is
        # followed by the next one a minute later, as the daemon's interval would: the mail is
        # drafted then, not at the scenario's next instant a day later.
        for retry in range(4):
            said = io.StringIO()
            with contextlib.redirect_stdout(said):
                code = main(
                    [
                        "--config",
                        str(config),
                        "once",
                        "--now",
                        (instant + timedelta(minutes=retry)).isoformat(),
                    ]
                )
            sys.stdout.write(said.getvalue())
            if "deferred" not in said.getvalue():
                break
            state = open_state(workdir)
            try:
                wait_out_retry_after(state)
            finally:
                state.close()
        outcome.exit_codes.append(code)  # one per instant: the last pass's
    return collect(backend, workdir, outcome)


STATE_VARIABLE = "RECRUITMAIL_SERVICE__STATE"
"""Set to a ``postgresql://`` URL, every pass (and this runner) uses that state, not SQLite."""


def open_state(workdir: Path) -> State:
    """The state the passes of ``workdir`` write, as they open it: from its configuration (SQLite
    in the state directory, or the PostgreSQL database ``service.state`` names), with
    ``$RECRUITMAIL_SERVICE__STATE`` over the file as for every command."""
    return State.open(load_settings(workdir / "recruitmail.toml").service)


def state_kept(workdir: Path) -> bool:
    """Whether an earlier pass of ``workdir`` left a state (SQLite file, or a database named)."""
    return (workdir / "state" / "recruitmail.sqlite").exists() or bool(database_line(workdir))


def wait_out_retry_after(state: State) -> None:
    """As the daemon's scheduler (or a cron interval) would: no pass before a Retry-After the
    provider gave is over. Passes are run back to back in real time here, and one run too early
    is refused at once, sending nothing."""
    wait = state.hold_until(two_weeks.RECRUITER.address) - time.time()
    if wait > 0:
        time.sleep(wait)


def apply(backend: ScenarioBackend, change: two_weeks.Change) -> None:
    if change.action == "put":
        assert change.spec is not None
        backend.put(change.spec)
    elif change.action == "delete":
        backend.delete(change.uid)
    elif change.action == "send":
        backend.send_to(change.candidate, change.at, web_edit=change.web_edit)
    elif change.action == "mail":
        backend.write_personal_mail(change.to, change.cc, change.at)
    else:
        raise ValueError(change.action)


def collect(backend: ScenarioBackend, workdir: Path, outcome: Outcome | None = None) -> Outcome:
    outcome = outcome or Outcome()
    state = open_state(workdir)
    try:
        rows = {r.entry.key.id: r for r in state.all_ledger()}
    finally:
        state.close()
    for message in backend.messages():
        key_id = str(message[KEY_HEADER] or "")
        outcome.by_key.setdefault(key_id, []).append(message)
    for key_id in outcome.by_key:
        if key_id not in rows:
            outcome.unknown_keys.append(key_id)
    for key_id, row in rows.items():
        key = row.entry.key
        day = local_day(row.entry.done_at) if row.entry.done_at else None
        if row.entry.state is LedgerState.ATTEMPTING:
            outcome.unfinished.append(key_id)
        elif (
            row.entry.state in (LedgerState.DRAFTED, LedgerState.OBSOLETE)
            and key_id in outcome.by_key
        ):
            assert day is not None
            outcome.drafts.add((key.kind.value, key.candidate, day))
            outcome.mails[(key.kind.value, key.candidate, day)] = outcome.by_key[key_id][0]
            if row.entry.state is LedgerState.OBSOLETE:
                outcome.obsolete.add((key.kind.value, key.candidate))
        elif row.entry.state is LedgerState.FOLDED and day is not None:
            outcome.folded.add((key.kind.value, key.candidate, day))
        elif row.entry.state is LedgerState.SKIPPED:
            due_day = local_day(row.entry.due)
            outcome.skipped[(key.kind.value, key.candidate, due_day)] = row.reason
    return outcome


def local_day(moment: datetime) -> date:
    return moment.astimezone(STOCKHOLM).date()


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)
