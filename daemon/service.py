"""Being a good systemd service: sd_notify and the watchdog, journald-friendly logs, Prometheus metrics."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import IO, Any, NoReturn

from recruitmail.contracts.errors import ConfigError
from recruitmail.contracts.models import pseudonym
from recruitmail.daemon.settings import Service

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# sd_notify


class Notifier:
    """Tells the service manager how the daemon is doing (``sd_notify``); silent without one.

    The socket comes from ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace).
    Sending never raises: a service manager that went away must not take the daemon with it.
    """

    def __init__(self, address: str | None) -> None:
        self._address: str | None = None
        if address:
            # A leading '@' names a socket in Linux's abstract namespace, spelt with a NUL byte.
            self._address = "\0" + address[1:] if address.startswith("@") else address
        self._warned = False

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        """The notifier for ``$NOTIFY_SOCKET``, a no-op one when it is unset."""
        env = os.environ if environ is None else environ
        return cls(env.get("NOTIFY_SOCKET"))

    @property
    def enabled(self) -> bool:
        """Whether a service manager is listening."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; ``True`` when it was delivered."""
        if self._address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self._address)
                sock.sendall(payload)
        except OSError as exc:
            if not self._warned:
                # Once is enough: the same failure would repeat on every watchdog ping.
                log.warning("cannot notify the service manager: %s", exc)
                self._warned = True
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Configuration is loaded and the daemon works (``READY=1``), optionally with a status."""
        return self.notify("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        """A one-line state a human reads in ``systemctl status``."""
        return self.notify(f"STATUS={_one_line(text)}")

    def reloading(self) -> bool:
        """A reload started; ``ready()`` ends it. Carries the monotonic time systemd ≥ 253 wants."""
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> bool:
        """The daemon is shutting down."""
        return self.notify("STOPPING=1")

    def watchdog(self) -> bool:
        """Keep-alive ping: send it only when the daemon really made progress."""
        return self.notify("WATCHDOG=1")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between watchdog pings (half of ``WatchdogSec=``), or ``None`` when not asked for.

    ``$WATCHDOG_PID``, when set, must be this process: the variables may have been inherited.
    """
    env = os.environ if environ is None else environ
    raw_usec = env.get("WATCHDOG_USEC", "")
    raw_pid = env.get("WATCHDOG_PID", "")
    try:
        usec = int(raw_usec)
        if raw_pid and int(raw_pid) != os.getpid():
            return None
    except ValueError:
        return None
    if usec <= 0:
        return None
    return usec / 1_000_000 / 2


