"""The template gallery: ``recruitmail preview --serve``.

For the employer-brand owner who edits templates as files. One page shows every kind in every
language rendered from the sample data (``daemon.samples``), the HTML part beside the text part;
with ``--mailbox``, also the mails the next pass would draft for that recruiter. A template that
fails shows its error, with file and line, in place of the mail. The page follows the files: it is
rendered again when a template or the configuration file changes, and an open page reloads itself.

Read-only and local: it binds 127.0.0.1, answers GET and HEAD only, refuses any Host header other
than its own (so a web page elsewhere cannot read it through DNS rebinding), shows mails in
sandboxed frames that run no script, and writes nothing: no state, no mailbox, no file.
"""

from __future__ import annotations

import hashlib
import html
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs

from recruitmail.contracts.errors import ConfigError, RecruitmailError, RenderError
from recruitmail.contracts.models import MailKind
from recruitmail.daemon.preview import Previewed, due_mails
from recruitmail.daemon.render import RenderedMail, Renderer, default_template_dir
from recruitmail.daemon.samples import SAMPLE_LANGUAGES, sample_context
from recruitmail.daemon.settings import Settings, config_path, load_settings

log = logging.getLogger(__name__)

HOST = "127.0.0.1"

# The page may run its own script and frame its own mails, nothing else.
PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; "
    "frame-src 'self'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'"
)
# A mail is shown as the candidate's client would: styles, inline images, no script, no requests.
MAIL_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"

RELOAD_SCRIPT = """\
// Reloads the gallery when a template or the configuration changes on disk.
(function () {
  var seen = document.documentElement.dataset.fingerprint;
  setInterval(function () {
    fetch("/fingerprint", {cache: "no-store"})
      .then(function (answer) { return answer.text(); })
      .then(function (now) { if (now && now !== seen) { location.reload(); } })
      .catch(function () {});
  }, 1000);
})();
"""


@dataclass(frozen=True)
class Card:
    """One kind in one language: the rendered mail, or why it could not be rendered."""

    kind: str
    language: str
    mail: RenderedMail | None = None
    error: str = ""


@dataclass
class Page:
    """Everything shown for one state of the files (``fingerprint``)."""

    fingerprint: str
    made: datetime
    templates: str
    problem: str = ""
    cards: list[Card] = field(default_factory=list)
    due: list[Previewed] | None = None
    due_problem: str = ""

    def card(self, language: str, kind: str) -> Card | None:
        return next((c for c in self.cards if c.language == language and c.kind == kind), None)


class Gallery:
    """Renders the page for the files as they are now, again only when they change."""

    def __init__(
        self, config: str | Path | None, mailbox: str | None = None, now: datetime | None = None
    ) -> None:
        self.config = config_path(config)
        self.mailbox = mailbox
        self.now = now
        self._lock = threading.Lock()
        self._page: Page | None = None

    def fingerprint(self) -> str:
        """A digest of the names, sizes and modification times of every file the page uses."""
        digest = hashlib.sha256()
        for path in self._watched():
            try:
                info = path.stat()
            except OSError:
                digest.update(f"{path}:missing\n".encode())
                continue
            digest.update(f"{path}:{info.st_size}:{info.st_mtime_ns}\n".encode())
        return digest.hexdigest()[:16]

    def page(self) -> Page:
        with self._lock:
            current = self.fingerprint()
            if self._page is None or self._page.fingerprint != current:
                self._page = self._render(current)
            return self._page

    def _watched(self) -> Iterator[Path]:
        yield self.config
        folders = [default_template_dir()]
        override = self._override_dir()
        if override is not None:
            folders.insert(0, override)
        for folder in folders:
            if folder.is_dir():
                yield from sorted(p for p in folder.rglob("*") if p.is_file())

    def _override_dir(self) -> Path | None:
        try:
            return load_settings(self.config).service.templates_dir
        except ConfigError:
            return None

    def _render(self, fingerprint: str) -> Page:
        settings: Settings | None = None
        problem = ""
        try:
            settings = load_settings(self.config)
        except ConfigError as exc:
            problem = str(exc)
        override = settings.service.templates_dir if settings is not None else None
        try:
            renderer = Renderer(override)
        except ConfigError as exc:  # the override folder is gone: show the defaults
            problem = problem or str(exc)
            renderer = Renderer(None)
        page = Page(
            fingerprint=fingerprint,
            made=datetime.now(UTC),
            templates=(
                f"Templates from {override}, over the defaults"
                if override is not None
                else f"The default templates ({renderer.default_dir})"
            ),
            problem=problem,
        )
        for kind in MailKind:
            for language in _languages(settings):
                page.cards.append(_card(renderer, kind.value, language))
        if self.mailbox and settings is not None:
            try:
                page.due = list(
                    due_mails(settings, renderer, self.now or datetime.now(UTC), self.mailbox)
                )
            except RecruitmailError as exc:
                page.due_problem = str(exc)
        return page


