"""Several ``recruitmail run`` instances sharing the mailboxes of one PostgreSQL state.

Each mailbox has a lease row (``State.claim``/``renew``/``release``): a holder, a fencing token
that grows with every claim and an expiry on the database's clock. An instance renews all its
leases in one statement every ``period`` seconds, claims free or expired ones up to its fair
share (mailboxes / live instances, rounded up) and gives back what it holds beyond it. Every
ledger and calendar write of a pass checks the lease and token in its own transaction
(``State.enable_fencing``), and every draft write to a mailbox first checks, on the monotonic
clock, that more than ``margin`` seconds of the lease are left: once when the sink is called
(``FencedSink``) and again right before each request the connector sends for it, after any wait
or retry inside the call (``ConnectorContext.may_write``, built by ``may_write``). Why this is
enough: docs/RELIABILITY.md, "Several instances".

On SQLite there is one instance: a second ``run`` on the same file is refused (an ``flock`` on
a file beside it, released by the kernel however the first one ends), and the single instance
holds every lease without fencing, so that ``status --fleet`` reads the same on both.
"""

from __future__ import annotations

import contextlib
import contextvars
import fcntl
import logging
import math
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from recruitmail.contracts.errors import ConfigError, FencedOut
from recruitmail.contracts.models import DraftMessage, DraftRef
from recruitmail.daemon.state import SCHEMA_VERSION, LeaseLost, State

log = logging.getLogger("recruitmail.fleet")

FORGET_INSTANCES_AFTER = 3600.0
"""Seconds after which a silent instance is no longer listed by ``status --fleet``."""


class NewerSchema(ConfigError):
    """A newer recruitmail upgraded the state's schema while this instance ran."""


class WriteFenced(LeaseLost, FencedOut):
    """A draft write refused for want of time left on this instance's lease: ``LeaseLost`` to
    the scheduler (the mailbox is dropped until a round says it is ours again) and the
    contract's ``FencedOut`` to a connector that asked ``may_write`` in the middle of a call."""


def lease_seconds(interval_seconds: float) -> float:
    """A lease lives three quarters of a pass interval: an instance that dies right after
    renewing is taken over after at most ``lease + period`` (0.9 interval), which leaves more
    than an interval for the new holder's first pass inside the promised two."""
    return 0.75 * float(interval_seconds)


