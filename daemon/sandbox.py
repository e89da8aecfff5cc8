"""Jinja2 as recruitmail uses it: the sandbox its templates run in and the compiled-template
cache several processes share. Imported by ``render`` at the first template a process needs, so
that a process which renders nothing (an idle ``once``, ``status``) does without Jinja2 (~18 ms
of its start-up)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from recruitmail.daemon.bounds import (
    MAX_RANGE,
    MAX_VALUE_CHARS,
    PLAIN_DATA,
    Budget,
    OverBudget,
    Record,
    sized,
)

log = logging.getLogger("recruitmail")

_MISSING = object()


def _small_range(*args: int) -> range:
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise SecurityError(f"range() in a template is limited to {MAX_RANGE} numbers")
    return numbers


def _compiled_code_fingerprint(environment: jinja2.Environment) -> str:
    """What shapes the code Jinja2 compiles a template to, beside its source.

    The text and the HTML environment load the same files (layouts, macros) but compile them
    differently (autoescaping; the sandbox routes calls and operators through its checks), so
    each keeps its own entries; so does another Jinja2 version or option.
    """
    shape = (
        jinja2.__version__,
        type(environment).__qualname__,
        environment.sandboxed,
        environment.autoescape,
        environment.optimized,
        environment.is_async,
        sorted(environment.extensions),
        sorted(getattr(environment, "intercepted_binops", ())),
        sorted(getattr(environment, "intercepted_unops", ())),
        environment.block_start_string,
        environment.block_end_string,
        environment.variable_start_string,
        environment.variable_end_string,
        environment.comment_start_string,
        environment.comment_end_string,
        environment.line_statement_prefix,
        environment.line_comment_prefix,
        environment.trim_blocks,
        environment.lstrip_blocks,
        environment.newline_sequence,
        environment.keep_trailing_newline,
    )
    return hashlib.sha256(repr(shape).encode()).hexdigest()[:16]


class LanguageEnvironment(SandboxedEnvironment):
    """A sandbox where ``{% extends "x" %}`` inside ``sv/…`` means ``sv/x``, and where no
    expression can make a huge value or run for long.

    Each language directory is self-contained, so names in extends/import/include resolve next
    to the template that uses them.
    """

    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, budget: Budget, **options: Any) -> None:
        super().__init__(**options)
        self.budget = budget
        self.globals["range"] = _small_range

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        self.budget.check()
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise SecurityError("the template raises a number to a huge power")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_VALUE_CHARS
                ):
                    raise OverBudget(f"a value grew past {MAX_VALUE_CHARS} characters")
        return sized(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.check()
        if type(obj) is Record and attribute[:1] != "_":
            # The context's own records hold plain data in their instance dictionary: what the
            # sandbox would allow anyway, found without its checks (most of a mail's look-ups).
            value = obj.__dict__.get(attribute, _MISSING)
            if type(value) in PLAIN_DATA:
                return sized(value)
        return sized(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.check()
        return sized(super().getitem(obj, argument))

    def call(
        __self,  # noqa: N805 - Jinja's own signature
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        __self.budget.check()
        return sized(super().call(__context, __obj, *args, **kwargs))

    def join_path(self, template: str, parent: str) -> str:
        if "/" in template:
            return template
        directory = parent.rpartition("/")[0]
        return f"{directory}/{template}" if directory else template


class TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates in a directory that several processes share.

    Jinja2 names an entry by the template's name and file and keeps a checksum of its source in
    it: an edited template misses and is compiled and stored again. An entry is written to a
    temporary file and renamed into place, so two processes writing at once leave one whole
    entry. An entry that cannot be read or written costs only the compile time, never a mail.
    """

    def __init__(self, directory: Path, environment: jinja2.Environment) -> None:
        super().__init__(str(directory), f"{_compiled_code_fingerprint(environment)}-%s.cache")

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a damaged entry is a miss: compile again
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError as exc:
            log.debug("template cache %s not written: %s", self.directory, exc)