def _languages(settings: Settings | None) -> list[str]:
    languages = list(SAMPLE_LANGUAGES)
    for box in settings.mailboxes if settings is not None else ():
        if box.language not in languages:
            languages.append(box.language)
    return languages


def _card(renderer: Renderer, kind: str, language: str) -> Card:
    try:
        return Card(
            kind, language, mail=renderer.render(kind, language, sample_context(kind, language))
        )
    except (ConfigError, RenderError) as exc:
        return Card(kind, language, error=str(exc))


# --- HTML -------------------------------------------------------------------------------------

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 0 2rem 4rem; color: #1d1d1f; }
header { position: sticky; top: 0; background: #fff; padding: .8rem 0; border-bottom: 1px solid #ddd; }
h1 { font-size: 1.3rem; margin: 0 0 .3rem; }
nav a { margin-right: .8rem; }
section { margin-top: 2rem; }
article { border: 1px solid #ddd; border-radius: 8px; margin: 1rem 0; padding: .8rem 1rem; }
.subject { font-weight: 600; }
.parts { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
iframe { width: 100%; height: 520px; border: 1px solid #eee; }
pre.text { white-space: pre-wrap; margin: 0; padding: .5rem; background: #fafafa; max-height: 520px;
           overflow: auto; border: 1px solid #eee; font: 13px/1.4 ui-monospace, monospace; }
.error { border-color: #c62828; background: #fff5f5; }
.error pre { white-space: pre-wrap; color: #8e0000; }
.banner { border: 1px solid #c62828; background: #fff5f5; padding: .5rem 1rem; }
.muted { color: #666; }
.hint { border-left: 4px solid #f0a800; background: #fffbea; padding: .3rem .6rem; }
"""


def _title(kind: str) -> str:
    return kind.replace("_", " ").capitalize()


def _parts(mail: RenderedMail, frame: str) -> str:
    return (
        f'<p class="subject">Subject: {html.escape(mail.subject)}</p>'
        '<div class="parts">'
        f'<iframe sandbox="" title="HTML part" src="{frame}"></iframe>'
        f'<pre class="text" aria-label="Text part">{html.escape(mail.text)}</pre>'
        "</div>"
    )


def _error(message: str) -> str:
    return f"<p><strong>Template error</strong></p><pre>{html.escape(message)}</pre>"


def index_html(
    page: Page, mailbox: str | None, kinds: set[str] | None = None, language: str | None = None
) -> str:
    """The gallery page; ``kinds``/``language`` narrow it (``/?kind=thank_you&language=sv``)."""
    out = [
        "<!doctype html>",
        f'<html lang="en" data-fingerprint="{page.fingerprint}"><head><meta charset="utf-8">',
        "<title>recruitmail templates</title>",
        f"<style>{STYLE}</style>",
        '<script src="/gallery.js" defer></script></head><body><header>',
        "<h1>recruitmail templates</h1>",
        f'<p class="muted">{html.escape(page.templates)} · '
        f"sample data · rendered {page.made:%H:%M:%S} UTC · the page reloads itself when a "
        "template or the configuration changes.</p><nav>",
    ]
    if page.due is not None or page.due_problem:
        out.append('<a href="/#due">Due next</a>')
    out.extend(f'<a href="/?kind={kind.value}">{_title(kind.value)}</a>' for kind in MailKind)
    out.append('<a href="/">All</a>')
    out.append("</nav></header>")
    if page.problem:
        out.append(f'<p class="banner">{html.escape(page.problem)}</p>')
    if page.due is not None or page.due_problem:
        out.append(f'<section id="due"><h2>Due next for {html.escape(mailbox or "")}</h2>')
        if page.due_problem:
            out.append(f'<p class="banner">{html.escape(page.due_problem)}</p>')
        for number, due in enumerate(page.due or ()):
            out.append(_due_card(number, due))
        if page.due == []:
            out.append('<p class="muted">Nothing is due for this mailbox now.</p>')
        out.append("</section>")
    for kind in MailKind:
        if kinds and kind.value not in kinds:
            continue
        out.append(f'<section id="{kind.value}"><h2>{_title(kind.value)}</h2>')
        for card in page.cards:
            if card.kind != kind.value or (language and card.language != language):
                continue
            frame = f"/mail/sample/{card.language}/{card.kind}.html"
            css = "card error" if card.error else "card"
            body = _error(card.error) if card.error else _parts(card.mail, frame)  # type: ignore[arg-type]
            out.append(
                f'<article class="{css}" data-kind="{card.kind}" data-language="{card.language}">'
                f"<h3>{_title(card.kind)} · {card.language}</h3>{body}</article>"
            )
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def _due_card(number: int, due: Previewed) -> str:
    what = _title(due.kind) + "".join(f" + {_title(k).lower()}" for k in due.folded)
    head = f"<h3>{html.escape(what)} → {html.escape(due.candidate)} · {due.language}</h3>"
    if due.rendered is not None:
        body = "".join(
            f'<p class="hint">For you, not in the mail: {html.escape(hint)}</p>'
            for hint in due.hints
        ) + _parts(due.rendered, f"/mail/due/{number}.html")
        return f'<article class="card" data-kind="{due.kind}">{head}{body}</article>'
    if due.held:
        return (
            f'<article class="card error" data-kind="{due.kind}">{head}{_error(due.held)}</article>'
        )
    return (
        f'<article class="card" data-kind="{due.kind}">{head}'
        f'<p class="muted">Would be skipped: {html.escape(due.skipped)}</p></article>'
    )


# --- HTTP -------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: GalleryServer
    server_version = "recruitmail-gallery"

    def do_HEAD(self) -> None:  # noqa: N802 - the http.server naming
        self._answer(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(head=False)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        log.debug("gallery: " + format, *args)

    def _answer(self, *, head: bool) -> None:
        if self.headers.get("Host", "") not in self.server.hosts:
            self._send(HTTPStatus.MISDIRECTED_REQUEST, "text/plain", b"unknown host\n", head)
            return
        path, _, query = self.path.partition("?")
        asked = parse_qs(query)
        gallery = self.server.gallery
        if path == "/fingerprint":
            self._send(HTTPStatus.OK, "text/plain", gallery.fingerprint().encode(), head)
            return
        if path == "/gallery.js":
            self._send(HTTPStatus.OK, "text/javascript", RELOAD_SCRIPT.encode(), head)
            return
        page = gallery.page()
        if path in ("/", "/index.html"):
            kinds = set(asked.get("kind", ())) or None
            language = asked.get("language", [None])[0]
            body = index_html(page, gallery.mailbox, kinds, language).encode("utf-8")
            self._send(HTTPStatus.OK, "text/html; charset=utf-8", body, head, PAGE_POLICY)
            return
        mail = _mail_at(page, path)
        if mail is None:
            self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n", head)
            return
        body = mail.html.encode("utf-8")
        self._send(HTTPStatus.OK, "text/html; charset=utf-8", body, head, MAIL_POLICY)

    def _send(
        self, status: HTTPStatus, kind: str, body: bytes, head: bool, policy: str = ""
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "SAMEORIGIN")
        self.send_header("Content-Security-Policy", policy or "default-src 'none'")
        self.end_headers()
        if not head:
            self.wfile.write(body)


def _mail_at(page: Page, path: str) -> RenderedMail | None:
    parts = path.strip("/").removesuffix(".html").split("/")
    if len(parts) == 4 and parts[:2] == ["mail", "sample"]:
        card = page.card(parts[2], parts[3])
        return card.mail if card is not None else None
    if len(parts) == 3 and parts[:2] == ["mail", "due"] and parts[2].isdigit():
        number = int(parts[2])
        if page.due is not None and number < len(page.due):
            return page.due[number].rendered
    return None


class GalleryServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, gallery: Gallery, port: int) -> None:
        super().__init__((HOST, port), _Handler)
        self.gallery = gallery
        bound = self.server_address[1]
        self.hosts = {f"{HOST}:{bound}", f"localhost:{bound}"}

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}/"


def serve(
    config: str | Path | None,
    *,
    port: int,
    mailbox: str | None = None,
    now: datetime | None = None,
) -> int:
    """Serve the gallery until interrupted (Ctrl-C or SIGTERM)."""
    gallery = Gallery(config, mailbox, now)
    try:
        server = GalleryServer(gallery, port)
    except OSError as exc:
        raise ConfigError(
            f"preview --serve: cannot listen on {HOST}:{port} ({exc.strerror}); "
            "choose another --port (0 picks a free one)"
        ) from None
    print(f"Template gallery on {server.url} (read-only; Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
