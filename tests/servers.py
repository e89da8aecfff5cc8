"""Real Radicale (CalDAV) and Dovecot (IMAP) servers on free loopback ports, as pytest fixtures.

Each server lives in its own temporary directory, is started as a subprocess, waited for until it
answers, and stopped by its PID at teardown. One server serves a whole test module; each test
gets a fresh, empty account on it (``add_user``). A test module imports the fixture functions
(``radicale_fixture``, ``dovecot_fixture``) and asks for ``radicale`` / ``dovecot``. When a
server's program is missing the tests that need it are skipped with the reason — except under CI
(``CI=true``), where a missing server fails the run.

A server never outlives the test run that started it, however the run ends (``spawn``):

- it runs in its own process group, and a stop kills the whole group (Dovecot's helpers too);
- the fixture's teardown stops it (a failed test, a pytest-timeout in signal mode, Ctrl-C);
- an ``atexit`` hook stops whatever is still registered when the interpreter exits;
- it is started with ``PR_SET_PDEATHSIG``: the kernel SIGKILLs it when the process that started
  it ends, even by SIGKILL or ``os._exit`` (pytest-timeout in thread mode), where no Python code
  runs — as that signal comes when the starting *thread* ends, start servers from the main thread,
  as fixtures are;
- a watchdog process (``Watchdog``) reads a pipe whose other end only the test run holds: when the
  run is gone, however it ended, the pipe closes and the watchdog SIGKILLs every process group
  still registered and every process that carries the run's mark (``RUN_MARK_VARIABLE`` in its
  environment: a ``recruitmail run`` a test started, say). A child the run forks without exec
  holds the pipe too, so the watchdog acts once the last of them is gone.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

LOOPBACK = "127.0.0.1"
RADICALE_USER, RADICALE_PASSWORD = "alice", "secret"
DOVECOT_USER, DOVECOT_PASSWORD = "recruiter@example.se", "secret"
SPARE_ACCOUNTS = 200
DOVECOT_BINARY = os.environ.get("RECRUITMAIL_TEST_DOVECOT", "/usr/sbin/dovecot")

# Dovecot 2.3's default capability list, minus UIDPLUS: a server that does not announce
# APPENDUID, so the sink must find its own appends by searching.
CAPABILITIES_WITHOUT_UIDPLUS = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES "
    "THREAD=REFS THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN "
    "NAMESPACE LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN "
    "CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE "
    "SAVEDATE LITERAL+ NOTIFY SPECIAL-USE"
)


def missing(what: str) -> None:
    """Skip the test because ``what`` is not installed; under CI that is a failure instead."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required under CI but is not installed", pytrace=False)
    pytest.skip(f"{what} is not installed on this machine")


def free_port() -> int:
    """A TCP port on the loopback interface that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    # A generous deadline: this waits for readiness, it asserts nothing about speed.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log.read_text(errors="replace") if log.exists() else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{text}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port}")


# -- processes that cannot outlive the test run ---------------------------------------------------

RUN_MARK_VARIABLE = "TESTS_RUN_MARK"
"""Set (by ``mark_this_run``) in the test run's environment, so inherited by all it starts."""

PR_SET_PDEATHSIG = 1

# Runs between fork and the server's own exec (as a separate program, so that no thread of the test
# run can hold a lock the child needs): ask the kernel for SIGKILL when the starting thread ends,
# leave at once if it already has, then become the server (same pid, the request survives exec).
_ORPHAN_GUARD = (
    "import ctypes, os, sys\n"
    f"ctypes.CDLL(None, use_errno=True).prctl({PR_SET_PDEATHSIG}, 9, 0, 0, 0)\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    os._exit(70)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)

# The watchdog: a line "+PGID" registers a process group, "-PGID" forgets it. At the end of its
# input (the test run closed the pipe, or died) it SIGKILLs the groups still registered and every
# other process carrying the run's mark.
_WATCHDOG = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
mark = sys.argv[1].encode()
groups = set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
for group in groups:
    try:
        os.killpg(group, signal.SIGKILL)
    except OSError:
        pass
for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) == os.getpid():
        continue
    try:
        with open(f"/proc/{entry}/environ", "rb") as environ:
            marked = mark in environ.read().split(b"\0")
        if marked:
            os.kill(int(entry), signal.SIGKILL)
    except OSError:
        pass
