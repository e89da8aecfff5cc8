"""Render a touchpoint's subject, text and HTML part from the Jinja2 templates, sandboxed and bounded."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace, TracebackType
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from daemon.errors import ConfigError, PermanentError
from daemon.mime import clean_header
from daemon.models import MailKind
from daemon.samples import SAMPLE_LANGUAGES, sample_context

MAX_PART_CHARS = 200_000
"""No rendered part may be longer than this: calendar text must not be able to inflate a mail."""

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


class Record(SimpleNamespace):
    """A mapping shown to templates as an object.

    Templates say ``company.values``; on a plain ``dict`` Jinja would find the ``dict.values``
    method before the key, so every mapping in a context becomes one of these.
    """


def _as_template_value(value: Any) -> Any:
    if isinstance(value, Mapping):
        return Record(**{str(k): _as_template_value(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(_as_template_value(v) for v in value)
    return value


class _LanguageEnvironment(SandboxedEnvironment):
    """A sandbox where ``{% extends "x" %}`` inside ``sv/…`` means ``sv/x``.

    Each language directory is self-contained, so names in extends/import/include resolve next
    to the template that uses them.
    """

    def join_path(self, template: str, parent: str) -> str:
        if "/" in template:
            return template
        directory = parent.rpartition("/")[0]
        return f"{directory}/{template}" if directory else template


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
    """Renders touchpoints from ``override_dir`` (file by file) over the default templates."""

    def __init__(self, override_dir: Path | None = None) -> None:
        if override_dir is not None and not override_dir.is_dir():
            raise ConfigError(
                f"service.templates_dir: {override_dir} is not a directory; "
                "create it or remove the setting to use the default templates"
            )
        self.override_dir = override_dir
        self.default_dir = default_template_dir()
        search = [str(override_dir)] if override_dir is not None else []
        search.append(str(self.default_dir))
        loader = jinja2.FileSystemLoader(search)
        options: dict[str, Any] = {
            "loader": loader,
            "undefined": jinja2.StrictUndefined,
            "keep_trailing_newline": True,
            "trim_blocks": True,
            "lstrip_blocks": True,
            "auto_reload": False,
        }
        self._text_env = _LanguageEnvironment(autoescape=False, **options)
        self._html_env = _LanguageEnvironment(autoescape=True, **options)

    def render(self, kind: str, language: str, context: Mapping[str, Any]) -> RenderedMail:
        """Render ``kind`` in ``language`` with ``context`` (the names of docs/TEMPLATES.md).

        Raises ``ConfigError`` (naming file and line) when a template is wrong, and
        ``PermanentError`` when this mail's data cannot be rendered or a part grows too long.
        """
        if not _KIND.match(kind):
            raise ConfigError(f"no template for mail kind {kind!r}")
        if not _LANGUAGE.match(language):
            raise ConfigError(
                f"no templates for language {language!r}: use a code such as sv or en"
            )
        values = {str(name): _as_template_value(value) for name, value in context.items()}

        text_template = self._load(self._text_env, f"{language}/{kind}.txt.j2")
        html_template = self._load(self._html_env, f"{language}/{kind}.html.j2")
        subject_block = text_template.blocks.get("subject")
        if subject_block is None:
            raise ConfigError(
                f"{text_template.filename}: has no {{% block subject %}}…{{% endblock %}}; "
                "the subject of the mail comes from it"
            )

        # Render the whole text first, then the subject block with the same context: top-level
        # imports (the macros) are only bound once the template's root has run.
        text_context = text_template.new_context(values)
        text = self._generate(
            self._text_env, text_template, lambda: text_template.root_render_func(text_context)
        )
        subject = self._generate(self._text_env, text_template, lambda: subject_block(text_context))
        html = self._generate(
            self._html_env,
            html_template,
            lambda: html_template.root_render_func(html_template.new_context(values)),
        )
        return RenderedMail(subject=clean_header(subject), text=_tidy_text(text), html=html)

    def _load(self, env: _LanguageEnvironment, name: str) -> jinja2.Template:
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
        env: _LanguageEnvironment,
        template: jinja2.Template,
        chunks: Callable[[], Iterator[str]],
    ) -> str:
        parts: list[str] = []
        size = 0
        try:
            try:
                for chunk in chunks():
                    size += len(chunk)
                    if size > MAX_PART_CHARS:
                        break
                    parts.append(chunk)
            except Exception:
                # Let Jinja rewrite the traceback so that its frames carry template file and line.
                env.handle_exception()
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(_syntax_message(exc)) from None
        except jinja2.TemplateNotFound as exc:
            raise ConfigError(
                f"{template.filename}: includes {exc.name}, which does not exist"
            ) from None
        except (jinja2.TemplateError, SecurityError, RecursionError) as exc:
            # Undefined names, sandbox violations, runaway macros: the template must change.
            where = _template_location(exc.__traceback__) or str(template.filename)
            raise ConfigError(f"{where}: {exc}") from None
        except Exception as exc:
            # Anything else came from this mail's values (a filter choking on odd data): skip it.
            where = _template_location(exc.__traceback__) or str(template.filename)
            raise PermanentError(
                f"{where}: cannot render this mail's data: {type(exc).__name__}: {exc}"
            ) from None
        if size > MAX_PART_CHARS:
            raise PermanentError(
                f"{template.filename}: the rendered part exceeds {MAX_PART_CHARS} characters; "
                "some calendar text is far too long"
            )
        return "".join(parts)

    def check(self, languages: Iterable[str] = SAMPLE_LANGUAGES) -> list[str]:
        """Render every kind and language with full and sparse sample data; list the problems.

        Each problem is one human message, ``file:line: what``. An empty list means the templates
        are fine. Also reports files in the override directory that recruitmail would never use.
        """
        problems: list[str] = []
        for language in languages:
            problems.extend(self._unused_overrides(language))
            for kind in MailKind:
                for sparse in (False, True):
                    sample = "sparse" if sparse else "full"
                    try:
                        mail = self.render(
                            kind.value,
                            language,
                            sample_context(kind.value, language, sparse=sparse),
                        )
                    except (ConfigError, PermanentError) as exc:
                        problems.append(
                            f"{exc} (rendering {language}/{kind.value}, {sample} sample)"
                        )
                        continue
                    problems.extend(self._output_problems(mail, kind.value, language, sample))
        return list(dict.fromkeys(problems))

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


def _syntax_message(exc: jinja2.TemplateSyntaxError) -> str:
    return f"{exc.filename or exc.name}:{exc.lineno}: {exc.message}"
