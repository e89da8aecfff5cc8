"""The command line as an administrator meets it: check, preview, status, close, forget, errors."""

from __future__ import annotations

import gc
import os
import re
import sqlite3
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from recruitmail.daemon.cli import main
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.runner import write_config
from tests.scenario.spec import at

REPO = Path(__file__).resolve().parent.parent
MONDAY = at(date(2026, 12, 7), "09:30")


@pytest.fixture
def setup(tmp_path: Path) -> tuple[IcsMaildirBackend, Path]:
    backend = IcsMaildirBackend(tmp_path)
    backend.put(two_weeks.ANNA_1)
    backend.put(two_weeks.BO_1)
    return backend, write_config(backend, tmp_path)


def run_cli(
    *args: str, env: dict[str, str] | None = None, unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "recruitmail", *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset},
        timeout=120,
    )


def test_check_accepts_the_example_configuration() -> None:
    result = run_cli("--config", str(REPO / "config" / "recruitmail.example.toml"), "check")
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout
    assert re.search(
        r"templates: 8 kinds × 6 languages × 3 samples \(full, sparse, hostile\) render "
        r"cleanly \(\d+\.\d\d s\)",
        result.stdout,
    ), result.stdout


def test_check_fails_a_kind_that_does_not_render_with_hostile_data(
    setup: tuple[IcsMaildirBackend, Path],
) -> None:
    _, config = setup
    overrides = config.parent / "templates" / "en"
    overrides.mkdir(parents=True)
    # Fine with friendly names; a 4,000-character name makes the subject block blow up.
    (overrides / "thank_you.txt.j2").write_text(
        '{% extends "_layout.txt.j2" %}\n'
        "{% block subject %}Thanks {{ candidate.full_name * 100 }}{% endblock %}\n",
        encoding="utf-8",
    )
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[service]", f'[service]\ntemplates_dir = "{config.parent / "templates"}"'
        ),
        encoding="utf-8",
    )
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 2
    assert "en/thank_you.txt.j2" in result.stderr and "hostile sample" in result.stderr
    assert "sparse sample" not in result.stderr and "full sample" not in result.stderr
    assert re.search(r"\d+\.\d\d s", result.stderr)


def test_check_names_the_line_of_a_toml_syntax_error(tmp_path: Path) -> None:
    config = tmp_path / "broken.toml"
    config.write_text('[company]\nname = "X"\ndomains = ["x.se"\n', encoding="utf-8")
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 2
    assert str(config) in result.stderr and "line" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_names_the_key_and_the_fix(setup: tuple[IcsMaildirBackend, Path]) -> None:
    _, config = setup
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace('time_zone = "Europe/Stockholm"', 'time_zone = "Europe/Stokholm"').replace(
            'language = "sv"', 'language = "sv"\nsignatur = "typo"'
        ),
        encoding="utf-8",
    )
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 2
    assert "company.time_zone" in result.stderr and "IANA" in result.stderr
    assert "mailboxes[0].signatur" in result.stderr and "unknown key" in result.stderr


def test_check_names_a_bad_provider_option(setup: tuple[IcsMaildirBackend, Path]) -> None:
    _, config = setup
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'type = "maildir"', 'type = "maildir"\npaht = "x"'
        ),
        encoding="utf-8",
    )
    result = run_cli("--config", str(config), "check")
    assert result.returncode == 2
    assert "mailboxes[0].sink" in result.stderr and "paht" in result.stderr


def test_a_broken_template_fails_check_and_start_up_with_file_and_line(
    setup: tuple[IcsMaildirBackend, Path],
) -> None:
    backend, config = setup
    overrides = config.parent / "templates" / "sv"
    overrides.mkdir(parents=True)
    (overrides / "welcome.txt.j2").write_text(
        "{% block subject %}Hej{% endblock %}\nHej {{ candidate.first_name }\n", encoding="utf-8"
    )
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[service]", f'[service]\ntemplates_dir = "{config.parent / "templates"}"'
        ),
        encoding="utf-8",
    )
    for command in (("check",), ("once", "--now", MONDAY.isoformat())):
        result = run_cli("--config", str(config), *command)
        assert result.returncode == 2, command
        assert "welcome.txt.j2" in result.stderr and ":2" in result.stderr
    assert backend.messages() == []


def test_a_template_broken_after_a_remembered_check_refuses_once_before_any_draft(
    setup: tuple[IcsMaildirBackend, Path],
) -> None:
    backend, config = setup
    overrides = config.parent / "templates" / "en"
    overrides.mkdir(parents=True)
    thanks = overrides / "thank_you.txt.j2"
    thanks.write_text(
        (REPO / "templates" / "en" / "thank_you.txt.j2").read_text(encoding="utf-8"),
        encoding="utf-8",
    )
    settle(thanks)
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            "[service]", f'[service]\ntemplates_dir = "{config.parent / "templates"}"'
        ),
        encoding="utf-8",
    )
    # The first pass makes the state directory; the second finds nothing to do and remembers
    # that these templates passed the start-up check.
    for _ in range(2):
        assert main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    assert list((config.parent / "state" / "template-cache").glob("checked-*"))
    assert len(backend.messages()) == 2

    # The English thank-you breaks, and Bo's (Wed 9 Dec, 13:00, in English) becomes due.
    thanks.write_text(
        "{% block subject %}Thanks{% endblock %}\nThanks {{ candidate.first_name }\n",
        encoding="utf-8",
    )
    settle(thanks)
    after_bo = at(date(2026, 12, 9), "15:00").isoformat()
    result = run_cli("--config", str(config), "once", "--now", after_bo)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "en/thank_you.txt.j2" in result.stderr and ":2" in result.stderr
    assert len(backend.messages()) == 2


