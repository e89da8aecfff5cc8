"""Start-up: what a command loads before it works, and the compiled-template cache.

Speed itself is shown by ``bench/startup.py``; these tests check the behaviour behind it: which
libraries a fresh ``recruitmail`` process imports for a command, and that compiled templates
kept on disk are reused, private, safe to share, and never stale when a template is edited.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from recruitmail.contracts.errors import ConfigError
from recruitmail.daemon.cli import main
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.runtime import template_cache_dir
from recruitmail.daemon.samples import sample_context
from recruitmail.daemon.settings import load_settings
from tests.scenario import two_weeks
from tests.scenario.default_backend import IcsMaildirBackend
from tests.scenario.runner import write_config
from tests.scenario.spec import at
from tests.servers import spawn, stop

REPO = Path(__file__).resolve().parent.parent
MONDAY = at(date(2026, 12, 7), "09:30")

HEAVY = (
    "httpx",
    "googleapiclient",
    "msal",
    "recurring_ical_events",
    "holidays",
    "babel",
    "jinja2",
    "icalendar",
    "pydantic_settings",
)
"""Libraries that each cost tens to hundreds of milliseconds to import."""

# Runs the command line as ``recruitmail ARGS`` would, then writes its exit code and every module
# the process imported into the file named by the first argument.
PROBE = """
import json, runpy, sys
report, args = sys.argv[1], json.loads(sys.argv[2])
sys.argv = ["recruitmail", *args]
try:
    runpy.run_module("recruitmail", run_name="__main__")
    code = 0
except SystemExit as exit:
    code = exit.code
with open(report, "w") as out:
    json.dump({"code": code, "modules": sorted(sys.modules)}, out)