def instance_id() -> str:
    """host + pid + random: unique even when a pid is reused after a restart."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Fleet:
    """This instance's part of the fleet: the leases it holds and, per mailbox, the monotonic
    instant before which its lease is certainly still valid."""

    def __init__(
        self,
        state: State,
        mailboxes: Iterable[str],
        interval_seconds: float,
        *,
        lookup_grace_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.id = instance_id()
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.fencing = state.backend == "postgresql"
        self._clock = clock
        self.interval(interval_seconds)
        self._lock = threading.Lock()
        self._deadlines: dict[str, float] = {}  # mailbox → monotonic instant the lease surely holds
        self._tokens: dict[str, int] = {}
        # Taken but not reconciled here yet: never given back before that first pass, or a
        # mailbox taken over from a dead instance could change hands again without a pass.
        self._unreconciled: set[str] = set()
        self._mailboxes: list[str] = []
        self.takeovers = 0
        self.live = 1
        self._file: IO[bytes] | None = None
        if not self.fencing:
            self._file = _single_instance(Path(str(state.path)))
        else:
            state.enable_fencing()
            if lookup_grace_seconds is not None and lookup_grace_seconds <= self.margin:
                log.warning(
                    "service.lookup_grace_seconds (%g s) is not longer than the lease's safety "
                    "margin (%.1f s, a quarter of interval_seconds): a mailbox taken over from a "
                    "stopped instance may be looked up before that instance's last create has "
                    'landed; raise it (docs/RELIABILITY.md, "Several instances")',
                    lookup_grace_seconds,
                    self.margin,
                )
        self.configure(mailboxes)

    def configure(self, mailboxes: Iterable[str]) -> None:
        """The configured mailboxes (at start and after a reload): a lease row for each."""
        self._mailboxes = list(dict.fromkeys(mailboxes))
        self.state.add_leases(self._mailboxes)

    def interval(self, interval_seconds: float) -> None:
        """The pass interval (at start and after a reload that changed it): the leases this
        instance takes or renews from the next round on last ¾ of it. A lease already granted
        keeps the expiry it was given, here as in the database, until that round."""
        self.ttl = lease_seconds(interval_seconds)
        # Renewed five times a lease; a draft write needs a third of a lease left. Both are
        # far from each other: a renewal that is late by a whole period still leaves room.
        self.period = self.ttl / 5
        self.margin = self.ttl / 3

    # -- what the scheduler asks -------------------------------------------------------------

    def holds(self, mailbox: str) -> bool:
        """Whether this instance holds ``mailbox``'s lease with time left on it."""
        return self.remaining(mailbox) > 0

    def held(self) -> list[str]:
        with self._lock:
            return sorted(self._deadlines)

    def token(self, mailbox: str) -> int | None:
        with self._lock:
            return self._tokens.get(mailbox)

    def remaining(self, mailbox: str) -> float:
        """Seconds the lease surely still holds (measured on the monotonic clock from before
        the statement that renewed it was sent); 0 when not held."""
        if not self.fencing:
            with self._lock:
                return math.inf if mailbox in self._deadlines else 0.0
        with self._lock:
            deadline = self._deadlines.get(mailbox)
        return max(0.0, deadline - self._clock()) if deadline is not None else 0.0

    def check(self, mailbox: str) -> None:
        """Raise ``WriteFenced`` (a ``LeaseLost``) unless more than ``margin`` seconds of the
        lease are left: called right before every write to the mailbox, and by the connector
        right before each request of it. A clock read and a comparison, no database."""
        left = self.remaining(mailbox)
        if left <= self.margin:
            with self._lock:
                self.state.fenced_writes += 1
            raise WriteFenced(
                f"mailbox {mailbox}: {left:.1f} s left on this instance's lease, less than the "
                f"{self.margin:.1f} s a write needs; the next holder looks the draft up"
            )

    # -- a round -------------------------------------------------------------------------------

    def round(
        self,
        now: datetime | None = None,
        lock_for: Callable[[str], threading.Lock | None] = lambda mailbox: None,
    ) -> tuple[list[str], list[str], list[str]]:
        """Say this instance is alive, renew its leases, claim up to its fair share and give
        back what it holds beyond it (only mailboxes whose ``lock_for`` lock, when there is one,
        is free: not in a pass; held while the lease is released). Returns (mailboxes gained,
        mailboxes lost to another instance, mailboxes given back)."""
        started = self._clock()
        ttl = self.ttl  # one length for the whole round, whatever a reload sets meanwhile
        newer = self.state.newer_schema()
        if newer is not None:
            # A newer instance upgraded the schema: this one may not know its rules any more.
            raise NewerSchema(
                f"the state was upgraded to schema {newer} by a newer recruitmail; this "
                f"instance (schema {SCHEMA_VERSION}) gives its mailboxes back and stops: "
                "upgrade it"
            )
        self.state.heartbeat(self.id, self.host, self.pid, FORGET_INSTANCES_AFTER)
        # Live: heard from within half a lease (two and a half rounds). A dead instance stops
        # counting well before its leases run out, so the others' shares already cover them.
        cutoff = self.state.database_time() - ttl / 2
        instances = self.state.instances()
        self.live = max(1, sum(1 for i in instances if i.last_seen > cutoff))
        renewed = self.state.renew(self.id, ttl)
        lost: list[str] = []
        gained: list[str] = []
        with self._lock:
            for mailbox in list(self._deadlines):
                if mailbox in renewed:
                    self._deadlines[mailbox] = started + ttl
                else:
                    lost.append(mailbox)
                    self._forget(mailbox)
            # Held in the database but not here (a claim whose answer was lost, or a write
            # refused for want of time left on a lease that was then renewed): ours again.
            for mailbox, token in renewed.items():
                if mailbox not in self._deadlines and mailbox in self._mailboxes:
                    self._take(mailbox, token, started + ttl)
                    gained.append(mailbox)
        configured = set(self._mailboxes)
        stray = [m for m in renewed if m not in configured]
        if stray:  # removed from the configuration since: free for whoever still has them
            self.state.release(self.id, stray)
            with self._lock:
                for mailbox in stray:
                    self._forget(mailbox)
        share = math.ceil(len(self._mailboxes) / self.live) if self._mailboxes else 0
        held = len(self.held())
        if held < share:
            started = self._clock()
            taken = self.state.claim(
                self.id,
                configured - set(self.held()),
                share - held,
                ttl,
                now or datetime.now(UTC),
                exclusive=not self.fencing,
            )
            with self._lock:
                for mailbox, (token, previous) in taken.items():
                    self._take(mailbox, token, started + ttl)
                    if previous and self.fencing:
                        self.takeovers += 1
                    gained.append(mailbox)
            for mailbox, (token, previous) in taken.items():
                if previous and self.fencing:
                    log.info(
                        "mailbox %s taken over from %s (lease token %d)", mailbox, previous, token
                    )
        for mailbox in lost:
            log.warning("mailbox %s: lease lost to another instance", mailbox)
        excess = len(self.held()) - share
        if excess == 0 and len(self._mailboxes) % self.live:
            # At the rounded-up share while another live instance is below the rounded-down
            # one: one back, so that the shares even out (3, 3, 1 becomes 3, 2, 2).
            floor = len(self._mailboxes) // self.live
            counts = self.state.lease_counts()
            live = {i.id for i in instances if i.last_seen > cutoff}
            if any(counts.get(other, 0) < floor for other in live if other != self.id):
                excess = 1
        given: list[str] = []
        if excess > 0:
            locks: list[threading.Lock] = []
            try:
                with self._lock:
                    settled = [m for m in sorted(self._deadlines) if m not in self._unreconciled]
                for mailbox in settled:
                    if len(given) == excess:
                        break
                    lock = lock_for(mailbox)
                    if lock is None or lock.acquire(blocking=False):
                        given.append(mailbox)
                        if lock is not None:
                            locks.append(lock)
                self.release(given)
            finally:
                for lock in locks:
                    lock.release()
            if given:
                log.info(
                    "gave %d mailbox(es) back for the other instances (%d live)",
                    len(given),
                    self.live,
                )
        return gained, lost, given

    def reconciled(self, mailbox: str) -> None:
        """A pass over ``mailbox`` ran here since this instance took its lease."""
        with self._lock:
            self._unreconciled.discard(mailbox)

    def release(self, mailboxes: list[str]) -> None:
        """Give ``mailboxes`` back (none of them may be in a pass)."""
        with self._lock:
            for mailbox in mailboxes:
                self._forget(mailbox)
        self.state.release(self.id, mailboxes)

    def lose(self, mailbox: str) -> None:
        """A write found the lease gone: stop treating the mailbox as ours."""
        with self._lock:
            self._forget(mailbox)

    def leave(self) -> None:
        """Release every lease and leave the fleet (SIGTERM)."""
        with self._lock:
            for mailbox in list(self._deadlines):
                self._forget(mailbox)
        try:
            self.state.leave(self.id)
        except Exception:  # noqa: BLE001 - the leases then run out on their own
            log.warning("could not release the leases; they run out within %.0f s", self.ttl)
        if self._file is not None:
            self._file.close()
            self._file = None

    def _take(self, mailbox: str, token: int, deadline: float) -> None:
        self._deadlines[mailbox] = deadline
        self._tokens[mailbox] = token
        self._unreconciled.add(mailbox)
        self.state.fence_with(mailbox, self.id, token)

    def _forget(self, mailbox: str) -> None:
        self._deadlines.pop(mailbox, None)
        self._tokens.pop(mailbox, None)
        self._unreconciled.discard(mailbox)
        self.state.unfence(mailbox)


