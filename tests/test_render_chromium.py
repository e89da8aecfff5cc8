"""Every HTML part, opened in a real browser engine (headless Chromium): what the candidate sees."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from recruitmail.contracts.models import MailKind
from recruitmail.daemon.render import Renderer
from recruitmail.daemon.samples import sample_context
from tests.template_checks import glitches, visible_text

pytestmark = pytest.mark.servers

CASES = [
    (kind.value, language, sparse)
    for kind in MailKind
    for language in ("sv", "en")
    for sparse in (False, True)
]
# Flags that keep Chromium from reaching out to anything: the pages are local files.
QUIET = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed, and CI=true requires the browser tests to run")
    pytest.skip(
        "chromium is not installed (Debian package: chromium); browser rendering not checked"
    )


@dataclass(frozen=True)
class Shown:
    """What Chromium made of one HTML file."""

    exit_code: int
    dom: str
    png: bytes


def _show(browser: str, page: Path, work: Path) -> Shown:
    # One launch does both: the DOM goes to stdout, the screenshot to a file.
    shot = work / "shot.png"
    run = subprocess.run(
        [
            browser,
            *QUIET,
            f"--user-data-dir={work / 'profile'}",
            "--window-size=800,1400",
            f"--screenshot={shot}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=120,
    )
    png = shot.read_bytes() if shot.exists() else b""
    return Shown(run.returncode, run.stdout.decode("utf-8"), png)


@pytest.fixture(scope="module")
def shown(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str, bool], Shown]:
    browser = _chromium()
    renderer = Renderer(None)
    root = tmp_path_factory.mktemp("chromium")
    jobs = {}
    for kind, language, sparse in CASES:
        work = root / f"{language}-{kind}-{'sparse' if sparse else 'full'}"
        work.mkdir()
        page = work / "draft.html"
        html = renderer.render(kind, language, sample_context(kind, language, sparse=sparse)).html
        page.write_text(html, encoding="utf-8")
        jobs[(kind, language, sparse)] = (page, work)
    blank = root / "blank"
    blank.mkdir()
    (blank / "draft.html").write_text("<!DOCTYPE html><html><body></body></html>", encoding="utf-8")
    jobs[("blank", "", False)] = (blank / "draft.html", blank)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {
            case: pool.submit(_show, browser, page, work) for case, (page, work) in jobs.items()
        }
        return {case: future.result() for case, future in futures.items()}


def _pixels(png: bytes) -> bytes:
    """The decompressed image data (filter bytes included) of a PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    position, data = 8, b""
    while position < len(png):
        (length,) = struct.unpack(">I", png[position : position + 4])
        kind = png[position + 4 : position + 8]
        if kind == b"IDAT":
            data += png[position + 8 : position + 8 + length]
        position += 12 + length
    return zlib.decompress(data)


@pytest.mark.parametrize(("kind", "language", "sparse"), CASES)
def test_the_browser_shows_a_clean_mail(
    shown: dict[tuple[str, str, bool], Shown], kind: str, language: str, sparse: bool
) -> None:
    result = shown[(kind, language, sparse)]
    assert result.exit_code == 0
    text = visible_text(result.dom)
    assert text.startswith("Nordvik Systems AB\n")
    assert "Maria Lind" in text
    assert glitches(text) == []

    blank = shown[("blank", "", False)].png
    assert len(result.png) > 2 * len(blank), "the screenshot looks as empty as a blank page"
    # A blank page compresses to a handful of distinct bytes; text, colours and edges do not.
    assert len(set(_pixels(result.png))) > 2 * len(set(_pixels(blank)))


def test_a_right_to_left_override_in_the_location_is_not_shown_reordered(
    tmp_path: Path,
) -> None:
    """Chromium shows "Room 1\u202etxt.exe" as "Room 1exe.txt". Through compose, the mail looks
    exactly like one whose location was "Room 1 txt.exe"; the same page with the override put
    back looks different (so the comparison can tell)."""
    from tests.test_interviews import booked, compose_mail

    browser = _chromium()
    rlo = "\u202e"
    context, _, cleaned = compose_mail(booked(location=f"Room 1{rlo}txt.exe", online_url=""))
    renderer = Renderer(None)

    def with_location(location: str) -> str:
        changed = {**context, "interview": {**context["interview"], "location": location}}
        return renderer.render("welcome", "sv", changed).html

    pages = {
        "cleaned": cleaned,
        "expected": with_location("Room 1 txt.exe"),
        "tricked": with_location(f"Room 1{rlo}txt.exe"),
    }
    shown = {}
    for name, html in pages.items():
        work = tmp_path / name
        work.mkdir()
        (work / "draft.html").write_text(html, encoding="utf-8")
        shown[name] = _show(browser, work / "draft.html", work)
        assert shown[name].exit_code == 0 and shown[name].png, name
    assert "Room 1 txt.exe" in visible_text(shown["cleaned"].dom)
    assert rlo not in shown["cleaned"].dom
    assert _pixels(shown["cleaned"].png) == _pixels(shown["expected"].png)
    assert _pixels(shown["tricked"].png) != _pixels(shown["expected"].png)