class Heartbeat:
    """Decides whether the watchdog may be pinged: only while reconcile passes keep completing.

    The scheduler calls ``pass_started()``/``pass_finished()`` around each pass and ``beat()``
    every ``watchdog_interval()`` seconds. An idle daemon keeps pinging; one with a pass running
    longer than ``stall_after`` seconds, or with no pass finished for ``overdue_after`` seconds,
    stops pinging, and systemd restarts it.
    """

    def __init__(
        self,
        notifier: Notifier,
        *,
        stall_after: float,
        overdue_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._notifier = notifier
        self._stall_after = stall_after
        self._overdue_after = overdue_after
        self._clock = clock
        self._lock = threading.Lock()
        self._running: dict[int, float] = {}
        self._next_token = 0
        self._last_finished = clock()

    def pass_started(self) -> int:
        """Record that a pass began; hand the token back to ``pass_finished``."""
        with self._lock:
            self._next_token += 1
            self._running[self._next_token] = self._clock()
            return self._next_token

    def pass_finished(self, token: int) -> None:
        """Record that a pass completed (successfully or with handled errors) and ping at once."""
        with self._lock:
            self._running.pop(token, None)
            self._last_finished = self._clock()
        self.beat()

    def healthy(self) -> bool:
        """No pass is stuck and passes are still completing."""
        now = self._clock()
        with self._lock:
            if any(now - started > self._stall_after for started in self._running.values()):
                return False
            return self._overdue_after is None or now - self._last_finished <= self._overdue_after

    def beat(self) -> bool:
        """Ping the watchdog if the daemon is healthy; ``True`` when a ping was sent."""
        return self.healthy() and self._notifier.watchdog()


def describe_status(mailboxes: int, last_pass: datetime | None, drafts_created: int) -> str:
    """The ``STATUS=`` line: what an administrator wants to see in ``systemctl status``."""
    boxes = f"{mailboxes} mailbox" + ("" if mailboxes == 1 else "es")
    when = (
        "no pass yet"
        if last_pass is None
        else f"last pass {last_pass:%Y-%m-%d %H:%M:%S %Z}".rstrip()
    )
    return f"{boxes}; {when}; {drafts_created} draft(s) created since start"


# --------------------------------------------------------------------------------------------
# Memory


_TRIM: Callable[[int], int] | None = None
_TRIM_LOOKED_UP = False


def give_back_memory() -> bool:
    """Hand the C allocator's free memory back to the system (glibc's ``malloc_trim(0)``);
    ``False`` where there is no such call (another C library). A daemon's first passes each
    hold a whole calendar at once; without this, the allocator keeps their peak for the
    process's life."""
    global _TRIM, _TRIM_LOOKED_UP
    if not _TRIM_LOOKED_UP:
        _TRIM_LOOKED_UP = True
        try:
            import ctypes

            _TRIM = ctypes.CDLL(None).malloc_trim
        except (OSError, AttributeError):
            _TRIM = None
    if _TRIM is None:
        return False
    _TRIM(0)
    return True


FRESH_START_ENV = "RECRUITMAIL_FRESH_START"
"""Set in the environment of a daemon that started itself afresh: it does so at most once."""


def resident_mb() -> float | None:
    """The process's resident memory in MB (``/proc/self/statm``), ``None`` where there is none."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def start_afresh() -> NoReturn:
    """Replace this process by a new one running the same command line (``exec``: the same PID,
    so the service manager sees a reload, not a stop). The caller has stopped the scheduler,
    closed every connector, left the fleet and closed the state, as SIGTERM does.

    ``FRESH_START_ENV`` tells the new process not to do it again; SIGHUP stays ignored until it
    installs its own handler (an ignored signal stays ignored across ``exec``), so that a reload
    asked meanwhile cannot end it."""
    os.environ[FRESH_START_ENV] = "1"
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


# --------------------------------------------------------------------------------------------
# Logging


# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}

# syslog priorities, which journald reads from a "<N>" line prefix (SyslogLevelPrefix=yes).
_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _RECORD_FIELDS}


_UNPRINTABLE = re.compile(
    r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]"
)


def _flatten(text: str) -> str:
    # One event per line: a traceback split over lines would become many journal entries. Other
    # control, line-separator and bidi characters (from calendar text in an error message) are
    # written as escapes, so that a log line can neither end early nor paint the terminal.
    text = text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")
    return _UNPRINTABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class TextFormatter(logging.Formatter):
    """``[time] LEVEL logger: message key=value …`` on one line; journald mode drops the time."""

    def __init__(self, journald: bool) -> None:
        super().__init__()
        self._journald = journald

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as one line."""
        text = record.getMessage()
        for key, value in _extras(record).items():
            text += f" {key}={value}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        elif record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        line = f"{record.levelname} {record.name}: {_flatten(text)}"
        if self._journald:
            priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
            return f"<{priority}>{line}"
        stamp = datetime.fromtimestamp(record.created).astimezone().isoformat(timespec="seconds")
        return f"{stamp} {line}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, extra fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        """Render one record as one JSON line."""
        event: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in _extras(record).items():
            event.setdefault(key, value)
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return json.dumps(event, ensure_ascii=False, default=str)


def _journald_attached(stream: IO[str], environ: Mapping[str, str]) -> bool:
    """Whether ``stream`` is the journal stream systemd connected (``$JOURNAL_STREAM=dev:inode``)."""
    value = environ.get("JOURNAL_STREAM", "")
    if not value:
        return False
    try:
        device, inode = (int(part) for part in value.split(":"))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError):
        # A stream without a descriptor (tests) but a journal in the environment: trust the
        # environment, journald adds timestamps itself.
        return True
    return (info.st_dev, info.st_ino) == (device, inode)


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    *,
    stream: IO[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send all logs to stderr (or ``stream``), one event per line, as ``text`` or ``json``.

    Replaces the handlers of the root logger, so calling it again (on reload) changes the level or
    format without duplicating lines. Returns the handler.
    """
    if fmt not in ("text", "json"):
        raise ConfigError(f"service.log_format: {fmt!r} is not one of text, json")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ConfigError(f"service.log_level: {level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    out = sys.stderr if stream is None else stream
    env = os.environ if environ is None else environ
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        JsonFormatter() if fmt == "json" else TextFormatter(journald=_journald_attached(out, env))
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Third-party clients log request URLs (with addresses in them) at INFO; keep them quieter.
    for noisy in ("httpx", "httpcore", "googleapiclient", "msal", "urllib3", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
    return handler


# --------------------------------------------------------------------------------------------
# Metrics


class Metrics:
    """What the executor reports. This base class records nothing: metrics are switched off.

    ``kind`` is a ``MailKind`` value; ``reason`` a short fixed code (``stale``, ``edited``,
    ``recruiter_wrote``, ``folded``, ``cancelled``, ``disabled``…), never free text, so that
    the number of series stays small.
    """

    port: int | None = None

    def draft_planned(self, kind: str) -> None:
        """The planner wants a mail of ``kind``."""

    def draft_created(self, kind: str) -> None:
        """A draft of ``kind`` landed in a mailbox."""

    def draft_skipped(self, kind: str, reason: str) -> None:
        """A planned mail of ``kind`` was not drafted, for ``reason``."""

    def draft_held(self, kind: str, reason: str) -> None:
        """A planned mail of ``kind`` was held back this pass (``template``, ``lookup``) and
        stays planned."""

    def lookup_failed(self, call: str, permanent: bool) -> None:
        """An auxiliary look-up (``last_contact``, ``out_of_office``, ``directory``,
        ``time_zone``) failed; the mails go on with a retry or a fallback."""

    def events_skipped(self, count: int) -> None:
        """``count`` calendar events were left out of a sync (malformed, over a budget)."""

    def sync_error(self, provider: str, status: str | int) -> None:
        """A calendar sync failed at ``provider`` (HTTP status or error class)."""

    def api_error(self, provider: str, status: str | int) -> None:
        """A provider call failed (HTTP status or error class)."""

    def pass_finished(self, mailbox: str, seconds: float, ok: bool) -> None:
        """A reconcile pass over ``mailbox`` ended after ``seconds``; ``ok`` when it fully worked."""

    def fleet(self, instance: str, held: int, takeovers: int, fenced_writes: int) -> None:
        """After a fleet round: this instance's id, the mailboxes whose lease it holds, the
        leases it took over from another instance and the writes refused because a lease was
        gone, since it started."""

    def close(self) -> None:
        """Stop the endpoint, if any."""


class PrometheusMetrics(Metrics):
    """Metrics in their own registry, served over HTTP at ``/metrics`` once ``serve`` was called."""

    def __init__(self) -> None:
        try:
            import prometheus_client as prom
        except ImportError:
            raise ConfigError(
                "service.metrics_port is set but prometheus-client is not installed; "
                "install recruitmail[metrics] or set metrics_port = 0"
            ) from None
        self._prom = prom
        self.registry = prom.CollectorRegistry(auto_describe=True)
        ns = "recruitmail"
        reg = self.registry
        self._planned = prom.Counter(
            "drafts_planned",
            "Mails the planner wanted, by kind.",
            ["kind"],
            namespace=ns,
            registry=reg,
        )
        self._created = prom.Counter(
            "drafts_created",
            "Drafts written into mailboxes, by kind.",
            ["kind"],
            namespace=ns,
            registry=reg,
        )
        self._skipped = prom.Counter(
            "drafts_skipped",
            "Planned mails not drafted, by kind and reason.",
            ["kind", "reason"],
            namespace=ns,
            registry=reg,
        )
        self._held = prom.Counter(
            "drafts_held",
            "Planned mails held back for a pass (template failure, look-up failure), by kind.",
            ["kind", "reason"],
            namespace=ns,
            registry=reg,
        )
        self._lookups = prom.Counter(
            "lookup_failures",
            "Failed auxiliary look-ups (last contact, out of office, directory, time zone).",
            ["call", "permanent"],
            namespace=ns,
            registry=reg,
        )
        self._events_skipped = prom.Counter(
            "events_skipped",
            "Calendar events left out of a sync (malformed or over a budget).",
            namespace=ns,
            registry=reg,
        )
        self._sync_errors = prom.Counter(
            "sync_errors",
            "Failed calendar syncs.",
            ["provider", "status"],
            namespace=ns,
            registry=reg,
        )
        self._api_errors = prom.Counter(
            "api_errors",
            "Failed provider calls.",
            ["provider", "status"],
            namespace=ns,
            registry=reg,
        )
        self._last_ok = prom.Gauge(
            "last_successful_pass_timestamp_seconds",
            "Unix time of the last fully successful pass, per mailbox (hashed id).",
            ["mailbox"],
            namespace=ns,
            registry=reg,
        )
        self._duration = prom.Histogram(
            "pass_duration_seconds",
            "Duration of reconcile passes.",
            ["outcome"],
            namespace=ns,
            registry=reg,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
        )
        self._instance = prom.Gauge(
            "fleet_instance_info",
            "This instance's id in the fleet (host-pid-random); always 1.",
            ["id"],
            namespace=ns,
            registry=reg,
        )
        self._leases_held = prom.Gauge(
            "fleet_mailboxes_held",
            "Mailboxes whose lease this instance holds.",
            namespace=ns,
            registry=reg,
        )
        self._takeovers = prom.Gauge(
            "fleet_takeovers",
            "Leases this instance took over from another (dead or stopped) instance since it started.",
            namespace=ns,
            registry=reg,
        )
        self._fenced = prom.Gauge(
            "fleet_fenced_writes",
            "Writes refused since start because this instance's lease was gone or nearly so.",
            namespace=ns,
            registry=reg,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def serve(self, address: str, port: int) -> int:
        """Start the HTTP endpoint on ``address:port`` (0 picks a free port); return the port."""
        try:
            server, thread = self._prom.start_http_server(
                port, addr=address, registry=self.registry
            )
        except OSError as exc:
            raise ConfigError(
                f"service.metrics_address/metrics_port: cannot listen on {address}:{port} ({exc.strerror})"
            ) from None
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])
        return self.port

    def draft_planned(self, kind: str) -> None:
        """Count a planned mail."""
        self._planned.labels(kind=str(kind)).inc()

    def draft_created(self, kind: str) -> None:
        """Count a created draft."""
        self._created.labels(kind=str(kind)).inc()

    def draft_skipped(self, kind: str, reason: str) -> None:
        """Count a skipped mail."""
        self._skipped.labels(kind=str(kind), reason=reason).inc()

    def draft_held(self, kind: str, reason: str) -> None:
        """Count a held mail."""
        self._held.labels(kind=str(kind), reason=reason).inc()

    def lookup_failed(self, call: str, permanent: bool) -> None:
        """Count a failed look-up."""
        self._lookups.labels(call=call, permanent=str(permanent).lower()).inc()

    def events_skipped(self, count: int) -> None:
        """Count skipped events."""
        self._events_skipped.inc(count)

    def sync_error(self, provider: str, status: str | int) -> None:
        """Count a failed sync."""
        self._sync_errors.labels(provider=provider, status=str(status)).inc()

    def api_error(self, provider: str, status: str | int) -> None:
        """Count a failed provider call."""
        self._api_errors.labels(provider=provider, status=str(status)).inc()

    def pass_finished(self, mailbox: str, seconds: float, ok: bool) -> None:
        """Observe the pass duration; stamp the mailbox when the pass fully worked."""
        self._duration.labels(outcome="ok" if ok else "failed").observe(seconds)
        if ok:
            # Mailbox addresses are people's addresses too: the label carries the hashed id.
            self._last_ok.labels(mailbox=pseudonym(mailbox)).set(time.time())

    def fleet(self, instance: str, held: int, takeovers: int, fenced_writes: int) -> None:
        """Publish this instance's part of the fleet."""
        self._instance.labels(id=instance).set(1)
        self._leases_held.set(held)
        self._takeovers.set(takeovers)
        self._fenced.set(fenced_writes)

    def close(self) -> None:
        """Stop the endpoint and free its port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None


def open_metrics(service: Service) -> Metrics:
    """The metrics the configuration asks for: an endpoint when ``metrics_port`` is set, else none."""
    if service.metrics_port == 0:
        return Metrics()
    metrics = PrometheusMetrics()
    metrics.serve(service.metrics_address, service.metrics_port)
    log.info("metrics at http://%s:%d/metrics", service.metrics_address, metrics.port)
    return metrics
