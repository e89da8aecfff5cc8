"""Render a touchpoint's subject, text and HTML part from the Jinja2 templates, sandboxed and bounded.

Failures stay with one mail: whatever a template raises on a mail's data, and a part that grows
past ``MAX_PART_BYTES`` or a mail that takes longer than ``MAX_RENDER_SECONDS``, is a
``RenderError`` (the mail is held, the others are drafted). Only a template that cannot be
loaded at all (missing, syntax) is a ``ConfigError``.

Compiled templates are kept on disk (``sandbox.TemplateCache``) so that a process does not compile every
template again; an edited template is compiled afresh, since the cache checks each source. The
same directory remembers which templates passed the start-up check (``check_unless_unchanged``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from recruitmail.contracts.errors import ConfigError, RenderError
from recruitmail.contracts.mime import clean_header
from recruitmail.contracts.models import MailKind
from recruitmail.daemon.bounds import Budget, OverBudget, Record
from recruitmail.daemon.samples import SAMPLE_LANGUAGES, SAMPLES, hostile_context, sample_context

if TYPE_CHECKING:
    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

log = logging.getLogger("recruitmail")

MAX_PART_BYTES = 256 * 1024
"""No rendered part may be larger (UTF-8): calendar text must not be able to inflate a mail."""
RACY_SECONDS = 2.0
"""A file modified this recently may change again without its metadata showing it (the coarsest
common file system clock, FAT's, ticks every 2 s): its start-up check is not remembered yet."""

SHARED_FILES = ("_layout.html.j2", "_layout.txt.j2", "_macros.j2")
TEMPLATE_FILES = SHARED_FILES + tuple(
    f"{kind.value}.{part}.j2" for kind in MailKind for part in ("txt", "html")
)

_LANGUAGE = re.compile(r"^[a-z]{2,3}$")
_KIND = re.compile(r"^[a-z][a-z_]{0,40}$")
_BLANK_LINES = re.compile(r"\n{3,}")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_NONE_WORD = re.compile(r"\bNone\b")


def default_template_dir() -> Path:
    """The shipped templates: the source tree's ``templates/``, else where the wheel installs them."""
    in_tree = Path(__file__).resolve().parent.parent / "templates"
    if in_tree.is_dir():
        return in_tree
    return Path(sys.prefix) / "share/recruitmail/templates"


@dataclass(frozen=True)
class RenderedMail:
    """One rendered touchpoint: a one-line, header-safe subject and the two bodies."""

    subject: str
    text: str
    html: str


def _as_template_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Record(**{str(k): _as_template_value(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_as_template_value(v) for v in value)
    return value


def usable_cache_dir(directory: Path) -> Path | None:
    """``directory``, made if its parent exists, when only this user can write into it.

    Jinja2 loads cached entries as code, so a directory that someone else owns or may write
    into is not used (None, with a warning); neither is one that cannot be made.
    """
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        info = directory.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
            log.warning(
                "template cache %s is not a directory of this user; templates are compiled "
                "in memory",
                directory,
            )
            return None
        if stat.S_IMODE(info.st_mode) != 0o700:
            directory.chmod(0o700)
    except OSError as exc:
        log.debug("template cache %s not usable: %s", directory, exc)
        return None
    return directory


def _template_location(tb: TracebackType | None) -> str:
    """``file:line`` of the innermost template frame of a (Jinja-rewritten) traceback."""
    where = ""
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename.endswith(".j2"):
            where = f"{filename}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where


def _tidy_text(text: str) -> str:
    # Optional lines that came out empty leave runs of blank lines; a mail shows at most one.
    text = _TRAILING_SPACE.sub("\n", text + "\n")
    return _BLANK_LINES.sub("\n\n", text).strip("\n") + "\n"


class Renderer:
    """Renders touchpoints from ``override_dir`` (file by file) over the default templates.

    With ``cache_dir``, compiled templates are kept there for the next process (``TemplateCache``).
    """

    def __init__(self, override_dir: Path | None = None, cache_dir: Path | None = None) -> None:
        if override_dir is not None and not override_dir.is_dir():
            raise ConfigError(
                f"service.templates_dir: {override_dir} is not a directory; "
                "create it or remove the setting to use the default templates"
            )
        self.override_dir = override_dir
        self.default_dir = default_template_dir()
        self._budget = Budget()
        self.cache_dir = usable_cache_dir(cache_dir) if cache_dir is not None else None
        # The text and the HTML environment, made at first use (``_environments``).
        self._made: tuple[SandboxedEnvironment, SandboxedEnvironment] | None = None
        self._making = threading.Lock()
        # A remembered check not loaded yet (``check_unless_unchanged(load=False)``): the samples
        # and digest it was remembered under, verified before the first mail is rendered.
        self._unverified: tuple[tuple[str, ...], str] | None = None
        self._refused = ""
        self._verifying = threading.Lock()

    def _environments(self) -> tuple[SandboxedEnvironment, SandboxedEnvironment]:
        """The text environment (no autoescaping) and the HTML one, both sandboxed, loading
        from the override directory over the default templates; made at first use."""
        made = self._made
        if made is not None:
            return made
        with self._making:  # runners render in parallel: one makes them, the others wait
            if self._made is None:
                import jinja2

                from recruitmail.daemon.sandbox import LanguageEnvironment, TemplateCache

                search = [str(self.override_dir)] if self.override_dir is not None else []
                search.append(str(self.default_dir))
                options: dict[str, Any] = {
                    "loader": jinja2.FileSystemLoader(search),
                    "undefined": jinja2.StrictUndefined,
                    "keep_trailing_newline": True,
                    "trim_blocks": True,
                    "lstrip_blocks": True,
                    "auto_reload": False,
                }
                text = LanguageEnvironment(self._budget, autoescape=False, **options)
                html = LanguageEnvironment(self._budget, autoescape=True, **options)
                if self.cache_dir is not None:
                    for env in (text, html):
                        env.bytecode_cache = TemplateCache(self.cache_dir, env)
                self._made = (text, html)
            return self._made

    def render(self, kind: str, language: str, context: Mapping[str, Any]) -> RenderedMail:
        """Render ``kind`` in ``language`` with ``context`` (the names of docs/TEMPLATES.md).

        Raises ``ConfigError`` when a template cannot be loaded (missing, syntax, no subject
        block: every mail of the kind would fail), and ``RenderError`` with a short reason that
        holds no calendar text when rendering this mail's data fails or goes over a budget.
        """
        if self._unverified is not None or self._refused:
            self._verify_remembered_check()
        return self._render(kind, language, context, reveal=False)

    def _verify_remembered_check(self) -> None:
        """Before the first mail of a renderer whose remembered check was not loaded: the
        templates must still be those that passed it. Unchanged, they are all loaded now (as
        ``check_unless_unchanged`` would have at start-up); changed since, they are checked
        again and, with problems, every mail of this renderer is refused (``ConfigError``)."""
        with self._verifying:  # runners render in parallel: one verifies, the others wait
            if self._unverified is not None:
                samples, remembered = self._unverified
                if self._check_digest(samples)[0] == remembered:
                    self._load_all()
                else:
                    problems = self.check(samples=samples)
                    if problems:
                        self._refused = "templates do not render:\n  " + "\n  ".join(problems)
                self._unverified = None
        if self._refused:
            raise ConfigError(self._refused)

    def _render(
        self, kind: str, language: str, context: Mapping[str, Any], *, reveal: bool
    ) -> RenderedMail:
        if not _KIND.match(kind):
            raise ConfigError(f"no template for mail kind {kind!r}")
        if not _LANGUAGE.match(language):
            raise ConfigError(
                f"no templates for language {language!r}: use a code such as sv or en"
            )
        values = {str(name): _as_template_value(value) for name, value in context.items()}

        text_env, html_env = self._environments()
        text_template = self._load(text_env, f"{language}/{kind}.txt.j2")
        html_template = self._load(html_env, f"{language}/{kind}.html.j2")
        subject_block = text_template.blocks.get("subject")
        if subject_block is None:
            raise ConfigError(
                f"{text_template.filename}: has no {{% block subject %}}…{{% endblock %}}; "
                "the subject of the mail comes from it"
            )

        def secrets() -> tuple[str, ...]:
            # Only a failing mail needs them: its error message must not quote its data.
            return () if reveal else _strings_in(context)

        def generate(
            env: SandboxedEnvironment,
            template: jinja2.Template,
            chunks: Callable[[], Iterator[str]],
        ) -> str:
            return self._generate(env, template, chunks, secrets)

        self._budget.start()
        # Render the whole text first, then the subject block with the same context: top-level
        # imports (the macros) are only bound once the template's root has run.
        text_context = text_template.new_context(values)
        text = generate(
            text_env, text_template, lambda: text_template.root_render_func(text_context)
        )
        subject = generate(text_env, text_template, lambda: subject_block(text_context))
        html = generate(
            html_env,
            html_template,
            lambda: html_template.root_render_func(html_template.new_context(values)),
        )
        return RenderedMail(subject=clean_header(subject), text=_tidy_text(text), html=html)

    def _load(self, env: SandboxedEnvironment, name: str) -> jinja2.Template:
        import jinja2

        try:
            return env.get_template(name)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(_syntax_message(exc)) from None
        except jinja2.TemplateNotFound:
            places = [str(self.default_dir)]
            if self.override_dir is not None:
                places.insert(0, str(self.override_dir))
            raise ConfigError(f"template {name} not found in {' or '.join(places)}") from None

    def _generate(
        self,
        env: SandboxedEnvironment,
        template: jinja2.Template,
        chunks: Callable[[], Iterator[str]],
        secrets: Callable[[], tuple[str, ...]],
    ) -> str:
        import jinja2

        parts: list[str] = []
        size = 0
        try:
            try:
                for chunk in chunks():
                    size += len(chunk.encode("utf-8", "surrogatepass"))
                    if size > MAX_PART_BYTES:
                        break
                    self._budget.check()
                    parts.append(chunk)
            except Exception:
                # Let Jinja rewrite the traceback so that its frames carry template file and line.
                env.handle_exception()
        except jinja2.TemplateSyntaxError as exc:
            raise RenderError(_syntax_message(exc)) from None
        except jinja2.TemplateNotFound as exc:
            raise RenderError(
                f"{template.filename}: includes {exc.name}, which does not exist"
            ) from None
        except OverBudget as exc:
            raise RenderError(f"{template.filename}: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - whatever a template raises stays with this mail
            # Undefined names in a branch only this data reaches, sandbox refusals, runaway
            # macros, a filter choking on odd data: this mail is held, the others go on.
            where = _template_location(exc.__traceback__) or str(template.filename)
            raise RenderError(f"{where}: {_reason(exc, secrets())}") from None
        if size > MAX_PART_BYTES:
            raise RenderError(
                f"{template.filename}: the rendered part exceeds {MAX_PART_BYTES // 1024} KiB; "
                "some calendar text is far too long"
            )
        return "".join(parts)

    def check(
        self, languages: Iterable[str] = SAMPLE_LANGUAGES, samples: Iterable[str] = SAMPLES
    ) -> list[str]:
        """Render every kind and language with the full, the sparse and the hostile sample data
        (``daemon.samples``; or only the ``samples`` named); list the problems.

        Each problem is one human message, ``file:line: what``. An empty list means the templates
        are fine. Also reports files in the override directory that recruitmail would never use.
        """
        problems: list[str] = []
        for language in languages:
            problems.extend(self._unused_overrides(language))
            for kind in MailKind:
                for sample in samples:
                    context = (
                        hostile_context(kind.value, language)
                        if sample == "hostile"
                        else sample_context(kind.value, language, sparse=sample == "sparse")
                    )
                    try:
                        mail = self._render(kind.value, language, context, reveal=True)
                    except (ConfigError, RenderError) as exc:
                        problems.append(
                            f"{exc} (rendering {language}/{kind.value}, {sample} sample)"
                        )
                        continue
                    problems.extend(self._output_problems(mail, kind.value, language, sample))
        return list(dict.fromkeys(problems))

    def check_unless_unchanged(self, samples: tuple[str, ...], *, load: bool = True) -> list[str]:
        """``check(samples=samples)``, unless these very templates already passed it.

        A clean result is remembered in the cache directory under a digest of everything the
        check's outcome depends on: every file in the template directories, recruitmail's own
        code, the Python version, the Jinja2, Babel and MarkupSafe installs, and the samples
        named (``_check_digest``: by file metadata, no file is read). An edited template, an
        upgrade or another sample set checks again. Either way every template is in memory
        afterwards, so a template edited in place later reaches this renderer only through a
        new one (a reload).

        With ``load=False`` (a process that may render nothing, such as an idle ``once``) a
        remembered check loads no template: the first ``render`` verifies the digest again and
        then loads them all, or, when a template changed in between, checks them again and
        refuses every mail with ``ConfigError`` if they do not pass.
        """
        if self.cache_dir is None:
            return self.check(samples=samples)
        digest, settled = self._check_digest(samples)
        passed = self.cache_dir / f"checked-{digest}"
        if passed.exists():
            if load:
                self._load_all()
            else:
                self._unverified = (samples, digest)
            return []
        problems = self.check(samples=samples)
        if not problems and settled:
            try:
                passed.touch()
                for earlier in self.cache_dir.glob("checked-*"):
                    if earlier != passed:
                        earlier.unlink(missing_ok=True)
            except OSError as exc:
                log.debug("template cache %s: could not remember the check: %s", passed, exc)
        return problems

    def _load_all(self) -> None:
        """Load every template of every language as ``check`` would (compiled, or from the cache)."""
        text_env, html_env = self._environments()
        for env, other_part in ((text_env, ".html.j2"), (html_env, ".txt.j2")):
            for name in env.list_templates(extensions=["j2"]):
                if name.partition("/")[0] in SAMPLE_LANGUAGES and not name.endswith(other_part):
                    with contextlib.suppress(ConfigError):  # a file no mail uses; check said so
                        self._load(env, name)

    def _check_digest(self, samples: tuple[str, ...]) -> tuple[str, bool]:
        """A fingerprint of what the check's outcome depends on, from file metadata; and whether
        every file has settled, so that a clean check may be remembered under it.

        Each file counts by its path, size, inode and modification and change times: an edit, a
        copy over it or a package upgrade changes one of them, so an unchanged install reads no
        file. A file modified in the last ``RACY_SECONDS`` has not settled: a second edit of the
        same size within one tick of the file system's clock would leave the same metadata
        (git's "racy" files), so a check of it is not remembered.
        """
        from recruitmail import contracts

        digest = hashlib.sha256(repr((sys.version, samples)).encode())
        settled_before = time.time_ns() - int(RACY_SECONDS * 10**9)
        newest = 0
        files: list[tuple[str, os.stat_result]] = []
        for folder, recursive in (
            (self.override_dir, True),
            (self.default_dir, True),
            (Path(__file__).parent, False),
            (Path(contracts.__file__).parent, False),
        ):
            if folder is not None:
                files += [
                    (path, info)
                    for path, info in _files(folder, recursive)
                    if recursive or path.endswith(".py")
                ]
        for library in _checked_libraries():
            with contextlib.suppress(OSError):
                files.append((library, os.stat(library)))
        for path, info in files:
            times = f"{info.st_mtime_ns}:{info.st_ctime_ns}"
            digest.update(f"\0{path}\0{info.st_size}:{info.st_ino}:{times}".encode())
            newest = max(newest, info.st_mtime_ns)
        return digest.hexdigest()[:32], newest < settled_before

    def _output_problems(
        self, mail: RenderedMail, kind: str, language: str, sample: str
    ) -> list[str]:
        problems = []
        where = f"{language}/{kind}"
        if not mail.subject:
            problems.append(f"{where}.txt.j2: the subject block renders empty ({sample} sample)")
        for part, body in (("txt", mail.text), ("html", mail.html)):
            if _NONE_WORD.search(body):
                problems.append(
                    f"{where}.{part}.j2: prints None for a missing value ({sample} sample); "
                    "guard it with {% if … %}"
                )
        if sample == "hostile":
            lowered = mail.html.lower()
            if "<script" in lowered or "<img src=x" in lowered:
                problems.append(
                    f"{where}.html.j2: shows calendar text as markup (hostile sample); "
                    "remove |safe or Markup() around calendar values"
                )
            if 'href="javascript' in lowered:
                problems.append(f"{where}.html.j2: links a javascript: address (hostile sample)")
        return problems

    def _unused_overrides(self, language: str) -> list[str]:
        if self.override_dir is None:
            return []
        directory = self.override_dir / language
        if not directory.is_dir():
            return []
        return [
            f"{path}: recruitmail uses no template of this name (expected one of "
            f"{', '.join(TEMPLATE_FILES)})"
            for path in sorted(directory.iterdir())
            if path.suffix == ".j2" and path.name not in TEMPLATE_FILES
        ]


def _checked_libraries() -> list[str]:
    """The ``__init__`` files of the libraries whose version shapes what a template renders
    (rewritten by every upgrade), found without importing them."""
    from importlib.util import find_spec

    found = []
    for name in ("jinja2", "babel", "markupsafe"):
        spec = find_spec(name)
        if spec is not None and spec.origin:
            found.append(spec.origin)
    return found


def _files(folder: Path, recursive: bool) -> Iterator[tuple[str, os.stat_result]]:
    """Every file under ``folder`` (symbolic links followed, each folder once) with its metadata,
    in a stable order; a folder that cannot be read has no files."""
    seen: set[tuple[int, int]] = set()
    pending = [str(folder)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
            info = os.stat(current)
        except OSError:
            continue
        if (info.st_dev, info.st_ino) in seen:
            continue
        seen.add((info.st_dev, info.st_ino))
        folders = []
        for entry in entries:
            try:
                if entry.is_dir():
                    folders.append(entry.path)
                elif entry.is_file():
                    yield entry.path, entry.stat()
            except OSError:
                continue
        if recursive:
            pending.extend(reversed(folders))


def _strings_in(value: Any, found: set[str] | None = None) -> tuple[str, ...]:
    """Every string of a context (at least 3 characters): what an error message must not show."""
    out = set() if found is None else found
    if isinstance(value, str):
        if len(value) >= 3:
            out.add(value)
    elif isinstance(value, Mapping):
        for item in value.values():
            _strings_in(item, out)
    elif isinstance(value, list | tuple):
        for item in value:
            _strings_in(item, out)
    return tuple(out)


def _reason(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """``Type: message``, or only the type when the message quotes the mail's data."""
    message = str(exc)
    name = type(exc).__name__
    if not message or any(secret in message for secret in secrets):
        return name
    return f"{name}: {message[:300]}"


def _syntax_message(exc: jinja2.TemplateSyntaxError) -> str:
    return f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}"
