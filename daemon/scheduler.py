"""``recruitmail run``: one reconcile job per mailbox on APScheduler, with systemd integration.

- One interval job per mailbox, coalescing, never two at once for the same mailbox. A pass that
  waits for a worker longer than an interval still runs (no misfire grace): when a round over all
  mailboxes takes longer than the interval, every mailbox still gets its pass in turn, in the order
  they came due, instead of the same ones being dropped each time; this is logged once a round.
- Calendars of passes waiting for a worker are asked ahead in batches where the source can
  (``probe_group``/``probe_many``: Microsoft 365's JSON batching, 20 to a batch), by one prober
  thread; a pass whose calendar is being asked waits for that answer instead of asking again.
- SIGHUP reloads configuration and templates; a new configuration that fails validation is
  refused and the running one stays (logged, and reported in ``STATUS=``).
- SIGTERM/SIGINT: the current draft step finishes, no new one starts, exit 0.
- The watchdog is pinged only while passes keep completing (``daemon.service.Heartbeat``).
- Several instances on one PostgreSQL share the mailboxes (``daemon.fleet``): an instance runs
  passes only for the mailboxes whose lease it holds, renews them and claims its fair share in
  rounds of the main loop, and releases them on SIGTERM.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor as Pool
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_SUBMITTED, JobSubmissionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from recruitmail.contracts.errors import ConfigError, RecruitmailError, TransientError
from recruitmail.daemon.executor import MailboxRunner
from recruitmail.daemon.fleet import FencedSink, Fleet, NewerSchema
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.runtime import describe, open_runner, refresh_fleet, validate
from recruitmail.daemon.service import (
    FRESH_START_ENV,
    Heartbeat,
    Metrics,
    Notifier,
    describe_status,
    give_back_memory,
    open_metrics,
    resident_mb,
    setup_logging,
    start_afresh,
    watchdog_interval,
)
from recruitmail.daemon.settings import Settings, load_settings
from recruitmail.daemon.state import LeaseLost, State

log = logging.getLogger("recruitmail.service")

BATCH_SIZE = 20
"""Calendars asked in one batch (Graph's JSON batching takes at most 20 requests)."""
PROBE_THREADS = 8
"""Batches in flight at once: each holds one request slot of each of its mailboxes."""
CLAIM_WAIT_SECONDS = 60.0
"""How long a pass waits for the batch asking its calendar before it asks on its own."""
STATUS_EVERY_SECONDS = 1.0
"""The ``STATUS=`` line is sent at most this often (at once when a draft was created)."""
TRIM_EVERY_SECONDS = 10.0
"""Memory is handed back to the system at most this often, after passes that held much."""


class _Behind(logging.Filter):
    """APScheduler's line for a pass still waiting from the previous interval, one per mailbox
    and interval; the service says it once a round instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


class Service:
    """The long-running daemon: owns the scheduler, the state and the open connectors."""

    def __init__(
        self,
        config: Path | None,
        settings: Settings,
        renderer: Renderer,
        notifier: Notifier,
        metrics: Metrics,
    ) -> None:
        self.config = config
        self.settings = settings
        self.renderer = renderer
        self.notifier = notifier
        self.metrics = metrics
        self.state = State.open(settings.service)
        try:
            self.fleet = Fleet(
                self.state,
                [b.address for b in settings.mailboxes],
                settings.service.interval_seconds,
                lookup_grace_seconds=settings.service.lookup_grace_seconds,
            )
        except BaseException:
            self.state.close()
            raise
        self.stop = threading.Event()
        self.exit_code = 0
        self.reload_requested = threading.Event()
        # Not only a hung pass stops the pings: so does a scheduler that stopped running passes.
        self.heartbeat = Heartbeat(
            notifier,
            stall_after=settings.service.pass_timeout_seconds,
            overdue_after=2 * settings.service.interval_seconds
            + settings.service.pass_timeout_seconds,
        )
        self.scheduler = self._new_scheduler()
        self.runners: dict[str, tuple[Any, MailboxRunner]] = {}
        self.locks: dict[str, threading.Lock] = {}
        self.drafts_created = 0
        self.count_lock = threading.Lock()
        self.last_pass: datetime | None = None
        self.problem = ""
        # What the passes since the last summary line did (one INFO line a round, not a pass).
        self.tally = {"passes": 0, "failed": 0, "drafted": 0, "planned": 0}
        self.status_sent = 0.0  # monotonic; when the last STATUS= line went out
        self.status_due = False  # a pass finished since then
        # A pass that held much (a first pass, a full sync, drafts) finished since the last
        # time memory was handed back; when that was.
        self.trim_wanted = False
        self.trimmed = 0.0
        # While a fresh start may follow the first round (``consider_fresh_start``): the
        # mailboxes that have had a pass since the start, and the RSS when the round began;
        # how many passes since the start read a whole calendar.
        self.passed: set[str] | None = None
        self.full_syncs = 0
        self.started_mb = 0.0
        self.fresh_start = False  # decided: serve_forever returns for the process to exec
        self.first_round_over = threading.Event()  # and whether to start afresh was decided
        self.terminating = False  # SIGTERM or SIGINT came: no fresh start, whatever was decided
        # Passes submitted to a worker but not started (a count: the submission event and the
        # pass itself may come in either order), calendars being asked ahead, and passes that
        # were still waiting when their next interval came.
        self.probing = threading.Condition()
        self.waiting: dict[str, int] = {}
        self.claims: dict[str, threading.Event] = {}
        self.asked: set[str] = set()  # asked ahead for the pass now waiting: not again
        self.behind: set[str] = set()
        self.probes = {"changed": 0, "unchanged": 0, "refused": 0, "direct": 0}
        self.batching = settings.service.batch_requests
        self.scheduler.add_listener(self._job_event, EVENT_JOB_SUBMITTED | EVENT_JOB_MAX_INSTANCES)
        scheduler_log = logging.getLogger("apscheduler.scheduler")
        if not any(isinstance(f, _Behind) for f in scheduler_log.filters):
            scheduler_log.addFilter(_Behind())

    def _new_scheduler(self) -> BackgroundScheduler:
        workers = max(1, min(self.settings.service.workers, len(self.settings.mailboxes)))
        if self.settings.mailboxes_from:  # the fleet grows with its groups, without a restart
            workers = self.settings.service.workers
        return BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                # However late, a waiting pass runs: with a grace time, the mailboxes at the end
                # of a long queue would be dropped round after round.
                "misfire_grace_time": None,
            },
        )

    # -- jobs ----------------------------------------------------------------------------

    def schedule(self) -> None:
        """A job for every mailbox whose lease this instance holds."""
        for box in self.settings.mailboxes:
            self.locks.setdefault(box.address, threading.Lock())
        for address in self.fleet.held():
            self.add_job(address)
        self.schedule_directory()

    def add_job(self, address: str) -> None:
        if all(b.address != address for b in self.settings.mailboxes):
            return
        self.locks.setdefault(address, threading.Lock())
        self.scheduler.add_job(
            self.pass_for,
            "interval",
            args=[address],
            id=address,
            replace_existing=True,
            seconds=self.settings.service.interval_seconds,
            next_run_time=datetime.now(UTC),
        )

    def drop_job(self, address: str) -> None:
        """No more passes for ``address`` here (another instance holds it now)."""
        job = self.scheduler.get_job(address)
        if job is not None:
            job.remove()
        lock = self.locks.get(address)
        if lock is not None and lock.acquire(blocking=False):
            try:
                self.close_runner(address)
            finally:
                lock.release()

    def fleet_round(self) -> None:
        """Renew this instance's leases, take over its share of free or expired ones, give back
        what it holds beyond its share (mailboxes not in a pass)."""
        try:
            gained, lost, given = self.fleet.round(lock_for=self.locks.get)
        except NewerSchema as exc:
            log.error("%s", exc)
            self.exit_code = 1
            self.stop.set()
            return
        except Exception as exc:  # noqa: BLE001 - the database may be away; leases run out
            log.warning("fleet round failed (%s); passes go on while the leases last", exc)
            return
        for address in (*lost, *given):
            self.drop_job(address)
        for address in gained:
            self.add_job(address)
        held = len(self.fleet.held())
        self.metrics.fleet(self.fleet.id, held, self.fleet.takeovers, self.state.fenced_writes)
        if not held:
            # An instance with nothing to reconcile (more instances than mailboxes) is healthy
            # while its rounds work: they are its progress for the watchdog.
            self.heartbeat.pass_finished(self.heartbeat.pass_started())

    def runner(self, address: str) -> MailboxRunner:
        entry = self.runners.get(address)
        if entry is not None and (
            entry[1].settings is not self.settings or entry[1].renderer is not self.renderer
        ):
            # Opened by a pass that slipped in while a reload swapped the configuration.
            self.close_runner(address)
        if address not in self.runners:
            index = next(i for i, b in enumerate(self.settings.mailboxes) if b.address == address)
            context = open_runner(
                self.settings,
                index,
                self.state,
                self.renderer,
                stop=self.stop,
                observer=self.metrics,
            )
            runner = context.__enter__()
            if self.fleet.fencing:
                runner.sink = FencedSink(runner.sink, address, self.fleet)
            self.runners[address] = (context, runner)
        return self.runners[address][1]

    def close_runner(self, address: str) -> None:
        entry = self.runners.pop(address, None)
        if entry is not None:
            try:
                entry[0].__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - closing must never take the daemon down
                log.exception("mailbox %s: error while closing connectors", address)

    # -- asking calendars ahead ---------------------------------------------------------------

    def _job_event(self, event: JobSubmissionEvent) -> None:
        """In the scheduler's thread: a pass was handed to the workers, or was still waiting."""
        with self.probing:
            if event.code == EVENT_JOB_MAX_INSTANCES:
                self.behind.add(event.job_id)
                return
            self.waiting[event.job_id] = self.waiting.get(event.job_id, 0) + 1
            self.probing.notify()

    def _started(self, address: str) -> threading.Event | None:
        """A pass starts: it is no longer waiting; the batch asking its calendar, if one is out."""
        with self.probing:
            count = self.waiting.get(address, 0) - 1
            if count:
                self.waiting[address] = count
            else:
                self.waiting.pop(address, None)
            self.asked.discard(address)
            return self.claims.get(address)

    def _claim(self) -> list[tuple[Callable[[list[Any]], dict[str, int]], list[str], list[Any]]]:
        """Under ``probing``: the waiting passes whose calendars can be asked ahead, claimed, in
        groups of at most ``BATCH_SIZE`` that share one connection (``probe_group``)."""
        groups: dict[Hashable, tuple[Callable[[list[Any]], dict[str, int]], list[str], list[Any]]]
        groups = {}
        for address, count in self.waiting.items():
            entry = self.runners.get(address)
            if count <= 0 or address in self.claims or address in self.asked or entry is None:
                continue
            source = entry[1].source
            group = getattr(source, "probe_group", lambda: None)()
            probe = getattr(type(source), "probe_many", None)
            if group is None or probe is None:
                continue
            found = groups.setdefault(group, (probe, [], []))
            found[1].append(address)
            found[2].append(source)
        chunks = []
        for probe, addresses, sources in groups.values():
            for start in range(0, len(addresses), BATCH_SIZE):
                claim = threading.Event()
                for address in addresses[start : start + BATCH_SIZE]:
                    self.claims[address] = claim
                    self.asked.add(address)
                chunks.append(
                    (
                        probe,
                        addresses[start : start + BATCH_SIZE],
                        sources[start : start + BATCH_SIZE],
                    )
                )
        return chunks

    def _probe(
        self, probe: Callable[[list[Any]], dict[str, int]], addresses: list[str], sources: list[Any]
    ) -> None:
        try:
            counts = probe(sources)
            with self.count_lock:
                for outcome, count in counts.items():
                    self.probes[outcome] = self.probes.get(outcome, 0) + count
        except Exception:  # noqa: BLE001 - asking ahead is an optimisation; the passes ask anyway
            log.exception(
                "asking %d calendar(s) ahead failed; their passes ask themselves", len(sources)
            )
        finally:
            with self.probing:
                claim = self.claims.get(addresses[0])
                for address in addresses:
                    self.claims.pop(address, None)
            if claim is not None:
                claim.set()

    def prober(self) -> None:
        """The thread that asks waiting passes' calendars ahead, in batches."""
        with Pool(max_workers=PROBE_THREADS, thread_name_prefix="probe") as pool:
            while not self.stop.is_set():
                with self.probing:
                    self.probing.wait(timeout=1.0)
                    if not self.batching:
                        continue
                    chunks = self._claim()
                for probe, addresses, sources in chunks:
                    pool.submit(self._probe, probe, addresses, sources)

    def pass_for(self, address: str) -> None:
        claim = self._started(address)
        if claim is not None:
            claim.wait(CLAIM_WAIT_SECONDS)  # its calendar is being asked in a batch right now
        with self.locks[address]:
            # Checked under the lock: a run queued before a stop or a reload must not start.
            if self.stop.is_set() or all(b.address != address for b in self.settings.mailboxes):
                return
            if not self.fleet.holds(address):
                return  # another instance reconciles it (the job goes at the next round)
            token = self.heartbeat.pass_started()
            started = time.monotonic()
            ok = False
            drafted = False
            try:
                opened = address not in self.runners
                report = self.runner(address).reconcile(datetime.now(UTC))
                drafted = bool(report.drafted)
                with self.count_lock:
                    self.drafts_created += len(report.drafted)
                    self.tally["drafted"] += len(report.drafted)
                    self.tally["planned"] += report.planned
                    self.full_syncs += report.full_sync
                    if opened or report.full_sync or report.drafted:
                        self.trim_wanted = True
                ok = True
                # An idle pass that changed nothing says so at DEBUG only: a thousand mailboxes
                # every minute would fill the journal; the round's summary line counts them.
                log.log(
                    logging.INFO if report.eventful else logging.DEBUG,
                    "mailbox %s: pass done: %s",
                    address,
                    describe(report),
                )
            except LeaseLost as exc:
                # Its next pass comes from whichever instance holds it (this one again, if the
                # lease turns out to be renewed at the next round).
                self.fleet.lose(address)
                self.close_runner(address)
                with contextlib.suppress(JobLookupError):
                    self.scheduler.remove_job(address)
                log.warning("mailbox %s: pass stopped: %s", address, exc)
            except RecruitmailError as exc:
                self.close_runner(address)  # reconnect next time
                log.error("mailbox %s: pass failed: %s", address, exc)
                if isinstance(exc, TransientError) and exc.retry_after:
                    self.postpone(address, exc.retry_after)
            except Exception:
                self.close_runner(address)
                log.exception("mailbox %s: unexpected error; the next pass tries again", address)
            finally:
                self.fleet.reconciled(address)
                self.metrics.pass_finished(address, time.monotonic() - started, ok)
                self.last_pass = datetime.now(UTC)
                with self.count_lock:
                    self.tally["passes"] += 1
                    self.tally["failed"] += not ok
                    if self.passed is not None:
                        self.passed.add(address)
                self.heartbeat.pass_finished(token)
                self.publish_status(force=drafted)

    def postpone(self, address: str, seconds: float) -> None:
        """The provider asked us to wait (Retry-After): no pass for this mailbox before then."""
        job = self.scheduler.get_job(address)
        earliest = datetime.now(UTC) + timedelta(seconds=seconds)
        if job is not None and job.next_run_time is not None and job.next_run_time < earliest:
            job.modify(next_run_time=earliest)
            log.info("mailbox %s: next pass in %.0f s, as the provider asked", address, seconds)

    def say_behind(self) -> None:
        """Once a round: how many passes were still waiting when their next interval came."""
        with self.probing:
            behind, self.behind = len(self.behind), set()
        if behind:
            log.warning(
                "%d mailbox(es) were still waiting for their previous pass when the next came due: "
                "a round over all mailboxes takes longer than service.interval_seconds (%d s); "
                "every mailbox still gets its pass in turn. Raise service.workers or the interval.",
                behind,
                self.settings.service.interval_seconds,
            )

    def publish_status(self, *, force: bool = False) -> None:
        """Send the ``STATUS=`` line when a service manager listens: at once when ``force``
        (a draft was created), else at most every ``STATUS_EVERY_SECONDS`` (the main loop
        sends what is left over)."""
        if not self.notifier.enabled:
            return
        now = time.monotonic()
        with self.count_lock:
            if not force and now - self.status_sent < STATUS_EVERY_SECONDS:
                self.status_due = True
                return
            self.status_sent, self.status_due = now, False
        self.notifier.status(self.status_line())

    def summarise(self) -> None:
        """Once a round: one INFO line with what the passes since the last one did."""
        with self.count_lock:
            tally = self.tally
            self.tally = dict.fromkeys(tally, 0)
        if tally["passes"]:
            log.info(
                "%d pass(es) in the last %d s: %d planned, %d draft(s) created, %d failed",
                tally["passes"],
                self.settings.service.interval_seconds,
                tally["planned"],
                tally["drafted"],
                tally["failed"],
            )

    def give_back_memory(self) -> None:
        """After passes that held much (first passes, full syncs, drafts), at most every
        ``TRIM_EVERY_SECONDS``: the allocator's free memory goes back to the system."""
        now = time.monotonic()
        with self.count_lock:
            if not self.trim_wanted or now - self.trimmed < TRIM_EVERY_SECONDS:
                return
            self.trim_wanted, self.trimmed = False, now
        give_back_memory()

    def watch_first_round(self) -> None:
        """At the start of ``recruitmail run``: the passes from now on make the first round,
        after which ``consider_fresh_start`` looks at what it cost. Not in a process that already
        started afresh, nor where the resident memory cannot be read."""
        started = resident_mb()
        if os.environ.get(FRESH_START_ENV) or started is None:
            self.first_round_over.set()
            return
        self.started_mb = started
        with self.count_lock:
            self.passed = set()

    def consider_fresh_start(self) -> None:
        """Once every mailbox this instance holds has had a pass since the start (done or
        failed; mailboxes taken or given up meanwhile, or brought by a directory group, count as
        they are held now): if that first round read at least one whole calendar and grew the
        process by more than ``service.fresh_start_mb``, stop as SIGTERM would and let ``run``
        start the process afresh, once.

        Why: first passes read whole calendars and draft, ``service.workers`` at once, and what
        the round keeps (a runner's links, settings and caches, a few hundred bytes here and
        there) ends up spread over nearly every block of memory Python's allocator took for it,
        which can then give none of them back: 240 MB at 1,000 mailboxes, where a daemon started
        on the state that round wrote holds 125-140 (docs/BENCHMARKS.md, "Idle fleet round 5").
        The new process finds every calendar's sync token and ledger in the state, so its first
        round is an idle one: nothing is drafted twice or lost (the same as any restart). A
        restart on such a state (no whole calendar read) does not start afresh again, nor does
        an instance that shares the state with others (it would hand them its mailboxes), nor
        one whose configuration on disk no longer loads."""
        if self.stop.is_set():
            return
        with self.count_lock:
            if self.passed is None:
                return
            held = set(self.fleet.held())
            if not held or not held <= self.passed:
                return
            self.passed = None
            full_syncs = self.full_syncs
        try:
            self.fresh_start = bool(full_syncs) and self._fresh_start_wanted()
        finally:
            self.first_round_over.set()
        if self.fresh_start:
            self.stop.set()

    def _fresh_start_wanted(self) -> bool:
        limit = self.settings.service.fresh_start_mb
        now = resident_mb()
        grown = 0.0 if now is None else now - self.started_mb
        if not limit or now is None or grown <= limit:
            return False
        if self.fleet.fencing and self.fleet.live > 1:
            log.info(
                "the first round grew the daemon by %.0f MB; it does not start afresh while %d "
                "instances share the state: it would hand its mailboxes to them",
                grown,
                self.fleet.live,
            )
            return False
        try:
            validate(load_settings(self.config))
        except Exception as exc:  # noqa: BLE001 - whatever it is, the running daemon goes on
            log.warning(
                "the first round grew the daemon by %.0f MB, but it does not start afresh to give "
                "that back: the configuration on disk no longer loads (%s)",
                grown,
                exc,
            )
            return False
        log.info(
            "first round done: it grew the daemon by %.0f MB (to %.0f MB), more than "
            "service.fresh_start_mb (%d); starting afresh, once, in the same process, to give "
            "back what reading every calendar left behind",
            grown,
            now,
            limit,
        )
        return True

    def status_line(self) -> str:
        line = describe_status(len(self.settings.mailboxes), self.last_pass, self.drafts_created)
        return f"{line}; {self.problem}" if self.problem else line

    # -- fleets from the directory (mailboxes_from) ---------------------------------------------

    directory_update: tuple[Settings, Settings] | None = None

    def schedule_directory(self) -> None:
        """Read the directory groups now and every ``directory_refresh_minutes`` (again after a
        reload: ``schedule`` runs then)."""
        if self.settings.mailboxes_from:
            self.scheduler.add_job(
                self.read_directory,
                "interval",
                id="directory",
                replace_existing=True,
                minutes=self.settings.service.directory_refresh_minutes,
                next_run_time=datetime.now(UTC),
            )

    def read_directory(self) -> None:
        """In a worker: read the groups; the main loop applies the result (``apply_directory``)."""
        base = self.settings
        try:
            settings, _ = refresh_fleet(base, self.state)
        except Exception:  # noqa: BLE001 - the mailboxes already known keep their passes
            log.exception("reading the directory groups failed; the known members are kept")
            return
        with self.count_lock:
            self.directory_update = (base, settings)

    def apply_directory(self) -> None:
        """In the main loop: passes for members added, none for members removed, as a reload."""
        with self.count_lock:
            update, self.directory_update = self.directory_update, None
        if update is None or update[0] is not self.settings:
            return  # nothing new, or a reload came in between (it reads the groups itself)
        base, settings = update
        if settings.mailboxes == base.mailboxes:
            return
        before = {b.address for b in base.mailboxes}
        after = {b.address for b in settings.mailboxes}
        self.settings = settings
        self.fleet.configure([b.address for b in settings.mailboxes])
        for address in before - after:
            self.drop_job(address)
        self.fleet_round()
        for address in after - before:
            if self.fleet.holds(address):
                self.add_job(address)
        log.info(
            "directory groups: %d mailbox(es) added, %d removed, %d in all",
            len(after - before),
            len(before - after),
            len(after),
        )
        self.notifier.status(self.status_line())

    # -- lifecycle -----------------------------------------------------------------------

    def reload(self) -> None:
        self.notifier.reloading()
        try:
            settings = load_settings(self.config)
            renderer = validate(settings)
        except ConfigError as exc:
            self.problem = "reload refused: the new configuration is invalid, the old one runs"
            log.error("reload refused, keeping the running configuration: %s", exc)
            self.notifier.ready(self.status_line())
            return
        # No mailbox lock is taken here: a hung pass must not wedge the main loop. Runners built
        # from the old configuration are replaced by their own next pass (see ``runner``).
        self.scheduler.pause()
        for job in self.scheduler.get_jobs():
            job.remove()
        kept = {b.address for b in settings.mailboxes}
        for address in [a for a in self.runners if a not in kept]:
            lock = self.locks.get(address)
            if lock is not None and lock.acquire(blocking=False):
                try:
                    self.close_runner(address)
                finally:
                    lock.release()
        needs_restart = [
            name
            for name in (
                "state_dir",
                "workers",
                "metrics_address",
                "metrics_port",
                "pass_timeout_seconds",
            )
            if getattr(settings.service, name) != getattr(self.settings.service, name)
        ]
        if needs_restart:
            log.warning(
                "service.%s changed: takes effect after a restart", ", service.".join(needs_restart)
            )
        self.settings, self.renderer, self.problem = settings, renderer, ""
        self.fleet.configure([b.address for b in settings.mailboxes])
        self.fleet.interval(settings.service.interval_seconds)  # leases follow a new interval
        self.batching = settings.service.batch_requests
        setup_logging(settings.service.log_level, settings.service.log_format)
        self.schedule()
        self.scheduler.resume()
        log.info("configuration reloaded: %d mailbox(es)", len(settings.mailboxes))
        self.notifier.ready(self.status_line())

    def serve_forever(self, *, may_start_afresh: bool = False) -> int:
        """Run until SIGTERM; the exit code. With ``may_start_afresh`` (``recruitmail run``) it may
        also return after the first round with ``self.fresh_start`` set, for the caller to exec
        (``consider_fresh_start``)."""
        self.fleet_round()
        self.schedule()
        if may_start_afresh:
            self.watch_first_round()
        else:
            self.first_round_over.set()
        self.scheduler.start()
        prober = threading.Thread(target=self.prober, name="prober", daemon=True)
        prober.start()
        self.notifier.ready(self.status_line())
        log.info(
            "recruitmail running: %d mailbox(es), a pass every %ds",
            len(self.settings.mailboxes),
            self.settings.service.interval_seconds,
        )
        tick = watchdog_interval() or 1.0
        said = time.monotonic()
        next_round = time.monotonic() + self.fleet.period
        while not self.stop.is_set():
            if time.monotonic() >= next_round:
                next_round = time.monotonic() + self.fleet.period
                self.fleet_round()
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                self.reload()
            self.apply_directory()
            self.heartbeat.beat()
            if self.status_due:
                self.publish_status()
            self.give_back_memory()
            self.consider_fresh_start()
            if time.monotonic() - said >= self.settings.service.interval_seconds:
                said = time.monotonic()
                self.say_behind()
                self.summarise()
            self.stop.wait(min(tick, 1.0, max(0.05, next_round - time.monotonic())))
        if self.fresh_start and not self.terminating:
            # The same process goes on (exec): to the service manager this is a reload, which
            # the new process's READY=1 ends.
            self.notifier.reloading()
            log.info("starting afresh: finishing the current step")
        else:
            self.notifier.stopping()
            log.info("stopping: finishing the current step")
        with self.probing:
            self.probing.notify_all()
        prober.join()
        self.scheduler.shutdown(wait=True)
        for address in list(self.runners):
            self.close_runner(address)
        self.fleet.leave()
        self.state.close()
        self.metrics.close()
        log.info("stopped")
        return self.exit_code


def run(config: Path | None) -> int:
    """Start the daemon; returns the exit code."""
    # A reload request during start-up must not kill the process (SIGHUP's default action).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings = load_settings(config)
    setup_logging(settings.service.log_level, settings.service.log_format)
    renderer = validate(settings)
    service = Service(
        config, settings, renderer, Notifier.from_environment(), open_metrics(settings.service)
    )

    def on_term(signum: int, frame: FrameType | None) -> None:
        service.terminating = True
        service.stop.set()

    def on_hup(signum: int, frame: FrameType | None) -> None:
        service.reload_requested.set()

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    code = service.serve_forever(may_start_afresh=True)
    if service.fresh_start and code == 0:
        # From here a SIGTERM ends the process at once (its default; everything is closed
        # already): a stop asked now is not lost in the exec. Setting it runs a handler still
        # pending first, so ``terminating`` is up to date below.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if not service.terminating:
            start_afresh()
    return code
