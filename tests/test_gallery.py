"""The template gallery (``recruitmail preview --serve``), looked at in real headless Chromium.

The employer-brand owner opens it while editing templates: it must show every kind in every
language, follow an edited template, show a broken one's error with file and line in place of the
mail while the others still render, and be reachable only as a local, read-only page.
"""

from __future__ import annotations

import http.client
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from recruitmail.contracts.models import MailKind
from recruitmail.daemon.demo import config_text
from recruitmail.daemon.render import default_template_dir
from recruitmail.daemon.samples import SAMPLE_LANGUAGES
from tests.servers import spawn, stop
from tests.test_render_chromium import QUIET, _chromium

pytestmark = pytest.mark.servers


class Gallery:
    """``recruitmail preview --serve --port 0`` as a child process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.templates = root / "templates"
        (self.templates / "sv").mkdir(parents=True)
        self.config = root / "recruitmail.toml"
        text = config_text(root, date(2026, 12, 14))
        text = text.replace("[service]\n", f'[service]\ntemplates_dir = "{self.templates}"\n', 1)
        self.config.write_text(text, encoding="utf-8")
        (root / "calendar.ics").write_text(
            "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nEND:VCALENDAR\r\n"
        )
        (root / "Maildir").mkdir()
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> None:
        self.process = spawn(
            [sys.executable, "-m", "recruitmail", "--config", str(self.config)]
            + ["preview", "--serve", "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert found, f"no address announced: {line!r}"
        self.url = found.group(0)

    def stop(self) -> None:
        """SIGTERM to its process group, as before; SIGKILL if it has not ended in 30 s."""
        stop(self.process, grace=30)

    def get(self, path: str, host: str | None = None) -> tuple[int, dict[str, str], str]:
        address = self.url.removeprefix("http://").rstrip("/")
        connection = http.client.HTTPConnection(address, timeout=60)
        headers = {"Host": host} if host else {}
        connection.request("GET", path, headers=headers)
        answer = connection.getresponse()
        body = answer.read().decode("utf-8")
        connection.close()
        return answer.status, dict(answer.getheaders()), body

    def wait_for_change(self, before: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.get("/fingerprint")[2] != before:
                return
            time.sleep(0.2)
        raise AssertionError("the gallery did not notice the edited file")


@pytest.fixture
def gallery(tmp_path: Path) -> Iterator[Gallery]:
    served = Gallery(tmp_path)
    served.start()
    try:
        yield served
    finally:
        served.stop()


def look(browser: str, url: str, work: Path, shot: Path | None = None) -> str:
    """The page's DOM after Chromium loaded it (and a screenshot, if asked)."""
    args = [browser, *QUIET, f"--user-data-dir={work / 'profile'}", "--window-size=1400,1800"]
    if shot is not None:
        args.append(f"--screenshot={shot}")
    run = subprocess.run(
        [*args, "--dump-dom", url], capture_output=True, timeout=180, cwd=work, check=False
    )
    assert run.returncode == 0, run.stderr.decode("utf-8", "replace")[-2000:]
    return run.stdout.decode("utf-8")


def cards(dom: str) -> set[tuple[str, str]]:
    return set(re.findall(r'data-kind="(\w+)" data-language="(\w+)"', dom))


def test_the_gallery_shows_every_kind_follows_edits_and_shows_template_errors(
    gallery: Gallery, tmp_path: Path
) -> None:
    browser = _chromium()
    dom = look(browser, gallery.url, tmp_path)
    expected = {(kind.value, language) for kind in MailKind for language in SAMPLE_LANGUAGES}
    assert expected <= cards(dom), f"missing: {sorted(expected - cards(dom))}"
    assert "Template error" not in dom
    assert dom.count("<iframe") >= len(expected), "every mail shows its HTML part"
    assert dom.count('class="text"') >= len(expected), "every mail shows its text part"

    # The HTML part Chromium frames is the rendered mail, under a policy that runs no script.
    status, headers, mail = gallery.get("/mail/sample/sv/welcome.html")
    assert status == 200 and "<html" in mail
    assert "sandbox" in headers["Content-Security-Policy"]

    # The brand owner edits the Swedish welcome: the gallery shows the new words.
    before = gallery.get("/fingerprint")[2]
    default = (default_template_dir() / "sv" / "welcome.txt.j2").read_text(encoding="utf-8")
    edited, count = re.subn(
        r"{%-? block subject -?%}.*?{%-? endblock -?%}",
        "{% block subject %}Välkommen till oss – galleriprov{% endblock %}",
        default,
        count=1,
        flags=re.S,
    )
    assert count == 1
    (gallery.templates / "sv" / "welcome.txt.j2").write_text(edited, encoding="utf-8")
    gallery.wait_for_change(before)
    dom = look(browser, gallery.url, tmp_path)
    assert "Välkommen till oss – galleriprov" in dom

    # A broken template: its error, with file and line, in place of that mail; the rest render.
    before = gallery.get("/fingerprint")[2]
    (gallery.templates / "sv" / "thank_you.txt.j2").write_text(
        "{% block subject %}Tack{% endblock %}\n{% if %}\n", encoding="utf-8"
    )
    gallery.wait_for_change(before)
    shot = tmp_path / "gallery-error.png"
    dom = look(browser, gallery.url, tmp_path, shot=shot)
    broken = re.search(
        r'<article class="card error" data-kind="thank_you" data-language="sv">(.*?)</article>',
        dom,
        re.S,
    )
    assert broken, "the broken template's mail is replaced by its error"
    assert "Template error" in broken.group(1)
    assert re.search(r"thank_you\.txt\.j2:2\b", broken.group(1)), broken.group(1)
    assert ("thank_you", "en") in cards(dom) and ("welcome", "sv") in cards(dom)
    assert dom.count("Template error") == 1, "only the broken template's mail shows an error"
    assert shot.exists() and shot.stat().st_size > 10_000


def test_the_gallery_is_local_and_read_only(gallery: Gallery) -> None:
    assert gallery.url.startswith("http://127.0.0.1:")
    # A page elsewhere that rebinds its own name to 127.0.0.1 is refused.
    status, _, _ = gallery.get("/", host="attacker.example")
    assert status == 421
    status, headers, page = gallery.get("/")
    assert status == 200
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert ("status_update", "en") in cards(page)
    _, _, narrowed = gallery.get("/?kind=thank_you&language=en")
    assert cards(narrowed) == {("thank_you", "en")}
    assert headers["Cache-Control"] == "no-store"
    address = gallery.url.removeprefix("http://").rstrip("/")
    for method in ("POST", "PUT", "DELETE"):
        connection = http.client.HTTPConnection(address, timeout=30)
        connection.request(method, "/", body=b"x")
        answer = connection.getresponse()
        answer.read()
        connection.close()
        assert answer.status in (405, 501), method
    assert not list((gallery.root / "Maildir").rglob("*.eml"))
    assert not (gallery.root / "state").exists() or not list((gallery.root / "state").iterdir())