"""


def run_mark() -> str:
    """This test run's mark (``NAME=VALUE``), made on first use and put into the environment."""
    value = os.environ.get(RUN_MARK_VARIABLE, "")
    if not value.startswith(f"{os.getpid()}-"):
        # Our own mark, not one inherited from a test run that started this one.
        value = f"{os.getpid()}-{secrets.token_hex(6)}"
        os.environ[RUN_MARK_VARIABLE] = value
    return f"{RUN_MARK_VARIABLE}={value}"


class Watchdog:
    """The one watchdog process of this test run (started on first use)."""

    _process: subprocess.Popen[str] | None = None

    @classmethod
    def start(cls) -> None:
        if cls._process is not None and cls._process.poll() is None:
            return
        cls._process = subprocess.Popen(
            [sys.executable, "-S", "-c", _WATCHDOG, run_mark()],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # Ctrl-C at the terminal is for pytest, not for the watchdog
        )

    @classmethod
    def pid(cls) -> int | None:
        return cls._process.pid if cls._process is not None else None

    @classmethod
    def tell(cls, line: str) -> None:
        cls.start()
        assert cls._process is not None and cls._process.stdin is not None
        with contextlib.suppress(OSError, ValueError):
            cls._process.stdin.write(line + "\n")
            cls._process.stdin.flush()

    @classmethod
    def finish(cls) -> None:
        """Close the pipe: the watchdog kills what is left with the run's mark, then exits."""
        process, cls._process = cls._process, None
        if process is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert process.stdin is not None
            process.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)


_running: dict[int, subprocess.Popen[Any]] = {}


def spawn(argv: list[str], **popen: Any) -> subprocess.Popen[Any]:
    """Start a server (or any child: a daemon, a pass of the CLI) that cannot outlive this test
    run, with ``subprocess.Popen``'s keyword arguments (``stdin``, ``stdout``, ``text``, ``env``,
    ``cwd``, ``preexec_fn``…).

    It leads a new process group (so no ``start_new_session``: it always does; a ``preexec_fn``
    runs in it and must not call ``setsid``), dies with the starting thread
    (``PR_SET_PDEATHSIG``), is registered with the watchdog and with the ``atexit`` hook, and
    carries the run's mark even in an ``env`` of its own; ``stop`` ends it and its group. Its pid
    is the program's own (signals sent to it reach the program).
    """
    if "start_new_session" in popen:
        raise TypeError("spawn always starts a new session")
    mark = run_mark()
    if popen.get("env") is not None:
        name, _, value = mark.partition("=")
        popen["env"] = {**popen["env"], name: value}
    Watchdog.start()
    process: subprocess.Popen[Any] = subprocess.Popen(
        [sys.executable, "-S", "-c", _ORPHAN_GUARD, str(os.getpid()), *argv],
        start_new_session=True,
        **popen,
    )
    _running[process.pid] = process
    Watchdog.tell(f"+{process.pid}")
    return process


def stop(process: subprocess.Popen[Any] | None, *, grace: float = 15.0) -> None:
    """Stop a process ``spawn`` started, and every child it left behind in its group: SIGTERM to
    the group and up to ``grace`` seconds to end, then SIGKILL (``grace=0``: SIGKILL at once, as
    a test that kills what it started means it). A process that has ended already is only
    forgotten, with whatever it left in its group."""
    if process is None:
        return
    if process.poll() is None and grace <= 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    if process.poll() is None:
        # The whole group: Dovecot's master alone waits a second or more for its helpers.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    # Dovecot's imap processes outlive their master for a moment and keep serving open
    # connections; a stopped server must drop them, as a crashed one would.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    if _running.pop(process.pid, None) is not None:
        Watchdog.tell(f"-{process.pid}")