"""


def imported_by(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[int, set[str], str]:
    """Run ``recruitmail ARGS`` in a fresh interpreter: (exit code, modules imported, output)."""
    report = tmp_path / f"imports-{len(list(tmp_path.glob('imports-*')))}.json"
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("RECRUITMAIL_") and k != "CACHE_DIRECTORY"
    }
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), json.dumps(args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**clean, **(env or {})},
        timeout=120,
    )
    assert report.exists(), result.stderr
    found = json.loads(report.read_text())
    return found["code"], set(found["modules"]), result.stdout + result.stderr


def top_level(modules: set[str]) -> set[str]:
    return {name.partition(".")[0] for name in modules}


@pytest.fixture
def setup(tmp_path: Path) -> tuple[IcsMaildirBackend, Path]:
    backend = IcsMaildirBackend(tmp_path)
    backend.put(two_weeks.ANNA_1)
    return backend, write_config(backend, tmp_path)


# --- what a command imports -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected_code", "shows"),
    [
        (("--help",), 0, "preview"),
        (("--version",), 0, "recruitmail "),
        (("once", "--help"), 0, "--now"),
        (("frobnicate",), 2, "invalid choice"),
        (("once", "--no-such-option"), 2, "unrecognized arguments"),
    ],
)
def test_help_version_and_argument_errors_load_no_heavy_library(
    tmp_path: Path, args: tuple[str, ...], expected_code: int, shows: str
) -> None:
    code, modules, output = imported_by(tmp_path, *args)
    assert code == expected_code, output
    assert shows in output
    assert top_level(modules) & set(HEAVY) == set()
    # Not even our own core: no settings model, no state, no connector.
    assert {"pydantic", "sqlite3"} & top_level(modules) == set()
    assert not any(m.startswith("recruitmail.connectors") for m in modules)


def test_status_loads_neither_the_renderer_nor_the_calendar_source(
    setup: tuple[IcsMaildirBackend, Path], tmp_path: Path
) -> None:
    backend, config = setup
    assert main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    assert len(backend.messages()) == 1

    # status asks the mailbox what became of the welcome draft: it opens the sink only.
    code, modules, output = imported_by(tmp_path, "--config", str(config), "status")
    assert code == 0, output
    assert two_weeks.ANNA in output and "welcome" in output
    assert "recruitmail.connectors.maildir" in modules
    assert "recruitmail.connectors.ics" not in modules
    assert top_level(modules) & set(HEAVY) == set()
    assert "recruitmail.daemon.render" not in modules
    assert "recruitmail.daemon.executor" not in modules


def test_a_pass_after_the_first_does_without_the_holidays_package(
    setup: tuple[IcsMaildirBackend, Path], tmp_path: Path
) -> None:
    backend, config = setup
    # The first pass makes the state directory (and drafts the welcome); the next one works
    # out this year's days off and keeps them beside the compiled templates.
    assert main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    assert len(backend.messages()) == 1
    code, modules, output = imported_by(
        tmp_path, "--config", str(config), "once", "--now", MONDAY.isoformat()
    )
    assert code == 0, output
    assert "holidays" in top_level(modules)
    cache = load_settings(config).service.state_dir / "template-cache"
    assert list(cache.glob("days-off-SE-*-2026-*.json"))

    # The process after it reads them back: the same plan, without the package.
    code, modules, output = imported_by(
        tmp_path, "--config", str(config), "once", "--now", MONDAY.isoformat()
    )
    assert code == 0, output
    assert "holidays" not in top_level(modules)
    assert "0 drafted" in output
    assert len(backend.messages()) == 1


def test_an_idle_pass_loads_no_template_and_a_busy_one_renders_as_before(
    setup: tuple[IcsMaildirBackend, Path], tmp_path: Path
) -> None:
    backend, config = setup
    monday = MONDAY.isoformat()
    # The first pass makes the state directory (and drafts the welcome); the second finds
    # nothing to do and remembers that the templates passed the start-up check.
    for _ in range(2):
        assert main(["--config", str(config), "once", "--now", monday]) == 0
    cache = load_settings(config).service.state_dir / "template-cache"
    assert list(cache.glob("checked-*"))

    # An idle pass after it renders nothing, so it never needs the template engine.
    code, modules, output = imported_by(tmp_path, "--config", str(config), "once", "--now", monday)
    assert code == 0, output
    assert "0 drafted" in output
    assert "jinja2" not in top_level(modules)

    # A pass with a mail due (Anna's thank-you, after her interview on Tue 8 Dec at 10:00)
    # loads the templates and drafts it.
    after_anna = at(date(2026, 12, 8), "12:00").isoformat()
    code, modules, output = imported_by(
        tmp_path, "--config", str(config), "once", "--now", after_anna
    )
    assert code == 0, output
    assert "1 drafted" in output
    assert "jinja2" in top_level(modules)
    assert len(backend.messages()) == 2
    assert "Tack" in str(backend.messages()[-1]["Subject"])


def test_pydantic_settings_is_loaded_only_for_environment_overrides(
    setup: tuple[IcsMaildirBackend, Path], tmp_path: Path
) -> None:
    _, config = setup
    code, modules, output = imported_by(tmp_path, "--config", str(config), "status", "--offline")
    assert code == 0, output
    assert "pydantic_settings" not in modules

    # An override still wins over the file (and is still checked like the file).
    code, modules, output = imported_by(
        tmp_path,
        "--config",
        str(config),
        "status",
        "--offline",
        env={"RECRUITMAIL_SERVICE__INTERVAL_SECONDS": "3"},
    )
    assert code == 2 and "interval_seconds" in output
    assert "pydantic_settings" in modules


def test_an_environment_override_merges_into_its_section(
    setup: tuple[IcsMaildirBackend, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, config = setup
    from_file = load_settings(config)
    monkeypatch.setenv("RECRUITMAIL_SERVICE__LOG_LEVEL", "DEBUG")
    overridden = load_settings(config)
    assert from_file.service.log_level != "DEBUG"
    assert overridden.service.log_level == "DEBUG"
    # The rest of [service] and every other section still come from the file.
    assert overridden.service.state_dir == from_file.service.state_dir
    assert overridden.company == from_file.company
    assert overridden.mailboxes == from_file.mailboxes


# --- the compiled-template cache ----------------------------------------------------------------


def entries(cache: Path) -> dict[str, tuple[int, int]]:
    """Each cache file with its inode and modification time: a rewritten entry changes both."""
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in cache.iterdir()
        if p.name.endswith(".cache")
    }


def subject_of(templates: Path, cache: Path) -> str:
    """The Swedish welcome's subject, rendered by a new renderer (nothing compiled in memory)."""
    context = sample_context("welcome", "sv")
    return Renderer(templates, cache).render("welcome", "sv", context).subject


def test_an_edited_template_is_compiled_again_and_the_others_come_from_the_cache(
    tmp_path: Path,
) -> None:
    templates = tmp_path / "templates"
    (templates / "sv").mkdir(parents=True)
    welcome = templates / "sv" / "welcome.txt.j2"
    welcome.write_text("{% block subject %}Första versionen{% endblock %}\nHej!\n")
    cache = tmp_path / "cache"

    assert subject_of(templates, cache) == "Första versionen"
    filled = entries(cache)
    assert filled, "rendering stored no compiled template"

    # A new process (here: a new renderer) finds every template compiled: nothing is rewritten.
    assert subject_of(templates, cache) == "Första versionen"
    assert entries(cache) == filled

    welcome.write_text("{% block subject %}Andra versionen{% endblock %}\nHej!\n")
    assert subject_of(templates, cache) == "Andra versionen"
    after = entries(cache)
    assert set(after) == set(filled)
    rewritten = [name for name in after if after[name] != filled[name]]
    assert len(rewritten) == 1, rewritten