def _single_instance(database: Path) -> IO[bytes] | None:
    """Hold an exclusive ``flock`` beside a SQLite state for this process's life."""
    if str(database) == ":memory:":
        return None
    path = database.with_name(database.name + ".run-lock")
    handle = open(path, "ab")  # noqa: SIM115 - held open for the life of the process
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise ConfigError(
            f"{database}: another `recruitmail run` already uses this state; one instance runs "
            'per SQLite state (several instances need service.state = "postgresql://…")'
        ) from None
    return handle


# The fleet whose lease the current draft write needs: set by ``FencedSink`` for the length of
# one sink call, in the calling thread only (every connector sends its writes from the thread
# that called it), and read by the ``may_write`` of the mailbox's connector context.
_WRITING: contextvars.ContextVar[Fleet | None] = contextvars.ContextVar(
    "recruitmail_fleet_writing", default=None
)


def may_write(mailbox: str) -> Callable[[], None]:
    """The ``ConnectorContext.may_write`` of ``mailbox``: inside a ``FencedSink`` call it is the
    fleet's ``check`` (``WriteFenced`` when less than the margin is left on the lease), asked by
    the connector right before each request that writes, however long the call has waited or
    retried; outside one (SQLite, ``once``, ``check --online``) every write is allowed."""

    def check() -> None:
        fleet = _WRITING.get()
        if fleet is not None:
            fleet.check(mailbox)

    return check


class FencedSink:
    """A mailbox sink whose writes (create, update, mark obsolete) need more than the fleet's
    margin left on this instance's lease: when called, and again before each request the
    connector sends for them (``may_write``); everything else is the wrapped sink's."""

    def __init__(self, sink: Any, mailbox: str, fleet: Fleet) -> None:
        self._sink = sink
        self._mailbox = mailbox
        self._fleet = fleet

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sink, name)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        self._fleet.check(self._mailbox)
        token = _WRITING.set(self._fleet)
        try:
            yield
        finally:
            _WRITING.reset(token)

    def create_draft(self, message: DraftMessage) -> DraftRef:
        with self._writing():
            return self._sink.create_draft(message)  # type: ignore[no-any-return]

    def update_draft(self, ref: DraftRef, message: DraftMessage) -> DraftRef:
        with self._writing():
            return self._sink.update_draft(ref, message)  # type: ignore[no-any-return]

    def mark_obsolete(self, ref: DraftRef) -> None:
        with self._writing():
            self._sink.mark_obsolete(ref)