_prctl: Any = None


def guard_fork() -> None:
    """Before forking a child that will not exec (it runs our code in a copy of the test run):
    resolve what ``die_with_parent`` calls, as the child may not load a library safely."""
    global _prctl
    if _prctl is None:
        import ctypes

        _prctl = ctypes.CDLL(None, use_errno=True).prctl
    run_mark()
    Watchdog.start()


def die_with_parent(parent: int) -> None:
    """In a child forked after ``guard_fork``: the kernel SIGKILLs it when the forking thread
    ends (leave at once if it has already). The parent ``watch``es its process group."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(70)


def watch(group: int) -> None:
    """Have the watchdog SIGKILL process group ``group`` should the run end before ``unwatch``."""
    Watchdog.tell(f"+{group}")


def unwatch(group: int) -> None:
    Watchdog.tell(f"-{group}")


@atexit.register
def stop_all() -> None:
    """Stop every process ``spawn`` started that is still registered."""
    for process in list(_running.values()):
        with contextlib.suppress(OSError):
            stop(process)


def marked_processes(mark: str) -> list[tuple[int, str]]:
    """(pid, command line) of every live process other than this one that carries ``mark``."""
    found: list[tuple[int, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as environ:
                if mark.encode() not in environ.read().split(b"\0"):
                    continue
            with open(f"/proc/{entry}/stat") as stat:
                if stat.read().rpartition(")")[2].split()[0] in ("Z", "X"):
                    continue  # already dead, waiting to be reaped
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        found.append((int(entry), command))
    return found


@dataclass
class RadicaleServer:
    """A Radicale instance with one user; ``url`` is the server root."""

    directory: Path
    port: int = field(default_factory=free_port)
    username: str = RADICALE_USER
    password: str = RADICALE_PASSWORD
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}/"

    @property
    def log(self) -> Path:
        return self.directory / "radicale.log"

    def start(self) -> None:
        """Write the configuration (as in SERVERS.md) and start the server."""
        (self.directory / "collections").mkdir(parents=True, exist_ok=True)
        (self.directory / "users").write_text(f"{self.username}:{self.password}\n")
        config = self.directory / "radicale.conf"
        config.write_text(
            f"[server]\nhosts = {LOOPBACK}:{self.port}\n"
            f"[auth]\ntype = htpasswd\nhtpasswd_filename = {self.directory / 'users'}\n"
            "htpasswd_encryption = plain\n"
            "[rights]\ntype = owner_only\n"
            f"[storage]\nfilesystem_folder = {self.directory / 'collections'}\n"
            "[logging]\nlevel = warning\n"
        )
        with self.log.open("ab") as log:
            self.process = spawn(
                [sys.executable, "-m", "radicale", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
            )
        _wait_until_listening(self.port, self.process, self.log)

    def stop(self) -> None:
        stop(self.process)

    def add_user(self, name: str, password: str = RADICALE_PASSWORD) -> tuple[str, str]:
        """A new account with no calendars (Radicale re-reads its user file on every login)."""
        with (self.directory / "users").open("a") as users:
            users.write(f"{name}:{password}\n")
        return name, password


@dataclass
class DovecotServer:
    """A Dovecot instance with one user and Drafts/Sent special-use folders."""

    directory: Path
    uidplus: bool = True
    port: int = field(default_factory=free_port)
    username: str = DOVECOT_USER
    password: str = DOVECOT_PASSWORD
    process: subprocess.Popen[bytes] | None = None
    accounts_used: int = 0

    @property
    def config(self) -> Path:
        return self.directory / "dovecot.conf"

    @property
    def log(self) -> Path:
        return self.directory / "dovecot.log"

    def write_config(self) -> None:
        """The self-contained configuration of SERVERS.md (nothing read from /etc/dovecot)."""
        d = self.directory
        for sub in ("run", "state", "mail"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            # Dovecot refuses to store mail as root: mail belongs to nobody, and its helper
            # processes run as Debian's dovecot users.
            uid, gid, internal, login = 65534, 65534, "dovecot", "dovenull"
            os.chown(d / "mail", uid, gid)
        else:
            # Unprivileged, Dovecot cannot switch users: everything runs as the caller.
            uid, gid = os.geteuid(), os.getegid()
            internal = login = pwd.getpwuid(uid).pw_name
        lines = [f"{self.username}:{{PLAIN}}{self.password}::::::"]
        lines += [
            f"rut{n}@example.se:{{PLAIN}}secret{n}::::::" for n in range(1, SPARE_ACCOUNTS + 1)
        ]
        (d / "passwd").write_text("\n".join(lines) + "\n")
        capability = "" if self.uidplus else f"imap_capability = {CAPABILITIES_WITHOUT_UIDPLUS}\n"
        self.config.write_text(
            f"""instance_name = test-dovecot-{self.port}
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
info_log_path = {d}/dovecot.log
protocols = imap
listen = {LOOPBACK}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {internal}
default_login_user = {login}
{capability}passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {d}/passwd
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={d}/mail/%u
}}
mail_location = maildir:~/Maildir
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Drafts {{
    special_use = \\Drafts
    auto = subscribe
  }}
  mailbox Sent {{
    special_use = \\Sent
    auto = subscribe
  }}
}}
service imap-login {{
  inet_listener imap {{
    address = {LOOPBACK}
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
        )

    def start(self) -> None:
        """Start (or restart, on the same port and mail) the server in the foreground."""
        if not self.config.exists():
            self.write_config()
        with (self.directory / "dovecot.stderr").open("ab") as stderr:
            self.process = spawn(
                [DOVECOT_BINARY, "-F", "-c", str(self.config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        _wait_until_listening(self.port, self.process, self.log)

    def stop(self) -> None:
        stop(self.process)

    def add_user(self) -> tuple[str, str]:
        """An account nobody has used yet, so an empty mailbox. Dovecot re-reads its passwd-file
        only now and then, so the accounts are all written before it starts."""
        self.accounts_used += 1
        if self.accounts_used > SPARE_ACCOUNTS:
            raise RuntimeError(f"more than {SPARE_ACCOUNTS} accounts asked of one Dovecot")
        return f"rut{self.accounts_used}@example.se", f"secret{self.accounts_used}"

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm`` against this instance and return its output."""
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        result = subprocess.run(
            [doveadm, "-c", str(self.config), *args],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout


@pytest.fixture(name="radicale", scope="module")
def radicale_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RadicaleServer]:
    """A running Radicale for the test module (user alice/secret; more with ``add_user``)."""
    try:
        import radicale as _radicale  # noqa: F401
    except ImportError:
        missing("Radicale (pip install radicale)")
    server = RadicaleServer(tmp_path_factory.mktemp("radicale"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def dovecot_directory() -> Path:
    """A fresh directory Dovecot's unprivileged helpers can reach (pytest's own is 0700)."""
    directory = Path(tempfile.mkdtemp(prefix="recruitmail-dovecot-"))
    directory.chmod(0o711)
    return directory


def run_dovecot(uidplus: bool = True) -> Iterator[DovecotServer]:
    """Start a Dovecot for one test and remove it, with its files, afterwards."""
    if not Path(DOVECOT_BINARY).exists():
        missing(f"Dovecot ({DOVECOT_BINARY}, Debian package dovecot-imapd)")
    server = DovecotServer(dovecot_directory(), uidplus=uidplus)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


@pytest.fixture(name="dovecot", scope="module", params=[True, False], ids=["uidplus", "no-uidplus"])
def dovecot_fixture(request: pytest.FixtureRequest) -> Iterator[DovecotServer]:
    """A running Dovecot for the test module, once announcing UIDPLUS and once without it."""
    yield from run_dovecot(uidplus=bool(request.param))