def settle(path: Path) -> None:
    """Date the file's last edit a minute back, as a template edited a while ago is."""
    earlier = path.stat().st_mtime - 60
    os.utime(path, (earlier, earlier))


def test_preview_renders_and_writes_nothing_anywhere(setup: tuple[IcsMaildirBackend, Path]) -> None:
    backend, config = setup
    html_dir = config.parent / "html"
    result = run_cli("--config", str(config), "preview", "--now", MONDAY.isoformat())
    assert result.returncode == 0, result.stderr
    assert "welcome" in result.stdout and "Hej Anna!" in result.stdout
    assert "Welcome" in result.stdout  # Bo is written to in English
    assert backend.messages() == []
    assert not (config.parent / "state" / "recruitmail.sqlite").exists()
    assert not html_dir.exists()


def test_once_then_status_then_forget(setup: tuple[IcsMaildirBackend, Path]) -> None:
    backend, config = setup
    assert main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    assert len(backend.messages()) == 2
    database = config.parent / "state" / "recruitmail.sqlite"
    assert stat.S_IMODE(database.stat().st_mode) == 0o600

    status = run_cli("--config", str(config), "status", "--offline")
    assert (
        two_weeks.ANNA in status.stdout
        and "welcome" in status.stdout
        and "drafted" in status.stdout
    )

    forget = run_cli("--config", str(config), "forget", two_weeks.ANNA.upper())
    assert forget.returncode == 0, forget.stderr
    status = run_cli("--config", str(config), "status", "--offline")
    assert two_weeks.ANNA not in status.stdout and two_weeks.BO in status.stdout
    with sqlite3.connect(database) as db:
        dump = "\n".join(db.iterdump())
    assert two_weeks.ANNA not in dump and "Svensson" not in dump


def test_once_as_its_own_process_closes_the_state_and_says_everything_before_it_ends(
    setup: tuple[IcsMaildirBackend, Path],
) -> None:
    backend, config = setup
    state = config.parent / "state"
    for drafted in (2, 0):
        # Output buffered as it is into a pipe or a journal, not line by line.
        result = run_cli(
            "--config",
            str(config),
            "once",
            "--now",
            MONDAY.isoformat(),
            unset=("PYTHONUNBUFFERED",),
        )
        assert result.returncode == 0, result.stderr
        # The last line the process prints reaches its reader (nothing is cut off at exit)...
        assert result.stdout.splitlines()[-1].endswith(f": {drafted} drafted"), result.stdout
        # ...and the state was closed, not left to the exit: SQLite folds its write-ahead log
        # into the database and removes it when the last connection closes.
        assert (state / "recruitmail.sqlite").exists()
        assert not (state / "recruitmail.sqlite-wal").exists()
        assert len(backend.messages()) == 2


def test_main_called_with_arguments_leaves_the_callers_garbage_collector_alone(
    setup: tuple[IcsMaildirBackend, Path],
) -> None:
    # The demo, the tests and the benchmarks call main() in their own long-lived process: only
    # the command line of a process of its own (no arguments given) spares the exit its work.
    _, config = setup
    frozen = gc.get_freeze_count()
    assert main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    assert gc.get_freeze_count() == frozen


def test_a_closed_process_gets_no_status_update(setup: tuple[IcsMaildirBackend, Path]) -> None:
    backend, config = setup
    for day, clock in ((7, "09:30"), (8, "12:30")):
        assert (
            main(
                [
                    "--config",
                    str(config),
                    "once",
                    "--now",
                    at(date(2026, 12, day), clock).isoformat(),
                ]
            )
            == 0
        )
    assert run_cli("--config", str(config), "close", two_weeks.ANNA).returncode == 0
    before = len(backend.messages())
    # Five working days after Anna's interview on Tue 8 Dec: Tue 15 Dec.
    assert (
        main(
            ["--config", str(config), "once", "--now", at(date(2026, 12, 15), "09:30").isoformat()]
        )
        == 0
    )
    new = backend.messages()[before:]
    assert all(two_weeks.ANNA not in str(m["To"]) for m in new)


def test_environment_overrides_the_file(setup: tuple[IcsMaildirBackend, Path]) -> None:
    _, config = setup
    result = run_cli(
        "--config", str(config), "check", env={"RECRUITMAIL_SERVICE__INTERVAL_SECONDS": "3"}
    )
    assert result.returncode == 2 and "interval_seconds" in result.stderr


def test_a_missing_configuration_says_where_to_start(tmp_path: Path) -> None:
    result = run_cli("check", env={"RECRUITMAIL_CONFIG": str(tmp_path / "none.toml")})
    assert result.returncode == 2
    assert "recruitmail.example.toml" in result.stderr


def test_version_and_help() -> None:
    assert run_cli("--version").stdout.startswith("recruitmail ")
    assert "preview" in run_cli("--help").stdout
