"""scripts/install.sh and uninstall.sh, run into a staging root with a freshly built wheel."""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import missing

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "/opt/recruitmail"

# What the wheel is built from: the files pyproject.toml packages, copied so that the build never
# writes into the working tree.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "recruitmail", "daemon", "connectors")
SOURCES += ("templates", "config")

# Our own project, and the installer's own tools, must come from the new environment.
NOT_SHARED = ("recruitmail", "recruitmail-", "__editable__", "pip", "setuptools", "wheel")
NOT_SHARED += ("_distutils_hack", "pkg_resources", "__pycache__")
NOT_SHARED += ("daemon", "python_daemon")  # the test beside python-daemon installs its own copy


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import build  # noqa: F401
    except ImportError:
        missing("the build package (python -m build)")
    if not (ROOT / "daemon" / "cli.py").exists():
        pytest.skip("daemon/cli.py (the recruitmail command) is not written yet")
    source = tmp_path_factory.mktemp("source")
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif path.exists():
            shutil.copy2(path, source / name)
    out = tmp_path_factory.mktemp("dist")
    # No isolation: the build tools come from this environment instead of a registry.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check"]
        + ["--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (built,) = out.glob("recruitmail-*.whl")
    return built


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment in which pip reaches no registry: dependencies come from this test's venv.

    The fresh virtual environment sees the already installed dependencies through PYTHONPATH (a
    folder of links to them), never recruitmail itself, so what runs is the wheel's own code.
    """
    shared = tmp_path_factory.mktemp("dependencies")
    site = Path(sysconfig.get_paths()["purelib"])
    for entry in site.iterdir():
        if entry.name.startswith(NOT_SHARED) or entry.suffix == ".pth":
            continue
        (shared / entry.name).symlink_to(entry)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "VIRTUAL_ENV"))}
    env.update(PYTHONPATH=str(shared), PIP_NO_INDEX="1", PIP_NO_CACHE_DIR="1")
    return env


@pytest.fixture
def staging(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "root"
    root.mkdir()
    yield root


def run_script(
    name: str, staging: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(ROOT / "scripts" / name), *args],
        env={**env, "DESTDIR": str(staging), "PREFIX": PREFIX, "PYTHON": sys.executable},
        cwd=staging,
        capture_output=True,
        text=True,
        timeout=600,
        stdin=subprocess.DEVNULL,
    )


def test_install_then_uninstall_in_a_staging_root(
    wheel: Path, offline_env: dict[str, str], staging: Path
) -> None:
    installed = run_script("install.sh", staging, offline_env, "--wheel", str(wheel))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "systemd-creds encrypt" in installed.stdout
    assert "recruitmail check --online" in installed.stdout

    venv = staging / PREFIX.lstrip("/")
    program = venv / "bin" / "recruitmail"
    helped = subprocess.run(
        [str(program), "--help"],
        env=offline_env,
        cwd=staging,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert helped.returncode == 0, helped.stderr
    assert "run" in helped.stdout

    # The code that runs is the wheel's, inside the staging root, not the working tree.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import recruitmail.daemon as d; print(d.__file__)"],
        env=offline_env,
        cwd=staging,  # outside the working tree, whose daemon/ would otherwise come first
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr

    unit = staging / "etc/systemd/system/recruitmail.service"
    assert f"ExecStart={PREFIX}/bin/recruitmail run --config" in unit.read_text()
    credentials = staging / "etc/recruitmail/credentials"
    assert credentials.is_dir() and credentials.stat().st_mode & 0o777 == 0o700

    uninstalled = run_script("uninstall.sh", staging, offline_env)
    assert uninstalled.returncode == 0, uninstalled.stderr
    assert not venv.exists()
    assert not unit.exists()
    assert credentials.is_dir(), "configuration and credentials are kept without --purge"

    purged = run_script("uninstall.sh", staging, offline_env, "--purge")
    assert purged.returncode == 0, purged.stderr
    assert not (staging / "etc/recruitmail").exists()


def test_reinstall_keeps_the_administrators_configuration(
    wheel: Path, offline_env: dict[str, str], staging: Path
) -> None:
    config = staging / "etc/recruitmail/recruitmail.toml"
    config.parent.mkdir(parents=True)
    config.write_text("# edited by the administrator\n")

    for _ in range(2):  # an installation, then an upgrade over it
        result = run_script("install.sh", staging, offline_env, "--wheel", str(wheel))
        assert result.returncode == 0, result.stdout + result.stderr

    assert config.read_text() == "# edited by the administrator\n"
    assert "keeping the existing" in result.stdout


EMPTY_CALENDAR = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//recruitmail tests//EN\r\nEND:VCALENDAR\r\n"
)


def test_the_installed_wheel_checks_and_runs_the_example_configuration(
    wheel: Path, offline_env: dict[str, str], staging: Path
) -> None:
    example = ROOT / "config" / "recruitmail.example.toml"
    if not example.exists():
        pytest.skip("config/recruitmail.example.toml is not written yet")
    result = run_script("install.sh", staging, offline_env, "--wheel", str(wheel))
    assert result.returncode == 0, result.stdout + result.stderr
    shipped = staging / PREFIX.lstrip("/") / "share/recruitmail/config" / example.name
    placed = staging / "etc/recruitmail/recruitmail.toml"
    assert shipped.exists(), "the wheel carries the example configuration"
    assert placed.read_text() == shipped.read_text()
    assert placed.stat().st_mode & 0o777 == 0o644

    # The example keeps its calendar and drafts in the state directory; point that at a temporary
    # one, as an administrator's edit would, and run the installed program the way the unit does.
    state = staging / "state"
    (state / "maildir").mkdir(parents=True)
    (state / "lisa-calendar.ics").write_text(EMPTY_CALENDAR)
    config = staging / "recruitmail.toml"
    config.write_text(placed.read_text().replace("/var/lib/recruitmail", str(state)))
    program = str(staging / PREFIX.lstrip("/") / "bin" / "recruitmail")
    for command in ("check", "once"):
        result = subprocess.run(
            [program, command, "--config", str(config)],
            env=offline_env,
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, f"recruitmail {command}: {result.stdout}{result.stderr}"
    assert (state / "recruitmail.sqlite").exists()


def test_uninstall_refuses_a_prefix_that_is_not_ours(
    offline_env: dict[str, str], staging: Path
) -> None:
    stranger = staging / PREFIX.lstrip("/")
    stranger.mkdir(parents=True)
    (stranger / "precious.txt").write_text("not ours")
    result = run_script("uninstall.sh", staging, offline_env)
    assert result.returncode != 0
    assert (stranger / "precious.txt").exists()


def test_install_without_a_wheel_says_how_to_build_one(
    offline_env: dict[str, str], staging: Path, tmp_path: Path
) -> None:
    result = run_script("install.sh", staging, offline_env, "--wheel", str(tmp_path / "nope.whl"))
    assert result.returncode == 1
    assert "no such wheel" in result.stderr
    assert not (staging / PREFIX.lstrip("/")).exists()


def test_the_wheel_owns_one_import_name_and_installs_beside_python_daemon(
    wheel: Path, offline_env: dict[str, str], tmp_path: Path
) -> None:
    """``python-daemon`` owns the import name ``daemon``; recruitmail owns only ``recruitmail``."""
    try:
        other = importlib.metadata.distribution("python-daemon")
    except importlib.metadata.PackageNotFoundError:
        missing("python-daemon (the dev extra installs it)")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
    )
    # python-daemon first, as its own wheel would lay it out: its files and its dist-info.
    for file in other.files or []:
        source = Path(str(other.locate_file(file)))
        if source.suffix == ".pyc" or not source.is_file():
            continue
        target = site / file
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    theirs = (site / "daemon" / "__init__.py").read_bytes()

    installed = subprocess.run(
        [python, "-m", "pip", "install", "--no-deps", str(wheel)],
        env=offline_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (site / "daemon" / "__init__.py").read_bytes() == theirs, "python-daemon was overwritten"

    both = subprocess.run(
        [
            python,
            "-c",
            "import daemon, recruitmail.daemon.cli as cli; "
            "print(daemon.DaemonContext.__module__, cli.__file__)",
        ],
        env=offline_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert both.returncode == 0, both.stderr
    theirs_module, ours = both.stdout.split()
    assert theirs_module == "daemon.daemon"
    assert Path(ours).is_relative_to(site / "recruitmail")

    shown = subprocess.run(
        [python, "-m", "pip", "show", "-f", "recruitmail"],
        env=offline_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    files = shown.stdout.split("Files:", 1)[1].split()
    top = {Path(name).parts[0] for name in files if not name.startswith("..")}
    top = {name for name in top if not name.endswith((".dist-info", ".data"))}
    assert top == {"recruitmail"}, f"top-level entries besides recruitmail: {sorted(top)}"