def test_cached_templates_still_escape_html_and_pass_every_check(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert Renderer(None, cache).check() == []
    filled = entries(cache)
    # From the cache: the same checks, hostile sample included (markup escaped in HTML only).
    assert Renderer(None, cache).check() == []
    assert entries(cache) == filled


def settle(path: Path) -> None:
    """Date the file's last edit a minute back, as a template edited a while ago is."""
    earlier = path.stat().st_mtime - 60
    os.utime(path, (earlier, earlier))


def test_a_clean_start_up_check_is_remembered_until_a_template_changes(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "sv").mkdir(parents=True)
    welcome = templates / "sv" / "welcome.txt.j2"
    good = "{% block subject %}Välkommen{% endblock %}\nHej!\n"
    welcome.write_text(good)
    settle(welcome)
    cache = tmp_path / "cache"

    assert Renderer(templates, cache).check_unless_unchanged(("full",)) == []
    remembered = sorted(cache.glob("checked-*"))
    assert len(remembered) == 1
    assert Renderer(templates, cache).check_unless_unchanged(("full",)) == []
    assert sorted(cache.glob("checked-*")) == remembered

    # An edit is checked again, and a broken template is refused as before.
    welcome.write_text("{% block subject %}Välkommen{% endblock %}\n{{ no_such_name }}\n")
    problems = Renderer(templates, cache).check_unless_unchanged(("full",))
    assert problems and all("sv/welcome.txt.j2" in problem for problem in problems)
    assert Renderer(templates, cache).check_unless_unchanged(("full",)) == problems

    # Another sample set is another check.
    welcome.write_text(good)
    settle(welcome)
    assert Renderer(templates, cache).check_unless_unchanged(("full", "sparse")) == []
    assert len(list(cache.glob("checked-*"))) == 1
    assert sorted(cache.glob("checked-*")) != remembered


def test_an_edit_of_the_same_size_is_checked_again(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "sv").mkdir(parents=True)
    welcome = templates / "sv" / "welcome.txt.j2"
    welcome.write_text("{% block subject %}Välkommen{% endblock %}\n{{ company.name }}\n")
    settle(welcome)
    cache = tmp_path / "cache"
    assert Renderer(templates, cache).check_unless_unchanged(("full",)) == []
    assert list(cache.glob("checked-*"))

    # The same number of bytes, a name no sample has: the file's times tell the edit apart.
    welcome.write_text("{% block subject %}Välkommen{% endblock %}\n{{ company.nmae }}\n")
    settle(welcome)
    problems = Renderer(templates, cache).check_unless_unchanged(("full",))
    assert problems and all("sv/welcome.txt.j2" in problem for problem in problems)


def test_a_check_of_a_template_edited_a_moment_ago_is_not_remembered_yet(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "sv").mkdir(parents=True)
    welcome = templates / "sv" / "welcome.txt.j2"
    welcome.write_text("{% block subject %}Välkommen{% endblock %}\nHej!\n")
    cache = tmp_path / "cache"

    # Another edit of the same size could follow within one tick of the file system's clock
    # and leave the same metadata: the check is done, but not remembered while that can happen.
    assert Renderer(templates, cache).check_unless_unchanged(("full",)) == []
    assert not list(cache.glob("checked-*"))
    settle(welcome)
    assert Renderer(templates, cache).check_unless_unchanged(("full",)) == []
    assert list(cache.glob("checked-*"))


def test_templates_that_passed_before_are_in_memory_as_if_checked(tmp_path: Path) -> None:
    templates = tmp_path / "templates"
    (templates / "sv").mkdir(parents=True)
    thanks = templates / "sv" / "thank_you.txt.j2"
    thanks.write_text("{% block subject %}Tack för i dag{% endblock %}\nTack!\n")
    cache = tmp_path / "cache"
    assert Renderer(templates, cache).check_unless_unchanged(("full",)) == []

    # A daemon starts on the remembered check and renders no thank-you yet; then the file is
    # edited in place. Until a reload, the daemon goes on with what it started with.
    renderer = Renderer(templates, cache)
    assert renderer.check_unless_unchanged(("full",)) == []
    thanks.write_text("{% block subject %}Ändrad{% endblock %}\nTack!\n")
    context = sample_context("thank_you", "sv")
    assert renderer.render("thank_you", "sv", context).subject == "Tack för i dag"
    assert Renderer(templates, cache).render("thank_you", "sv", context).subject == "Ändrad"


def test_a_remembered_check_left_unloaded_is_verified_before_the_first_mail(
    tmp_path: Path,
) -> None:
    templates = tmp_path / "templates"
    (templates / "sv").mkdir(parents=True)
    thanks = templates / "sv" / "thank_you.txt.j2"

    def edit(text: str) -> None:
        thanks.write_text("{% block subject %}" + text + "{% endblock %}\nTack!\n")
        settle(thanks)

    def remembered() -> Renderer:
        """A renderer started as an idle ``once`` starts: on a remembered check, nothing loaded."""
        assert Renderer(templates, cache).check_unless_unchanged(("full",)) == []
        renderer = Renderer(templates, cache)
        assert renderer.check_unless_unchanged(("full",), load=False) == []
        return renderer

    cache = tmp_path / "cache"
    context = sample_context("thank_you", "sv")
    edit("Tack för i dag")

    # Unchanged since the check: the first mail renders what was checked, and from then on
    # every template is in memory, as after a start-up that loaded them.
    renderer = remembered()
    assert renderer.render("thank_you", "sv", context).subject == "Tack för i dag"
    edit("Tack igen")
    assert renderer.render("thank_you", "sv", context).subject == "Tack för i dag"

    # Edited between the start-up and the first mail: checked again before it is used.
    renderer = remembered()
    edit("Tack en gång till")
    assert renderer.render("thank_you", "sv", context).subject == "Tack en gång till"

    # Broken in between: this mail and every later one are refused, naming the file.
    renderer = remembered()
    edit("Tack {{ no_such_name }}")
    with pytest.raises(ConfigError, match="sv/thank_you.txt.j2"):
        renderer.render("thank_you", "sv", context)
    with pytest.raises(ConfigError, match="sv/thank_you.txt.j2"):
        renderer.render("welcome", "sv", sample_context("welcome", "sv"))


def test_the_cache_directory_is_private(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    subject_of(tmp_path, cache)
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    assert all(stat.S_IMODE((cache / name).stat().st_mode) == 0o600 for name in entries(cache))

    # A directory that others could write into is made private before it is used.
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    subject_of(tmp_path, loose)
    assert stat.S_IMODE(loose.stat().st_mode) == 0o700
    assert entries(loose)


def test_a_cache_that_cannot_be_used_costs_no_mail(tmp_path: Path) -> None:
    expected = subject_of(tmp_path, tmp_path / "cache")

    not_a_directory = tmp_path / "file"
    not_a_directory.write_text("")
    assert subject_of(tmp_path, not_a_directory) == expected

    # The cache is never where a directory would have to be made first (e.g. a state
    # directory that does not exist yet).
    assert subject_of(tmp_path, tmp_path / "missing" / "cache") == expected
    assert not (tmp_path / "missing").exists()

    # Damaged entries are compiled again and replaced.
    cache = tmp_path / "cache"
    for name in entries(cache):
        (cache / name).write_bytes(b"\x00garbage")
    assert subject_of(tmp_path, cache) == expected
    assert all((cache / name).read_bytes() != b"\x00garbage" for name in entries(cache))


def test_two_processes_filling_the_cache_at_once_leave_it_whole(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    render_all = (
        "import sys\n"
        "from pathlib import Path\n"
        "from recruitmail.daemon.render import Renderer\n"
        "problems = Renderer(None, Path(sys.argv[1])).check(samples=('full',))\n"
        "print(problems)\n"
        "sys.exit(1 if problems else 0)\n"
    )
    children = [
        spawn(
            [sys.executable, "-c", render_all, str(cache)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            cwd=REPO,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            output, _ = child.communicate(timeout=120)
            assert child.returncode == 0, output.decode(errors="replace")
    finally:
        for child in children:
            stop(child)
    filled = entries(cache)
    assert filled
    assert not [p for p in cache.iterdir() if p.name.endswith(".tmp")]
    # Every entry is whole: a third renderer reads them all without compiling anything again.
    assert Renderer(None, cache).check(samples=("full",)) == []
    assert entries(cache) == filled


def test_once_keeps_compiled_templates_in_the_state_directory_or_systemds_cache(
    setup: tuple[IcsMaildirBackend, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, config = setup
    settings = load_settings(config)
    assert template_cache_dir(settings) == settings.service.state_dir / "template-cache"

    assert main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    # The first pass made the state directory; the next one keeps compiled templates in it.
    assert main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    in_state = settings.service.state_dir / "template-cache"
    assert entries(in_state)
    assert list(in_state.glob("checked-*")), "the clean start-up check was not remembered"
    assert stat.S_IMODE(in_state.stat().st_mode) == 0o700

    # Under systemd's CacheDirectory= (which may list several directories: the first is ours).
    systemd = tmp_path / "var-cache"
    systemd.mkdir()
    monkeypatch.setenv("CACHE_DIRECTORY", f"{systemd}:{tmp_path / 'other'}")
    assert template_cache_dir(settings) == systemd / "templates"
    assert main(["--config", str(config), "once", "--now", MONDAY.isoformat()]) == 0
    assert entries(systemd / "templates")
