"""Service integration: sd_notify over a real socket, log lines, the Prometheus endpoint."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from recruitmail.contracts.errors import ConfigError
from recruitmail.contracts.models import pseudonym
from recruitmail.daemon.service import (
    Heartbeat,
    Metrics,
    Notifier,
    PrometheusMetrics,
    open_metrics,
    setup_logging,
    watchdog_interval,
)
from recruitmail.daemon.settings import Service

# --------------------------------------------------------------------------------------------
# sd_notify: the test plays the service manager with its own datagram socket.


class ServiceManager:
    """The receiving end of $NOTIFY_SOCKET."""

    def __init__(self, sock: socket.socket, address: str) -> None:
        self.sock = sock
        self.address = address

    def receive(self) -> list[str]:
        """The next datagram, as its KEY=value lines."""
        return self.sock.recv(4096).decode("utf-8").split("\n")

    def nothing_pending(self) -> bool:
        self.sock.setblocking(False)
        try:
            self.sock.recv(4096)
        except BlockingIOError:
            return True
        finally:
            self.sock.setblocking(True)
        return False


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[ServiceManager]:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(10)  # a safety net against a hang, not a timing assertion
        yield ServiceManager(sock, str(path))


def test_notifier_sends_the_protocol_lines(manager: ServiceManager) -> None:
    notifier = Notifier.from_environment({"NOTIFY_SOCKET": manager.address})
    assert notifier.enabled

    assert notifier.ready("2 mailboxes;\nlast pass never")
    assert manager.receive() == ["READY=1", "STATUS=2 mailboxes; last pass never"]

    notifier.status("1 mailbox; 3 draft(s) created since start")
    assert manager.receive() == ["STATUS=1 mailbox; 3 draft(s) created since start"]

    notifier.reloading()
    reloading = manager.receive()
    assert reloading[0] == "RELOADING=1"
    key, _, value = reloading[1].partition("=")
    assert key == "MONOTONIC_USEC" and int(value) > 0

    notifier.watchdog()
    assert manager.receive() == ["WATCHDOG=1"]
    notifier.stopping()
    assert manager.receive() == ["STOPPING=1"]


def test_notifier_reaches_an_abstract_socket() -> None:
    name = f"recruitmail-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        assert Notifier(f"@{name}").ready()
        assert sock.recv(4096) == b"READY=1"


def test_without_a_service_manager_nothing_is_sent_and_nothing_fails() -> None:
    notifier = Notifier.from_environment({})
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False


def test_a_vanished_service_manager_does_not_stop_the_daemon(tmp_path: Path) -> None:
    notifier = Notifier(str(tmp_path / "gone.sock"))
    assert notifier.watchdog() is False
    assert notifier.stopping() is False


def test_watchdog_interval_is_half_the_timeout_and_only_for_this_process() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert (
        watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}) == 15.0
    )
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_heartbeat_pings_while_passes_complete_and_stops_when_one_hangs(
    manager: ServiceManager,
) -> None:
    clock = FakeClock()
    beat = Heartbeat(Notifier(manager.address), stall_after=60, clock=clock)

    token = beat.pass_started()
    clock.now += 5
    beat.pass_finished(token)
    assert manager.receive() == ["WATCHDOG=1"]

    clock.now += 200  # idle and healthy: still alive
    assert beat.beat()
    assert manager.receive() == ["WATCHDOG=1"]

    beat.pass_started()
    clock.now += 30
    assert beat.beat()  # a pass in progress, not yet suspicious
    manager.receive()
    clock.now += 31
    assert not beat.beat()  # stuck for longer than stall_after: let systemd restart us
    assert manager.nothing_pending()


def test_heartbeat_stops_when_passes_no_longer_finish(manager: ServiceManager) -> None:
    clock = FakeClock()
    beat = Heartbeat(Notifier(manager.address), stall_after=60, overdue_after=900, clock=clock)
    assert beat.beat()
    manager.receive()
    clock.now += 901
    assert not beat.beat()
    assert manager.nothing_pending()


# --------------------------------------------------------------------------------------------
# Logging


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root_logger")
def test_json_logs_are_one_object_per_line_with_extra_fields() -> None:
    out = io.StringIO()
    setup_logging("INFO", "json", stream=out, environ={})
    log = logging.getLogger("recruitmail.executor")
    log.info("draft created", extra={"kind": "welcome", "candidate": pseudonym("Anna@Example.org")})
    log.debug("not shown at INFO")
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        log.exception("pass failed")

    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["level"] == "INFO"
    assert first["logger"] == "recruitmail.executor"
    assert first["message"] == "draft created"
    assert first["kind"] == "welcome"
    assert first["candidate"] == pseudonym("anna@example.org")
    assert first["ts"].endswith("+00:00")
    assert second["level"] == "ERROR"
    assert "ValueError: bad" in second["exc"]


@pytest.mark.usefixtures("restore_root_logger")
def test_text_logs_under_journald_have_a_priority_and_no_timestamp() -> None:
    out = io.StringIO()
    setup_logging("DEBUG", "text", stream=out, environ={"JOURNAL_STREAM": "8:12345"})
    log = logging.getLogger("recruitmail.sync")
    log.warning("calendar unreachable", extra={"mailbox": "cand-1234abcd"})
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("pass failed")
    lines = out.getvalue().splitlines()
    assert lines[0] == "<4>WARNING recruitmail.sync: calendar unreachable mailbox=cand-1234abcd"
    assert len(lines) == 2, "a traceback stays on the line of its event"
    assert lines[1].startswith("<3>ERROR recruitmail.sync: pass failed\\nTraceback")


@pytest.mark.usefixtures("restore_root_logger")
def test_calendar_text_in_a_log_line_cannot_end_it_or_paint_the_terminal() -> None:
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out, environ={"JOURNAL_STREAM": "8:12345"})
    hostile = "Intervju\x1b[2J\u2028<3>ERROR forged\u202egnp.exe"
    logging.getLogger("recruitmail.sync").warning("rejected: %s", hostile)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "\x1b" not in lines[0] and "\u2028" not in lines[0] and "\u202e" not in lines[0]
    assert "\\u001b[2J\\u2028<3>ERROR forged\\u202egnp.exe" in lines[0]


@pytest.mark.usefixtures("restore_root_logger")
def test_text_logs_on_a_terminal_carry_a_timestamp(tmp_path: Path) -> None:
    with (tmp_path / "log").open("w+") as out:
        # JOURNAL_STREAM points at another file: this is not the journal (e.g. a child process).
        setup_logging("INFO", "text", stream=out, environ={"JOURNAL_STREAM": "1:1"})
        logging.getLogger("recruitmail").info("started")
        out.seek(0)
        line = out.read().strip()
    stamp, level, rest = line.split(" ", 2)
    assert stamp[:2] == "20" and "T" in stamp
    assert (level, rest) == ("INFO", "recruitmail: started")


@pytest.mark.usefixtures("restore_root_logger")
def test_setting_up_logging_twice_does_not_duplicate_lines() -> None:
    out = io.StringIO()
    setup_logging("INFO", "text", stream=out, environ={})
    setup_logging("INFO", "text", stream=out, environ={})
    logging.getLogger("recruitmail").info("once")
    assert out.getvalue().count("once") == 1


def test_unknown_log_settings_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="log_format"):
        setup_logging("INFO", "xml", stream=io.StringIO())
    with pytest.raises(ConfigError, match="log_level"):
        setup_logging("CHATTY", "text", stream=io.StringIO())


def test_hashed_ids_are_stable_short_and_hide_the_address() -> None:
    ident = pseudonym(" Anna.Svensson@Example.org ")
    assert ident == pseudonym("anna.svensson@example.org")
    assert ident.startswith("cand-") and len(ident) == len("cand-") + 8
    assert "anna" not in ident
    assert pseudonym("bo@example.org") != ident


# --------------------------------------------------------------------------------------------
# Metrics


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.status == 200
        return str(response.read().decode("utf-8"))


@pytest.fixture
def metrics() -> Iterator[PrometheusMetrics]:
    m = PrometheusMetrics()
    m.serve("127.0.0.1", 0)
    yield m
    m.close()


def test_metrics_endpoint_shows_drafts_errors_and_passes(metrics: PrometheusMetrics) -> None:
    assert metrics.port
    metrics.draft_planned("welcome")
    metrics.draft_planned("thank_you")
    metrics.draft_created("welcome")
    metrics.draft_skipped("thank_you", "stale")
    metrics.api_error("microsoft", 429)
    metrics.sync_error("ics", "TransientError")
    metrics.pass_finished("recruiter@example.se", 1.5, ok=True)
    metrics.pass_finished("recruiter@example.se", 0.2, ok=False)

    text = scrape(metrics.port)
    assert 'recruitmail_drafts_created_total{kind="welcome"} 1.0' in text
    assert 'recruitmail_drafts_planned_total{kind="thank_you"} 1.0' in text
    assert 'recruitmail_drafts_skipped_total{kind="thank_you",reason="stale"} 1.0' in text
    assert 'recruitmail_api_errors_total{provider="microsoft",status="429"} 1.0' in text
    assert 'recruitmail_sync_errors_total{provider="ics",status="TransientError"} 1.0' in text
    assert 'recruitmail_pass_duration_seconds_count{outcome="ok"} 1.0' in text
    assert 'recruitmail_pass_duration_seconds_count{outcome="failed"} 1.0' in text
    mailbox = pseudonym("recruiter@example.se")
    assert f'recruitmail_last_successful_pass_timestamp_seconds{{mailbox="{mailbox}"}}' in text
    assert "recruiter@example.se" not in text


def test_two_metric_sets_do_not_share_counts(metrics: PrometheusMetrics) -> None:
    other = PrometheusMetrics()
    other.serve("127.0.0.1", 0)
    try:
        other.draft_created("welcome")
        assert 'recruitmail_drafts_created_total{kind="welcome"}' not in scrape(metrics.port)
        assert 'recruitmail_drafts_created_total{kind="welcome"} 1.0' in scrape(other.port or 0)
    finally:
        other.close()


def test_metrics_from_settings_listen_where_configured() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    opened = open_metrics(Service(metrics_address="127.0.0.1", metrics_port=port))
    try:
        assert isinstance(opened, PrometheusMetrics)
        opened.draft_created("status_update")
        assert 'kind="status_update"' in scrape(port)
    finally:
        opened.close()


def test_an_occupied_metrics_port_is_a_config_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="metrics_port"):
            open_metrics(Service(metrics_address="127.0.0.1", metrics_port=port))


def test_disabled_metrics_record_nothing_and_listen_nowhere() -> None:
    metrics = open_metrics(Service(metrics_port=0))
    assert type(metrics) is Metrics
    assert metrics.port is None
    metrics.draft_planned("welcome")
    metrics.draft_created("welcome")
    metrics.draft_skipped("welcome", "stale")
    metrics.api_error("google", 500)
    metrics.sync_error("google", 410)
    metrics.pass_finished("recruiter@example.se", 1.0, ok=True)
    metrics.close()
